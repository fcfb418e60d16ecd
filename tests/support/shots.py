"""A set of three shots of one garment from one photo, as a product shoot gives them: the
original; a tighter crop scaled by 0.7; another crop scaled by 1.2 under dimmer, warmer light.
Used by tests/pipelines/recolor/test_recolor_photos.py and bench/recolor.py."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from PIL import Image


def shots(image: np.ndarray, mask: np.ndarray) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`image` uint8 [H, W, 3] and its garment `mask` [H, W] -> three (image, mask) pairs,
    float 0..1, the masks carried through the same crop and scale (nearest)."""
    height, width = mask.shape
    out = []
    for (y0, y1, x0, x1), scale, light in (
            ((0, height, 0, width), 1.0, None),
            ((height // 10, height, width // 8, width - width // 10), 0.7, None),
            ((0, height - height // 8, width // 12, width), 1.2, (0.65, (1.06, 1.0, 0.9)))):
        crop, crop_mask = image[y0:y1, x0:x1], mask[y0:y1, x0:x1]
        size = (round((x1 - x0) * scale), round((y1 - y0) * scale))
        crop = np.asarray(Image.fromarray(crop).resize(size, Image.BICUBIC))
        crop_mask = cv2.resize(crop_mask, size, interpolation=cv2.INTER_NEAREST)
        picture = torch.from_numpy(crop.copy()).float() / 255
        if light:  # exposure and white balance in linear light
            gain, tint = light
            linear = torch.where(picture <= 0.04045, picture / 12.92,
                                 ((picture + 0.055) / 1.055) ** 2.4) * gain * torch.tensor(tint)
            linear = linear.clamp(0, 1)
            picture = torch.where(linear <= 0.0031308, 12.92 * linear,
                                  1.055 * linear ** (1 / 2.4) - 0.055)
            picture = (picture * 255).round() / 255
        out.append((picture, torch.from_numpy(crop_mask)))
    return out
