"""Mask hygiene and morphology: shapes, polarity, near-binary values, grow, shrink, blur.

All functions take and return `[B, H, W]` float masks (1 = edit), work batched on the tensor's
device, and never write into their inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .choices import Choice

# ComfyUI's LoadImage gives this all-zero mask, whatever the image size, for images without alpha.
LOADIMAGE_PLACEHOLDER_SIZE = (64, 64)


class Polarity(Choice):
    WHITE_IS_EDIT = "white = edit"
    BLACK_IS_EDIT = "black = edit (Photio)"


def as_bhw(mask: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """Accept `[H, W]`, `[B, H, W]` or `[B, 1, H, W]`; return a float `[B, H, W]`."""
    if mask.ndim == 2:
        mask = mask[None]
    elif mask.ndim == 4 and mask.shape[1] == 1:
        mask = mask[:, 0]
    if mask.ndim != 3:
        raise ValueError(f"{name}: expected a MASK [B, H, W] (or [H, W]); "
                         f"got shape {tuple(mask.shape)}")
    return mask.float()


def fit_to_image(mask: torch.Tensor, batch: int, height: int, width: int,
                 name: str = "mask") -> tuple[torch.Tensor, list[str]]:
    """Make a mask match an image batch: resize it when its size differs (as the vendors do),
    and repeat a single mask over the batch. Returns the mask and notes saying what was done."""
    mask = as_bhw(mask, name)
    notes = []
    if mask.shape[0] not in (1, batch):
        raise ValueError(f"{name}: batch of {mask.shape[0]} masks for {batch} images; "
                         f"give 1 mask or {batch}")
    if tuple(mask.shape[1:]) != (height, width):
        notes.append(f"{name} resized from {mask.shape[2]}x{mask.shape[1]} to the image's "
                     f"{width}x{height}")
        mask = F.interpolate(mask[:, None], size=(height, width), mode="bilinear",
                             align_corners=False)[:, 0].clamp(0, 1)
    return mask.expand(batch, height, width), notes


def is_placeholder(mask: torch.Tensor) -> bool:
    """True for LoadImage's empty 64x64 mask of an image without alpha."""
    return tuple(mask.shape[-2:]) == LOADIMAGE_PLACEHOLDER_SIZE and not bool(mask.any())


def clean(mask: torch.Tensor, polarity: Polarity | str = Polarity.WHITE_IS_EDIT,
          invert: bool = False, threshold: float = 0.0, stabilize: float = 0.02) -> torch.Tensor:
    """Polarity, inversion and near-binary hygiene.

    - `polarity`: Photio's masks are black where to edit; the pack's are white (1).
    - `invert` (PICPIK `InvertMask`) flips again on top of the polarity.
    - `stabilize`: values within this distance of 0 or 1 snap to 0 or 1, so a "white" of 0.98
      from a brush or a JPEG does not leave a 2 % ghost of the original (Acly #32, #61).
    - `threshold` > 0 makes the mask binary: 1 where the value is >= threshold.
    """
    out = mask.clamp(0, 1)
    if (Polarity(polarity) is Polarity.BLACK_IS_EDIT) != bool(invert):
        out = 1 - out
    if stabilize > 0:
        out = torch.where(out >= 1 - stabilize, torch.ones_like(out), out)
        out = torch.where(out <= stabilize, torch.zeros_like(out), out)
    if threshold > 0:
        out = (out >= threshold).to(out.dtype)
    return out


