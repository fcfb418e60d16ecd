"""Outpaint padding (pipelines/geometry/outpaint.py): property-based and by example."""

from __future__ import annotations

import time

import pytest
import torch
from cancelling import CancelLater, finish_abandoned_native_calls
from hypothesis import given, settings
from hypothesis import strategies as st

from region_repair.pipelines.geometry import outpaint
from region_repair.pipelines.geometry.outpaint import PadFill, PadUnits, outpaint_pad, pad_amounts

FAST = dict(deadline=None)
SIDES = ("left", "top", "right", "bottom")


@settings(max_examples=1200, **FAST)
@given(st.integers(1, 2), st.integers(1, 40), st.integers(1, 40), st.sampled_from([1, 3, 4]),
       st.tuples(*[st.integers(0, 40)] * 4), st.sampled_from(list(PadFill) + ["edge", "mean"]),
       st.integers(0, 2**31 - 1))
def test_the_original_is_copied_unchanged_and_the_mask_marks_exactly_the_new_pixels(
        batch, height, width, channels, sides, fill, seed):
    left, top, right, bottom = sides
    image = torch.rand(batch, height, width, channels,
                       generator=torch.Generator().manual_seed(seed))
    before = image.clone()
    out, mask = outpaint_pad(image, left, top, right, bottom, fill)
    new_h, new_w = height + top + bottom, width + left + right
    assert out.shape == (batch, new_h, new_w, channels)
    assert mask.shape == (batch, new_h, new_w)
    assert out.dtype == image.dtype and mask.dtype == image.dtype
    # The original, bit-identical at offset (left, top).
    assert torch.equal(out[:, top:top + height, left:left + width], image)
    assert torch.equal(image, before), "outpaint_pad wrote into its input"
    # The mask: exactly 1 on new pixels, exactly 0 on the original.
    expected = torch.ones(batch, new_h, new_w)
    expected[:, top:top + height, left:left + width] = 0
    assert torch.equal(mask, expected)
    # New pixels hold colours in range.
    assert bool(((out >= 0) & (out <= 1)).all())
    fill = PadFill(fill)
    new = mask > 0
    if fill is PadFill.EDGE:
        # Each new pixel repeats the nearest original pixel.
        rows = (torch.arange(new_h) - top).clamp(0, height - 1)
        cols = (torch.arange(new_w) - left).clamp(0, width - 1)
        assert torch.equal(out, image[:, rows][:, :, cols])
    elif fill is PadFill.MEAN:
        mean = image.mean(dim=(1, 2))
        for b in range(batch):
            assert torch.allclose(out[b][new[b]], mean[b].expand(int(new[b].sum()), channels))


@settings(max_examples=1000, **FAST)
@given(st.integers(1, 4000), st.integers(1, 4000),
       st.tuples(*[st.floats(0, 4, allow_nan=False)] * 4))
def test_fraction_units_are_fractions_of_the_image_side(height, width, sides):
    left, top, right, bottom = pad_amounts(height, width, sides, PadUnits.FRACTION)
    assert (left, top, right, bottom) == (round(sides[0] * width), round(sides[1] * height),
                                          round(sides[2] * width), round(sides[3] * height))
    assert all(isinstance(value, int) and value >= 0 for value in (left, top, right, bottom))
    assert pad_amounts(height, width, sides, "fraction") == (left, top, right, bottom)


@settings(max_examples=600, **FAST)
@given(st.integers(1, 500), st.integers(1, 500), st.tuples(*[st.integers(0, 8192)] * 4))
def test_pixel_units_are_taken_as_they_are(height, width, sides):
    assert pad_amounts(height, width, tuple(float(v) for v in sides), "pixels") == sides


@settings(max_examples=400, **FAST)
@given(st.integers(0, 3), st.floats(-1e6, -1e-9), st.sampled_from(list(PadUnits)))
def test_a_negative_side_raises_naming_the_side(index, value, units):
    sides = [0.0] * 4
    sides[index] = value
    with pytest.raises(ValueError) as error:
        pad_amounts(100, 100, tuple(sides), units)
    assert str(error.value).startswith(f"{SIDES[index]} = {value} must be >= 0")


