"""Mask hygiene and morphology (pipelines/geometry/masks.py): property-based, on small random masks.

Masks are drawn as a few rectangles (shrinkable) plus optional seeded noise and grey values, at
most 96 px a side, so thousands of cases stay fast on a 2-core CPU.
"""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from region_repair.pipelines.geometry import masks as mask_ops
from region_repair.pipelines.geometry.masks import Polarity

FAST = dict(deadline=None)


@st.composite
def masks(draw, max_side=96, max_batch=2, grey=True, min_side=1):
    """A `[B, H, W]` float mask: rectangles, optional salt noise, optional grey levels."""
    batch = draw(st.integers(1, max_batch))
    height = draw(st.integers(min_side, max_side))
    width = draw(st.integers(min_side, max_side))
    mask = torch.zeros(batch, height, width)
    for b in range(batch):
        for _ in range(draw(st.integers(0, 4))):
            y0 = draw(st.integers(0, height - 1))
            x0 = draw(st.integers(0, width - 1))
            y1 = draw(st.integers(y0 + 1, height))
            x1 = draw(st.integers(x0 + 1, width))
            value = draw(st.sampled_from([1.0, 0.5, 0.99, 0.01])) if grey else 1.0
            mask[b, y0:y1, x0:x1] = torch.maximum(mask[b, y0:y1, x0:x1], torch.tensor(value))
    density = draw(st.sampled_from([0.0, 0.0, 0.02, 0.2, 0.6]))
    if density:
        generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
        noise = torch.rand(batch, height, width, generator=generator)
        salt = (noise < density).float()
        if grey and draw(st.booleans()):
            salt = salt * torch.rand(batch, height, width, generator=generator)
        mask = torch.maximum(mask, salt)
    return mask


def is_binary(mask):
    return bool(((mask == 0) | (mask == 1)).all())


def square_dilate(mask, radius):
    """Chebyshev (square) dilation, an upper bound for the pack's octagon."""
    if radius <= 0:
        return mask
    return F.max_pool2d(mask[:, None], 2 * radius + 1, stride=1, padding=radius)[:, 0]


# --- dilate -------------------------------------------------------------------------------------

@settings(max_examples=1500, **FAST)
@given(masks(), st.integers(-10, 10), st.integers(-10, 10))
def test_dilate_is_monotone_in_the_radius(mask, a, b):
    a, b = min(a, b), max(a, b)
    low, high = mask_ops.dilate(mask, a), mask_ops.dilate(mask, b)
    assert low.shape == high.shape == mask.shape
    assert bool((low <= high).all())
    # Erosion never grows, dilation never shrinks.
    if a <= 0:
        assert bool((low <= mask).all())
    if b >= 0:
        assert bool((high >= mask).all())
    # Values stay in 0..1, and each image of the batch is processed on its own.
    assert bool(((high >= 0) & (high <= 1)).all())
    for index in range(mask.shape[0]):
        assert torch.equal(mask_ops.dilate(mask[index:index + 1], b)[0], high[index])


@settings(max_examples=1000, **FAST)
@given(masks(grey=False), st.integers(-12, 12))
def test_dilate_zero_is_identity_and_binary_stays_binary(mask, pixels):
    before = mask.clone()
    assert torch.equal(mask_ops.dilate(mask, 0), mask)
    out = mask_ops.dilate(mask, pixels)
    assert is_binary(out)
    assert torch.equal(mask, before), "dilate wrote into its input"
    # The image border neither grows nor erodes the mask.
    ones, zeros = torch.ones_like(mask), torch.zeros_like(mask)
    assert torch.equal(mask_ops.dilate(ones, pixels), ones)
    assert torch.equal(mask_ops.dilate(zeros, pixels), zeros)
    # Within the square of the same radius (Chebyshev); erosion is the dual of dilation.
    if pixels > 0:
        assert bool((out <= square_dilate(mask, pixels)).all())
    else:
        assert torch.equal(out, 1 - mask_ops.dilate(1 - mask, -pixels))


