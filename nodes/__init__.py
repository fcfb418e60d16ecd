"""Thin ComfyUI node classes: convert inputs, pick the device, call one pipeline function."""

from __future__ import annotations

from comfy_api.latest import io

from . import (
               detailer_nodes,
               detect_nodes,
               input_nodes,
               mask_nodes,
               quality_nodes,
               recolor_nodes,
               region_nodes,
               remote_nodes,
               repair_nodes,
)

# Every node id starts with this prefix; ids never change after release.
NODE_ID_PREFIX = "RegionRepair_"

# One line per node module; each module lists its nodes in `NODES`.
NODE_MODULES = (
    input_nodes,
    mask_nodes,
    region_nodes,
    repair_nodes,
    quality_nodes,
    detect_nodes,
    detailer_nodes,
    recolor_nodes,
    remote_nodes,
)

NODES: list[type[io.ComfyNode]] = [node for module in NODE_MODULES for node in module.NODES]
