"""RemoteVendorInpaint: a vendor's masked-edit API inside the graph, with the pack's exact blend."""

from __future__ import annotations

import json

import torch
from comfy_api.latest import io

from ..pipelines.geometry.regions import BLEND_HELP, Blend
from ..pipelines.repair.reference_warp import MAX_REFERENCES
from ..pipelines.vendors import remote
from ._comfy import check_interrupt, finite_inputs, progress_and_cancel, report, to_output

AUTO = "auto"  # blend_method: the endpoint's own (remote.Endpoint.blend)


class RemoteVendorInpaint(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RegionRepair_RemoteVendorInpaint",
            display_name="Remote Vendor Inpaint",
            category="region_repair/remote",
            description=(
                "Sends the image and mask to a vendor's API (PiktID Detail Repair or Garment "
                "Recolor, PICPIK ModifyMaskedPixels, Photio Regen, or an OctoAI-compatible "
                "/adetailer: OctoAI itself shut down on 2024-10-31, so that one needs your own "
                "server's URL) and returns every candidate at the original size. With blend on, "
                "only pixels inside the mask change, whatever the vendor shifted or rescaled, "
                "blended seamlessly by default. "
                "Keys come from environment variables or ~/.config/comfyui-region-repair/"
                "keys.toml, never from the graph (see docs/vendors.md). Uses your credits."),
            inputs=[
                io.Image.Input("image", tooltip="The image batch to edit."),
                io.Mask.Input("mask", tooltip="What to edit (1 = edit); resized to the image if "
                              "needed. Photio's black-is-edit is handled for you."),
                io.Combo.Input("endpoint", options=remote.Endpoint,
                               tooltip="Vendor and endpoint. octoai-compatible/adetailer takes "
                               "no mask (it detects faces or hands); blend keeps it in yours."),
                io.String.Input("base_url", default="",
                                tooltip="Empty: the vendor's documented URL. Another host "
                                "gets no key unless allowed outside the graph "
                                "(REGION_REPAIR_<VENDOR>_HOSTS or allowed_hosts in the keys "
                                "file). Required for the OctoAI-compatible endpoint (OctoAI "
                                "shut down in 2024)."),
                io.String.Input("prompt", default="", multiline=True,
                                tooltip="PiktID reviewer_note / instruction, PICPIK "
                                "PositivePrompts, Photio and adetailer prompt."),
                io.String.Input("negative_prompt", default="",
                                tooltip="PICPIK NegativePrompts, Photio and adetailer "
                                "negative_prompt (empty: the vendor's default)."),
                io.Int.Input("candidates", default=1, min=1, max=16,
                             tooltip="A count: results per image (PiktID 1-4, garment 1-8, "
                             "PICPIK 1-16)."),
                # No seed control: the editor would add "randomize" to any INT named seed, turning
                # -1 into a random seed and shifting the widget values saved without it.
                io.Int.Input("seed", default=-1, min=-1, max=2147483647,
                             control_after_generate=False,
                             tooltip="-1: the vendor picks. Candidate i gets seed + i."),
                io.String.Input("options", default="{}", multiline=True,
                                tooltip="Vendor-specific fields as JSON, e.g. {\"quality\": "
                                "\"HIGH\"}; docs/vendors.md lists them per endpoint."),
                io.Boolean.Input("blend", default=True,
                                 tooltip="Confine the vendor's change to the mask: every pixel "
                                 "outside it stays bit-identical."),
                io.Int.Input("feather", default=4, min=0, max=64,
                             tooltip="Ramp of the inward blend method inside the mask, in "
                             "pixels; the seamless and hard methods do not use it."),
                io.Int.Input("timeout_s", default=900, min=10, max=7200,
                             tooltip="Give up after this many seconds for the whole run."),
                io.Image.Input("references", optional=True,
                               tooltip="Reference shots: PiktID references (up to "
                               f"{MAX_REFERENCES}) or "
                               "reference_image, PICPIK Image2Image (the first)."),
                # Last, so workflows saved before it keep their widget order.
                io.Combo.Input("blend_method",
                               options=[AUTO, *(b.value for b in Blend if b.confined)],
                               default=AUTO, optional=True,
                               tooltip="How blend confines the vendor's result to the mask. "
                               "auto: seamless for the edits, inward for the garment recolour "
                               "(a seamless blend would pull a recolour back to the old colour "
                               "where the mask is tighter than the garment). " + BLEND_HELP
                               + "."),
            ],
            outputs=[io.Image.Output("images", display_name="images"),
                     io.Mask.Output("fitted_mask", display_name="mask"),
                     io.String.Output("info", display_name="info")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    @finite_inputs
    async def execute(cls, image: torch.Tensor, mask: torch.Tensor, endpoint: str,  # type: ignore[override]
                      base_url: str, prompt: str, negative_prompt: str, candidates: int,
                      seed: int, options: str, blend: bool, feather: int, timeout_s: int,
                      references: torch.Tensor | None = None,
                      blend_method: str = AUTO) -> io.NodeOutput:
        settings = remote.RemoteSettings(
            endpoint, base_url=base_url, prompt=prompt, negative_prompt=negative_prompt,
            candidates=candidates, seed=seed, options=remote.parse_options(options),
            blend=blend, feather=feather,
            blend_method=None if blend_method == AUTO else blend_method,
            timeout=float(timeout_s))
        node_id = cls.hidden.unique_id
        step = progress_and_cancel(remote.unit_count(endpoint, image.shape[0], candidates))
        result = await remote.run_remote(
            image.cpu(), mask.cpu(), settings, references, check_cancel=check_interrupt,
            step=step, on_status=lambda text: report(node_id, [text]))
        report(node_id, result.notes)
        return io.NodeOutput(to_output(result.images), to_output(result.mask),
                             json.dumps(result.info))


NODES = [RemoteVendorInpaint]
