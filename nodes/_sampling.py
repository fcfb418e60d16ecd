"""Diffusion inpainting of crops with ComfyUI's own sampler: the `Generator` that
GuidedBlendInpaint and the detailer hand to the pipelines (pipelines/repair/detail_repair.py).

One path serves every model family ComfyUI loads (SD1.5, SDXL, SD3, Flux dev and Fill) and
both model kinds: inpaint models (SD/SDXL 9-channel, Flux Fill) read the masked image from the
conditioning's `concat_latent_image` (as InpaintModelConditioning sets it), ordinary models
ignore it and sample through the latent noise mask alone. What differs by family is read from
the model itself (`ModelTraits`): the crop multiple, the inpaint input, and where the guidance
comes from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import comfy.sample
import comfy.samplers
import node_helpers
import torch
from comfy_api.latest import io


def encode_text(clip, text: str) -> list:
    """CLIPTextEncode's conditioning for `text`."""
    return clip.encode_from_tokens_scheduled(clip.tokenize(text))


# Guidance-distilled models (Flux dev and Fill) read their guidance from the conditioning, as
# FluxGuidance writes it; without one, the values of Black Forest Labs' reference workflows.
FLUX_GUIDANCE = 3.5
FLUX_FILL_GUIDANCE = 30.0
# A model without an inpaint input sees the surroundings only through the latent noise mask: at
# full strength, asked to invent more than this share of its crop, it paints something unrelated.
PLAIN_MODEL_MAX_SHARE = 0.5
FULL_STRENGTH = 0.9


@dataclass(frozen=True)
class ModelTraits:
    size_multiple: int       # crop sides in pixels: the VAE's downscale x the model's patch
    inpaint_input: bool      # takes the masked image and mask as extra input channels
    guidance_embedded: bool  # guidance-distilled (Flux): sampled at CFG 1


def model_traits(model, vae) -> ModelTraits:
    unet = model.model.model_config.unet_config
    latent_channels = model.model.latent_format.latent_channels
    return ModelTraits(
        size_multiple=int(vae.spacial_compression_encode()) * int(unet.get("patch_size", 1)),
        inpaint_input=int(unet.get("in_channels", latent_channels)) > latent_channels,
        guidance_embedded=bool(unet.get("guidance_embed", False)))


def _with_guidance(conditioning: list, guidance: float) -> list:
    """`conditioning` with `guidance` wherever FluxGuidance has not set one."""
    return [[tensor, options if "guidance" in options else {**options, "guidance": guidance}]
            for tensor, options in conditioning]


def _check_plain_share(traits: ModelTraits, mask: torch.Tensor, denoise: float) -> None:
    if traits.inpaint_input or denoise < FULL_STRENGTH:
        return
    share = float((mask > 0).float().mean(dim=(1, 2)).max())
    if share > PLAIN_MODEL_MAX_SHARE:
        raise ValueError(
            f"model: an ordinary model (no inpaint input) would invent {share:.0%} of its crop "
            f"from noise (more than {PLAIN_MODEL_MAX_SHARE:.0%}), seeing the surroundings only "
            f"through the latent noise mask, and would paint something unrelated to them. "
            f"Connect an inpaint model (SD1.5 or SDXL inpainting, Flux Fill), lower denoise "
            f"below {FULL_STRENGTH} so it starts from the old content (the marked modes open "
            f"their whole window), or give it more context (a larger context_factor, a smaller "
            f"outpaint)")


