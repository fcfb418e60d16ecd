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


def _sd1_model(unet: Mapping, in_channels: int, dtype: torch.dtype, device: torch.device):
    """A comfy.model_base.BaseModel with ComfyUI's SD15 model config (set_inpaint() applies
    when in_channels > 4, as the loader does). ComfyUI skips weight init, so on a real device
    the UNet weights are garbage until loaded."""
    config = comfy.supported_models.SD15({**_SD1_UNET_BASE, **unet, "in_channels": in_channels})
    config.set_inference_dtype(dtype, None)
    return config.get_model({}, "", device=device)


def _in_channels(inpaint: bool) -> int:
    # 9 = 4 latent + 1 mask + 4 masked-image latent: detected as SD15 inpaint. Never 8, which
    # pix2pix and Zero123 match first.
    return 9 if inpaint else 4


# --- a checkpoint file ---------------------------------------------------------------------

def sd15_checkpoint_state_dict(inpaint: bool = False, seed: int = 0) -> dict[str, torch.Tensor]:
    """The tensors of write_sd15_checkpoint, in fp16: UNet and TAESD, no text encoder."""
    unet = _sd1_model(SD15_FILE_UNET, _in_channels(inpaint), torch.float16,
                      torch.device("meta")).diffusion_model
    with torch.device("meta"):
        taesd = comfy.taesd.taesd.TAESD()
    tensors = {
        **seeded_state_dict(unet.state_dict(), seed, "model.diffusion_model."),
        # The loader picks TAESD from these key names (comfy.sd.VAE: "taesd_decoder.1.weight").
        **seeded_state_dict(taesd.state_dict(), seed, "first_stage_model.", _TAESD_SCALARS),
    }
    return {key: value.to(torch.float16).contiguous() for key, value in tensors.items()}


def write_sd15_checkpoint(path: str | os.PathLike, inpaint: bool = False, seed: int = 0) -> Path:
    """Write a .safetensors checkpoint that CheckpointLoaderSimple loads as SD15 (SD15 inpaint
    with inpaint=True): 16.1 M parameters, about 31 MiB. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = sd15_checkpoint_state_dict(inpaint, seed)
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
    model = _sd1_model(TINY_UNET, _in_channels(inpaint), torch.float32, torch.device("cpu"))
    model.diffusion_model.load_state_dict(
        seeded_state_dict(model.diffusion_model.state_dict(), seed), strict=True)
    return comfy.model_patcher.ModelPatcher(
        model, load_device=model_management.get_torch_device(),
        offload_device=model_management.unet_offload_device())


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
