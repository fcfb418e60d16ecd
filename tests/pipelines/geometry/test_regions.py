"""Context windows, crops and stitching (pipelines/geometry/regions.py): property-based and by
example.

Scenes are small images (at most 96 px a side, a batch of 1 or 2) with masks made of a few
rectangles and optional seeded noise; window settings are drawn over every mode.
"""

from __future__ import annotations

import math
from fractions import Fraction

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from region_repair.pipelines.geometry import masks as mask_ops
from region_repair.pipelines.geometry.regions import (
    SD15_BUCKETS,
    SDXL_BUCKETS,
    Blend,
    RegionMode,
    ResizeMode,
    Window,
    WindowMode,
    WindowSettings,
    blend_masked,
    blend_weights,
    parse_buckets,
    plan_regions,
    prepare_regions,
    stitch,
)

FAST = dict(deadline=None)
CUSTOM = ["128x128", "192x128", "128x192", "160x96", "96x96", "256x64", "64x128", "512x512"]
# SD15 and SDXL buckets are 0.2 to 4 megapixels: drawn less often, they would otherwise dominate
# the run time in upscaling crops and downscaling them back.
RESIZE_MODES = [ResizeMode.KEEP] * 3 + [ResizeMode.MULTIPLE_OF_8, ResizeMode.MULTIPLE_OF_16,
                                        ResizeMode.MULTIPLE_OF_64, ResizeMode.CUSTOM_BUCKETS] * 2 + [
    ResizeMode.SD15_BUCKETS, ResizeMode.SDXL_BUCKETS]
STEPS = {ResizeMode.MULTIPLE_OF_8: 8, ResizeMode.MULTIPLE_OF_16: 16, ResizeMode.MULTIPLE_OF_64: 64}


# --- strategies -----------------------------------------------------------------------------------

@st.composite
def window_settings(draw, region_mode=None, merge=None, resize_mode=None, dilation=None,
                    window_mode=None):
    resize = draw(st.sampled_from(RESIZE_MODES)) if resize_mode is None else resize_mode
    buckets = ()
    if resize is ResizeMode.CUSTOM_BUCKETS:
        chosen = draw(st.lists(st.sampled_from(CUSTOM), min_size=1, max_size=4, unique=True))
        buckets = parse_buckets(", ".join(chosen))
    return WindowSettings(
        dilation=draw(st.integers(-4, 10)) if dilation is None else dilation,
        blur=draw(st.integers(0, 8)),
        window_mode=draw(st.sampled_from(list(WindowMode))) if window_mode is None
        else window_mode,
        padding=draw(st.integers(0, 48)),
        context_factor=draw(st.sampled_from([1.5, 2.0, 2.5, 3.0, 4.0, 10.0])),
        region_mode=draw(st.sampled_from(list(RegionMode))) if region_mode is None
        else region_mode,
        merge_overlapping=draw(st.booleans()) if merge is None else merge,
        resize_mode=resize,
        processing_size=draw(st.sampled_from([64, 96, 128])),
        buckets=buckets)