def diffusion_generator(model, vae, positive: list, negative: list, steps: int, cfg: float,
                        sampler_name: str, scheduler: str, on_step: Callable[[], None]):
    """A pipelines.core.generator.Generator: VAE-encode, sample under the mask, decode.
    `on_step` runs after every sampling step (progress and interrupt). Guidance-distilled
    models sample at CFG 1 with the conditioning's guidance instead of `cfg`."""
    traits = model_traits(model, vae)
    if traits.guidance_embedded:
        guidance = FLUX_FILL_GUIDANCE if traits.inpaint_input else FLUX_GUIDANCE
        positive, negative = _with_guidance(positive, guidance), _with_guidance(negative, guidance)
        cfg = 1.0

    def generate(pixels: torch.Tensor, mask: torch.Tensor, hidden: torch.Tensor, seed: int,
                 denoise: float) -> torch.Tensor:
        _check_plain_share(traits, mask, denoise)
        pixels = pixels[..., :3]
        visible = 1 - hidden.round()[..., None]
        masked = (pixels - 0.5) * visible + 0.5  # grey where hidden, as InpaintModelConditioning
        extra = {"concat_latent_image": vae.encode(masked), "concat_mask": hidden[:, None]}
        pos = node_helpers.conditioning_set_values(positive, extra)
        neg = node_helpers.conditioning_set_values(negative, extra)
        latent = comfy.sample.fix_empty_latent_channels(model, vae.encode(pixels))
        noise = comfy.sample.prepare_noise(latent, seed)
        samples = comfy.sample.sample(
            model, noise, steps, cfg, sampler_name, scheduler, pos, neg, latent, denoise=denoise,
            noise_mask=mask[:, None], callback=lambda *_: on_step(), disable_pbar=True,
            seed=seed)
        return vae.decode(samples)[..., :3].clamp(0, 1).to(pixels.device, pixels.dtype)

    generate.size_multiple = traits.size_multiple
    return generate


def diffusion_inputs(steps: int = 20, cfg: float = 7.0, denoise: float = 1.0) -> list:
    """The optional sampler sockets and widgets shared by the generating nodes."""
    return [
        io.Model.Input("model", optional=True, tooltip="A diffusion model of any family ComfyUI "
                       "loads (SD1.5, SDXL, SD3, Flux): an inpaint model (SD/SDXL inpainting, "
                       "Flux Fill; best) or an ordinary one (sampled under a noise mask). Crops "
                       "snap to the family's size multiple (8 px; 16 for Flux and SD3). Leave "
                       "unconnected to use the embedded engines."),
        io.Vae.Input("vae", optional=True, tooltip="The model's VAE; needed with `model`."),
        io.Conditioning.Input("positive", optional=True, tooltip="Positive conditioning. "
                              "Unused when `clip` is connected (the node composes its own)."),
        io.Conditioning.Input("negative", optional=True, tooltip="Negative conditioning. "
                              "Unused when `clip` is connected."),
        io.Clip.Input("clip", optional=True, tooltip="Optional text encoder: the node then "
                      "writes the prompt itself from its template and notes."),
        io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF,
                     control_after_generate=True,
                     tooltip="Seed of the first candidate; candidate k uses seed + k."),
        io.Int.Input("steps", default=steps, min=1, max=150,
                     tooltip="Sampling steps."),
        io.Float.Input("cfg", default=cfg, min=0.0, max=30.0, step=0.1,
                       tooltip="Classifier-free guidance scale. Guidance-distilled models (Flux "
                       "dev and Fill) ignore it and sample at CFG 1 with the conditioning's "
                       "guidance (set it with FluxGuidance; 3.5, or 30 for Fill, when unset)."),
        io.Combo.Input("sampler_name", options=comfy.samplers.SAMPLER_NAMES,
                       tooltip="Sampler, as in KSampler."),
        io.Combo.Input("scheduler", options=comfy.samplers.SCHEDULER_NAMES,
                       default="normal", tooltip="Noise schedule, as in KSampler."),
        io.Float.Input("denoise", default=denoise, min=0.0, max=1.0,
                       step=0.01,
                       tooltip="Strength of regeneration inside the mask (1 = from noise)."),
    ]


def conditioning(clip, positive, negative, texts: tuple[str, str]) -> tuple[list, list]:
    """The conditioning to sample with: composed from `texts` when a clip is connected,
    otherwise the connected positive and negative."""
    if clip is not None:
        return encode_text(clip, texts[0]), encode_text(clip, texts[1])
    if positive is None or negative is None:
        raise ValueError("positive/negative: connect both conditionings, or a clip so the node "
                         "writes its own prompt")
    return positive, negative
