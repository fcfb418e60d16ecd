"""The seamless blend: exact outside, nothing of the old content inside, no step at the edge."""

import numpy as np
import pytest
import torch
from cancelling import CancelLater, finish_abandoned_native_calls
from hypothesis import given, settings
from hypothesis import strategies as st

from region_repair.pipelines.geometry.masks import inward_feather
from region_repair.pipelines.geometry import seamless
from region_repair.pipelines.geometry.seamless import seamless_blend


def disc(height, width, cy, cx, radius):
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return (((yy - cy) ** 2 + (xx - cx) ** 2) < radius ** 2).float()


def scene(size=96, radius=24):
    """A clean photo-like background (smooth gradients), the same with a dark object pasted
    exactly on the mask, and the mask."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    clean = torch.stack([0.3 + 0.4 * xx, 0.5 + 0.2 * yy, 0.6 - 0.3 * xx * yy], dim=-1)
    mask = disc(size, size, size / 2, size / 2, radius)
    damaged = torch.where(mask[..., None] > 0, torch.full_like(clean, 0.05), clean)
    return clean, damaged, mask


def test_a_generator_off_in_tone_leaves_no_residue_and_no_seam():
    clean, damaged, mask = scene()
    # A perfect fill, but 0.1 too bright: the usual generator's tone error.
    new = (clean + 0.1).clamp(0, 1)
    out = seamless_blend(damaged, new, mask)
    inside = mask > 0
    # The tone error is removed entirely (clean is harmonic up to a bilinear term, so the
    # membrane reproduces it), and nothing of the dark object is left, not even at the edge.
    assert (out[inside] - clean[inside]).abs().max() < 0.01
    edge = inside & (inward_feather(mask[None], 3)[0] < 1)
    assert out[edge].min() > 0.25
    # The old inward alpha ramp keeps part of the dark object on the same edge pixels.
    alpha = inward_feather(mask[None], 4)[0][..., None]
    ramp = torch.lerp(damaged, new, alpha)
    assert (ramp[edge] - clean[edge]).abs().max() > 0.1


def test_every_pixel_outside_the_mask_is_copied():
    generator = torch.Generator().manual_seed(3)
    old = torch.rand(40, 50, 3, generator=generator)
    new = torch.rand(40, 50, 3, generator=generator)
    mask = torch.zeros(40, 50)
    mask[5:30, 10:45] = 1
    mask[0:3, 0:4] = 1  # a second piece in the corner: bordered by the image's edge on two sides
    before = old.clone()
    out = seamless_blend(old, new, mask)
    assert torch.equal(out[mask == 0], old[mask == 0])
    assert torch.equal(old, before), "seamless_blend wrote into its input"
    assert not torch.equal(out[mask > 0], old[mask > 0])
    assert float(out.min()) >= 0 and float(out.max()) <= 1


@settings(max_examples=60, deadline=None)
@given(st.integers(8, 40), st.integers(8, 40), st.integers(0, 2**31 - 1), st.floats(0.05, 0.9))
def test_exact_outside_for_any_mask(height, width, seed, density):
    generator = torch.Generator().manual_seed(seed)
    old = torch.rand(height, width, 3, generator=generator)
    new = torch.rand(height, width, 3, generator=generator)
    mask = (torch.rand(height, width, generator=generator) < density).float()
    out = seamless_blend(old, new, mask)
    assert torch.equal(out[mask == 0], old[mask == 0])
    assert bool(torch.isfinite(out).all())


def test_the_gradients_inside_are_the_new_contents():
    """Content differing from the old by a constant lands exactly on the old: only the new
    content's gradients are kept, and the boundary fixes the offset."""
    generator = torch.Generator().manual_seed(1)
    old = torch.rand(30, 30, 3, generator=generator) * 0.5 + 0.2
    mask = torch.zeros(30, 30)
    mask[8:22, 6:25] = 1
    out = seamless_blend(old, old + 0.15, mask)
    assert torch.allclose(out, old, atol=1e-5)


