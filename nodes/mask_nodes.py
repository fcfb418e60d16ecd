"""Mask nodes: a mask from a box, mask polarity and hygiene."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..pipelines.core.tensors import image_size
from ..pipelines.geometry import masks as mask_ops
from ..pipelines.geometry.boxes import mask_from_bbox_text
from ._comfy import compute_device, finite_inputs, report, to_output


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


class CleanMask(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RegionRepair_CleanMask",
            display_name="Clean Mask",
            category="region_repair/mask",
            description=(
                "Mask polarity and hygiene. Photio's black-is-edit masks and PICPIK's InvertMask "
                "become the pack's white-is-edit convention; near-binary values (0.98 from a "
                "brush or a JPEG) snap to 0/1; an optional threshold makes the mask binary. "
                "Given an image, a mask of another size is resized to it and the node says so."),
            inputs=[
                io.Mask.Input("mask", tooltip="MASK [B, H, W] or [H, W]."),
                io.Combo.Input("polarity", options=mask_ops.Polarity,
                               tooltip="Which colour of the incoming mask means 'edit'. Photio "
                               "documents black = edit."),
                io.Boolean.Input("invert", default=False,
                                 tooltip="Flip the mask (PICPIK InvertMask), after polarity."),
                io.Float.Input("threshold", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="0 keeps soft values; above 0, pixels >= threshold "
                               "become 1 and the rest 0."),
                io.Float.Input("stabilize", default=0.02, min=0.0, max=0.49, step=0.01,
                               tooltip="Values within this distance of 0 or 1 snap to 0 or 1."),
                io.Image.Input("image", optional=True,
                               tooltip="Optional: resize the mask to this image's size and "
                               "repeat it over its batch."),
            ],
            outputs=[io.Mask.Output(display_name="mask")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    @finite_inputs
    def execute(cls, mask: torch.Tensor, polarity: str, invert: bool, threshold: float,  # type: ignore[override]
                stabilize: float, image: torch.Tensor | None = None) -> io.NodeOutput:
        mask = mask_ops.as_bhw(mask).to(compute_device())
        notes: list[str] = []
        if image is not None:
            batch, height, width = image.shape[:3]
            mask, notes = mask_ops.fit_to_image(mask, batch, height, width)
        report(cls.hidden.unique_id, notes)
        return io.NodeOutput(to_output(mask_ops.clean(mask, polarity, invert, threshold,
                                                      stabilize)))


NODES = [MaskFromBBox, CleanMask]
