"""Diffusion inpainting of crops with ComfyUI's own sampler: the `Generator` that
GuidedBlendInpaint and the detailer hand to the pipelines (pipelines/detail_repair.py).

One path serves both model kinds: 9-channel inpaint models read the masked image from the
conditioning's `concat_latent_image` (as InpaintModelConditioning sets it), ordinary models
ignore it and sample through the latent noise mask alone.
"""

from __future__ import annotations

from collections.abc import Callable

import comfy.sample
import comfy.samplers
import node_helpers
import torch
from comfy_api.latest import io


def encode_text(clip, text: str) -> list:
    """CLIPTextEncode's conditioning for `text`."""
    return clip.encode_from_tokens_scheduled(clip.tokenize(text))


def diffusion_generator(model, vae, positive: list, negative: list, steps: int, cfg: float,
                        sampler_name: str, scheduler: str, on_step: Callable[[], None]):
    """A pipelines.detail_repair.Generator: VAE-encode, sample under the mask, decode.
    `on_step` runs after every sampling step (progress and interrupt)."""

    def generate(pixels: torch.Tensor, mask: torch.Tensor, hidden: torch.Tensor, seed: int,
                 denoise: float) -> torch.Tensor:
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

    return generate


def diffusion_inputs(steps: int = 20, cfg: float = 7.0, denoise: float = 1.0) -> list:
    """The optional sampler sockets and widgets shared by the generating nodes."""
    return [
        io.Model.Input("model", optional=True, tooltip="A diffusion model: an inpaint model "
                       "(9-channel, best) or an ordinary one (sampled under a noise mask). "
                       "Leave unconnected to use the embedded engines."),
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
                       tooltip="Classifier-free guidance scale."),
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
