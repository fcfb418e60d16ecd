"""nodes/_sampling.py with every tiny model family: what it reads from the model (crop multiple,
inpaint input, guidance), Flux's guidance from the conditioning, and the refusal of a plain
model asked to invent most of its crop."""

from __future__ import annotations

import pytest
import torch

import tiny_models

LATENT_CHANNELS = {"sdxl": 4, "sdxl_inpaint": 4, "flux": 16, "flux_fill": 16}
# family: (size multiple, inpaint input, guidance embedded)
TRAITS = {"sdxl": (8, False, False), "sdxl_inpaint": (8, True, False),
          "flux": (16, False, True), "flux_fill": (16, True, True)}


@pytest.fixture(scope="module")
def sampling(pack):
    from region_repair.nodes import _sampling
    return _sampling


@pytest.fixture(scope="module", params=sorted(TRAITS))
def family(request):
    name = request.param
    return name, tiny_models.tiny_family_model(name), tiny_models.tiny_family_vae(
        LATENT_CHANNELS[name])


def test_traits_come_from_the_model(sampling, family):
    name, model, vae = family
    traits = sampling.model_traits(model, vae)
    assert (traits.size_multiple, traits.inpaint_input, traits.guidance_embedded) == TRAITS[name]
    sd15 = sampling.model_traits(tiny_models.tiny_model(inpaint=True), tiny_models.tiny_vae())
    assert (sd15.size_multiple, sd15.inpaint_input, sd15.guidance_embedded) == (8, True, False)


def test_every_family_regenerates_only_what_it_is_given(sampling, family):
    name, model, vae = family
    generate = sampling.diffusion_generator(model, vae, tiny_models.zero_conditioning(name),
                                            tiny_models.zero_conditioning(name), 2, 4.0,
                                            "euler", "simple", lambda: None)
    assert generate.size_multiple == TRAITS[name][0]
    pixels = torch.rand(1, 64, 96, 3, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, 64, 96)
    mask[:, 16:48, 32:64] = 1
    out = generate(pixels, mask, mask, 3, 1.0)
    assert out.shape == pixels.shape and torch.isfinite(out).all()
    again = generate(pixels, mask, mask, 3, 1.0)
    assert torch.equal(out, again)


def test_flux_takes_its_guidance_from_the_conditioning(sampling, monkeypatch):
    model = tiny_models.tiny_family_model("flux_fill")
    seen = {}

    def sample(model, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent,
               **kwargs):
        seen.update(cfg=cfg, positive=positive, negative=negative)
        return latent

    monkeypatch.setattr(sampling.comfy.sample, "sample", sample)
    given = [[torch.zeros(1, 8, 64), {"pooled_output": torch.zeros(1, 64), "guidance": 12.0}]]
    unset = tiny_models.zero_conditioning("flux")
    generate = sampling.diffusion_generator(model, tiny_models.tiny_family_vae(16), given,
                                            unset, 2, 7.0, "euler", "simple", lambda: None)
    generate(torch.rand(1, 32, 32, 3), torch.ones(1, 32, 32), torch.ones(1, 32, 32), 0, 1.0)
    assert seen["cfg"] == 1.0  # guidance-distilled: no classifier-free guidance
    assert seen["positive"][0][1]["guidance"] == 12.0  # FluxGuidance's value kept
    assert seen["negative"][0][1]["guidance"] == sampling.FLUX_FILL_GUIDANCE
    assert "guidance" not in unset[0][1]  # the caller's conditioning is not modified


def test_a_plain_model_refuses_to_invent_most_of_its_crop(sampling):
    model = tiny_models.tiny_family_model("sdxl")
    generate = sampling.diffusion_generator(model, tiny_models.tiny_family_vae(4),
                                            tiny_models.zero_conditioning("sdxl"),
                                            tiny_models.zero_conditioning("sdxl"), 1, 4.0,
                                            "euler", "simple", lambda: None)
    pixels, mask = torch.rand(1, 32, 32, 3), torch.zeros(1, 32, 32)
    mask[:, :, :20] = 1  # 62 %
    with pytest.raises(ValueError, match=r"model: an ordinary model \(no inpaint input\) would "
                                         r"invent 62% of its crop"):
        generate(pixels, mask, mask, 0, 1.0)
    assert generate(pixels, mask, mask, 0, 0.5).shape == pixels.shape  # keeps the old content
    mask[:, :, 16:] = 0  # 50 %: allowed
    assert generate(pixels, mask, mask, 0, 1.0).shape == pixels.shape


def test_a_fill_model_gets_the_masked_crop_as_its_concat_input(sampling, monkeypatch):
    """Flux Fill's 96 input channels: 16 noisy latent + 16 masked-image latent + 64 mask. The
    masked image is the crop with the hidden part grey, so what is hidden never reaches it."""
    model = tiny_models.tiny_family_model("flux_fill")
    seen = []
    forward = model.model.diffusion_model.forward

    def spy(x, *args, **kwargs):
        seen.append(x.detach().clone())
        return forward(x, *args, **kwargs)

    monkeypatch.setattr(model.model.diffusion_model, "forward", spy)
    generate = sampling.diffusion_generator(model, tiny_models.tiny_family_vae(16),
                                            tiny_models.zero_conditioning("flux"),
                                            tiny_models.zero_conditioning("flux"), 1, 1.0,
                                            "euler", "simple", lambda: None)
    pixels = torch.rand(1, 32, 48, 3, generator=torch.Generator().manual_seed(0))
    hidden = torch.zeros(1, 32, 48)
    hidden[:, 8:24, 16:32] = 1
    generate(pixels, hidden, hidden, 0, 1.0)
    changed = pixels.clone()
    changed[:, 8:24, 16:32] = 1 - changed[:, 8:24, 16:32]  # only where hidden
    generate(changed, hidden, hidden, 0, 1.0)
    second = seen[-1]
    visible = pixels.clone()
    visible[:, :8] = 1 - visible[:, :8]  # only outside what is hidden
    generate(visible, hidden, hidden, 0, 1.0)
    first, third = seen[0], seen[-1]
    assert first.shape[1] == tiny_models.FLUX_FILL_IN_CHANNELS
    assert first.shape[-2:] == (32 // 8, 48 // 8)
    # The concat channels follow the visible crop and never show the hidden pixels.
    assert torch.equal(first[:, 16:], second[:, 16:])
    assert not torch.equal(first[:, 16:32], third[:, 16:32])
