"""The pack's tensor conventions, in one place.

IMAGE is `[B, H, W, C]` float in 0..1 (C is 3, or 4 with alpha). MASK is `[B, H, W]` float in
0..1 where 1 means "edit". Functions here never write into their inputs.
"""

from __future__ import annotations

import torch


def image_size(image: torch.Tensor, name: str = "image") -> tuple[int, int, int]:
    """(batch, height, width) of an IMAGE, with a clear error for anything else."""
    if image.ndim != 4 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{name}: expected an IMAGE [B, H, W, C] with C in 1, 3, 4; "
                         f"got shape {tuple(image.shape)}")
    batch, height, width, _ = image.shape
    return batch, height, width