@settings(max_examples=400, **FAST)
@given(st.integers(0, 20), st.data())
def test_dilating_one_pixel_gives_a_symmetric_octagon_of_that_radius(radius, data):
    size = 2 * radius + 1 + data.draw(st.integers(0, 6))
    y = data.draw(st.integers(radius, size - 1 - radius))
    x = data.draw(st.integers(radius, size - 1 - radius))
    mask = torch.zeros(1, size, size)
    mask[0, y, x] = 1
    out = mask_ops.dilate(mask, radius)[0]
    ys, xs = torch.nonzero(out, as_tuple=True)
    # Reaches exactly `radius` pixels along both axes.
    assert (int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())) == (
        y - radius, y + radius, x - radius, x + radius)
    patch = out[y - radius:y + radius + 1, x - radius:x + radius + 1]
    assert torch.equal(patch, patch.flip(0)) and torch.equal(patch, patch.flip(1))
    assert torch.equal(patch, patch.T)
    # Between the diamond (city block) and the square (Chebyshev) of the same radius.
    offsets = torch.arange(-radius, radius + 1)
    city = offsets.abs()[:, None] + offsets.abs()[None, :]
    assert bool(patch[city <= radius].eq(1).all())
    assert float(out.sum()) == float(patch.sum())


@settings(max_examples=600, **FAST)
@given(masks(), st.integers(-10, 10), st.sampled_from([torch.float32, torch.float64]))
def test_dilate_with_opencv_gives_exactly_the_torch_ops_values(mask, pixels, dtype):
    """On the CPU dilate runs OpenCV; other devices run the torch ops. Both are exact maxima
    over the same octagon, so they must agree to the bit."""
    mask = mask.to(dtype)
    if pixels >= 0:
        reference = mask_ops._dilate_torch(mask, pixels)
    else:
        reference = 1 - mask_ops._dilate_torch(1 - mask, -pixels)
    out = mask_ops.dilate(mask, pixels)
    assert out.dtype == dtype
    assert torch.equal(out, reference)


@settings(max_examples=600, **FAST)
@given(masks(), st.integers(1, 12), st.sampled_from([torch.float32, torch.float64]))
def test_gaussian_blur_with_opencv_matches_the_torch_ops(mask, radius, dtype):
    """On the CPU the blur runs OpenCV in float64; other devices run torch's convolutions:
    the same values within float32 rounding, and zero at exactly the same pixels."""
    mask = mask.to(dtype)
    out = mask_ops.gaussian_blur(mask, radius)
    reference = mask_ops._gaussian_blur_torch(mask, radius)
    assert out.dtype == dtype and out.shape == mask.shape
    assert torch.allclose(out, reference, atol=1e-6, rtol=0)
    assert torch.equal(out > 0, reference > 0)


@settings(max_examples=800, **FAST)
@given(masks(), st.sampled_from([0.0, 0.02, 0.5]), st.integers(0, 5), st.booleans())
def test_support_box_is_the_box_of_the_pixels_above_the_level(mask, above, margin, as_array):
    """Batch, single image, tensor or array: the box of every pixel above `above`, grown."""
    _, height, width = mask.shape
    ys, xs = torch.nonzero((mask > above).any(dim=0), as_tuple=True)
    if len(ys):
        expected = (max(int(xs.min()) - margin, 0), max(int(ys.min()) - margin, 0),
                    min(int(xs.max()) + 1 + margin, width),
                    min(int(ys.max()) + 1 + margin, height))
    else:
        expected = None
    values = mask.numpy() if as_array else mask
    assert mask_ops.support_box(values, margin, above) == expected
    single = mask_ops.support_box(values[0] > above, margin)
    ys, xs = torch.nonzero(mask[0] > above, as_tuple=True)
    assert single == (None if not len(ys) else (
        max(int(xs.min()) - margin, 0), max(int(ys.min()) - margin, 0),
        min(int(xs.max()) + 1 + margin, width), min(int(ys.max()) + 1 + margin, height)))


# --- blur, grow_and_blur, inward_feather --------------------------------------------------------

@settings(max_examples=600, **FAST)
@given(masks(), st.integers(0, 10))
def test_gaussian_blur_stays_in_range_and_reaches_at_most_its_radius(mask, radius):
    out = mask_ops.gaussian_blur(mask, radius)
    assert out.shape == mask.shape
    assert bool(((out >= 0) & (out <= 1)).all())
    # Zero wherever no masked pixel lies within `radius` (Chebyshev): no leak past the kernel.
    assert bool(out[square_dilate(mask, radius) == 0].eq(0).all())
    if radius == 0:
        assert torch.equal(out, mask)
    constant = torch.full_like(mask, 0.75)
    assert torch.allclose(mask_ops.gaussian_blur(constant, radius), constant, atol=1e-6)


