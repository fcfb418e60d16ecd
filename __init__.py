"""comfyui-region-repair: regenerate a masked region of an image and put it back so that nothing
else changes. ComfyUI loads this folder from custom_nodes/; registration is all that happens at
import (V3 schema, through comfy_entrypoint)."""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from .nodes import NODES


class RegionRepairExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)


async def comfy_entrypoint() -> RegionRepairExtension:
    return RegionRepairExtension()
