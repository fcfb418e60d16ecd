"""The tiny random-weight models: ComfyUI's own loader and nodes accept them, deterministically."""

from __future__ import annotations

import nodes  # ComfyUI's nodes.py: the conftest puts ComfyUI first on sys.path
import pytest
import torch

import tiny_models

# Noise-mask region on the 8x8 latent of a 64 px image. Pixel masks are made from it by 8x
# repetition, so the sampler's bilinear resize of the mask gives back exactly 0 and 1.
LATENT_MASK = torch.zeros(8, 8)
LATENT_MASK[2:6, 2:6] = 1
PIXEL_MASK = LATENT_MASK.repeat_interleave(8, 0).repeat_interleave(8, 1)[None]


@pytest.fixture(scope="module")
def tiny():
    return {"model": tiny_models.tiny_model(), "inpaint_model": tiny_models.tiny_model(inpaint=True),
            "clip": tiny_models.tiny_clip(), "vae": tiny_models.tiny_vae()}


def inpaint(tiny, kind: str, seed: int) -> tuple[dict, dict, torch.Tensor]:
    """A 64 px inpaint through ComfyUI's own node functions: (latent in, latent out, image out)."""
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(1))
    positive = nodes.CLIPTextEncode().encode(tiny["clip"], "a red apple")[0]
    negative = nodes.CLIPTextEncode().encode(tiny["clip"], "")[0]
    if kind == "set_latent_noise_mask":
        model = tiny["model"]
        latent = nodes.VAEEncode().encode(tiny["vae"], image)[0]
        latent = nodes.SetLatentNoiseMask().set_mask(latent, PIXEL_MASK)[0]
    else:
        model = tiny["inpaint_model"]
        positive, negative, latent = nodes.InpaintModelConditioning().encode(
            positive, negative, image, tiny["vae"], PIXEL_MASK, noise_mask=True)
    out = nodes.common_ksampler(model, seed, 4, 7.0, "euler", "normal", positive, negative,
                                latent)[0]
    return latent, out, nodes.VAEDecode().decode(tiny["vae"], out)[0]


@pytest.mark.parametrize("kind", ["set_latent_noise_mask", "inpaint_model_conditioning"])
def test_an_inpaint_changes_only_the_masked_latent_and_repeats_exactly(tiny, kind):
    latent_in, latent_out, image = inpaint(tiny, kind, seed=5)
    assert image.shape == (1, 64, 64, 3) and torch.isfinite(image).all()
    change = (latent_out["samples"] - latent_in["samples"]).abs()
    assert change[..., LATENT_MASK == 0].max() <= 1.5e-5
    assert change[..., LATENT_MASK == 1].min() > 0.01

    _, again, image_again = inpaint(tiny, kind, seed=5)
    assert torch.equal(again["samples"], latent_out["samples"])
    assert torch.equal(image_again, image)
    _, other, _ = inpaint(tiny, kind, seed=6)
    assert not torch.equal(other["samples"], latent_out["samples"])


def test_the_tiny_objects_have_the_types_comfyui_passes_around(tiny):
    import comfy.model_base
    import comfy.model_patcher
    import comfy.sd

    assert isinstance(tiny["model"], comfy.model_patcher.ModelPatcher)
    assert isinstance(tiny["model"].model, comfy.model_base.BaseModel)
    assert tiny["inpaint_model"].model.concat_keys == ("mask", "masked_image")
    assert isinstance(tiny["clip"], comfy.sd.CLIP) and isinstance(tiny["vae"], comfy.sd.VAE)


def test_a_checkpoint_written_twice_with_one_seed_is_the_same_file(tmp_path):
    first = tiny_models.write_sd15_checkpoint(tmp_path / "a.safetensors", seed=3)
    second = tiny_models.write_sd15_checkpoint(tmp_path / "b.safetensors", seed=3)
    other = tiny_models.write_sd15_checkpoint(tmp_path / "c.safetensors", seed=4)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()


@pytest.mark.parametrize("inpaint", [False, True], ids=["sd15", "sd15_inpaint"])
def test_comfyuis_loader_detects_the_checkpoint_as_sd15(tmp_path, inpaint):
    import comfy.sd
    import comfy.taesd.taesd

    path = tiny_models.write_sd15_checkpoint(tmp_path / "tiny.safetensors", inpaint=inpaint)
    model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(path))
    config = model.model.model_config
    assert type(config).__name__ == "SD15"
    # Detection recovers exactly the UNet that was written.
    for key, value in tiny_models.SD15_FILE_UNET.items():
        assert config.unet_config[key] == value, key
    assert config.unet_config["in_channels"] == (9 if inpaint else 4)
    assert model.model.concat_keys == (("mask", "masked_image") if inpaint else ())
    assert clip is None  # no text encoder in the file
    assert isinstance(vae.first_stage_model, comfy.taesd.taesd.TAESD)
    assert vae.first_stage_model.vae_scale.item() == pytest.approx(0.18215, rel=1e-3)
