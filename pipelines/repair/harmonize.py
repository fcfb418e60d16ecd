"""Colour harmonisation: make new content's low-frequency colour agree with the original's
surroundings before it is blended in.

Colour seams after a stitch are the field's most common complaint (ComfyUI #1973, #16434;
Crop&Stitch #16, #101, #132): a VAE round trip, a sampler's drift, or a reference shot under other
light shifts the tone of the new region. The ring of untouched pixels just outside the mask is
ground truth there, so the correction is measured on it and carried smoothly into the mask:

1. in CIELAB, a per-channel gain about the ring mean (the ratio of the ring's standard
   deviations, clamped) corrects contrast, e.g. a reference shot with other exposure;
2. the remaining ring differences are spread into the mask by normalised convolution (a large
   Gaussian of the differences over the same Gaussian of the ring's weight), computed on a coarse
   grid because the field is smooth by construction; far from the ring it tends to the ring's
   mean difference.

Only pixels inside the mask change.
"""

from __future__ import annotations

import math

import kornia.filters
import torch
import torch.nn.functional as F

from ..core.color import lab_to_srgb, srgb_to_lab
from ..core.tensors import image_size
from ..geometry import masks as mask_ops

# The offset field is computed on a grid whose long side is about this many cells.
_GRID = 192
# Ring statistics need a few pixels; a ring's std below these (Lab units) is too flat for a gain.
_MIN_RING_PIXELS = 16
_MIN_STD = 1.0


def match_low_frequency(new: torch.Tensor, original: torch.Tensor, mask: torch.Tensor,
                        ring_width: int = 8, *, valid: torch.Tensor | None = None,
                        sigma: float | None = None, gain: bool = True, max_gain: float = 2.0
                        ) -> torch.Tensor:
    """`new` with its colour inside `mask` matched to `original` around the mask.

    - `new`, `original`: `[B, H, W, C]` in 0..1, C >= 3 (only RGB is touched); `new` must hold
      its own content on the ring too (a warped reference, a regenerated window).
    - `mask`: `[B, H, W]` or `[1, H, W]`; every pixel > 0 is corrected, every other pixel of
      `new` is returned bit-identical.
    - `ring_width`: width in pixels of the band just outside the mask where the two are compared.
    - `valid`: optional `[B, H, W]` bool, where `new` holds real content (a warp's footprint);
      ring pixels outside it are not used.
    - `sigma`: Gaussian sigma in pixels of the offset field; default max(2 x ring_width, a
      quarter of the masks' bounding box's long side).
    - `gain`, `max_gain`: per-channel Lab gain from the ring's contrast, within 1/max..max.
    """
    batch, height, width = image_size(new, "new")
    if tuple(original.shape) != tuple(new.shape):
        raise ValueError(f"original: shape {tuple(original.shape)} differs from new's "
                         f"{tuple(new.shape)}")
    if int(ring_width) < 1:
        raise ValueError(f"ring_width: {ring_width} must be at least 1 pixel")
    if max_gain < 1:
        raise ValueError(f"max_gain: {max_gain} must be at least 1")
    if new.shape[-1] < 3:
        raise ValueError(f"new: {new.shape[-1]} channels; colour matching needs RGB")
    mask = mask_ops.require_fit(mask, new)
    mask = mask.to(new.device).expand(batch, height, width)
    support = mask > 0
    if not support.any():
        return new.clone()

    # Everything happens in the masks' bounding box plus the ring: nothing outside it is read.
    ring_width = int(ring_width)
    x0, y0, x1, y1 = mask_ops.support_box(support.any(dim=0), ring_width)
    inside = support[:, y0:y1, x0:x1]
    ring = mask_ops.ring(mask[:, y0:y1, x0:x1], ring_width)
    if valid is not None:
        ring = ring & valid.to(new.device).expand(batch, height, width)[:, y0:y1, x0:x1].bool()
    lab_new = srgb_to_lab(new[:, y0:y1, x0:x1, :3])
    lab_old = srgb_to_lab(original[:, y0:y1, x0:x1, :3])

    weight = ring.to(lab_new.dtype)[..., None]                        # [B, h, w, 1]
    usable = weight.sum(dim=(1, 2))[:, 0] >= _MIN_RING_PIXELS
    if gain:
        lab_new = _ring_contrast_matched(lab_new, lab_old, weight, max_gain)
    if sigma is None:
        bx0, by0, bx1, by1 = mask_ops.support_box(support.any(dim=0))
        sigma = max(2.0 * ring_width, max(by1 - by0, bx1 - bx0) / 4)
    field = _offset_field(lab_old - lab_new, weight, float(sigma)) * usable[:, None, None, None]
    corrected = lab_to_srgb(lab_new + field).to(new.dtype)

    # Images whose ring is too small keep their content (the gain above is skipped too).
    keep = inside & usable[:, None, None]
    out = new.clone()
    window = out[:, y0:y1, x0:x1, :3]
    out[:, y0:y1, x0:x1, :3] = torch.where(keep[..., None], corrected, window)
    return out


