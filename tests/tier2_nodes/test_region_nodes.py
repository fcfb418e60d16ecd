"""Region nodes in-process: shapes, devices, REGION round trip, errors and input safety."""

from __future__ import annotations

import pytest
import torch

from cancelling import finish_abandoned_native_calls


@pytest.fixture(scope="module")
def region_nodes(pack):
    from region_repair.nodes import region_nodes

    return region_nodes


def run(node, **inputs):
    """Call a node as ComfyUI's executor does: on a clone carrying the hidden inputs."""
    return node.PREPARE_CLASS_CLONE({"UNIQUE_ID": "7"}).execute(**inputs).result


DEFAULTS = dict(mask_dilation=4, mask_blur=4, window_mode="padding", mask_padding=8,
                context_factor=3.0, region_mode="per_object", merge_overlapping=False,
                resize_mode="multiple_of_8", processing_size=64, buckets="64x64")


def test_dilate_blur_pad_then_stitch_changes_only_the_mask(region_nodes):
    image = torch.rand(2, 80, 120, 3)
    mask = torch.zeros(1, 80, 120)
    mask[:, 10:20, 10:30] = 1
    mask[:, 50:70, 90:110] = 1
    before_image, before_mask = image.clone(), mask.clone()
    crops, crop_masks, region, processed = run(region_nodes.DilateBlurPad, image=image,
                                               mask=mask, **DEFAULTS)
    assert crops.shape == (4, 64, 64, 3) and crop_masks.shape == (4, 64, 64)
    assert processed.shape == (2, 80, 120)
    assert len(region.windows) == 4
    (stitched,) = run(region_nodes.StitchRegion, image=image, region=region, crops=1 - crops,
                      blend="inward", feather=-1)
    outside = (mask == 0).expand(2, -1, -1)
    assert torch.equal(stitched[outside], image[outside])
    assert not torch.equal(stitched, image)
    assert torch.equal(image, before_image) and torch.equal(mask, before_mask)


def test_two_candidates_per_region_give_two_results_per_image(region_nodes):
    # A smooth image, so the crop's rescale there and back is close to the identity.
    image = torch.linspace(0, 1, 40)[None, :, None, None].expand(1, 40, 40, 3).clone()
    mask = torch.zeros(1, 40, 40)
    mask[:, 15:25, 15:25] = 1
    crops, _, region, _ = run(region_nodes.DilateBlurPad, image=image, mask=mask, **DEFAULTS)
    (stitched,) = run(region_nodes.StitchRegion, image=image, region=region,
                      crops=torch.cat([crops, 1 - crops]), blend="hard", feather=-1)
    assert stitched.shape == (2, 40, 40, 3)
    assert torch.allclose(stitched[0], image[0], atol=0.02)
    assert not torch.allclose(stitched[1], image[0], atol=0.2)


def test_a_wrong_sized_mask_is_resized_and_a_placeholder_is_refused(region_nodes):
    image = torch.rand(1, 100, 100, 3)
    small = torch.zeros(50, 50)
    small[10:20, 10:20] = 1
    _, _, region, processed = run(region_nodes.DilateBlurPad, image=image, mask=small,
                                  **DEFAULTS)
    assert processed.shape == (1, 100, 100)
    assert any("resized from 50x50" in note for note in region.notes)
    with pytest.raises(ValueError, match="empty 64x64 mask that LoadImage gives"):
        run(region_nodes.DilateBlurPad, image=image, mask=torch.zeros(1, 64, 64), **DEFAULTS)


def test_outpaint_pad_keeps_the_original_and_masks_the_new_area(region_nodes):
    image = torch.rand(1, 30, 40, 3)
    padded, new_area = run(region_nodes.OutpaintPad, image=image, left=10, top=0, right=0.5,
                           bottom=0, units="pixels", fill="blur")
    assert padded.shape == (1, 30, 50, 3)
    assert torch.equal(padded[:, :, 10:], image)
    assert new_area[:, :, :10].eq(1).all() and new_area[:, :, 10:].eq(0).all()
    with pytest.raises(ValueError, match="PadFill = 'smear' is not allowed"):
        run(region_nodes.OutpaintPad, image=image, left=1, top=0, right=0, bottom=0,
            units="pixels", fill="smear")


def test_dilate_blur_pad_on_a_large_mask_stops_within_a_second_of_an_interrupt(region_nodes):
    import threading
    import time

    import comfy.model_management as mm

    image = torch.zeros(1, 4096, 4096, 3)
    mask = torch.zeros(1, 4096, 4096)
    mask[:, 1000:3000, 1000:3000] = 1
    timer = threading.Timer(0.3, mm.interrupt_current_processing, args=(True,))
    start = time.monotonic()
    timer.start()
    try:
        with pytest.raises(mm.InterruptProcessingException):
            run(region_nodes.DilateBlurPad, image=image, mask=mask,
                **{**DEFAULTS, "mask_dilation": 200, "mask_blur": 0})
        latency = time.monotonic() - start - 0.3
    finally:
        timer.cancel()
        mm.interrupt_current_processing(False)
    assert latency < 1.0, f"interrupt took {latency:.2f} s"


def test_a_large_seamless_stitch_stops_within_a_second_of_an_interrupt(region_nodes,
                                                                       interrupt_later):
    """One window's seamless solve takes seconds for a 1400² mask; Stitch Region honours
    ComfyUI's interrupt inside it, not only between windows."""
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 2048, 2048, 3, generator=generator)
    mask = torch.zeros(1, 2048, 2048)
    mask[:, 324:1724, 324:1724] = 1
    settings = {**DEFAULTS, "mask_dilation": 0, "mask_blur": 0, "resize_mode": "keep",
                "region_mode": "union"}
    crops, _, region, _ = run(region_nodes.DilateBlurPad, image=image, mask=mask, **settings)
    latency = interrupt_later(0.3, lambda: run(region_nodes.StitchRegion, image=image,
                                               region=region, crops=1 - crops,
                                               blend="seamless", feather=-1))
    assert finish_abandoned_native_calls() == 1
    assert latency < 1.0, f"interrupt took {latency:.2f} s"
