"""Outpaint padding (PICPIK outpainting): grow the canvas and mask the new area."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

from ..core.cancel import never_cancelled, run_cancellable, stop_if_abandoned
from ..core.choices import Choice
from .masks import gaussian_blur


class PadUnits(Choice):
    PIXELS = "pixels"
    FRACTION = "fraction"


class PadFill(Choice):
    EDGE = "edge"  # repeat the border pixels outward
    BLUR = "blur"  # repeated border, blurred, so the generator gets colour but no streaks
    MEAN = "mean"  # the image's mean colour


def pad_amounts(height: int, width: int, sides: tuple[float, float, float, float],
                units: PadUnits | str) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) in pixels; fractions are of the image's width or height."""
    names = ("left", "top", "right", "bottom")
    for name, value in zip(names, sides):
        if value < 0:
            raise ValueError(f"{name} = {value} must be >= 0")
    if PadUnits(units) is PadUnits.FRACTION:
        for name, value in zip(names, sides):
            if value > 4:
                raise ValueError(f"{name} = {value} is outside the allowed range 0..4 (fraction)")
        left, top, right, bottom = sides
        return (round(left * width), round(top * height), round(right * width),
                round(bottom * height))
    return tuple(int(value) for value in sides)  # type: ignore[return-value]


def outpaint_pad(image: torch.Tensor, left: int, top: int, right: int, bottom: int,
                 fill: PadFill | str = PadFill.EDGE,
                 check_cancel: Callable[[], None] = never_cancelled
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad `image` ([B, H, W, C]) and return it with a mask that is 1 on the new pixels.

    The original pixels are copied unchanged into the middle of the new canvas.

    A large canvas takes seconds (whole-canvas copies): the work runs on a worker thread (torch
    releases the GIL) and `check_cancel` (it raises to stop) is called every 0.05 s meanwhile;
    an abandoned pad stops at the blur's next band.
    """
    return run_cancellable(partial(_padded, image, left, top, right, bottom, PadFill(fill)),
                           check_cancel)


# The blur fill only carries colour into the new area, with a kernel a quarter of the widest
# padding. It is blurred on the canvas shrunk until that kernel spans SHRUNK_RADIUS px and
# resized back: milliseconds where the full-size blur took minutes (4096² padded by 1024 on
# each side: 194 s on 2 cores).
SHRUNK_RADIUS = 8


def _wide_blur(bchw: torch.Tensor, radius: int) -> torch.Tensor:
    step = max(1, radius // SHRUNK_RADIUS)
    small = F.avg_pool2d(bchw, step, ceil_mode=True) if step > 1 else bchw
    blurred = gaussian_blur(small.reshape(-1, *small.shape[2:]), max(1, round(radius / step)),
                            stop_if_abandoned).reshape(small.shape)
    if step == 1:
        return blurred
    return F.interpolate(blurred, size=bchw.shape[-2:], mode="bilinear", align_corners=False)


def _padded(image: torch.Tensor, left: int, top: int, right: int, bottom: int, fill: PadFill
            ) -> tuple[torch.Tensor, torch.Tensor]:
    batch, height, width, channels = image.shape
    bchw = image.movedim(-1, 1)
    # Replicate padding works for any size, unlike reflect, which needs pad < size.
    padded = F.pad(bchw, (left, right, top, bottom), mode="replicate")
    new_area = torch.ones(batch, padded.shape[2], padded.shape[3], device=image.device,
                          dtype=image.dtype)
    new_area[:, top:top + height, left:left + width] = 0
    if fill is PadFill.MEAN:
        mean = bchw.mean(dim=(2, 3), keepdim=True).expand_as(padded)
        padded = torch.where(new_area[:, None] > 0, mean, padded)
    elif fill is PadFill.BLUR:
        radius = max(4, max(left, top, right, bottom) // 4)
        padded = torch.where(new_area[:, None] > 0, _wide_blur(padded, radius), padded)
    out = padded.movedim(1, -1).clone()
    out[:, top:top + height, left:left + width] = image
    return out, new_area
