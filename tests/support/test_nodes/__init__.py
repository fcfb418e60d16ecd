"""Test-only ComfyUI nodes, never shipped: the server tier links this folder into custom_nodes as
`region_repair_test_nodes`. Registered through comfy_entrypoint only (V3 schema)."""

from __future__ import annotations

import sys
from pathlib import Path

from comfy_api.latest import ComfyExtension, io

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/support, for tiny_models
import tiny_models  # noqa: E402

FAMILIES = ["sd15", *tiny_models.CONDITIONING_WIDTHS.keys() - {"sd15"}]


class ZeroConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RegionRepairTest_ZeroConditioning",
            display_name="Zero Conditioning (test)",
            category="region_repair/testing",
            description=(
                "All-zero conditioning at a tiny test model family's text widths (SD1.5: a "
                "[1, 77, 768] context and a [1, 768] pooled output). For the tiny test models, "
                "which hold no text encoder."),
            inputs=[io.Combo.Input("family", options=sorted(FAMILIES), default="sd15",
                                   optional=True, tooltip="The tiny model family.")],
            outputs=[io.Conditioning.Output(display_name="conditioning")],
        )

    @classmethod
    def execute(cls, family: str = "sd15") -> io.NodeOutput:  # type: ignore[override]
        return io.NodeOutput(tiny_models.zero_conditioning(family))


class TinyFamilyModel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RegionRepairTest_TinyFamilyModel",
            display_name="Tiny Model of a Family (test)",
            category="region_repair/testing",
            description=(
                "A tiny random-weight MODEL and VAE of a family that cannot be a tiny file "
                "(tests/support/tiny_models.py says why), built with ComfyUI's own config for "
                "it, plus zero conditioning at its text widths."),
            inputs=[io.Combo.Input("family", options=list(tiny_models.IN_PROCESS_FAMILIES),
                                   tooltip="SDXL, SDXL inpaint, Flux dev or Flux Fill.")],
            outputs=[io.Model.Output(display_name="model"), io.Vae.Output(display_name="vae"),
                     io.Conditioning.Output(display_name="conditioning")],
        )

    @classmethod
    def execute(cls, family: str) -> io.NodeOutput:  # type: ignore[override]
        latent_channels = 16 if family.startswith("flux") else 4
        return io.NodeOutput(tiny_models.tiny_family_model(family),
                             tiny_models.tiny_family_vae(latent_channels),
                             tiny_models.zero_conditioning(family))


class RegionRepairTestNodes(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [ZeroConditioning, TinyFamilyModel]


async def comfy_entrypoint() -> RegionRepairTestNodes:
    return RegionRepairTestNodes()
