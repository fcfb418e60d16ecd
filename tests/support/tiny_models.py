"""Tiny random-weight models that ComfyUI's own loaders and nodes accept. Nothing is downloaded.

Key names and shapes come from ComfyUI's own classes (instantiated on the `meta` device where
only shapes are needed), so they always match the installed version. Values are seeded per key:
fan-in scaled normal for tensors of 2 or more dimensions, ones for 1-D norm weights, zeros for
biases. The same seed gives bit-identical tensors and files.

- `write_sd15_checkpoint`: a file `CheckpointLoaderSimple` detects as SD1.5 (or SD1.5 inpaint),
  with a TAESD VAE and no text encoder. The loader then returns clip=None: give the sampler
  zero conditioning, [[zeros(1, 77, 768), {"pooled_output": zeros(1, 768)}]] (over HTTP, the
  test node RegionRepairTest_ZeroConditioning).
- `tiny_model`, `tiny_clip`, `tiny_vae`: much smaller in-process objects of the types ComfyUI's
  nodes pass around (ModelPatcher, comfy.sd.CLIP, comfy.sd.VAE). Their configs fail detection,
  so they cannot go through a file.
"""

from __future__ import annotations

import os
import sys
import zlib
from collections.abc import Mapping
from pathlib import Path

import torch

from pack_paths import COMFYUI

# Importable on its own (the server tier writes checkpoints without the node tier's conftest):
# ComfyUI on sys.path, and --cpu set before anything imports comfy.model_management, which
# otherwise looks for an NVIDIA driver with this CUDA torch build.
if str(COMFYUI) not in sys.path:
    sys.path.insert(0, str(COMFYUI))
from comfy.cli_args import args  # noqa: E402

if "comfy.model_management" not in sys.modules:
    args.cpu = True

import comfy.model_management as model_management  # noqa: E402
import comfy.model_patcher  # noqa: E402
import comfy.sd  # noqa: E402
import comfy.sd1_clip  # noqa: E402
import comfy.supported_models  # noqa: E402
import comfy.supported_models_base  # noqa: E402
import comfy.taesd.taesd  # noqa: E402
from comfy.ldm.models.autoencoder import AutoencoderKL  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

# What comfy.model_detection.detect_unet_config() reports for an SD1.x UNet, besides the
# architecture keys below.
_SD1_UNET_BASE = {
    "use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
    "adm_in_channels": None, "out_channels": 4, "use_linear_in_transformer": False,
    "use_temporal_resblock": False, "use_temporal_attention": False,
}

# The smallest UNet still detected as SD15 (13.6 M parameters): the detector keys on
# model_channels=320, context_dim=768, a conv proj_in and no label_emb; depth is free.
SD15_FILE_UNET = {
    "model_channels": 320, "context_dim": 768, "channel_mult": [1], "num_res_blocks": [1],
    "transformer_depth": [1], "transformer_depth_output": [0, 0],
    "transformer_depth_middle": -2,  # no middle block at all
}

# In-process UNet (0.83 M parameters): attention only at half resolution keeps 256 px fast.
# context_dim matches TINY_CLIP's hidden_size, so CLIPTextEncode output fits.
TINY_UNET = {
    "model_channels": 32, "context_dim": 64, "channel_mult": [1, 2], "num_res_blocks": [1, 1],
    "transformer_depth": [0, 1], "transformer_depth_output": [0, 0, 1, 1],
    "transformer_depth_middle": -1,  # a middle res block, no transformer
}

# Overrides of ComfyUI's bundled CLIP-L config (comfy/sd1_clip_config.json), passed through the
# `clip_l_model_config` model option. vocab_size and max_position_embeddings stay as they are,
# so the real bundled tokenizer works.
TINY_CLIP = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 2}

# AutoencoderKL with 3 downsamples (8x, as SD's VAE), 32 channels at every level (0.37 M).
TINY_VAE = {"ddconfig": {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3,
                         "out_ch": 3, "ch": 32, "ch_mult": [1, 1, 1, 1], "num_res_blocks": 1,
                         "attn_resolutions": [], "dropout": 0.0},
            "embed_dim": 4}

SD15_TOKENS = 77  # CLIP-L's context length

# TAESD scalars: the values ComfyUI's VAELoader sets for SD1.x TAESD (nodes.py, load_taesd).
_TAESD_SCALARS = {"vae_scale": 0.18215, "vae_shift": 0.0}


