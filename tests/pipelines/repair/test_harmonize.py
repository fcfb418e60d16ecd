"""pipelines/repair/harmonize.py: the new content's low-frequency colour follows the original's
ring, and nothing outside the mask changes."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage import data

from region_repair.pipelines.core.color import ciede2000, lab_to_srgb, srgb_to_lab
from region_repair.pipelines.repair.harmonize import match_low_frequency


@pytest.fixture(scope="module")
def photos():
    """The astronaut and the coffee cup, cropped to one size: [2, 256, 256, 3]."""
    astronaut = torch.from_numpy(data.astronaut()[128:384, 128:384].copy())
    coffee = torch.from_numpy(data.coffee()[100:356, 200:456].copy())
    return torch.stack([astronaut, coffee]).float() / 255


def square_masks(batch: int, boxes: list[tuple[int, int, int]]) -> torch.Tensor:
    mask = torch.zeros(batch, 256, 256)
    for index, (x, y, side) in enumerate(boxes):
        mask[index, y:y + side, x:x + side] = 1
    return mask


def psnr_inside(result, original, mask) -> float:
    inside = mask > 0
    return 10 * math.log10(1 / ((result[inside] - original[inside]) ** 2).mean().item())


def test_brightness_and_contrast_change_is_undone(photos):
    mask = square_masks(2, [(90, 100, 64), (60, 80, 80)])
    # Another exposure per image: darker and flatter, brighter and flatter (no clipping: what
    # clips is lost for good).
    new = torch.stack([photos[0] * 0.8 + 0.02, photos[1] * 0.9 + 0.09])
    matched = match_low_frequency(new, photos, mask, ring_width=8)
    for index in range(2):
        before = psnr_inside(new[index], photos[index], mask[index])
        after = psnr_inside(matched[index], photos[index], mask[index])
        assert after > max(before + 10, 35), (index, before, after)
    outside = mask == 0
    assert torch.equal(matched[outside], new[outside])


def test_a_smooth_color_drift_is_followed_across_the_mask(photos):
    """A sampler's drift: a warm cast rising from left to right, as a smooth field in Lab."""
    mask = square_masks(1, [(80, 80, 96)])
    original = photos[:1]
    lab = srgb_to_lab(original)
    ramp = torch.linspace(-6, 10, 256).view(1, 1, 256)
    drifted = lab.clone()
    drifted[..., 1] += ramp
    drifted[..., 2] += ramp * 0.7
    new = lab_to_srgb(drifted)
    matched = match_low_frequency(new, original, mask, ring_width=8, gain=False)
    inside = mask > 0
    before = ciede2000(srgb_to_lab(new)[inside], lab[inside]).mean()
    after = ciede2000(srgb_to_lab(matched)[inside], lab[inside]).mean()
    # Normalised convolution is a weighted mean of the ring: it follows a ramp closely but not
    # exactly. Below 1 ΔE00 is hard to see.
    assert after < 0.35 * before and after < 1.0, (before.item(), after.item())


def test_ring_pixels_outside_valid_are_ignored(photos):
    mask = square_masks(1, [(90, 90, 64)])
    new = (photos[:1] * 0.9 + 0.05).clamp(0, 1)
    # The left half of new (ring included) is garbage, e.g. beyond a warped reference's edge.
    garbage = new.clone()
    garbage[:, :, :122] = torch.rand(1, 256, 122, 3, generator=torch.Generator().manual_seed(1))
    valid = torch.ones(1, 256, 256, dtype=torch.bool)
    valid[:, :, :122] = False
    matched = match_low_frequency(garbage, photos[:1], mask, 8, valid=valid)
    right = mask.clone()
    right[:, :, :122] = 0
    assert psnr_inside(matched[0], photos[0], right[0]) > 35
    unguarded = match_low_frequency(garbage, photos[:1], mask, 8)
    assert psnr_inside(unguarded[0], photos[0], right[0]) < psnr_inside(
        matched[0], photos[0], right[0]) - 5


def test_nothing_to_match_leaves_new_unchanged(photos):
    new = photos * 0.5
    assert torch.equal(match_low_frequency(new, photos, torch.zeros(2, 256, 256), 8), new)
    # A mask over the whole image has no ring to compare with.
    assert torch.equal(match_low_frequency(new, photos, torch.ones(2, 256, 256), 8), new)


def test_one_mask_serves_the_batch_and_extra_channels_are_kept(photos):
    rgba = torch.cat([photos, torch.rand(2, 256, 256, 1)], dim=-1)
    new = rgba.clone()
    new[..., :3] = new[..., :3] * 0.9
    matched = match_low_frequency(new, rgba, square_masks(1, [(100, 100, 40)]), 6)
    assert matched.shape == rgba.shape and torch.equal(matched[..., 3], new[..., 3])


def test_bad_inputs_are_named(photos):
    mask = square_masks(2, [(10, 10, 10), (10, 10, 10)])
    with pytest.raises(ValueError, match="original: shape"):
        match_low_frequency(photos, photos[:1], mask, 8)
    with pytest.raises(ValueError, match="ring_width: 0"):
        match_low_frequency(photos, photos, mask, 0)
    with pytest.raises(ValueError, match="mask: shape"):
        match_low_frequency(photos, photos, mask[:, :100], 8)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), ring_width=st.integers(1, 12),
       scale=st.floats(0.5, 1.5), shift=st.floats(-0.2, 0.2))
def test_only_masked_pixels_change(seed, ring_width, scale, shift):
    generator = torch.Generator().manual_seed(seed)
    original = torch.rand(2, 48, 40, 3, generator=generator)
    new = (original * scale + shift).clamp(0, 1)
    mask = (torch.rand(2, 48, 40, generator=generator) > 0.85).float()
    matched = match_low_frequency(new, original, mask, ring_width)
    outside = mask == 0
    assert torch.equal(matched[outside], new[outside])
    assert matched.min() >= 0 and matched.max() <= 1
