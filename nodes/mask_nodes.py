"""Mask nodes."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..pipelines.geometry import mask_from_bbox_text
from ..pipelines.tensors import image_size
from ._comfy import compute_device, to_output


class MaskFromBBox(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RegionRepair_MaskFromBBox",
            display_name="Mask From BBox",
            category="region_repair/mask",
            description=(
                "Rasterises one or more rectangles into a MASK the size of `image` (1 = edit). "
                "Boxes are [x, y, w, h] with the origin top-left, as fractions 0..1 of the image "
                "(PiktID `mask.bbox_norm`) or in pixels. A pixel is inside when its centre is. "
                "A box outside the image or of zero area is an error naming the value."),
            inputs=[
                io.Image.Input("image", tooltip="Gives the mask's size and batch; its pixels are "
                               "not read."),
                io.String.Input("bbox", default="0.25, 0.25, 0.5, 0.5", multiline=True,
                                tooltip="One box per line (or separated by ';'), each "
                                "x, y, w, h; JSON [x, y, w, h] or [[...], [...]] also works. "
                                "Normalized: every value in 0..1, x + w <= 1, y + h <= 1."),
                io.Combo.Input("units", options=["normalized", "pixels"], default="normalized",
                               tooltip="normalized: fractions 0..1 of the image (PiktID "
                               "bbox_norm). pixels: x, y, w, h in pixels of `image`."),
            ],
            outputs=[io.Mask.Output(display_name="mask")],
        )

    @classmethod
    def execute(cls, image: torch.Tensor, bbox: str, units: str) -> io.NodeOutput:  # type: ignore[override]
        batch, height, width = image_size(image)
        mask = mask_from_bbox_text(bbox, batch, height, width, units, compute_device())
        return io.NodeOutput(to_output(mask))


NODES = [MaskFromBBox]
