"""GarmentRecolorAnchor's optional diffusion refinement, in-process with the tiny random models:
changes only inside the masks, seeded, and the anchor correction keeps the set on one colour."""

from __future__ import annotations

import json

import nodes  # ComfyUI's nodes.py
import pytest
import torch

import tiny_models

TARGET = "#2E5A3B"


@pytest.fixture(scope="module")
def tiny():
    clip = tiny_models.tiny_clip()
    return {"model": tiny_models.tiny_model(inpaint=True), "vae": tiny_models.tiny_vae(),
            "clip": clip, "cond": nodes.CLIPTextEncode().encode(clip, "")[0]}


@pytest.fixture(autouse=True)
def small_crops(pack, monkeypatch):
    """The generator's crop is 640 px in use; 128 keeps the tiny model fast on 2 cores."""
    from region_repair.pipelines.recolor import garments as recolor

    monkeypatch.setattr(recolor, "REFINE_SIZE", 128)


@pytest.fixture(scope="module")
def node(pack):
    from region_repair.nodes import recolor_nodes

    return recolor_nodes.GarmentRecolorAnchor


def garment_set():
    """Three shots of one orange garment at different sizes and exposures, with masks."""
    images, masks = [], []
    for number, (height, width, exposure) in enumerate(((72, 96, 1.0), (80, 64, 0.7),
                                                       (64, 64, 1.2))):
        generator = torch.Generator().manual_seed(number)
        shade = 0.6 + 0.4 * torch.rand(1, height, width, 1, generator=generator)
        background = torch.rand(1, height, width, 3, generator=generator)
        mask = torch.zeros(1, height, width)
        mask[:, height // 5:-height // 6, width // 6:-width // 5] = 1
        garment = (torch.tensor([0.85, 0.45, 0.2]) * shade * exposure).clamp(0, 1)
        images.append(torch.where(mask[..., None] > 0, garment, background))
        masks.append(mask)
    return images, masks


def run(node, tiny, model=True, **inputs):
    images, masks = garment_set()
    values = dict(images=images, masks=masks, reference_text=TARGET, instruction="",
                  garment_label="jacket", use_anchor=True, post_process=True, anchor_index=0,
                  num_variations=1, variation_step=8.0, contrast=1.0, processing_size="native",
                  add_ai_watermark=False, seed=7, steps=2, cfg=5.0, sampler_name="euler",
                  scheduler="normal", denoise=0.3)
    if model:
        values.update(model=tiny["model"], vae=tiny["vae"], positive=[tiny["cond"]],
                      negative=[tiny["cond"]])
    values.update(inputs)
    as_lists = {key: value if isinstance(value, list) else [value]
                for key, value in values.items()}
    out, _, report_json, info_json = node.PREPARE_CLASS_CLONE(
        {"UNIQUE_ID": "9"}).execute(**as_lists).result
    return [image[0] for image in out], json.loads(report_json), json.loads(info_json)


def test_refinement_changes_only_the_masks_and_is_seeded(node, tiny):
    plain, _, plain_info = run(node, tiny, model=False)
    refined, report, info = run(node, tiny)
    again = run(node, tiny)[0]
    other_seed = run(node, tiny, seed=8)[0]
    images, masks = garment_set()
    for image, mask, a, b, c, d in zip(images, masks, plain, refined, again, other_seed):
        outside = mask[0] == 0
        assert torch.equal(b[outside], image[0][outside])
        assert not torch.equal(b[~outside], a[~outside])  # refinement did something inside
        assert torch.equal(b, c)
        assert not torch.equal(b, d)
    assert {i["engine"] for i in plain_info} == {"embedded"}
    assert {i["engine"] for i in info} == {"embedded+diffusion"}
    assert [i["seed"] for i in info] == [7, 8, 9] and info[0]["blend"] == "mask"
    assert any("denoise 0.3" in note for note in info[0]["notes"])
    assert report["refine"] == {"denoise": 0.3, "seed": 7}


def test_the_anchor_correction_keeps_the_refined_set_on_target(node, tiny):
    _, report, _ = run(node, tiny)
    errors = [r["delta_e_target"] for r in report["outputs"]]
    print(f"\nrefined, anchor+post_process: ΔE00 to {TARGET} {errors}, "
          f"spread {report['spread_delta_e']}")
    assert report["spread_delta_e"][0] <= 1
    assert sum(errors) / len(errors) <= 2


def test_without_post_process_the_refinement_may_move_the_color(node, tiny):
    _, report, info = run(node, tiny, post_process=False)
    errors = [r["delta_e_target"] for r in report["outputs"]]
    print(f"\nrefined, post_process off: ΔE00 to {TARGET} {errors}, "
          f"spread {report['spread_delta_e']}")
    assert any("may move the colour" in note for note in info[0]["notes"])


def test_clip_composes_the_prompt_from_label_and_color(node, tiny):
    _, report, _ = run(node, tiny, clip=tiny["clip"], positive=None, negative=None)
    prompt = next(note for note in report["notes"] if "prompt" in note)
    assert "a jacket in" in prompt and TARGET in prompt


def test_refinement_needs_a_vae_and_conditioning(node, tiny):
    with pytest.raises(ValueError, match="vae"):
        run(node, tiny, vae=None)
    with pytest.raises(ValueError, match="positive/negative"):
        run(node, tiny, positive=None)


def test_an_interrupt_stops_the_refinement(node, tiny, interrupted):
    with pytest.raises(interrupted):
        run(node, tiny)