@settings(max_examples=800, **FAST)
@given(masks(), st.integers(-8, 8), st.integers(0, 8))
def test_grow_and_blur_equals_the_full_image_computation(mask, dilation, blur):
    """The bbox-restricted fast path must give what dilate + blur on the whole image give."""
    fast = mask_ops.grow_and_blur(mask, dilation, blur)
    full = mask_ops.gaussian_blur(mask_ops.dilate(mask, dilation), blur)
    assert fast.shape == mask.shape
    assert torch.allclose(fast, full, atol=1e-6, rtol=0)
    if not bool(mask.any()):
        assert not bool(fast.any())


@settings(max_examples=1000, **FAST)
@given(masks(), st.integers(0, 12))
def test_inward_feather_never_exceeds_the_mask(mask, radius):
    out = mask_ops.inward_feather(mask, radius)
    assert out.shape == mask.shape
    assert bool((out <= mask).all())
    assert bool((out >= 0).all())
    assert bool(out[mask == 0].eq(0).all())
    if radius == 0:
        assert torch.equal(out, mask)


def test_inward_feather_of_a_big_box_is_one_in_the_middle_and_soft_at_its_edge():
    mask = torch.zeros(1, 64, 64)
    mask[0, 8:56, 8:56] = 1
    out = mask_ops.inward_feather(mask, 4)[0]
    assert out[32, 32] == 1
    assert 0 < out[8, 32] < 0.5
    assert torch.equal(out[mask[0] == 0], torch.zeros(int((mask[0] == 0).sum())))


# --- clean ----------------------------------------------------------------------------------------

@settings(max_examples=1200, **FAST)
@given(masks(max_side=48), st.sampled_from(list(Polarity)), st.booleans(),
       st.floats(0, 0.49), st.floats(0, 1))
def test_clean_polarity_invert_stabilize_threshold(mask, polarity, invert, stabilize, threshold):
    flipped = (polarity is Polarity.BLACK_IS_EDIT) != invert
    expected = 1 - mask if flipped else mask.clone()
    # Polarity and invert alone: an exact flip (or none).
    assert torch.equal(mask_ops.clean(mask, polarity, invert, 0.0, 0.0), expected)
    # The string value of the option behaves like the enum member.
    assert torch.equal(mask_ops.clean(mask, polarity.value, invert, 0.0, 0.0), expected)
    # Stabilize snaps values within `stabilize` of 0 or 1, and leaves the rest alone.
    out = mask_ops.clean(mask, polarity, invert, 0.0, stabilize)
    if stabilize > 0:
        assert bool(out[expected >= 1 - stabilize].eq(1).all())
        assert bool(out[expected <= stabilize].eq(0).all())
        middle = (expected > stabilize) & (expected < 1 - stabilize)
        assert torch.equal(out[middle], expected[middle])
    else:
        assert torch.equal(out, expected)
    # Threshold makes the mask binary: 1 exactly where the (stabilized) value is >= threshold.
    binary = mask_ops.clean(mask, polarity, invert, threshold, stabilize)
    if threshold > 0:
        assert is_binary(binary)
        assert torch.equal(binary, (out >= threshold).float())
    else:
        assert torch.equal(binary, out)
    # Out-of-range input is clamped first; the input is never written.
    assert torch.equal(mask_ops.clean(mask * 3 - 1, polarity, invert, 0.0, 0.0),
                       (1 - (mask * 3 - 1).clamp(0, 1)) if flipped else (mask * 3 - 1).clamp(0, 1))


def test_clean_examples():
    mask = torch.tensor([[[0.0, 0.01, 0.3, 0.985, 1.0]]])
    assert torch.equal(mask_ops.clean(mask), torch.tensor([[[0.0, 0.0, 0.3, 1.0, 1.0]]]))
    black = mask_ops.clean(mask, "black = edit (Photio)")
    assert torch.allclose(black, torch.tensor([[[1.0, 1.0, 0.7, 0.0, 0.0]]]))
    assert torch.allclose(mask_ops.clean(mask, Polarity.BLACK_IS_EDIT, invert=True),
                          mask_ops.clean(mask))
    assert torch.equal(mask_ops.clean(mask, threshold=0.5),
                       torch.tensor([[[0.0, 0.0, 0.0, 1.0, 1.0]]]))


def test_clean_rejects_an_unknown_polarity_listing_the_allowed_values():
    with pytest.raises(ValueError) as error:
        mask_ops.clean(torch.zeros(1, 4, 4), "grey = edit")
    message = str(error.value)
    assert "'grey = edit' is not allowed" in message
    assert "'white = edit'" in message and "'black = edit (Photio)'" in message