def seeded_tensor(key: str, shape: torch.Size, seed: int) -> torch.Tensor:
    """A float32 tensor for one state-dict entry, seeded by (seed, key) alone: each tensor's
    values do not depend on which other keys exist or on their order."""
    if key.endswith("bias"):
        return torch.zeros(shape)
    if len(shape) <= 1:  # norm weights (and any scalar not overridden)
        return torch.ones(shape)
    # CPU generators keep only the low 32 bits of a seed, so hash seed and key together.
    generator = torch.Generator().manual_seed(zlib.crc32(f"{seed}/{key}".encode()))
    fan_in = shape[1:].numel()
    return torch.randn(shape, generator=generator) / fan_in ** 0.5


def seeded_state_dict(shapes: Mapping[str, torch.Tensor], seed: int, prefix: str = "",
                      fixed: Mapping[str, float] | None = None) -> dict[str, torch.Tensor]:
    """Seeded values for every entry of `shapes` (a state dict, meta tensors are fine), with keys
    prefixed by `prefix`; `fixed` gives constant values by unprefixed key."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    fixed = fixed or {}
    out = {}
    for key, tensor in shapes.items():
        if key in fixed:
            out[prefix + key] = torch.full(tensor.shape, fixed[key])
        else:
            out[prefix + key] = seeded_tensor(prefix + key, tensor.shape, seed)
    return out


def _sd15_config(unet: Mapping, in_channels: int) -> comfy.supported_models.SD15:
    """ComfyUI's SD15 model config for `unet`; its model gets set_inpaint() when in_channels > 4,
    as the loader's does."""
    return comfy.supported_models.SD15({**_SD1_UNET_BASE, **unet, "in_channels": in_channels})


def _in_channels(inpaint: bool) -> int:
    # 9 = 4 latent + 1 mask + 4 masked-image latent: detected as SD15 inpaint. Never 8, which
    # pix2pix and Zero123 match first.
    return 9 if inpaint else 4


# --- a checkpoint file ---------------------------------------------------------------------

def sd15_checkpoint_state_dict(inpaint: bool = False, seed: int = 0) -> dict[str, torch.Tensor]:
    """The tensors of write_sd15_checkpoint, in fp16: UNet and TAESD, no text encoder."""
    unet = _diffusion_shapes("sd15_inpaint" if inpaint else "sd15")
    with torch.device("meta"):
        taesd = comfy.taesd.taesd.TAESD()
    tensors = {
        **seeded_state_dict(unet, seed, "model.diffusion_model."),
        # The loader picks TAESD from these key names (comfy.sd.VAE: "taesd_decoder.1.weight").
        **seeded_state_dict(taesd.state_dict(), seed, "first_stage_model.", _TAESD_SCALARS),
    }
    return {key: value.to(torch.float16).contiguous() for key, value in tensors.items()}


def write_sd15_checkpoint(path: str | os.PathLike, inpaint: bool = False, seed: int = 0) -> Path:
    """Write a .safetensors checkpoint that CheckpointLoaderSimple loads as SD15 (SD15 inpaint
    with inpaint=True): 16.1 M parameters, about 31 MiB. Returns the path."""
    return _write(path, sd15_checkpoint_state_dict(inpaint, seed))


