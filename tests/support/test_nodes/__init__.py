"""Test-only ComfyUI nodes, never shipped: the server tier links this folder into custom_nodes as
`region_repair_test_nodes`. Registered through comfy_entrypoint only (V3 schema)."""

from __future__ import annotations

import torch
from comfy_api.latest import ComfyExtension, io

# SD1.5's cross-attention width: CLIP-L's hidden size, over its 77 tokens.
SD15_CONTEXT_DIM = 768
SD15_TOKENS = 77


class ZeroConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RegionRepairTest_ZeroConditioning",
            display_name="Zero Conditioning (test)",
            category="region_repair/testing",
            description=(
                "All-zero SD1.5 conditioning: a [1, 77, 768] context and a [1, 768] pooled "
                "output. For the tiny test checkpoints, which hold no text encoder (the "
                "checkpoint loader returns no CLIP to encode a prompt with)."),
            inputs=[],
            outputs=[io.Conditioning.Output(display_name="conditioning")],
        )

    @classmethod
    def execute(cls) -> io.NodeOutput:  # type: ignore[override]
        return io.NodeOutput([[torch.zeros(1, SD15_TOKENS, SD15_CONTEXT_DIM),
                               {"pooled_output": torch.zeros(1, SD15_CONTEXT_DIM)}]])


class RegionRepairTestNodes(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [ZeroConditioning]


async def comfy_entrypoint() -> RegionRepairTestNodes:
    return RegionRepairTestNodes()
