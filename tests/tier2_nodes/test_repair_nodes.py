"""GuidedBlendInpaint in-process with tiny random models: engines, modes, candidates, errors."""

from __future__ import annotations

import json

import nodes  # ComfyUI's nodes.py
import pytest
import torch

import tiny_models
from cancelling import finish_abandoned_native_calls


@pytest.fixture(scope="module")
def tiny():
    clip = tiny_models.tiny_clip()
    return {"model": tiny_models.tiny_model(), "inpaint": tiny_models.tiny_model(inpaint=True),
            "vae": tiny_models.tiny_vae(), "clip": clip,
            "cond": nodes.CLIPTextEncode().encode(clip, "")[0]}


@pytest.fixture(scope="module")
def node(pack):
    from region_repair.nodes.repair_nodes import GuidedBlendInpaint
    return GuidedBlendInpaint.PREPARE_CLASS_CLONE({"UNIQUE_ID": "7"})


def scene(batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.rand(batch, 96, 128, 3, generator=torch.Generator().manual_seed(3))
    mask = torch.zeros(batch, 96, 128)
    mask[:, 40:56, 50:70] = 1
    return image, mask


def run(node, tiny, model_key="inpaint", **overrides):
    image, mask = scene()
    args = dict(image=image, mask=mask, mode="guided-blend", category="logo", reviewer_note="",
                image_notes="", context_factor=3.0, processing_size=64, num_candidates=2,
                reference_denoise=0.6, feather=2, add_ai_watermark=False, seed=5, steps=2,
                cfg=7.0, sampler_name="euler", scheduler="normal", denoise=1.0,
                model=tiny[model_key], vae=tiny["vae"], positive=tiny["cond"],
                negative=tiny["cond"])
    args.update(overrides)
    return node.execute(**args).result


@pytest.mark.parametrize("model_key", ["model", "inpaint"])
def test_diffusion_candidates_are_seeded_and_confined_to_the_mask(node, tiny, model_key):
    images, used, _, info = run(node, tiny, model_key)
    again = run(node, tiny, model_key)[0]
    image, mask = scene()
    outside = mask[0] == 0
    assert images.shape == (2, 96, 128, 3)
    assert torch.equal(images, again)
    for k in range(2):
        assert torch.equal(images[k][outside], image[0][outside])
    assert not torch.equal(images[0], images[1])
    records = json.loads(info)
    assert [r["seed"] for r in records] == [5, 6]
    assert {r["engine"] for r in records} == {"diffusion"}
    assert torch.equal(used, mask)


def test_clip_composes_the_prompt(node, tiny):
    images = run(node, tiny, clip=tiny["clip"], positive=None, negative=None,
                 category="general", reviewer_note="remove the stain")[0]
    assert images.shape == (2, 96, 128, 3)


def test_no_model_means_classical_fill(node, tiny):
    images, _, _, info = run(node, tiny, model=None, vae=None)
    assert {r["engine"] for r in json.loads(info)} == {"classical_fill"}
    assert not torch.equal(images[0], images[1])  # texture vs PatchMatch alone


@pytest.mark.parametrize("category, engine", [("logo", "kept"), ("general", "classical_fill")])
def test_the_category_decides_what_unaligned_references_do(node, tiny, category, engine):
    """The node's category reaches the pipeline: a logo whose reference does not align is kept
    as it was, a removal is still filled."""
    unrelated = torch.rand(1, 80, 80, 3, generator=torch.Generator().manual_seed(7))
    images, _, _, info = run(node, tiny, model=None, vae=None, category=category,
                             references=unrelated)
    image, mask = scene()
    records = json.loads(info)
    assert {r["engine"] for r in records} == {engine}
    assert all(r["reference_unaligned"] for r in records)
    kept = torch.equal(images, image.repeat(2, 1, 1, 1))
    assert kept == (category == "logo")


@pytest.mark.parametrize("overrides, match", [
    ({"mask": None}, "mask/region"),
    ({"vae": None}, "vae"),
    ({"positive": None}, "positive/negative"),
    ({"mode": "blended"}, "guided-blend"),
    ({"context_factor": 12.0}, "context_factor"),
    ({"category": "logos", "model": None, "vae": None},
     "Category = 'logos' is not allowed; choose one of 'logo', 'text', 'artifact', 'general'"),
    ({"context_factor": float("nan")}, "context_factor: must be a finite number, got nan"),
    ({"cfg": float("inf")}, "cfg: must be a finite number, got inf"),
    ({"denoise": float("nan"), "model": None, "vae": None}, "denoise: must be a finite"),
    ({"mask": torch.full((1, 96, 128), float("nan"))}, "mask: the mask holds NaN"),
])
def test_bad_input_names_the_input(node, tiny, overrides, match):
    with pytest.raises(ValueError, match=match):
        run(node, tiny, **overrides)


def test_more_than_ten_references_is_an_error(node, tiny):
    with pytest.raises(ValueError, match="at most 10"):
        run(node, tiny, references=torch.rand(11, 32, 32, 3))


def test_an_interrupt_stops_sampling(node, tiny, interrupted):
    with pytest.raises(interrupted):
        run(node, tiny)


def test_a_large_classical_fill_stops_within_a_second_of_an_interrupt(node, interrupt_later):
    """Without a model, one candidate is one PatchMatch fill (seconds on a 256² hole); the node
    stops waiting for it at ComfyUI's interrupt, and the fill finishes in the background."""
    image = torch.rand(1, 640, 640, 3, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, 640, 640)
    mask[:, 192:448, 192:448] = 1
    latency = interrupt_later(0.5, lambda: node.execute(
        image=image, mask=mask, mode="guided-blend", category="general", reviewer_note="",
        image_notes="", context_factor=1.5, processing_size=512, num_candidates=1,
        reference_denoise=0.6, feather=2, add_ai_watermark=False, seed=5, steps=2, cfg=7.0,
        sampler_name="euler", scheduler="normal", denoise=1.0))
    assert finish_abandoned_native_calls() == 1
    assert latency < 1.0, f"interrupt took {latency:.2f} s"