def _write(path: str | os.PathLike, tensors: dict[str, torch.Tensor]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write, then rename: a server listing the folder never sees a half-written file.
    partial = path.with_name(path.name + ".partial")
    save_file(tensors, str(partial))
    os.replace(partial, path)
    return path


# --- in-process objects ----------------------------------------------------------------------

def tiny_model(inpaint: bool = False, seed: int = 0) -> comfy.model_patcher.ModelPatcher:
    """A MODEL as CheckpointLoaderSimple returns it: a ModelPatcher around a BaseModel with the
    SD15 config (latent format, EPS sampling; the inpaint one has concat_keys mask and
    masked_image), but a tiny UNet."""
    return _patcher(_sd15_config(TINY_UNET, _in_channels(inpaint)), seed)


def tiny_clip(seed: int = 0) -> comfy.sd.CLIP:
    """A CLIP with ComfyUI's SD1 classes and the real bundled tokenizer, shrunk to 3.2 M
    parameters (almost all the 49408-token embedding). Encodes to [B, 77, 64]."""
    target = comfy.supported_models_base.ClipTarget(comfy.sd1_clip.SD1Tokenizer,
                                                    comfy.sd1_clip.SD1ClipModel)
    clip = comfy.sd.CLIP(target, model_options={"clip_l_model_config": TINY_CLIP})
    # Every weight is set: ComfyUI's layers skip init, so a missed one would hold garbage.
    clip.cond_stage_model.load_state_dict(
        seeded_state_dict(clip.cond_stage_model.state_dict(), seed), strict=True)
    return clip


def tiny_vae(seed: int = 0) -> comfy.sd.VAE:
    """A VAE around a 0.37 M-parameter AutoencoderKL: 8x down/up-scaling, 4 latent channels."""
    with torch.device("meta"):
        shapes = AutoencoderKL(**TINY_VAE).state_dict()
    # With `config`, comfy.sd.VAE builds AutoencoderKL(**config["params"]) and loads `sd`.
    return comfy.sd.VAE(sd=seeded_state_dict(shapes, seed), config={"params": TINY_VAE})


# --- other model families --------------------------------------------------------------------
# SDXL and Flux cannot be tiny files that ComfyUI detects: its detector matches SDXL only at
# model_channels 320 with transformer depths [0, 0, 2, 2, 10, 10] (the whole 2.6 B-parameter
# UNet), and it takes Flux's 24 heads and rotary axes [16, 56, 56] as constants, so a Flux file
# is at least 3072 wide (about 400 M parameters with a single block). Both are built in process
# with ComfyUI's own model configs and tiny widths. SD3's detector reads every width from the
# file, so SD3 is a tiny file for UNETLoader, with a 16-channel TAESD file for VAELoader.

# SDXL's UNet shape (linear transformer projections, the pooled text plus six size embeddings
# as ADM input) at TINY_UNET's widths.
TINY_SDXL_UNET = {**_SD1_UNET_BASE, **TINY_UNET, "use_linear_in_transformer": True,
                  "num_head_channels": 16, "num_classes": "sequential",
                  "adm_in_channels": 64 + 6 * 256}
TINY_FLUX = {"image_model": "flux", "in_channels": 16, "out_channels": 16, "vec_in_dim": 64,
             "context_in_dim": 64, "hidden_size": 64, "mlp_ratio": 2.0, "num_heads": 4,
             "depth": 1, "depth_single_blocks": 1, "axes_dim": [4, 6, 6], "theta": 10000,
             "patch_size": 2, "qkv_bias": True, "guidance_embed": True}
FLUX_FILL_IN_CHANNELS = 96  # 16 latent + 16 masked-image latent + 64 (the 8x8 mask per latent)
# MMDiT: ComfyUI derives hidden size (64 x depth) and heads (= depth) from the depth.
TINY_SD3 = {"in_channels": 16, "out_channels": 16, "patch_size": 2, "depth": 2,
            "adm_in_channels": 64, "pos_embed_max_size": 96, "num_patches": 96 * 96,
            "context_embedder_config": {"target": "torch.nn.Linear",
                                        "params": {"in_features": 64, "out_features": 128}},
            "pos_embed_scaling_factor": None, "input_size": None,
            "x_block_self_attn_layers": []}
# The text-conditioning widths the tiny families take: (context, pooled).
CONDITIONING_WIDTHS = {"sd15": (SD15_FILE_UNET["context_dim"], 768), "sdxl": (64, 64),
                       "flux": (64, 64), "sd3": (64, 64)}
IN_PROCESS_FAMILIES = ("sdxl", "sdxl_inpaint", "flux", "flux_fill")


def _patcher(config: comfy.supported_models_base.BASE, seed: int
             ) -> comfy.model_patcher.ModelPatcher:
    """A MODEL around `config`'s model on the CPU in float32, every weight seeded (ComfyUI's
    layers skip init, so a missed one would hold garbage)."""
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({}, "", device=torch.device("cpu"))
    model.diffusion_model.load_state_dict(
        seeded_state_dict(model.diffusion_model.state_dict(), seed), strict=True)
    return comfy.model_patcher.ModelPatcher(
        model, load_device=model_management.get_torch_device(),
        offload_device=model_management.unet_offload_device())


def _family_config(family: str) -> comfy.supported_models_base.BASE:
    """ComfyUI's model config for a tiny `family`: the file families as the loaders detect
    them (sd15, sd15_inpaint, sd3), the in-process ones (IN_PROCESS_FAMILIES)."""
    if family.startswith("sd15"):
        return _sd15_config(SD15_FILE_UNET, _in_channels(family != "sd15"))
    if family == "sd3":
        return comfy.supported_models.SD3(dict(TINY_SD3))
    if family.startswith("sdxl"):
        return comfy.supported_models.SDXL(
            {**TINY_SDXL_UNET, "in_channels": _in_channels(family.endswith("inpaint"))})
    if family == "flux":
        return comfy.supported_models.Flux(dict(TINY_FLUX))
    if family == "flux_fill":
        return comfy.supported_models.FluxInpaint(
            {**TINY_FLUX, "in_channels": FLUX_FILL_IN_CHANNELS})
    raise ValueError(f"family: {family!r}; choose one of sd15, sd15_inpaint, sd3, "
                     f"{', '.join(IN_PROCESS_FAMILIES)}")


def tiny_family_model(family: str, seed: int = 0) -> comfy.model_patcher.ModelPatcher:
    """A MODEL of `family` (IN_PROCESS_FAMILIES) with ComfyUI's own config for it: SDXL
    (EPS, size-conditioned ADM; the inpaint variant has 9 input channels, as the loader sets
    it up), Flux dev (flow, guidance embedded, 16-channel latents in 2x2 patches) or Flux Fill
    (96 input channels)."""
    if family not in IN_PROCESS_FAMILIES:
        raise ValueError(f"family: {family!r}; choose one of {IN_PROCESS_FAMILIES}")
    return _patcher(_family_config(family), seed)


def _diffusion_shapes(family: str) -> dict[str, torch.Tensor]:
    """`family`'s diffusion-model state dict on the meta device (shapes only)."""
    config = _family_config(family)
    config.set_inference_dtype(torch.float16, None)
    return config.get_model({}, "", device=torch.device("meta")).diffusion_model.state_dict()


def write_lora(path: str | os.PathLike, family: str, rank: int = 2, seed: int = 0) -> Path:
    """A LoRA for `family` that LoraLoader applies to every linear weight of its diffusion model
    (kohya names, `lora_unet_<path>`), rank `rank`, seeded; its up weights are small, so it
    changes the model's output a little."""
    tensors = {}
    for key, shape in ((k, t.shape) for k, t in _diffusion_shapes(family).items()):
        if not key.endswith(".weight") or len(shape) != 2:
            continue
        name = "lora_unet_" + key[:-len(".weight")].replace(".", "_")
        tensors[f"{name}.lora_down.weight"] = seeded_tensor(name + "/down", torch.Size((rank, shape[1])),
                                                            seed).half()
        tensors[f"{name}.lora_up.weight"] = (0.01 * seeded_tensor(
            name + "/up", torch.Size((shape[0], rank)), seed)).half()
        tensors[f"{name}.alpha"] = torch.tensor(float(rank)).half()
    return _write(path, tensors)


def tiny_family_vae(latent_channels: int, seed: int = 0) -> comfy.sd.VAE:
    """tiny_vae with `latent_channels` latent channels (4 for SD1.5/SDXL, 16 for Flux/SD3)."""
    params = {**TINY_VAE, "ddconfig": {**TINY_VAE["ddconfig"], "z_channels": latent_channels},
              "embed_dim": latent_channels}
    with torch.device("meta"):
        shapes = AutoencoderKL(**params).state_dict()
    vae = comfy.sd.VAE(sd=seeded_state_dict(shapes, seed), config={"params": params})
    vae.latent_channels = latent_channels  # with a config ComfyUI leaves SD's 4
    return vae


def zero_conditioning(family: str) -> list:
    """All-zero conditioning at `family`'s tiny text widths (8 tokens; SD1.5: 77)."""
    context, pooled = CONDITIONING_WIDTHS[family.split("_")[0]]
    tokens = SD15_TOKENS if family.startswith("sd15") else 8
    return [[torch.zeros(1, tokens, context), {"pooled_output": torch.zeros(1, pooled)}]]


def write_sd3_diffusion_model(path: str | os.PathLike, seed: int = 0) -> Path:
    """A .safetensors diffusion model UNETLoader detects as SD3: 2.3 M parameters in fp16, its
    position table 96 patches a side (crops up to 1536 px)."""
    return _write(path, {key: value.half().contiguous() for key, value in
                         seeded_state_dict(_diffusion_shapes("sd3"), seed).items()})


def write_taesd_vae(path: str | os.PathLike, latent_channels: int, seed: int = 0) -> Path:
    """A .safetensors TAESD that VAELoader loads with `latent_channels` latent channels."""
    with torch.device("meta"):
        taesd = comfy.taesd.taesd.TAESD(latent_channels=latent_channels)
    return _write(path, {key: value.half().contiguous() for key, value in
                         seeded_state_dict(taesd.state_dict(), seed, "",
                                           _TAESD_SCALARS).items()})
