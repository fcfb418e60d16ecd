"""MaskFromBBox geometry: parsing, validation and rasterisation."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from region_repair.pipelines.geometry.boxes import boxes_to_spans, mask_from_bbox_text, parse_boxes


@st.composite
def image_and_box(draw):
    height = draw(st.integers(1, 300))
    width = draw(st.integers(1, 300))
    x = draw(st.floats(0, 0.999))
    y = draw(st.floats(0, 0.999))
    w = draw(st.floats(1e-4, 1 - x).filter(lambda v: v > 0))
    h = draw(st.floats(1e-4, 1 - y).filter(lambda v: v > 0))
    return height, width, (x, y, w, h)


def centre_inside(index, start, length, size):
    centre = (index + 0.5) / size
    return start <= centre < start + length


@given(image_and_box())
def test_mask_is_exactly_the_pixels_whose_centres_are_inside(case):
    height, width, (x, y, w, h) = case
    mask = mask_from_bbox_text(f"{x!r}, {y!r}, {w!r}, {h!r}", 1, height, width)[0]
    cols = [c for c in range(width) if centre_inside(c, x, w, width)]
    rows = [r for r in range(height) if centre_inside(r, y, h, height)]
    expected = torch.zeros(height, width)
    if cols and rows:
        expected[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = 1
        assert torch.equal(mask, expected)
    # A box thinner than a pixel still marks the pixel holding its centre.
    assert mask.sum() >= 1
    ys, xs = torch.nonzero(mask, as_tuple=True)
    assert mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1].all(), "mask is one rectangle"
    assert set(mask.unique().tolist()) <= {0.0, 1.0}


@given(st.integers(1, 64), st.integers(1, 64), st.integers(1, 8), st.integers(1, 8))
def test_a_grid_of_boxes_tiles_the_image_without_gaps_or_overlaps(height, width, nx, ny):
    total = torch.zeros(height, width)
    for i in range(nx):
        for j in range(ny):
            box = f"{i / nx!r}, {j / ny!r}, {1 / nx!r}, {1 / ny!r}"
            total += mask_from_bbox_text(box, 1, height, width)[0]
    if height >= ny and width >= nx:  # no cell thinner than a pixel
        assert torch.equal(total, torch.ones(height, width))


def test_the_whole_image_box_and_the_seed_example():
    assert mask_from_bbox_text("0, 0, 1, 1", 2, 5, 7).eq(1).all()
    # PiktID's documented example on a 1000 x 1000 image: x 660..740, y 300..350.
    mask = mask_from_bbox_text("[0.66, 0.30, 0.08, 0.05]", 1, 1000, 1000)[0]
    ys, xs = torch.nonzero(mask, as_tuple=True)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (660, 739, 300, 349)
    assert mask.sum() == 80 * 50


def test_several_boxes_make_a_union_and_the_batch_is_filled():
    mask = mask_from_bbox_text("0, 0, 0.5, 0.5\n0.5, 0.5, 0.5, 0.5", 3, 4, 4)
    assert mask.shape == (3, 4, 4)
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1.]])
    assert all(torch.equal(m, expected) for m in mask)
    assert parse_boxes("[[0,0,1,1],[0.1,0.1,0.2,0.2]]") == parse_boxes("0 0 1 1; .1 .1 .2 .2")


def test_pixel_units_match_normalized_units():
    assert torch.equal(mask_from_bbox_text("10, 20, 30, 40", 1, 100, 200, "pixels"),
                       mask_from_bbox_text("0.05, 0.2, 0.15, 0.4", 1, 100, 200))
    assert boxes_to_spans([(10, 20, 30, 40)], 100, 200, "pixels") == [(10, 20, 40, 60)]


@pytest.mark.parametrize("text, units, message", [
    ("1.2, 0, 0.1, 0.1", "normalized", "bbox.x = 1.2 is outside the allowed range 0..1"),
    ("0, -0.5, 0.1, 0.1", "normalized", "bbox.y = -0.5 is outside the allowed range 0..1"),
    ("0.1, 0.1, 0, 0.2", "normalized", "bbox.w = 0.0 must be in (0, 1]"),
    ("0.1, 0.1, 0.2, -1", "normalized", "bbox.h = -1.0 must be in (0, 1]"),
    ("0.9, 0.1, 0.2, 0.2", "normalized", "x + w = 1.1 exceeds 1"),
    ("0, 0.7, 0.2, 0.4", "normalized", "y + h = 1.1 exceeds 1"),
    ("0, 0, 1, 1; 0, 0, 2, 1", "normalized", "bbox[1].w = 2.0 must be in (0, 1]"),
    ("10, 0, 195, 10", "pixels", "bbox: x + w = 205 exceeds 200"),
    ("0, 0, 250, 10", "pixels", "bbox.w = 250.0 must be in (0, 200] (pixels)"),
    ("0, 0, 0.1", "normalized", "expected 4 numbers"),
    ("a, b, c, d", "normalized", "expected 4 numbers"),
    ("nan, 0, 0.1, 0.1", "normalized", "finite"),
    ("[0, 0, 1", "normalized", "not valid JSON"),
    ("[[0.1, 0.1, 0.2, 0.2], 0.5]", "normalized",
     "bbox[1]: expected a box [x, y, w, h], got 0.5; in a list of boxes every item must be a box"),
    ("[[0.1, 0.1, 0.2, 0.2], {\"x\": 1}]", "normalized", "bbox[1]: expected a box"),
    ("  ", "normalized", "no box given"),
    ("0, 0, 1, 1", "percent", "units = 'percent'; allowed: 'normalized', 'pixels'"),
])
def test_bad_boxes_get_errors_naming_the_value_and_range(text, units, message):
    with pytest.raises(ValueError) as error:
        mask_from_bbox_text(text, 1, 100, 200, units)
    assert message in str(error.value)


def test_float_noise_at_the_border_is_tolerated():
    x, w = 0.1 + 0.7, 0.2 + 1e-9  # x + w = 1.000000001
    assert x + w > 1
    assert mask_from_bbox_text(f"{x!r}, 0, {w!r}, 1", 1, 10, 10)[0, :, 8:].eq(1).all()