# --- shapes: as_bhw, fit_to_image, is_placeholder -------------------------------------------------

@settings(max_examples=400, **FAST)
@given(st.integers(1, 3), st.integers(1, 40), st.integers(1, 40), st.integers(1, 40),
       st.integers(1, 40), st.booleans())
def test_fit_to_image_resizes_a_wrong_size_mask_and_says_so(batch, mh, mw, height, width, one):
    mask = torch.rand(1 if one else batch, mh, mw)
    out, notes = mask_ops.fit_to_image(mask, batch, height, width)
    assert out.shape == (batch, height, width)
    assert bool(((out >= 0) & (out <= 1)).all())
    if (mh, mw) == (height, width):
        assert notes == []
        assert torch.equal(out, mask.expand(batch, height, width))
    else:
        assert notes == [f"mask resized from {mw}x{mh} to the image's {width}x{height}"]
    if one:
        assert all(torch.equal(out[0], out[i]) for i in range(batch))


def test_fit_to_image_rejects_a_batch_that_does_not_match():
    with pytest.raises(ValueError, match=r"mask: batch of 2 masks for 3 images; give 1 mask or 3"):
        mask_ops.fit_to_image(torch.zeros(2, 8, 8), 3, 8, 8)


def test_as_bhw_accepts_the_three_mask_layouts_and_rejects_others():
    assert mask_ops.as_bhw(torch.zeros(5, 6)).shape == (1, 5, 6)
    assert mask_ops.as_bhw(torch.zeros(2, 5, 6)).shape == (2, 5, 6)
    assert mask_ops.as_bhw(torch.zeros(2, 1, 5, 6)).shape == (2, 5, 6)
    assert mask_ops.as_bhw(torch.zeros(5, 6, dtype=torch.uint8)).dtype == torch.float32
    with pytest.raises(ValueError, match=r"expected a MASK \[B, H, W\].*got shape \(2, 3, 5, 6\)"):
        mask_ops.as_bhw(torch.zeros(2, 3, 5, 6))


def test_is_placeholder_only_for_the_empty_64x64_mask():
    assert mask_ops.is_placeholder(torch.zeros(1, 64, 64))
    assert mask_ops.is_placeholder(torch.zeros(64, 64))
    mask = torch.zeros(1, 64, 64)
    mask[0, 3, 3] = 1
    assert not mask_ops.is_placeholder(mask)
    assert not mask_ops.is_placeholder(torch.zeros(1, 64, 65))


def test_ring_is_the_band_just_outside_the_mask():
    mask = torch.zeros(1, 20, 20)
    mask[0, 8:12, 8:12] = 0.3
    band = mask_ops.ring(mask, 2)
    assert band.dtype == torch.bool
    assert not (band & (mask > 0)).any()
    assert band[0, 6, 9] and band[0, 9, 13] and not band[0, 5, 9] and not band[0, 9, 14]


def test_gaussian_blur_in_bands_equals_one_convolution():
    """Large blurs run in bands (to check for an interrupt); the result is the same."""
    mask = (torch.rand(1, 300, 2000) > 0.7).float()
    radius = 40
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / (radius / 2)) ** 2)
    kernel = kernel / kernel.sum()
    whole = F.pad(mask[:, None], (radius,) * 4, mode="replicate")
    whole = F.conv2d(F.conv2d(whole, kernel.view(1, 1, 1, -1)), kernel.view(1, 1, -1, 1))
    for blur in (mask_ops.gaussian_blur, mask_ops._gaussian_blur_torch):  # OpenCV, torch ops
        calls = []
        banded = blur(mask, radius, check_cancel=lambda: calls.append(1))
        assert len(calls) > 4  # it did run in bands
        torch.testing.assert_close(banded, whole[:, 0].clamp(0, 1), rtol=0, atol=1e-6)


@pytest.mark.parametrize("dilation, blur", [(200, 0), (0, 256), (-200, 0)])
def test_grow_and_blur_of_a_large_mask_honours_an_interrupt_within_a_second(dilation, blur):
    mask = torch.zeros(1, 4096, 4096)
    mask[:, 1000:3000, 1000:3000] = 1
    start = time.monotonic()

    def check_cancel():
        if time.monotonic() - start > 0.3:
            raise InterruptedError

    with pytest.raises(InterruptedError):
        mask_ops.grow_and_blur(mask, dilation, blur, check_cancel)
    latency = time.monotonic() - start - 0.3
    assert latency < 1.0, f"interrupt took {latency:.2f} s"