@st.composite
def scenes(draw, max_batch=2, max_side=96, **setting_kwargs):
    """(image, raw mask, settings): every image of the batch gets 0..4 rectangles, at least one
    in all; rectangles are large enough to survive the drawn erosion."""
    config = draw(window_settings(**setting_kwargs))
    erode = max(-config.dilation, 0)
    side = 2 * erode + 1
    batch = draw(st.integers(1, max_batch))
    height = draw(st.integers(max(8, side), max_side))
    width = draw(st.integers(max(8, side), max_side))
    mask = torch.zeros(batch, height, width)
    counts = [draw(st.integers(0, 4)) for _ in range(batch)]
    if sum(counts) == 0:
        counts[draw(st.integers(0, batch - 1))] = 1
    for b, count in enumerate(counts):
        for _ in range(count):
            h = draw(st.integers(side, max(side, height // 2)))
            w = draw(st.integers(side, max(side, width // 2)))
            y = draw(st.integers(0, height - h))
            x = draw(st.integers(0, width - w))
            mask[b, y:y + h, x:x + w] = draw(st.sampled_from([1.0, 1.0, 0.6, 0.99]))
    if erode == 0 and draw(st.booleans()):  # speckle: many tiny objects
        generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
        mask = torch.maximum(mask, (torch.rand(mask.shape, generator=generator) < 0.01).float())
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    channels = draw(st.sampled_from([3, 3, 4]))
    image = torch.rand(batch, height, width, channels, generator=generator)
    return image, mask, config


def box_mask(height, width, x0, y0, x1, y1, batch=1):
    mask = torch.zeros(batch, height, width)
    mask[:, y0:y1, x0:x1] = 1
    return mask


def plan(mask, config):
    """prepare_regions without the crops (the mask has the image's size here)."""
    return plan_regions(mask_ops.clean(mask), config)


def own_pixels(regions, window):
    return regions.labels[window.batch_index] == window.label


def bbox(support):
    ys, xs = torch.nonzero(support, as_tuple=True)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def padded_span(start, end, config, limit):
    """The padded window along one axis, as the settings ask: (wanted size, clamped size)."""
    if config.window_mode is WindowMode.CONTEXT_FACTOR:
        grow = round((end - start) * (config.context_factor - 1) / 2)
    else:
        grow = config.padding
    wanted = end - start + 2 * grow
    return wanted, min(wanted, limit)


# --- windows --------------------------------------------------------------------------------------

@settings(max_examples=1500, **FAST)
@given(scenes())
def test_windows_lie_inside_the_image_and_contain_their_objects(scene):
    image, mask, config = scene
    regions = plan(mask, config)
    batch, height, width = mask.shape
    support = regions.mask > 0
    covered = torch.zeros_like(support)
    assert regions.windows
    for w in regions.windows:
        assert 0 <= w.batch_index < batch
        assert 0 <= w.x0 < w.x1 <= width and 0 <= w.y0 < w.y1 <= height
        own = own_pixels(regions, w)
        assert bool(own.any()), "a window without an object"
        x0, y0, x1, y1 = bbox(own)
        assert w.x0 <= x0 and x1 <= w.x1 and w.y0 <= y0 and y1 <= w.y1
        # An object's pixels are exactly processed-mask pixels.
        assert bool(support[w.batch_index][own].all())
        assert not bool(covered[w.batch_index][own].any()), "two windows own the same pixel"
        covered[w.batch_index] |= own
    # Every processed-mask pixel belongs to exactly one window's object.
    assert torch.equal(covered, support)
    # The processed mask is the cleaned mask, dilated then blurred.
    expected = mask_ops.grow_and_blur(mask_ops.clean(mask), config.dilation, config.blur)
    assert torch.equal(regions.mask, expected)


@settings(max_examples=600, **FAST)
@given(scenes(region_mode=RegionMode.PER_OBJECT, merge=False))
def test_the_box_restricted_plan_equals_the_whole_frame_computation(scene):
    """plan_regions works on the mask's box plus the reach of dilation and blur only: its
    full-size mask and labels must be what whole-frame dilate, blur and labelling give."""
    _, mask, config = scene
    cleaned = mask_ops.clean(mask)
    regions = plan_regions(cleaned, config)
    whole = mask_ops.gaussian_blur(mask_ops.dilate(cleaned, config.dilation), config.blur)
    assert torch.allclose(regions.mask, whole, atol=1e-6, rtol=0)
    assert torch.equal(regions.mask > 0, whole > 0)
    assert regions.labels.dtype == torch.int32
    for b in range(mask.shape[0]):
        _, labels = cv2.connectedComponents((whole[b] > 0).numpy().astype(np.uint8),
                                            connectivity=8)
        assert np.array_equal(regions.labels[b].numpy(), labels)


@settings(max_examples=1500, **FAST)
@given(scenes(merge=False))
def test_windows_slide_inward_and_are_clamped_only_when_larger_than_the_image(scene):
    """Each window has the wanted size (bbox + 2 * padding, or bbox * factor; then at native
    size the common size, otherwise grown to the processing aspect), sliding rather than
    clipping at the border; only a side larger than the image is clamped to the image side."""
    image, mask, config = scene
    regions = plan(mask, config)
    _, height, width = mask.shape
    target_w, target_h = regions.processing_size
    padded = []
    for w in regions.windows:
        x0, y0, x1, y1 = bbox(own_pixels(regions, w))
        wanted_w, padded_w = padded_span(x0, x1, config, width)
        wanted_h, padded_h = padded_span(y0, y1, config, height)
        if config.window_mode is WindowMode.CONTEXT_FACTOR:
            assert abs(wanted_w - (x1 - x0) * config.context_factor) <= 1
            assert abs(wanted_h - (y1 - y0) * config.context_factor) <= 1
        padded.append((padded_w, padded_h))
    if config.resize_mode is ResizeMode.KEEP:
        # Native size: every window grows to the widest by the tallest padded box.
        assert regions.processing_size == (max(w for w, _ in padded), max(h for _, h in padded))
    for w, (padded_w, padded_h) in zip(regions.windows, padded, strict=True):
        if config.resize_mode is ResizeMode.KEEP:
            want_w, want_h = target_w, target_h
        else:  # grown about its centre to the common aspect ratio (exact arithmetic)
            scale = max(Fraction(padded_w, target_w), Fraction(padded_h, target_h))
            want_w, want_h = math.ceil(target_w * scale), math.ceil(target_h * scale)
        assert (w.width, w.height) == (min(want_w, width), min(want_h, height)), (
            w, (want_w, want_h), (padded_w, padded_h), regions.processing_size, config)
        # Sliding, not clipping: a window is never narrower than its padded box.
        assert w.width >= padded_w and w.height >= padded_h


def test_aspect_growth_adds_no_pixel_on_the_binding_side():
    # Regression: the growth was ceil(104 * (27 / 104)) = ceil(27.000000000000004) = 28 in
    # floats. Box 10 x 27 px: multiple_of_8 at processing_size 64 picks 40 x 104; the height
    # binds, so the window is 11 x 27.
    mask = box_mask(200, 200, 70, 100, 80, 127)
    config = WindowSettings(dilation=0, blur=0, padding=0,
                            resize_mode=ResizeMode.MULTIPLE_OF_8, processing_size=64)
    regions = plan_regions(mask, config)
    assert regions.processing_size == (40, 104)
    w = regions.windows[0]
    assert (w.width, w.height) == (11, 27)
    assert (w.y0, w.y1) == (100, 127)


@settings(max_examples=800, **FAST)
@given(st.data())
def test_per_object_gives_one_window_per_component_and_union_one_per_image(data):
    dilation = data.draw(st.integers(0, 6))
    config = data.draw(window_settings(merge=False, dilation=dilation))
    reach = dilation + config.blur
    batch = data.draw(st.integers(1, 2))
    # Objects on a grid of cells, each `gap` pixels clear of the next: far enough apart that
    # dilation and blur cannot join them.
    gap = 2 * reach + 2
    cell = data.draw(st.integers(1, 6))
    rows, cols = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    height, width = rows * (cell + gap), cols * (cell + gap)
    mask = torch.zeros(batch, height, width)
    counts = []
    for b in range(batch):
        cells = data.draw(st.sets(st.tuples(st.integers(0, rows - 1), st.integers(0, cols - 1)),
                                  min_size=int(b == 0), max_size=rows * cols))
        for r, c in cells:
            h, w = data.draw(st.integers(1, cell)), data.draw(st.integers(1, cell))
            y, x = r * (cell + gap), c * (cell + gap)
            mask[b, y:y + h, x:x + w] = 1
        counts.append(len(cells))
    regions = plan(mask, config)
    per_image = [sum(w.batch_index == b for w in regions.windows) for b in range(batch)]
    if config.region_mode is RegionMode.PER_OBJECT:
        assert per_image == counts
        # In general: one window per 8-connected component of the processed mask.
        for b in range(batch):
            support = (regions.mask[b] > 0).numpy().astype(np.uint8)
            assert per_image[b] == cv2.connectedComponents(support, connectivity=8)[0] - 1
    else:
        assert per_image == [int(count > 0) for count in counts]


@settings(max_examples=800, **FAST)
@given(scenes())
def test_every_crop_has_the_processing_size(scene):
    image, mask, config = scene
    regions, crops, crop_masks = prepare_regions(image, mask, config)
    width, height = regions.processing_size
    count = len(regions.windows)
    assert crops.shape == (count, height, width, image.shape[-1])
    assert crop_masks.shape == (count, height, width)
    assert bool(((crops >= 0) & (crops <= 1)).all())
    assert bool(((crop_masks >= 0) & (crop_masks <= 1)).all())
    mode = config.resize_mode
    if mode in STEPS:
        assert width % STEPS[mode] == 0 and height % STEPS[mode] == 0
        assert width >= STEPS[mode] and height >= STEPS[mode]
    elif mode is ResizeMode.SD15_BUCKETS:
        assert (width, height) in SD15_BUCKETS
    elif mode is ResizeMode.SDXL_BUCKETS:
        assert (width, height) in SDXL_BUCKETS
    elif mode is ResizeMode.CUSTOM_BUCKETS:
        assert (width, height) in config.buckets
    else:  # keep: every window at its native size, which is the common size
        assert all((w.width, w.height) == (width, height) for w in regions.windows)
    # A crop mask holds only its own object.
    for index, w in enumerate(regions.windows):
        if (w.width, w.height) == (width, height):
            own = own_pixels(regions, w)[w.y0:w.y1, w.x0:w.x1]
            expected = regions.mask[w.batch_index, w.y0:w.y1, w.x0:w.x1] * own
            assert torch.equal(crop_masks[index], expected)
            assert torch.equal(crops[index], image[w.batch_index, w.y0:w.y1, w.x0:w.x1])


# --- crop and stitch ------------------------------------------------------------------------------

@settings(max_examples=800, **FAST)
@given(scenes(max_batch=1, resize_mode=ResizeMode.KEEP, region_mode=RegionMode.UNION),
       st.sampled_from(list(Blend)), st.sampled_from([None, 0, 3, 9]))
def test_stitching_the_untouched_crop_gives_back_the_input_exactly_one_window(scene, blend,
                                                                               feather):
    image, mask, config = scene
    regions, crops, _ = prepare_regions(image, mask, config)
    assert len(regions.windows) == 1
    before = image.clone()
    assert torch.equal(stitch(image, regions, crops, blend, feather), image)
    assert torch.equal(image, before), "stitch wrote into its input"


@st.composite
def spaced_equal_objects(draw):
    """Equal rectangles, well inside the image and far apart, on 1 or 2 images: every window
    has the same size, so keep mode needs no resize."""
    config = draw(window_settings(merge=False, resize_mode=ResizeMode.KEEP,
                                  dilation=draw(st.integers(0, 6))))
    reach = config.dilation + config.blur + 1
    h, w = draw(st.integers(1, 10)), draw(st.integers(1, 10))
    gap = 2 * reach + 2
    batch = draw(st.integers(1, 2))
    slots = draw(st.integers(1, 3))
    height, width = h + 2 * reach + 4, reach + slots * (w + gap) + 4
    mask = torch.zeros(batch, height, width)
    used = draw(st.lists(st.sets(st.integers(0, slots - 1), min_size=1), min_size=batch,
                         max_size=batch))
    for b, chosen in enumerate(used):
        for slot in chosen:
            x = reach + 2 + slot * (w + gap)
            mask[b, reach + 2:reach + 2 + h, x:x + w] = 1
    image = torch.rand(batch, height, width, 3)
    return image, mask, config


@settings(max_examples=600, **FAST)
@given(spaced_equal_objects(), st.sampled_from(list(Blend)), st.sampled_from([None, 0, 5]))
def test_stitching_untouched_crops_gives_back_the_input_exactly_many_windows(scene, blend,
                                                                              feather):
    image, mask, config = scene
    regions, crops, _ = prepare_regions(image, mask, config)
    assert len({(w.width, w.height) for w in regions.windows}) == 1
    assert torch.equal(stitch(image, regions, crops, blend, feather), image)


def random_content(count, shape, seed):
    """New crops: uniform noise; above 256 x 256 px, blocky noise (cheaper to make)."""
    height, width, channels = shape
    generator = torch.Generator().manual_seed(seed)
    if height * width <= 256 * 256:
        return torch.rand(count, height, width, channels, generator=generator)
    small = torch.rand(count, channels, 32, 32, generator=generator)
    return F.interpolate(small, size=(height, width), mode="nearest").movedim(1, -1)


def keep_mode_round_trip(image, mask, config, blend=Blend.INWARD):
    regions, crops, _ = prepare_regions(image, mask, config)
    assert all((w.width, w.height) == regions.processing_size for w in regions.windows), (
        "keep mode resized a window: " + repr([(w.width, w.height) for w in regions.windows])
        + f" to {regions.processing_size}")
    assert torch.equal(stitch(image, regions, crops, blend), image)


def _wide_and_tall_objects():
    image = torch.rand(1, 96, 96, 3, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, 96, 96)
    mask[0, 5:10, 5:45] = 1   # a wide object
    mask[0, 50:90, 70:75] = 1  # a tall one
    return image, mask


def test_keep_mode_never_resizes_a_window():
    # Regression: the common size was the largest-area window (44 x 9), and the 44 x 44 window
    # of the tall object was squashed into it.
    image, mask = _wide_and_tall_objects()
    config = WindowSettings(dilation=0, blur=0, padding=2, region_mode=RegionMode.PER_OBJECT,
                            merge_overlapping=False)
    assert plan_regions(mask, config).processing_size == (44, 44)
    keep_mode_round_trip(image, mask, config)


@settings(max_examples=800, **FAST)
@given(scenes(resize_mode=ResizeMode.KEEP), st.sampled_from(list(Blend)))
def test_keep_mode_round_trip_is_exact_for_any_scene(scene, blend):
    """Crop then stitch of the untouched crops gives the input back bit for bit: any blend,
    union or per_object, merged or not, batches of differently shaped masks."""
    keep_mode_round_trip(*scene, blend)


@settings(max_examples=1500, **FAST)
@given(scenes(), st.sampled_from([Blend.SEAMLESS, Blend.INWARD, Blend.HARD, "seamless", "inward",
                                  "hard"]),
       st.integers(1, 3), st.sampled_from([None, 0, 2, 7]), st.integers(0, 2**31 - 1))
def test_stitching_any_content_changes_no_pixel_outside_the_users_mask(scene, blend, candidates,
                                                                        feather, seed):
    image, mask, config = scene
    regions, crops, _ = prepare_regions(image, mask, config)
    content = random_content(candidates * crops.shape[0], crops.shape[1:], seed)
    out = stitch(image, regions, content, blend, feather)
    batch = image.shape[0]
    assert out.shape == (candidates * batch, *image.shape[1:])
    for index in range(out.shape[0]):
        b = index % batch
        outside = regions.user_mask[b] == 0
        assert torch.equal(out[index][outside], image[b][outside])
        # The raw mask's zeros are a subset of the cleaned mask's.
        assert bool((regions.user_mask[b][mask[b] == 0] == 0).all())
    # Where the inward weight is 1, the new content is there as it came (no resize needed).
    # (The seamless blend keeps its gradients instead: pipelines/geometry/test_seamless.py.)
    if candidates == 1 and Blend(blend) is not Blend.SEAMLESS:
        for index, w in enumerate(regions.windows):
            if (w.width, w.height) != regions.processing_size:
                continue
            alpha = blend_weights(regions, w, blend, regions.blur if feather is None else feather)
            full = alpha == 1
            region = out[w.batch_index, w.y0:w.y1, w.x0:w.x1]
            assert torch.equal(region[full], content[index][..., :image.shape[-1]][full])


@settings(max_examples=600, **FAST)
@given(scenes(), st.integers(1, 2), st.integers(0, 2**31 - 1))
def test_outward_blend_changes_nothing_outside_the_processed_mask(scene, candidates, seed):
    image, mask, config = scene
    regions, crops, _ = prepare_regions(image, mask, config)
    content = random_content(candidates * crops.shape[0], crops.shape[1:], seed)
    out = stitch(image, regions, content, "outward")
    batch = image.shape[0]
    for index in range(out.shape[0]):
        b = index % batch
        outside = regions.mask[b] == 0
        assert torch.equal(out[index][outside], image[b][outside])


@settings(max_examples=400, **FAST)
@given(scenes(), st.integers(0, 9))
def test_window_blend_weights_match_the_whole_image_feather(scene, radius):
    """blend_weights works on the window plus a margin; it must equal the inward feather
    computed on the whole image (so a window's edge is not mistaken for the mask's edge)."""
    image, mask, config = scene
    regions = plan_regions(mask_ops.clean(mask), config)
    edit = regions.user_mask * (regions.mask > 0)
    whole = mask_ops.inward_feather(edit, radius)
    for w in regions.windows:
        own = own_pixels(regions, w)[w.y0:w.y1, w.x0:w.x1]
        inward = blend_weights(regions, w, Blend.INWARD, radius)
        assert torch.allclose(inward, whole[w.batch_index, w.y0:w.y1, w.x0:w.x1] * own,
                              atol=1e-6, rtol=0)
        hard = blend_weights(regions, w, Blend.HARD, radius)
        assert torch.equal(hard, edit[w.batch_index, w.y0:w.y1, w.x0:w.x1] * own)
        assert bool((inward <= hard).all())


# --- examples: exact windows ----------------------------------------------------------------------

EXACT = WindowSettings(dilation=0, blur=0)


def windows_of(mask, config=EXACT):
    return [(w.x0, w.y0, w.x1, w.y1) for w in plan_regions(mask, config).windows]


def test_a_box_at_the_right_edge_slides_inward_with_padding_32():
    # Box x 190..200, y 90..110 on a 200x200 image: 10 + 64 = 74 wide, 20 + 64 = 84 high.
    assert windows_of(box_mask(200, 200, 190, 90, 200, 110)) == [(126, 58, 200, 142)]


def test_a_box_in_the_top_left_corner_slides_inward():
    assert windows_of(box_mask(100, 120, 0, 0, 8, 6)) == [(0, 0, 72, 70)]


def test_a_window_larger_than_the_image_is_clamped_to_it():
    # 20 + 64 = 84 > 50 on both axes.
    assert windows_of(box_mask(50, 50, 15, 15, 35, 35)) == [(0, 0, 50, 50)]
    # Only the height is too large: the width keeps its 84 and slides.
    assert windows_of(box_mask(50, 200, 150, 15, 170, 35)) == [(116, 0, 200, 50)]


def test_context_factor_3_on_a_10x10_box_gives_a_30x30_window_centred_on_it():
    config = WindowSettings(dilation=0, blur=0, window_mode=WindowMode.CONTEXT_FACTOR,
                            context_factor=3.0)
    assert windows_of(box_mask(100, 100, 45, 45, 55, 55), config) == [(35, 35, 65, 65)]
    # At the border it slides, keeping 30x30.
    assert windows_of(box_mask(100, 100, 0, 90, 10, 100), config) == [(0, 70, 30, 100)]


def test_dilation_and_blur_grow_the_box_before_padding():
    # Default dilation 4 and blur 4: the processed mask spans 8 more pixels each side.
    mask = box_mask(200, 200, 90, 90, 110, 110)
    assert windows_of(mask, WindowSettings()) == [(50, 50, 150, 150)]


def test_overlapping_windows_merge_unless_told_not_to():
    mask = box_mask(200, 200, 40, 40, 50, 50)
    mask[0, 40:50, 70:80] = 1
    config = WindowSettings(dilation=0, blur=0, padding=16, region_mode=RegionMode.PER_OBJECT)
    assert windows_of(mask, config) == [(24, 24, 96, 66)]
    separate = WindowSettings(**{**config.__dict__, "merge_overlapping": False})
    assert windows_of(mask, separate) == [(24, 24, 66, 66), (54, 24, 96, 66)]
    # Merged objects share one label, so the crop mask holds both.
    regions = plan_regions(mask, config)
    assert regions.labels[0, 45, 45] == regions.labels[0, 45, 75] == regions.windows[0].label


def test_union_makes_one_window_per_image_with_a_masked_pixel():
    mask = torch.zeros(3, 64, 80)
    mask[0, 5:9, 5:9] = 1
    mask[0, 50:60, 60:70] = 1
    mask[2, 30:34, 30:34] = 1
    regions = plan_regions(mask, EXACT)
    assert [(w.batch_index, w.x0, w.y0, w.x1, w.y1) for w in regions.windows] == [
        (0, 0, 0, 80, 64), (2, 0, 0, 80, 64)]


def test_a_size_multiple_picks_the_smallest_mode_that_keeps_it():
    assert [ResizeMode.multiple_of(n) for n in (1, 2, 8, 16, 32, 64)] == [
        ResizeMode.MULTIPLE_OF_8, ResizeMode.MULTIPLE_OF_8, ResizeMode.MULTIPLE_OF_8,
        ResizeMode.MULTIPLE_OF_16, ResizeMode.MULTIPLE_OF_64, ResizeMode.MULTIPLE_OF_64]
    with pytest.raises(ValueError, match="size multiple: 48 px"):
        ResizeMode.multiple_of(48)


def test_multiple_of_8_and_buckets_pick_the_expected_sizes():
    mask = box_mask(300, 300, 100, 100, 164, 132)  # window 128 x 96
    base = dict(dilation=0, blur=0)
    def size(**kwargs):
        return plan_regions(mask, WindowSettings(**base, **kwargs)).processing_size
    assert size() == (128, 96)
    assert size(resize_mode=ResizeMode.MULTIPLE_OF_8, processing_size=512) == (592, 440)
    assert size(resize_mode=ResizeMode.MULTIPLE_OF_16, processing_size=512) == (592, 448)
    assert size(resize_mode=ResizeMode.MULTIPLE_OF_64, processing_size=512) == (576, 448)
    assert size(resize_mode=ResizeMode.SD15_BUCKETS) == (768, 576)  # 4:3, the nearest in pixels
    assert size(resize_mode=ResizeMode.SDXL_BUCKETS) == (1152, 896)
    assert size(resize_mode=ResizeMode.CUSTOM_BUCKETS,
                buckets=parse_buckets("512x512; 768x512\n640 x 480")) == (640, 480)


def test_stitch_puts_the_new_content_in_the_middle_of_the_mask():
    image = torch.zeros(1, 64, 64, 3)
    mask = box_mask(64, 64, 16, 16, 48, 48)
    regions, crops, _ = prepare_regions(image, mask, WindowSettings())
    out = stitch(image, regions, torch.ones_like(crops), "inward")
    assert out[0, 32, 32].eq(1).all()        # deep inside: weight 1
    assert out[0, 15, 32].eq(0).all()        # outside the user's mask: untouched
    assert 0 < out[0, 16, 32, 0] < 1         # the inward feather
    hard = stitch(image, regions, torch.ones_like(crops), "hard")
    assert torch.equal(hard[0, ..., 0], mask[0])


def test_stitch_with_candidates_makes_k_images_per_input_image():
    image = torch.rand(2, 40, 40, 3)
    mask = box_mask(40, 40, 5, 5, 35, 35, batch=2)
    regions, crops, _ = prepare_regions(image, mask, WindowSettings())
    content = torch.cat([torch.zeros_like(crops), torch.ones_like(crops)])
    out = stitch(image, regions, content, "hard")
    assert out.shape == (4, 40, 40, 3)
    assert out[0, 20, 20].eq(0).all() and out[1, 20, 20].eq(0).all()
    assert out[2, 20, 20].eq(1).all() and out[3, 20, 20].eq(1).all()
    assert torch.equal(out[:, 2], image[[0, 1, 0, 1], 2])
    with pytest.raises(ValueError, match=r"crops: 3 images for 2 regions; expected a multiple"):
        stitch(image, regions, torch.cat([crops, crops[:1]]))


@pytest.mark.parametrize("shape", [(1, 40, 48, 3), (1, 48, 40, 3), (2, 40, 40, 3)])
def test_stitch_into_an_image_of_another_size_than_the_region_names_it(shape):
    image = torch.rand(1, 40, 40, 3)
    regions, crops, _ = prepare_regions(image, box_mask(40, 40, 10, 10, 20, 20), WindowSettings())
    with pytest.raises(ValueError, match=r"image: \d image\(s\) of \d+x\d+, but the region was "
                                         r"made for 1 of 40x40; connect the image given to "
                                         r"Dilate Blur Pad"):
        stitch(torch.rand(*shape), regions, crops)


def test_stitch_checks_for_cancellation():
    image = torch.rand(1, 40, 40, 3)
    regions, crops, _ = prepare_regions(image, box_mask(40, 40, 10, 10, 20, 20), WindowSettings())

    def cancel():
        raise InterruptedError("cancelled")

    with pytest.raises(InterruptedError):
        stitch(image, regions, crops, step=cancel)


# --- prepare_regions: input checks ----------------------------------------------------------------

def test_the_loadimage_placeholder_mask_gets_a_clear_error():
    with pytest.raises(ValueError, match=r"empty 64x64 mask that LoadImage gives"):
        prepare_regions(torch.rand(1, 200, 300, 3), torch.zeros(1, 64, 64), WindowSettings())


def test_an_all_zero_mask_gets_a_clear_error():
    with pytest.raises(ValueError, match=r"no masked pixel"):
        prepare_regions(torch.rand(2, 50, 60, 3), torch.zeros(2, 50, 60), WindowSettings())
    # Values below `stabilize` are zero as well.
    with pytest.raises(ValueError, match=r"no masked pixel"):
        prepare_regions(torch.rand(1, 50, 60, 3), torch.full((1, 50, 60), 0.01), WindowSettings())


def test_a_mask_of_another_size_is_resized_and_reported():
    mask = box_mask(50, 50, 10, 10, 30, 30)
    regions, crops, _ = prepare_regions(torch.rand(1, 100, 100, 3), mask, WindowSettings())
    assert regions.notes == ["mask resized from 50x50 to the image's 100x100"]
    assert regions.user_mask.shape == (1, 100, 100)
    assert regions.user_mask[0, 40, 40] == 1 and regions.user_mask[0, 80, 80] == 0
    regions, _, _ = prepare_regions(torch.rand(1, 50, 50, 3), mask, WindowSettings())
    assert regions.notes == []


@pytest.mark.parametrize("enum, value, allowed", [
    (WindowMode, "factor", "'padding', 'context_factor'"),
    (RegionMode, "objects", "'union', 'per_object'"),
    (ResizeMode, "multiple_of_32", "'keep', 'multiple_of_8', 'multiple_of_16', 'multiple_of_64'"),
    (Blend, "soft", "'seamless', 'inward', 'hard', 'outward', 'window'"),
])
def test_bad_option_strings_get_errors_listing_the_allowed_values(enum, value, allowed):
    with pytest.raises(ValueError) as error:
        enum(value)
    assert f"{enum.__name__} = {value!r} is not allowed; choose one of" in str(error.value)
    assert allowed in str(error.value)


def test_stitch_rejects_a_bad_blend_string():
    image = torch.rand(1, 40, 40, 3)
    regions, crops, _ = prepare_regions(image, box_mask(40, 40, 10, 10, 20, 20), WindowSettings())
    with pytest.raises(ValueError, match=r"Blend = 'soft' is not allowed.*'inward'"):
        stitch(image, regions, crops, "soft")


@pytest.mark.parametrize("text, message", [
    ("512x", "'512x' is not WIDTHxHEIGHT"),
    ("4x512", "'4x512' is too small"),
    ("9000x9000", "'9000x9000' is too large; each side must be <= 8192"),
    ("512x512, 512x8193", "'512x8193' is too large"),
    (" , ;", "no size given"),
])
def test_parse_buckets_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_buckets(text)


@settings(max_examples=300, **FAST)
@given(st.lists(st.tuples(st.integers(8, 4096), st.integers(8, 4096)), min_size=1, max_size=6),
       st.sampled_from([", ", ";", "\n", " ; "]), st.sampled_from(["x", "X", " x ", "×"]))
def test_parse_buckets_reads_back_what_it_is_given(sizes, separator, times):
    text = separator.join(f"{w}{times}{h}" for w, h in sizes)
    assert parse_buckets(text) == tuple(sizes)


def test_custom_buckets_without_a_list_is_an_error():
    with pytest.raises(ValueError, match=r"custom_buckets needs a list"):
        plan_regions(box_mask(40, 40, 10, 10, 20, 20),
                     WindowSettings(resize_mode=ResizeMode.CUSTOM_BUCKETS))


def test_window_size_properties():
    w = Window(0, 3, 4, 13, 24, 1)
    assert (w.width, w.height) == (10, 20)


def test_window_settings_given_option_strings_behave_like_the_enum_members():
    # Regression: a plain string was kept as it was, and region_mode="per_object" ran as union.
    mask = box_mask(100, 100, 10, 10, 20, 20)
    mask[0, 70:80, 70:80] = 1
    by_string = WindowSettings(dilation=0, blur=0, padding=4, region_mode="per_object",
                               merge_overlapping=False)
    by_enum = WindowSettings(**{**by_string.__dict__, "region_mode": RegionMode.PER_OBJECT})
    assert windows_of(mask, by_enum) == [(6, 6, 24, 24), (66, 66, 84, 84)]
    assert windows_of(mask, by_string) == windows_of(mask, by_enum)


@pytest.mark.parametrize("field, enum", [("window_mode", WindowMode),
                                         ("region_mode", RegionMode),
                                         ("resize_mode", ResizeMode)])
def test_window_settings_reject_a_bad_option_string(field, enum):
    with pytest.raises(ValueError) as error:
        WindowSettings(**{field: "bogus"})
    message = str(error.value)
    assert f"{enum.__name__} = 'bogus' is not allowed; choose one of" in message
    assert all(repr(member.value) in message for member in enum)


def test_blend_masked_copies_every_pixel_outside_the_mask():
    image = torch.rand(2, 40, 50, 3)
    new = torch.rand(6, 40, 50, 3)
    mask = torch.zeros(2, 40, 50)
    mask[:, 10:30, 15:35] = 1
    out = blend_masked(image, new, mask, feather=4)
    assert out.shape == (6, 40, 50, 3)
    outside = (mask == 0).repeat(3, 1, 1)
    assert torch.equal(out[outside], image.repeat(3, 1, 1, 1)[outside])
    assert torch.equal(out[:, 20, 25], new[:, 20, 25])  # deep inside: the new content


def test_window_blend_changes_the_whole_window_and_nothing_outside_it():
    image = torch.rand(1, 64, 64, 3)
    mask = torch.zeros(1, 64, 64)
    mask[0, 30:36, 2:8] = 1  # near the left border: the window slides, the border is not feathered
    regions, crops, _ = prepare_regions(image, mask, WindowSettings(padding=8))
    out = stitch(image, regions, 1 - crops, blend=Blend.WINDOW, feather=3)
    (w,) = regions.windows
    inside = torch.zeros(64, 64, dtype=torch.bool)
    inside[w.y0:w.y1, w.x0:w.x1] = True
    assert torch.equal(out[0][~inside], image[0][~inside])
    assert w.x0 == 0
    core = (0, slice(w.y0 + 7, w.y1 - 7), slice(0, w.x1 - 7))  # includes the image-border column
    assert torch.allclose(out[core], 1 - image[core], atol=1e-5)


def test_a_seamless_stitch_of_several_candidates_matches_each_stitched_alone():
    """All candidates of a window share one factorisation; each must come out as if alone."""
    generator = torch.Generator().manual_seed(5)
    image = torch.rand(1, 64, 64, 3, generator=generator)
    mask = box_mask(64, 64, 10, 12, 30, 28)
    mask[0, 48:56, 44:56] = 1  # a second window, overlapping the first: pasted after it
    settings = WindowSettings(padding=2, region_mode="per_object", merge_overlapping=False)
    regions, crops, _ = prepare_regions(image, mask, settings)
    candidates = torch.cat([1 - crops, crops * 0.5, crops.flip(2)])
    together = stitch(image, regions, candidates, "seamless")
    count = len(regions.windows)
    alone = torch.cat([stitch(image, regions, candidates[k * count:(k + 1) * count], "seamless")
                       for k in range(3)])
    assert count == 2
    assert torch.equal(together, alone)
    assert not torch.equal(together[0], together[1])
