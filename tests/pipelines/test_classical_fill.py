"""pipelines/classical_fill.py: cv2.inpaint inside the mask, nothing outside it."""

from __future__ import annotations

import pytest
import torch
from skimage import data

from region_repair.pipelines.classical_fill import FillMethod, classical_fill


@pytest.mark.parametrize("method", list(FillMethod))
def test_fills_inside_the_mask_and_copies_the_rest(method):
    image = torch.from_numpy(data.chelsea()[:128, :160].copy()).float()[None] / 255
    image = image.repeat(2, 1, 1, 1)
    mask = torch.zeros(2, 128, 160)
    mask[0, 40:60, 50:90] = 1
    mask[1, 10:20, 10:20] = 0.5  # soft values count as masked
    corrupt = image.clone()
    corrupt[mask > 0] = 1.0
    filled = classical_fill(corrupt, mask, method, radius=5)
    outside = mask == 0
    assert torch.equal(filled[outside], corrupt[outside])
    inside = mask > 0
    assert (filled[inside] - image[inside]).abs().mean() < 0.1  # the white patch is gone
    assert filled.min() >= 0 and filled.max() <= 1


def test_a_smooth_area_is_filled_smoothly():
    ramp = torch.linspace(0.2, 0.8, 64).view(1, 1, 64, 1).expand(1, 64, 64, 3).contiguous()
    mask = torch.zeros(1, 64, 64)
    mask[0, 24:40, 24:40] = 1
    hole = ramp.clone()
    hole[mask > 0] = 0
    filled = classical_fill(hole, mask)
    inside = mask > 0
    # Diffusion fills stay within the values around the hole (the radius reaches 3 px out) and
    # near the ramp, though not on it.
    assert ramp[0, 0, 20, 0] <= filled[inside].min() and filled[inside].max() <= ramp[0, 0, 43, 0]
    assert (filled - ramp)[inside].abs().mean() < 0.03


def test_empty_mask_and_one_mask_for_the_batch():
    images = torch.rand(3, 32, 32, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(classical_fill(images, torch.zeros(1, 32, 32)), images)
    mask = torch.zeros(1, 32, 32)
    mask[0, 8:12, 8:12] = 1
    filled = classical_fill(images, mask, "ns")
    assert torch.equal(filled[:, mask[0] == 0], images[:, mask[0] == 0])
    assert not torch.equal(filled, images)


def test_bad_inputs_are_named():
    image, mask = torch.rand(1, 16, 16, 3), torch.ones(1, 16, 16)
    with pytest.raises(ValueError, match="FillMethod = 'lama' is not allowed; choose one of "
                                         "'telea', 'ns'"):
        classical_fill(image, mask, "lama")
    with pytest.raises(ValueError, match="radius: 0 is outside 1..64"):
        classical_fill(image, mask, radius=0)
    with pytest.raises(ValueError, match="mask: shape"):
        classical_fill(image, torch.ones(1, 8, 8))