def _max3(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Max over each pixel and its two neighbours along `dim` (-1 or -2). Zero padding is
    neutral for masks in 0..1; shifted slices run several times faster than max_pool2d on CPU."""
    padded = F.pad(x, (1, 1) if dim == -1 else (0, 0, 1, 1))
    size = x.shape[dim]
    return torch.maximum(torch.maximum(padded.narrow(dim, 0, size), padded.narrow(dim, 1, size)),
                         padded.narrow(dim, 2, size))


def _never_cancelled() -> None:
    pass


def dilate(mask: torch.Tensor, pixels: int,
           check_cancel: Callable[[], None] = _never_cancelled) -> torch.Tensor:
    """Grow (pixels > 0) or shrink (pixels < 0) by |pixels|, keeping the mask's shape.

    Alternating 3x3 square and cross steps make an octagonal structuring element, close to a
    disk: corners round instead of squaring off (the ADetailer square-mask complaint), and the
    cost grows linearly with the radius. Grey values dilate as a max filter. The image border
    neither grows nor erodes the mask. `check_cancel` is called before each step (a step takes
    about 0.3 s on 8192^2), so an interrupt is honoured at once.
    """
    if pixels == 0:
        return mask.clone()
    if pixels < 0:
        return 1 - dilate(1 - mask, -pixels, check_cancel)
    out = mask
    for step in range(pixels):
        check_cancel()
        if step % 2 == 0:
            out = _max3(_max3(out, -1), -2)
        else:
            out = torch.maximum(_max3(out, -1), _max3(out, -2))
    return out


def gaussian_blur(mask: torch.Tensor, radius: int,
                  check_cancel: Callable[[], None] = _never_cancelled) -> torch.Tensor:
    """Gaussian blur whose kernel spans +-radius pixels (sigma = radius / 2), separable. Large
    work runs in bands of rows (then columns), with `check_cancel` between them."""
    if radius <= 0:
        return mask.clone()
    sigma = radius / 2
    offsets = torch.arange(-radius, radius + 1, device=mask.device, dtype=mask.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    out = F.pad(mask[:, None], (radius, radius, radius, radius), mode="replicate")
    out = _in_bands(lambda part: F.conv2d(part, kernel.view(1, 1, 1, -1)), out, -2,
                    kernel.numel(), check_cancel)
    out = _in_bands(lambda part: F.conv2d(part, kernel.view(1, 1, -1, 1)), out, -1,
                    kernel.numel(), check_cancel)
    return out[:, 0].clamp(0, 1)


def _in_bands(op: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, dim: int,
              kernel_size: int, check_cancel: Callable[[], None]) -> torch.Tensor:
    """`op` (independent along `dim`) over bands of `x` of about 2^24 multiply-adds each (tens
    of milliseconds), calling `check_cancel` before each band."""
    across = x.numel() // x.shape[dim]
    band = max(1, 2 ** 24 // (across * kernel_size))
    if band >= x.shape[dim]:
        check_cancel()
        return op(x)
    parts = []
    for start in range(0, x.shape[dim], band):
        check_cancel()
        parts.append(op(x.narrow(dim, start, min(band, x.shape[dim] - start))))
    return torch.cat(parts, dim)


def support_box(support, margin: int = 0) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1), end exclusive, of the set pixels of a 2-D bool tensor or array, grown
    by `margin` and clamped to it; None when no pixel is set."""
    height, width = support.shape

    def span(flags) -> tuple[int, int] | None:
        index = flags.nonzero()
        index = index[0] if isinstance(index, tuple) else index.flatten()
        return (int(index[0]), int(index[-1]) + 1) if len(index) else None

    rows, cols = span(support.any(1)), span(support.any(0))
    if rows is None:
        return None
    return (max(cols[0] - margin, 0), max(rows[0] - margin, 0), min(cols[1] + margin, width),
            min(rows[1] + margin, height))


def grow_and_blur(mask: torch.Tensor, dilation: int, blur: int,
                  check_cancel: Callable[[], None] = _never_cancelled) -> torch.Tensor:
    """dilate then gaussian_blur, computed only inside the masked part's bounding box plus the
    reach of both (the result is zero beyond it), so a small mask on a large image costs little.
    `check_cancel` is called between steps (see dilate)."""
    support = mask.amax(dim=0) > 0
    if not support.any():
        return torch.zeros_like(mask)
    x0, y0, x1, y1 = support_box(support, abs(dilation) + blur + 2)
    out = torch.zeros_like(mask)
    out[:, y0:y1, x0:x1] = gaussian_blur(dilate(mask[:, y0:y1, x0:x1], dilation, check_cancel),
                                         blur, check_cancel)
    return out


def inward_feather(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """A soft edge that lies entirely inside the mask: never above the mask anywhere, so every
    pixel outside it keeps weight 0 and stays bit-identical when blended."""
    if radius <= 0:
        return mask.clone()
    return torch.minimum(gaussian_blur(dilate(mask, -radius), radius), mask)


def ring(mask: torch.Tensor, width: int) -> torch.Tensor:
    """The band of `width` pixels just outside the mask's support, as a bool `[B, H, W]`: the
    untouched surroundings that colour matching and seam checks compare against."""
    support = mask > 0
    return (dilate(support.to(torch.float32), width) > 0) & ~support
