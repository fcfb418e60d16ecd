"""Thin ComfyUI node classes: convert inputs, pick the device, call one pipeline function."""

from __future__ import annotations

from comfy_api.latest import io

from .mask_nodes import MaskFromBBox
from .region_nodes import CleanMask, DilateBlurPad, OutpaintPad, StitchRegion

# Every node id starts with this prefix; ids never change after release.
NODE_ID_PREFIX = "RegionRepair_"

NODES: list[type[io.ComfyNode]] = [MaskFromBBox, CleanMask, DilateBlurPad, StitchRegion,
                                   OutpaintPad]
