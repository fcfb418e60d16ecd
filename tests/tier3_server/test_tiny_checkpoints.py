"""The tiny checkpoints run through a real server with core nodes only, written after it started."""

from __future__ import annotations

import io

import pytest
from PIL import Image

import tiny_models

PLAIN = "tiny_sd15.safetensors"
INPAINT = "tiny_sd15_inpaint.safetensors"


@pytest.fixture(scope="module")
def checkpoints(server):
    """Both checkpoints, written into the running server's models folder (listings re-scan)."""
    folder = server.base_dir / "models" / "checkpoints"
    tiny_models.write_sd15_checkpoint(folder / PLAIN)
    tiny_models.write_sd15_checkpoint(folder / INPAINT, inpaint=True)
    return folder


def loader_and_mask(ckpt_name: str) -> dict:
    """Shared head of every prompt: checkpoint, zero conditioning, a 64 px image and a mask with
    a 32 px square of 1 in the middle."""
    return {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt_name}},
        # The checkpoints hold no text encoder, so there is no CLIP to encode a prompt.
        "cond": {"class_type": "RegionRepairTest_ZeroConditioning", "inputs": {}},
        "image": {"class_type": "EmptyImage",
                  "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0x8040C0}},
        "background": {"class_type": "SolidMask",
                       "inputs": {"value": 0.0, "width": 64, "height": 64}},
        "square": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 32, "height": 32}},
        "mask": {"class_type": "MaskComposite",
                 "inputs": {"destination": ["background", 0], "source": ["square", 0],
                            "x": 16, "y": 16, "operation": "add"}},
    }


def sample_and_save(positive: list, negative: list, latent: list, seed: int, prefix: str) -> dict:
    return {
        "sample": {"class_type": "KSampler",
                   "inputs": {"model": ["ckpt", 0], "seed": seed, "steps": 3, "cfg": 7.0,
                              "sampler_name": "euler", "scheduler": "normal",
                              "positive": positive, "negative": negative,
                              "latent_image": latent, "denoise": 1.0}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0],
                                                         "vae": ["ckpt", 2]}},
        "save": {"class_type": "SaveImage",
                 "inputs": {"images": ["decode", 0], "filename_prefix": prefix}},
    }


def saved_size(server, history: dict) -> tuple[int, int]:
    (png,) = server.output_files(history, "save")
    return Image.open(io.BytesIO(png)).size


@pytest.mark.server
def test_checkpoints_written_after_start_are_listed(server, checkpoints):
    info = server.get_json("/object_info/CheckpointLoaderSimple")["CheckpointLoaderSimple"]
    names = info["input"]["required"]["ckpt_name"][0]
    assert PLAIN in names and INPAINT in names


@pytest.mark.server
def test_the_plain_checkpoint_inpaints_with_a_latent_noise_mask(server, checkpoints):
    prompt = loader_and_mask(PLAIN) | {
        "encode": {"class_type": "VAEEncode", "inputs": {"pixels": ["image", 0],
                                                         "vae": ["ckpt", 2]}},
        "masked": {"class_type": "SetLatentNoiseMask",
                   "inputs": {"samples": ["encode", 0], "mask": ["mask", 0]}},
    } | sample_and_save(["cond", 0], ["cond", 0], ["masked", 0], seed=101, prefix="tiny_plain")
    assert saved_size(server, server.run(prompt)) == (64, 64)


@pytest.mark.server
def test_the_inpaint_checkpoint_runs_with_inpaint_model_conditioning(server, checkpoints):
    prompt = loader_and_mask(INPAINT) | {
        "inpaint": {"class_type": "InpaintModelConditioning",
                    "inputs": {"positive": ["cond", 0], "negative": ["cond", 0],
                               "vae": ["ckpt", 2], "pixels": ["image", 0], "mask": ["mask", 0],
                               "noise_mask": True}},
    } | sample_and_save(["inpaint", 0], ["inpaint", 1], ["inpaint", 2], seed=102,
                        prefix="tiny_inpaint_conditioning")
    assert saved_size(server, server.run(prompt)) == (64, 64)


@pytest.mark.server
def test_the_inpaint_checkpoint_runs_with_vae_encode_for_inpaint(server, checkpoints):
    prompt = loader_and_mask(INPAINT) | {
        "encode": {"class_type": "VAEEncodeForInpaint",
                   "inputs": {"pixels": ["image", 0], "vae": ["ckpt", 2], "mask": ["mask", 0],
                              "grow_mask_by": 6}},
    } | sample_and_save(["cond", 0], ["cond", 0], ["encode", 0], seed=103,
                        prefix="tiny_inpaint_vae_encode")
    assert saved_size(server, server.run(prompt)) == (64, 64)
