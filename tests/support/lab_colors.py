"""Lab colours from hex codes, for the recolour tests."""

from __future__ import annotations

import torch

from region_repair.pipelines.core import color


def lab_of(hex_code: str) -> torch.Tensor:
    return color.rgb_lab(color.parse_hex(hex_code))
