"""pipelines/repair/watermark.py: the disclosure mark sits in the bottom-right corner only."""

from __future__ import annotations

import torch

from region_repair.pipelines.repair.watermark import add_ai_watermark


def test_mark_changes_only_the_bottom_right_corner_and_is_readable():
    images = torch.rand(2, 300, 400, 3)
    marked = add_ai_watermark(images)
    changed = (marked != images).any(-1)
    rows, cols = torch.nonzero(changed[0], as_tuple=True)
    assert rows.min() > 300 * 0.7 and cols.min() > 400 * 0.6
    assert rows.max() == 299 and cols.max() == 399
    assert torch.equal(changed[0], changed[1])
    corner = marked[0, rows.min():, cols.min():]
    assert corner.max() > 0.95  # white text on a darkened plate
    assert torch.equal(images, images.clone())  # the input is not written to


def test_tiny_images_still_get_a_mark():
    images = torch.full((1, 24, 24, 3), 0.5)
    assert (add_ai_watermark(images) != images).any()
