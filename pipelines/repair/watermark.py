"""The `add_ai_watermark` disclosure: a small "AI-generated" label baked into the bottom-right
corner, as the PiktID endpoints offer. It is visible pixels, not metadata, so it survives
re-encoding and screenshots."""

from __future__ import annotations

import cv2
import numpy as np
import torch

LABEL = "AI-generated"


def add_ai_watermark(images: torch.Tensor) -> torch.Tensor:
    """`[B, H, W, C]` in 0..1 with the label in each image's bottom-right corner: white text on
    a translucent dark plate, scaled to about 1/5 of the shorter side."""
    batch, height, width = images.shape[:3]
    font = cv2.FONT_HERSHEY_SIMPLEX
    (text_w, text_h), baseline = cv2.getTextSize(LABEL, font, 1.0, 2)
    scale = max(min(height, width) / 5 / text_w, 0.25)
    thickness = max(int(round(scale * 1.5)), 1)
    (text_w, text_h), baseline = cv2.getTextSize(LABEL, font, scale, thickness)
    margin = max(int(round(text_h * 0.4)), 1)
    plate_h, plate_w = min(text_h + baseline + 2 * margin, height), min(text_w + 2 * margin, width)
    label = np.zeros((plate_h, plate_w), np.uint8)
    cv2.putText(label, LABEL, (margin, plate_h - margin - baseline), font, scale, 255, thickness,
                cv2.LINE_AA)
    ink = torch.from_numpy(label).to(images.device, images.dtype)[..., None] / 255
    out = images.clone()
    corner = out[:, height - plate_h:, width - plate_w:]
    plate = corner * 0.55  # darken first, so the white text reads on any background
    out[:, height - plate_h:, width - plate_w:] = torch.lerp(plate, torch.ones_like(plate), ink)
    return out