def _ring_stats(lab: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and channel, the mean and standard deviation of `lab` `[B, h, w, 3]` over the
    ring (`weight` `[B, h, w, 1]`)."""
    count = weight.sum(dim=(1, 2)).clamp(min=1)
    mean = (lab * weight).sum(dim=(1, 2)) / count
    var = (((lab - mean[:, None, None]) ** 2) * weight).sum(dim=(1, 2)) / count
    return mean, var.sqrt()


def _ring_contrast_matched(lab_new: torch.Tensor, lab_old: torch.Tensor, weight: torch.Tensor,
                           max_gain: float) -> torch.Tensor:
    """`lab_new` scaled about its ring mean, per channel, so its ring contrast matches the
    original's (a gain within 1/max_gain..max_gain; 1 where either ring is flat)."""
    mean_new, std_new = _ring_stats(lab_new, weight)
    _, std_old = _ring_stats(lab_old, weight)
    factor = (std_old / std_new.clamp(min=1e-6)).clamp(1 / max_gain, max_gain)
    factor = torch.where((std_new >= _MIN_STD) & (std_old >= _MIN_STD), factor,
                         torch.ones_like(factor))
    return (lab_new - mean_new[:, None, None]) * factor[:, None, None] + mean_new[:, None, None]


def _offset_field(difference: torch.Tensor, weight: torch.Tensor, sigma: float) -> torch.Tensor:
    """The smooth Lab offset `[B, h, w, 3]` that the ring's `difference` (original - new,
    `[B, h, w, 3]`) asks for everywhere in the box: a normalised convolution of the ring's
    values with a Gaussian of `sigma` px, computed on a grid of about _GRID cells a side."""
    box_height, box_width = difference.shape[1:3]
    step = max(1, math.ceil(max(box_height, box_width) / _GRID))
    difference = (difference * weight).permute(0, 3, 1, 2)  # [B, 3, h, w]
    weight_map = weight.permute(0, 3, 1, 2)
    if step > 1:
        difference = F.avg_pool2d(difference, step, ceil_mode=True)
        weight_map = F.avg_pool2d(weight_map, step, ceil_mode=True)
    grid_sigma = max(sigma / step, 0.5)
    size = 2 * math.ceil(3 * grid_sigma) + 1
    blur_d = kornia.filters.gaussian_blur2d(difference, (size, size), (grid_sigma, grid_sigma),
                                            border_type="constant")
    blur_w = kornia.filters.gaussian_blur2d(weight_map, (size, size), (grid_sigma, grid_sigma),
                                            border_type="constant")
    # Far from the ring the Gaussian's weight vanishes; the small constant makes the field tend
    # to the ring's mean difference there instead of dividing noise by nothing.
    mean_difference = difference.sum(dim=(2, 3), keepdim=True) / \
        weight_map.sum(dim=(2, 3), keepdim=True).clamp(min=1e-12)
    epsilon = 1e-3
    field = (blur_d + epsilon * mean_difference) / (blur_w + epsilon)
    if step > 1:
        field = F.interpolate(field, size=(box_height, box_width), mode="bilinear",
                              align_corners=False)
    return field.permute(0, 2, 3, 1)
