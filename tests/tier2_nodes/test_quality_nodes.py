"""QualityCheck in-process: outputs, ordering, info and references, errors, input safety."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import removal_cases
from pack_paths import PACK_ROOT

DEFAULTS = dict(max_shift_px=1.0, max_scale_drift_percent=0.5, max_outside_mean=1.0,
                max_seam_delta_e=3.0, max_seam_gradient=3.0, seam_width=4,
                min_reference_similarity=0.5, max_target_delta_e=3.0, max_color_spread=2.0,
                max_residue=0.6)


@pytest.fixture(scope="module")
def quality_nodes(pack):
    from region_repair.nodes import quality_nodes

    return quality_nodes


def run(node, **inputs):
    return node.PREPARE_CLASS_CLONE({"UNIQUE_ID": "9"}).execute(**inputs).result


@pytest.fixture(scope="module")
def photo():
    array = np.asarray(Image.open(PACK_ROOT / "assets" / "photos" / "coffee.png").convert("RGB"))
    image = torch.from_numpy(array.copy()).float()[None] / 255
    mask = torch.zeros(1, *image.shape[1:3])
    mask[:, 120:220, 200:330] = 1
    return image, mask


def blend_masked(*args):
    from region_repair.pipelines.geometry.regions import blend_masked

    return blend_masked(*args)


def test_defaults_match_the_pipeline(quality_nodes):
    from dataclasses import asdict

    from region_repair.pipelines.review.quality import Thresholds

    assert DEFAULTS == asdict(Thresholds())
    schema = quality_nodes.QualityCheck.GET_SCHEMA()
    assert {i.id: i.default for i in schema.inputs if i.id in DEFAULTS} == DEFAULTS


def test_ranks_four_candidates_and_returns_the_best(quality_nodes, photo):
    image, mask = photo
    smooth = torch.from_numpy(cv2.GaussianBlur(image[0].numpy(), (0, 0), 2))[None]
    clean = blend_masked(image, smooth, mask, 4)  # a colour-matched, feathered repair
    shifted = torch.roll(clean, 3, dims=2)
    pasted = blend_masked(image, (image * 1.3).clamp(0, 1), mask, 0)
    candidates = torch.cat([shifted, pasted, clean, torch.roll(clean, -4, dims=1)])
    before = candidates.clone()
    text, ordered, best, originals, indices = run(
        quality_nodes.QualityCheck, original=image, candidates=candidates, mask=mask,
        **DEFAULTS)
    report = json.loads(text)
    assert report["schema"] == "region_repair.quality/1" and report["best"] == [2]
    assert [e["needs_review"] for e in report["candidates"]] == [True, True, False, True]
    assert "framing_shift" in report["candidates"][0]["reasons"]
    assert indices.split(", ")[0] == "2" and originals == "0, 0, 0, 0"
    assert torch.equal(best, clean) and ordered.shape == candidates.shape
    assert torch.equal(ordered, candidates[[int(i) for i in indices.split(", ")]])
    assert torch.equal(candidates, before)


def test_info_and_references_reach_the_report(quality_nodes, photo):
    image, mask = photo
    candidate = blend_masked(image, image.flip(2), mask, 4)
    info = json.dumps([{"schema": "region_repair.info/1", "node": "Test", "image_index": 0,
                        "candidate_index": 0, "seed": 1, "engine": "test", "mode": None,
                        "blend": "mask", "references_used": False, "reference_count": 0,
                        "notes": []}])
    text, *_ = run(quality_nodes.QualityCheck, original=image, candidates=candidate, mask=mask,
                   info=info, references=image, **DEFAULTS)
    (entry,) = json.loads(text)["candidates"]
    assert {"no_reference", "reference_mismatch"} <= set(entry["reasons"])
    assert entry["scores"]["reference_similarity"] < 0.5


def test_bad_inputs_are_clear_errors(quality_nodes, photo):
    image, mask = photo
    with pytest.raises(ValueError, match="info: 1 entries for 2 candidates"):
        run(quality_nodes.QualityCheck, original=image, candidates=image.repeat(2, 1, 1, 1),
            mask=mask, info='[{"image_index": 0, "candidate_index": 0}]', **DEFAULTS)
    with pytest.raises(ValueError, match="empty 64x64 mask"):
        run(quality_nodes.QualityCheck, original=image, candidates=image,
            mask=torch.zeros(1, 64, 64), **DEFAULTS)


def test_residue_widget_comes_last_and_the_new_reasons_reach_the_report(quality_nodes, photo):
    """max_residue is appended after the existing widgets (saved workflows keep their widget
    order); a feathered fill that keeps a dark object's outline is residue, and a kept detail
    whose references did not align is reference_unaligned."""
    image, mask = photo
    schema = quality_nodes.QualityCheck.GET_SCHEMA()
    assert schema.inputs[-1].id == "max_residue" and schema.inputs[-1].tooltip
    assert schema.inputs[-1].optional  # API prompts saved before it still validate
    old_style = {k: v for k, v in DEFAULTS.items() if k != "max_residue"}
    damaged = image.clone()
    damaged[mask > 0] = torch.tensor([0.1, 0.08, 0.05])  # a dark object exactly under the mask
    damaged_np, mask_np = damaged[0].numpy(), mask[0].numpy()
    fill = removal_cases.telea(damaged_np, mask_np)
    candidates = torch.from_numpy(np.stack([removal_cases.feathered(damaged_np, fill, mask_np),
                                            removal_cases.hard(damaged_np, fill, mask_np)]))
    entry = {"schema": "region_repair.info/1", "node": "GuidedBlendInpaint", "image_index": 0,
             "seed": None, "engine": "classical_fill", "mode": "guided-blend", "blend": "mask",
             "references_used": True, "reference_count": 1, "notes": []}
    info = json.dumps([{**entry, "candidate_index": 0},
                       {**entry, "candidate_index": 1, "reference_unaligned": True}])
    text, *_ = run(quality_nodes.QualityCheck, original=damaged, candidates=candidates,
                   mask=mask, info=info, **old_style)
    outline, unaligned = json.loads(text)["candidates"]
    assert outline["reasons"] == ["residue"] and outline["scores"]["residue"] > 0.8
    assert unaligned["reasons"] == ["reference_unaligned"]
