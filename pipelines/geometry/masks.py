"""Mask hygiene and morphology: shapes, polarity, near-binary values, grow, shrink, blur.

All functions take and return `[B, H, W]` float masks (1 = edit), work batched on the tensor's
device, and never write into their inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..core.cancel import never_cancelled
from ..core.choices import Choice
from ..core.tensors import zeros

# ComfyUI's LoadImage gives this all-zero mask, whatever the image size, for images without alpha.
LOADIMAGE_PLACEHOLDER_SIZE = (64, 64)
# The two steps of `dilate` as OpenCV kernels.
_SQUARE = np.ones((3, 3), np.uint8)
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


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


def require_fit(mask: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """`mask` as `[1 or B, H, W]` for `image` `[B, H, W, C]`, or a clear error: for functions
    that take tensors from other pipelines, where a wrong size is a bug, not the user's input
    (nodes resize the user's masks with `fit_to_image`)."""
    mask = as_bhw(mask)
    batch, height, width = image.shape[:3]
    if mask.shape[0] not in (1, batch) or tuple(mask.shape[1:]) != (height, width):
        raise ValueError(f"mask: shape {tuple(mask.shape)} does not fit images of shape "
                         f"{tuple(image.shape)}")
    return mask


def hull_mask(points: np.ndarray, height: int, width: int, grow: int = 0) -> np.ndarray:
    """The convex hull of `points` (N x 2 pixels, sub-pixel precise) as a bool mask, grown by
    `grow` pixels."""
    hull = cv2.convexHull(np.round(points * 16).astype(np.int32))
    canvas = np.zeros((height, width), np.uint8)
    cv2.fillConvexPoly(canvas, hull, 1, lineType=cv2.LINE_8, shift=4)
    if grow > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
        canvas = cv2.dilate(canvas, kernel)
    return canvas.astype(bool)


def is_placeholder(mask: torch.Tensor) -> bool:
    """True for LoadImage's empty 64x64 mask of an image without alpha."""
    return tuple(mask.shape[-2:]) == LOADIMAGE_PLACEHOLDER_SIZE and not bool(mask.any())


def clean(mask: torch.Tensor, polarity: Polarity | str = Polarity.WHITE_IS_EDIT,
          invert: bool = False, threshold: float = 0.0, stabilize: float = 0.02) -> torch.Tensor:
    """Polarity, inversion and near-binary hygiene; see clean_with_box."""
    return clean_with_box(mask, polarity, invert, threshold, stabilize)[0]


def clean_with_box(mask: torch.Tensor, polarity: Polarity | str = Polarity.WHITE_IS_EDIT,
                   invert: bool = False, threshold: float = 0.0, stabilize: float = 0.02
                   ) -> tuple[torch.Tensor, tuple[int, int, int, int] | None]:
    """Polarity, inversion and near-binary hygiene, and a box (x0, y0, x1, y1) that holds every
    pixel of the result above 0 (None: the whole frame may be), so later steps need not scan
    the frame again.

    - `polarity`: Photio's masks are black where to edit; the pack's are white (1).
    - `invert` (PICPIK `InvertMask`) flips again on top of the polarity.
    - `stabilize`: values within this distance of 0 or 1 snap to 0 or 1, so a "white" of 0.98
      from a brush or a JPEG does not leave a 2 % ghost of the original (Acly #32, #61).
    - `threshold` > 0 makes the mask binary: 1 where the value is >= threshold.
    """
    edit = mask
    if (Polarity(polarity) is Polarity.BLACK_IS_EDIT) != bool(invert):
        edit = 1 - mask.clamp(0, 1)
    # Only the box of the pixels that stay above 0 is computed and written; the rest stays zero
    # (see tensors.zeros), so a small mask on a large image costs one scan of the frame. Unless
    # the threshold rounds to 0 in the mask's dtype: then every pixel passes it.
    everywhere = threshold > 0 and bool(torch.zeros((), dtype=edit.dtype) >= threshold)
    out = (torch.ones_like(edit) if everywhere
           else zeros(edit.shape, edit.dtype, edit.device))
    box = support_box(edit, above=max(stabilize, 0.0))
    if box is None:
        return out, None
    x0, y0, x1, y1 = box
    part = edit[:, y0:y1, x0:x1].clamp(0, 1)
    if stabilize > 0:
        part = torch.where(part >= 1 - stabilize, torch.ones_like(part), part)
        part = torch.where(part <= stabilize, torch.zeros_like(part), part)
    if threshold > 0:
        part = (part >= threshold).to(part.dtype)
    out[:, y0:y1, x0:x1] = part
    return out, None if everywhere else box


def _max3(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Max over each pixel and its two neighbours along `dim` (-1 or -2). Zero padding is
    neutral for masks in 0..1; shifted slices run several times faster than max_pool2d on CPU."""
    padded = F.pad(x, (1, 1) if dim == -1 else (0, 0, 1, 1))
    size = x.shape[dim]
    return torch.maximum(torch.maximum(padded.narrow(dim, 0, size), padded.narrow(dim, 1, size)),
                         padded.narrow(dim, 2, size))


def _dilate_torch(mask: torch.Tensor, pixels: int,
                  check_cancel: Callable[[], None] = never_cancelled) -> torch.Tensor:
    """`dilate` by pixels > 0 in torch ops, on any device."""
    out = mask
    for step in range(pixels):
        check_cancel()
        if step % 2 == 0:
            out = _max3(_max3(out, -1), -2)
        else:
            out = torch.maximum(_max3(out, -1), _max3(out, -2))
    return out


def _dilate_plane(plane: np.ndarray, pixels: int, check_cancel: Callable[[], None]
                  ) -> np.ndarray:
    """`dilate` by pixels > 0 of one `[H, W]` float array with OpenCV."""
    out = np.ascontiguousarray(plane)
    for step in range(pixels):
        check_cancel()
        out = cv2.dilate(out, _SQUARE if step % 2 == 0 else _CROSS)
    return out


def dilate(mask: torch.Tensor, pixels: int,
           check_cancel: Callable[[], None] = never_cancelled) -> torch.Tensor:
    """Grow (pixels > 0) or shrink (pixels < 0) by |pixels|, keeping the mask's shape.

    Alternating 3x3 square and cross steps make an octagonal structuring element, close to a
    disk: corners round instead of squaring off (the ADetailer square-mask complaint), and the
    cost grows linearly with the radius. Grey values dilate as a max filter. The image border
    neither grows nor erodes the mask. `check_cancel` is called before each step (a step takes
    about 0.3 s on 8192^2 in torch ops), so an interrupt is honoured at once.
    """
    if pixels == 0:
        return mask.clone()
    if pixels < 0:
        return 1 - dilate(1 - mask, -pixels, check_cancel)
    if mask.device.type == "cpu" and mask.dtype in (torch.float32, torch.float64) \
            and mask.numel():
        # One OpenCV call per step and image instead of a dozen small torch ops per step, so
        # torch's thread scheduling cannot dominate. OpenCV ignores the border, as the zero
        # padding of _dilate_torch does for masks in 0..1; the max is exact, so both give the
        # same values.
        return torch.from_numpy(np.stack([_dilate_plane(plane, pixels, check_cancel)
                                          for plane in mask.detach().numpy()]))
    return _dilate_torch(mask, pixels, check_cancel)


def gaussian_blur(mask: torch.Tensor, radius: int,
                  check_cancel: Callable[[], None] = never_cancelled) -> torch.Tensor:
    """Gaussian blur whose kernel spans +-radius pixels (sigma = radius / 2), separable.
    `check_cancel` is called before each image (OpenCV, on the CPU) or each band of rows, then
    columns (torch ops)."""
    if radius <= 0:
        return mask.clone()
    if mask.device.type == "cpu" and mask.dtype in (torch.float32, torch.float64) \
            and mask.numel():
        # OpenCV instead of mkldnn convolutions, which cost milliseconds each on a small box;
        # in float64, so that all ones stay exactly 1 and all zeros 0. One pass per axis, in
        # bands across it, like the torch path.
        offsets = np.arange(-radius, radius + 1, dtype=np.float64)
        kernel = np.exp(-0.5 * (offsets / (radius / 2)) ** 2)
        kernel /= kernel.sum()
        one = np.ones(1)

        def along(kernel_x: np.ndarray, kernel_y: np.ndarray):
            def op(part: torch.Tensor) -> torch.Tensor:
                return torch.from_numpy(np.stack([
                    cv2.sepFilter2D(np.ascontiguousarray(plane), cv2.CV_64F, kernel_x, kernel_y,
                                    borderType=cv2.BORDER_REPLICATE) for plane in part.numpy()]))
            return op

        out = _in_bands(along(kernel, one), mask.detach().double(), -2, kernel.size,
                        check_cancel)
        out = _in_bands(along(one, kernel), out, -1, kernel.size, check_cancel)
        return out.clamp(0, 1).to(mask.dtype)
    return _gaussian_blur_torch(mask, radius, check_cancel)


def _gaussian_blur_torch(mask: torch.Tensor, radius: int,
                         check_cancel: Callable[[], None] = never_cancelled) -> torch.Tensor:
    """`gaussian_blur` by radius > 0 in torch ops, on any device."""
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


def support_box(mask, margin: int = 0, above: float = 0.0
                ) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1), end exclusive, of the pixels above `above` (the set pixels of a bool
    mask) of a 2-D tensor or array, or of any mask of a `[B, H, W]` batch, grown by `margin` and
    clamped to it; None when no pixel is above. It reads the frame once (a row-wise max) and
    then only the rows found."""
    height, width = mask.shape[-2:]

    def span(values, axis: int) -> tuple[int, int] | None:
        # Along `axis` first (the row's own pixels for rows: contiguous), then over the batch.
        peak = values.amax(dim=axis) if isinstance(values, torch.Tensor) else values.max(axis)
        if peak.ndim > 1:
            batch_axes = tuple(range(peak.ndim - 1))
            peak = (peak.amax(dim=batch_axes) if isinstance(peak, torch.Tensor)
                    else peak.max(batch_axes))
        index = (peak > above).nonzero()
        index = index[0] if isinstance(index, tuple) else index.flatten()
        return (int(index[0]), int(index[-1]) + 1) if len(index) else None

    if mask.shape[-1] == 0 or mask.shape[-2] == 0:
        return None
    rows = span(mask, -1)
    if rows is None:
        return None
    cols = span(mask[..., rows[0]:rows[1], :], -2)
    return (max(cols[0] - margin, 0), max(rows[0] - margin, 0), min(cols[1] + margin, width),
            min(rows[1] + margin, height))


def grown_and_blurred_box(mask: torch.Tensor, dilation: int, blur: int,
                          check_cancel: Callable[[], None] = never_cancelled,
                          within: tuple[int, int, int, int] | None = None
                          ) -> tuple[torch.Tensor, tuple[int, int, int, int]] | None:
    """dilate then gaussian_blur, computed only inside the masked part's bounding box plus the
    reach of both, where the full-image result is zero beyond: (the result on that box, the box
    (x0, y0, x1, y1)), or None for an empty mask. A small mask on a large image costs little.
    `within`, a box known to hold every pixel above 0 (clean_with_box's), is the only part
    scanned. `check_cancel` is called between steps (see dilate)."""
    height, width = mask.shape[-2:]
    wx0, wy0, wx1, wy1 = (0, 0, width, height) if within is None else within
    found = support_box(mask[:, wy0:wy1, wx0:wx1])
    if found is None:
        return None
    reach = abs(dilation) + blur + 2
    x0, y0 = max(wx0 + found[0] - reach, 0), max(wy0 + found[1] - reach, 0)
    x1, y1 = min(wx0 + found[2] + reach, width), min(wy0 + found[3] + reach, height)
    return gaussian_blur(dilate(mask[:, y0:y1, x0:x1], dilation, check_cancel), blur,
                         check_cancel), (x0, y0, x1, y1)


def grow_and_blur(mask: torch.Tensor, dilation: int, blur: int,
                  check_cancel: Callable[[], None] = never_cancelled) -> torch.Tensor:
    """dilate then gaussian_blur, at the mask's size (see grown_and_blurred_box)."""
    out = zeros(mask.shape, mask.dtype, mask.device)
    found = grown_and_blurred_box(mask, dilation, blur, check_cancel)
    if found is not None:
        grown, (x0, y0, x1, y1) = found
        out[:, y0:y1, x0:x1] = grown
    return out


def inward_feather(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """A soft edge that lies entirely inside the mask: never above the mask anywhere, so every
    pixel outside it keeps weight 0 and stays bit-identical when blended."""
    if radius <= 0:
        return mask.clone()
    # Zero wherever the mask is: computed on the mask's box plus the reach of the erosion and
    # blur only (the values there are the same as on the whole frame), so a small mask in a
    # large frame costs little.
    out = zeros(mask.shape, mask.dtype, mask.device)
    box = support_box(mask, radius + 2)
    if box is not None:
        x0, y0, x1, y1 = box
        part = mask[:, y0:y1, x0:x1]
        out[:, y0:y1, x0:x1] = torch.minimum(gaussian_blur(dilate(part, -radius), radius), part)
    return out


def ring(mask: torch.Tensor, width: int) -> torch.Tensor:
    """The band of `width` pixels just outside the mask's support, as a bool `[B, H, W]`: the
    untouched surroundings that colour matching and seam checks compare against."""
    support = mask > 0
    return (dilate(support.to(torch.float32), width) > 0) & ~support
