"""pipelines/repair/classical_fill.py: cv2.inpaint or PatchMatch inside the mask, nothing outside
it."""

from __future__ import annotations

import sys

import pytest
import torch
from cancelling import CancelLater, finish_abandoned_native_calls
from skimage import data

from region_repair.pipelines.core.errors import MissingDependencyError
from region_repair.pipelines.repair.classical_fill import FillMethod, classical_fill


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
                                         "'telea', 'ns', 'patchmatch'"):
        classical_fill(image, mask, "lama")
    with pytest.raises(ValueError, match="radius: 0 is outside 1..64"):
        classical_fill(image, mask, radius=0)
    with pytest.raises(ValueError, match="mask: shape"):
        classical_fill(image, torch.ones(1, 8, 8))


def periodic_texture(size: int = 96) -> torch.Tensor:
    """Three sinusoid gratings (periods 8, 11 and 16 px along x, y and the diagonal)."""
    y, x = torch.meshgrid(torch.arange(size, dtype=torch.float32),
                          torch.arange(size, dtype=torch.float32),
                          indexing="ij")
    return torch.stack([0.5 + 0.4 * torch.sin(2 * torch.pi * x / 8),
                        0.5 + 0.4 * torch.sin(2 * torch.pi * y / 11),
                        0.5 + 0.3 * torch.sin(2 * torch.pi * (x + y) / 16)], dim=-1)[None]


def test_patchmatch_continues_a_texture_that_telea_smears():
    texture = periodic_texture()
    mask = torch.zeros(1, 96, 96)
    mask[0, 36:60, 36:60] = 1
    damaged = torch.where(mask[..., None] > 0, torch.zeros_like(texture), texture)
    errors = {method: (classical_fill(damaged, mask, method) - texture).abs()[mask > 0].mean()
              for method in ("patchmatch", "telea")}
    # Measured: PatchMatch 0.049, Telea 0.218 mean absolute error inside the hole.
    assert errors["patchmatch"] < 0.5 * errors["telea"]
    filled = classical_fill(damaged, mask, "patchmatch")
    assert torch.equal(filled[mask == 0], damaged[mask == 0])


def test_texture_is_telea_at_the_edge_and_patchmatch_deep_inside():
    texture = periodic_texture()
    mask = torch.zeros(1, 96, 96)
    mask[0, 24:72, 24:72] = 1
    damaged = torch.where(mask[..., None] > 0, torch.zeros_like(texture), texture)
    fills = {method: classical_fill(damaged, mask, method)
             for method in ("texture", "telea", "patchmatch")}
    edge, deep = (slice(24, 72), slice(24, 26)), (slice(44, 52), slice(44, 52))
    assert torch.allclose(fills["texture"][0][edge], fills["telea"][0][edge], atol=1e-6)
    assert torch.allclose(fills["texture"][0][deep], fills["patchmatch"][0][deep], atol=1e-6)
    assert not torch.allclose(fills["telea"][0][deep], fills["patchmatch"][0][deep], atol=0.05)
    assert torch.equal(fills["texture"][mask == 0], damaged[mask == 0])


def test_patchmatch_is_exact_outside_and_deterministic_for_any_channel_count():
    from patchmatch import patch_match
    image = torch.from_numpy(data.chelsea()[:96, :128].copy()).float()[None] / 255
    mask = torch.zeros(1, 96, 128)
    mask[0, 30:50, 40:70] = 0.4
    for channels in (image, image[..., :1], torch.cat([image, image[..., :1]], dim=-1)):
        first = classical_fill(channels, mask, "patchmatch", radius=2)
        patch_match.set_random_seed(12345)  # another seed set elsewhere must not matter
        again = classical_fill(channels, mask, "patchmatch", radius=2)
        assert torch.equal(first, again)
        assert torch.equal(first[mask == 0], channels[mask == 0])
        assert not torch.equal(first, channels)
        assert first.shape == channels.shape


def test_patchmatch_missing_names_the_package_and_the_rest_still_works(monkeypatch):
    monkeypatch.setitem(sys.modules, "patchmatch", None)  # import patchmatch now fails
    image, mask = torch.rand(1, 16, 16, 3), torch.zeros(1, 16, 16)
    mask[0, 4:8, 4:8] = 1
    with pytest.raises(MissingDependencyError, match=r"pip install pypatchmatch==2\.2\.0"):
        classical_fill(image, mask, "patchmatch")
    assert not torch.equal(classical_fill(image, mask, "telea"), image)


@pytest.mark.parametrize("method, size, hole", [("patchmatch", 640, 256), ("telea", 2048, 1000)])
def test_one_large_fill_stops_within_a_second_of_a_cancel(method, size, hole):
    """One PatchMatch or OpenCV call takes seconds on a large hole (PatchMatch about 6 s for this
    256² one on the loaded 2-core machine) and cannot be stopped: the wait for it is, by a
    cancel (ComfyUI's interrupt, raised by the callback) 0.1 s in. Telea runs one call per
    channel, 0.34 s each here on an idle machine: a cancel at 0.3 s could land between two
    calls, leaving none to abandon (a fresh clone failed so once)."""
    image = torch.rand(1, size, size, 3, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, size, size)
    start = (size - hole) // 2
    mask[:, start:start + hole, start:start + hole] = 1
    cancel = CancelLater(0.1)
    with pytest.raises(InterruptedError):
        classical_fill(image, mask, method, radius=3, check_cancel=cancel)
    latency = cancel.latency()
    assert finish_abandoned_native_calls() == 1  # it was still running when the wait ended
    assert latency < 1.0, f"cancel took {latency:.2f} s"