def test_a_mask_with_no_untouched_neighbour_takes_the_new_content_as_it_is():
    old, new = torch.zeros(12, 12, 3), torch.full((12, 12, 3), 0.7)
    out = seamless_blend(old, new, torch.ones(12, 12))
    assert torch.allclose(out, new, atol=1e-6)


def test_a_soft_mask_value_mixes_with_the_old_pixel():
    old, new = torch.zeros(10, 10, 3), torch.ones(10, 10, 3)
    mask = torch.zeros(10, 10)
    mask[2:8, 2:8] = 1
    mask[2, 2] = 0.25
    out = seamless_blend(old, new, mask)
    # A constant patch over a constant background: the seamless result is the background.
    assert torch.allclose(out, old, atol=1e-6)
    new = torch.rand(10, 10, 3, generator=torch.Generator().manual_seed(0))
    soft, full = seamless_blend(old, new, mask), seamless_blend(old, new, (mask > 0).float())
    assert torch.allclose(soft[2, 2], 0.25 * full[2, 2], atol=1e-6)
    assert float(full[2, 2].abs().max()) > 0.01
    elsewhere = torch.ones(10, 10, dtype=torch.bool)
    elsewhere[2, 2] = False
    assert torch.equal(soft[elsewhere], full[elsewhere])


def test_large_masks_solved_coarse_then_fine_agree_with_the_direct_solve(monkeypatch):
    size = 160
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    old = (0.5 + 0.3 * torch.sin(yy / 9.0) * torch.cos(xx / 13.0))[..., None].repeat(1, 1, 3)
    new = torch.rand(size, size, 3, generator=torch.Generator().manual_seed(2)) * 0.2 + 0.3
    mask = disc(size, size, 80, 80, 70)
    direct = seamless_blend(old, new, mask)
    monkeypatch.setattr(seamless, "MAX_DIRECT_UNKNOWNS", 2000)
    monkeypatch.setattr(seamless, "EDGE_BAND", 12)
    layered = seamless_blend(old, new, mask)
    assert torch.equal(layered[mask == 0], old[mask == 0])
    difference = (layered - direct).abs()
    assert float(difference.mean()) < 2e-3
    assert float(difference.max()) < 0.02  # about 5 levels in 8 bits, deep inside, smooth


@pytest.mark.parametrize("device", ["cpu"])
def test_output_stays_on_the_input_device_and_dtype(device):
    old = torch.rand(20, 20, 3, dtype=torch.float64, device=device)
    mask = torch.zeros(20, 20, device=device)
    mask[5:15, 5:15] = 1
    out = seamless_blend(old, torch.rand_like(old), mask)
    assert out.dtype == torch.float64 and out.device.type == device
    assert np.isfinite(out.numpy()).all()


def test_content_that_agrees_outside_the_mask_is_pasted_as_it_is():
    """The embedded engines' fills equal the input outside the mask: no membrane to add."""
    generator = torch.Generator().manual_seed(4)
    old = torch.rand(30, 40, 3, generator=generator)
    mask = torch.zeros(30, 40)
    mask[10:20, 12:30] = 1
    new = torch.where(mask[..., None] > 0, torch.rand(30, 40, 3, generator=generator), old)
    assert torch.equal(seamless_blend(old, new, mask), new)


def test_a_large_blend_stops_within_a_second_of_a_cancel():
    """A 1400² mask's solve takes seconds (1000² 1.3 s and 2500² 8 s on the 2-core machine);
    a cancel (ComfyUI's interrupt, raised by the callback) 0.3 s in ends it."""
    generator = torch.Generator().manual_seed(0)
    old, new = torch.rand(2, 2048, 2048, 3, generator=generator)
    weight = torch.zeros(2048, 2048)
    weight[324:1724, 324:1724] = 1
    cancel = CancelLater(0.3)
    with pytest.raises(InterruptedError):
        seamless_blend(old, new, weight, cancel)
    latency = cancel.latency()
    assert finish_abandoned_native_calls() == 1
    assert latency < 1.0, f"cancel took {latency:.2f} s"
