"""GarmentRecolorAnchor in-process: list inputs of different sizes, outputs, the info contract,
the queue-time validation and input safety."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def node(pack):
    from region_repair.nodes import recolor_nodes

    return recolor_nodes.GarmentRecolorAnchor


def run(node, **inputs):
    """Call the node as ComfyUI does for an input-list node: every input arrives as a list."""
    values = dict(reference_text="", instruction="", garment_label="", use_anchor=True,
                  post_process=True, anchor_index=0, num_variations=1, variation_step=8.0,
                  contrast=1.0, processing_size="native", add_ai_watermark=False, seed=0,
                  steps=20, cfg=5.0, sampler_name="euler", scheduler="normal", denoise=0.3)
    values.update(inputs)
    as_lists = {key: value if isinstance(value, list) else [value]
                for key, value in values.items()}
    return node.PREPARE_CLASS_CLONE({"UNIQUE_ID": "9"}).execute(**as_lists).result


def fabric(height, width, seed):
    generator = torch.Generator().manual_seed(seed)
    shade = 0.7 + 0.3 * torch.rand(1, height, width, 1, generator=generator)
    return (torch.tensor([0.85, 0.45, 0.2]) * shade).clamp(0, 1)


def test_a_list_of_different_sizes_gives_lists_in_variation_major_order(node):
    images = [fabric(40, 60, 0), torch.cat([fabric(50, 30, 1), fabric(50, 30, 2)])]
    masks = [torch.ones(1, 40, 60), torch.ones(2, 50, 30)]
    masks[0][:, :5] = 0
    before = [image.clone() for image in images]
    out, out_masks, report_json, info_json = run(node, images=images, masks=masks,
                                                 reference_text="forest green",
                                                 num_variations=2)
    assert [tuple(image.shape) for image in out] == [(1, 40, 60, 3), (1, 50, 30, 3),
                                                     (1, 50, 30, 3)] * 2
    assert len(out_masks) == 3
    assert torch.equal(out[0][0, :5], images[0][0, :5])
    assert all(torch.equal(a, b) for a, b in zip(images, before))
    report = json.loads(report_json)
    info = json.loads(info_json)
    assert report["target"]["hex"] == "#228B22" and len(report["outputs"]) == 6
    assert [(i["image_index"], i["candidate_index"]) for i in info] == [
        (0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]
    assert all(i["schema"] == "region_repair.info/1" and i["blend"] == "mask" for i in info)
    assert all(r["delta_e_target"] < 1 for r in report["outputs"] if r["variation_index"] == 0)


def test_swatch_and_instruction_targets(node):
    swatch = torch.zeros(1, 16, 16, 3)
    swatch[..., 2] = 0.6
    out, _, report_json, info_json = run(node, images=[fabric(32, 32, 3)],
                                         masks=[torch.ones(1, 32, 32)],
                                         reference_image=[swatch], instruction="a bit lighter")
    report = json.loads(report_json)
    assert any("reference_image" in note for note in report["notes"])
    from region_repair.pipelines.core.color import rgb_lab

    # "a bit lighter": half of the 12 L* that "lighter" adds
    assert report["target"]["lab"][0] == pytest.approx(float(rgb_lab((0, 0, 0.6))[0]) + 6, abs=0.2)
    assert json.loads(info_json)[0]["references_used"] is True


def test_a_placeholder_mask_means_no_mask_and_the_auto_mask_runs(node):
    import skimage.data

    astronaut = torch.from_numpy(skimage.data.astronaut()).float()[None] / 255
    out, masks, report_json, _ = run(node, images=[astronaut], masks=[torch.zeros(1, 64, 64)],
                                     reference_text="#2E5A3B", garment_label="jacket")
    assert masks[0].shape == (1, 512, 512) and 0.1 < float(masks[0].mean()) < 0.5
    outside = masks[0][0] == 0
    assert torch.equal(out[0][0][outside], astronaut[0][outside])
    assert any("automatic mask" in note for note in json.loads(report_json)["notes"])


def test_an_uncertain_automatic_mask_is_flagged_in_the_report_and_the_info(node):
    # A navy T-shirt over navy trousers (assets/photos/people/garments_heldout.json): the hem
    # cannot be told by colour, so it is placed from the pose, and the notes say so.
    from pathlib import Path

    from PIL import Image

    from region_repair.pipelines.recolor import garment_mask

    photo = Path(__file__).resolve().parents[2] / "assets/photos/people/gesture_rock_18e20af8.jpg"
    image = torch.from_numpy(np.asarray(Image.open(photo).convert("RGB")).copy()).float() / 255
    _, masks, report_json, info_json = run(node, images=[image[None]], reference_text="#B03A2E",
                                           garment_label="t-shirt")
    flagged = [note for note in json.loads(report_json)["notes"]
               if note.startswith(f"image 0: {garment_mask.UNCERTAIN}")]
    assert len(flagged) == 1 and "hem" in flagged[0], json.loads(report_json)["notes"]
    assert flagged[0] in json.loads(info_json)[0]["notes"]
    assert 0.05 < float(masks[0].mean()) < 0.15


def test_validation_at_queue_time_names_the_three_target_inputs(node):
    message = node.validate_inputs(reference_text=[""], instruction=[""], garment_label=[""])
    assert all(name in message for name in ("reference_image", "reference_text", "instruction"))
    assert node.validate_inputs(reference_text=["navy"], instruction=[""]) is True
    assert node.validate_inputs(reference_text=[""], instruction=[""],
                                reference_image=(None,)) is True
    assert "garment_label" in node.validate_inputs(reference_text=["navy"], instruction=[""],
                                                   garment_label=["spaceship"])
    with pytest.raises(ValueError, match="no recolour target"):
        run(node, images=[fabric(8, 8, 0)], masks=[torch.ones(1, 8, 8)])


def test_one_large_image_stops_within_a_second_of_an_interrupt(node, interrupt_later):
    """Reading one 4096² garment takes seconds; the node checks ComfyUI's interrupt every
    PIXEL_CHUNK pixels, not only per image."""
    image, mask = fabric(4096, 4096, 0), torch.zeros(1, 4096, 4096)
    mask[:, 512:-512, 512:-512] = 1
    latency = interrupt_later(0.5, lambda: run(node, images=[image], masks=[mask],
                                               reference_text="#2E5A3B"))
    assert latency < 1.0, f"interrupt took {latency:.2f} s"