def test_examples():
    assert pad_amounts(200, 100, (0.5, 0.25, 0, 1), "fraction") == (50, 50, 0, 200)
    assert pad_amounts(200, 100, (10, 0, 3, 7), "pixels") == (10, 0, 3, 7)
    image = torch.tensor([[[[0.2], [0.4]]]])  # 1 x 1 x 2 x 1
    out, mask = outpaint_pad(image, 1, 1, 2, 0)
    assert torch.equal(out[0, ..., 0], torch.tensor([[0.2, 0.2, 0.4, 0.4, 0.4],
                                                     [0.2, 0.2, 0.4, 0.4, 0.4]]))
    assert torch.equal(mask[0], torch.tensor([[1., 1, 1, 1, 1], [1, 0, 0, 1, 1]]))
    out, _ = outpaint_pad(image, 0, 0, 1, 0, "mean")
    assert torch.allclose(out[0, 0, 2], torch.tensor([0.3]))
    out, mask = outpaint_pad(image, 0, 0, 0, 0, "blur")
    assert torch.equal(out, image) and not bool(mask.any())


def test_fraction_above_4_is_out_of_range():
    with pytest.raises(ValueError, match=r"bottom = 4.5 is outside the allowed range 0..4"):
        pad_amounts(10, 10, (0, 0, 0, 4.5), "fraction")


@pytest.mark.parametrize("call, allowed", [
    (lambda: pad_amounts(10, 10, (1, 1, 1, 1), "percent"), "'pixels', 'fraction'"),
    (lambda: outpaint_pad(torch.rand(1, 4, 4, 3), 1, 1, 1, 1, "reflect"),
     "'edge', 'blur', 'mean'"),
])
def test_bad_option_strings_list_the_allowed_values(call, allowed):
    with pytest.raises(ValueError) as error:
        call()
    assert "is not allowed; choose one of" in str(error.value) and allowed in str(error.value)


def test_a_slow_pad_stops_within_a_second_of_a_cancel_and_stops_working(monkeypatch):
    """A pad that takes seconds (here a blur slowed down: the real one takes 1.6 s at 4096²
    padded by 1024 on each side): a cancel (ComfyUI's interrupt, raised by the callback) 0.3 s
    in ends the node's wait, and the abandoned pad stops at the blur's next band instead of
    running on."""
    bands = []

    def slow_blur(planes, radius, check_cancel):
        for _ in range(100):  # 10 s in bands of 0.1 s
            check_cancel()
            bands.append(time.sleep(0.1))
        return planes

    monkeypatch.setattr(outpaint, "gaussian_blur", slow_blur)
    image = torch.rand(1, 256, 256, 3, generator=torch.Generator().manual_seed(0))
    cancel = CancelLater(0.3)
    with pytest.raises(InterruptedError):
        outpaint_pad(image, 64, 0, 64, 0, "blur", cancel)
    latency = cancel.latency()
    start = time.monotonic()
    assert finish_abandoned_native_calls() == 1
    assert time.monotonic() - start < 1.0 and len(bands) < 20
    assert latency < 1.0, f"cancel took {latency:.2f} s"


def test_a_wide_blur_fill_is_smooth_and_fast():
    """The blur fill of 4096² padded by 1024 on each side is computed shrunk (194 s at full
    size on 2 cores); it still goes smoothly from the border's colours, with no streaks."""
    image = torch.rand(1, 4096, 4096, 3, generator=torch.Generator().manual_seed(0))
    start = time.monotonic()
    out, new_area = outpaint_pad(image, 1024, 1024, 1024, 1024, "blur")
    assert time.monotonic() - start < 30
    assert torch.equal(out[:, 1024:-1024, 1024:-1024], image)
    # Above the image, clear of the corners (each one the corner pixel's colour, replicated):
    # the random top row blurred to about its mean, with no step and no streak.
    fill = out[0, :1024, 1536:-1536]
    assert (fill - 0.5).abs().max() < 0.1
    assert (fill[1:] - fill[:-1]).abs().max() < 0.01
    assert (fill[:, 1:] - fill[:, :-1]).abs().max() < 0.01
