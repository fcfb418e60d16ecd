"""Mask nodes, called in-process the way ComfyUI's executor calls them."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def mask_from_bbox(pack):
    from region_repair.nodes.mask_nodes import MaskFromBBox

    return MaskFromBBox


def test_mask_from_bbox_fills_the_box_for_the_whole_batch(mask_from_bbox):
    image = torch.rand(2, 40, 60, 3)
    before = image.clone()
    (mask,) = mask_from_bbox.execute(image=image, bbox="0.5, 0.25, 0.25, 0.5",
                                     units="normalized").result
    assert mask.shape == (2, 40, 60) and mask.dtype == torch.float32
    assert mask.device.type == "cpu"
    expected = torch.zeros(40, 60)
    expected[10:30, 30:45] = 1
    assert torch.equal(mask[0], expected) and torch.equal(mask[1], expected)
    assert torch.equal(image, before), "the input image was written to"


def test_mask_from_bbox_rejects_an_out_of_range_box(mask_from_bbox):
    with pytest.raises(ValueError, match=r"bbox.x = 1.5 is outside the allowed range 0..1"):
        mask_from_bbox.execute(image=torch.rand(1, 8, 8, 3), bbox="1.5, 0, 0.1, 0.1",
                               units="normalized")


def test_mask_from_bbox_rejects_a_non_image(mask_from_bbox):
    with pytest.raises(ValueError, match=r"image: expected an IMAGE \[B, H, W, C\]"):
        mask_from_bbox.execute(image=torch.rand(8, 8), bbox="0, 0, 1, 1", units="normalized")


def test_clean_mask_handles_photio_polarity_and_resizes_to_the_image(pack):
    from region_repair.nodes.mask_nodes import CleanMask

    mask = torch.full((1, 10, 10), 0.99)
    mask[:, :5] = 0.01
    node = CleanMask.PREPARE_CLASS_CLONE({"UNIQUE_ID": "7"})
    (cleaned,) = node.execute(mask=mask, polarity="black = edit (Photio)", invert=False,
                              threshold=0.0, stabilize=0.02, image=torch.rand(3, 20, 20, 3)).result
    assert cleaned.shape == (3, 20, 20)
    # 0.01 (keep) became exactly 1 and 0.99 (edit under black = edit) exactly 0; only the
    # resized boundary rows in between are soft.
    assert cleaned[:, :9].eq(1).all() and cleaned[:, 11:].eq(0).all()
