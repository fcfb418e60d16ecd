"""Region nodes: DilateBlurPad, stitch, outpaint padding."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..pipelines.geometry import outpaint
from ..pipelines.geometry import regions as region_ops
from ._comfy import (
    check_interrupt,
    compute_device,
    finite_inputs,
    progress_and_cancel,
    report,
    to_output,
)
from .types import Region


class DilateBlurPad(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RegionRepair_DilateBlurPad",
            display_name="Dilate Blur Pad (crop regions)",
            category="region_repair/region",
            description=(
                "OctoAI adetailer's mask processing, then the crop: grow the mask by "
                "mask_dilation (negative shrinks), blur it by mask_blur, and take a window of "
                "mask_padding pixels of context around it (or the mask's box x context_factor, "
                "as PiktID). A window crossing the image border slides toward the centre. "
                "Per-object mode gives every connected part its own window. The crops are "
                "rescaled to one processing size (native, snapped to 8 or 64, or the nearest "
                "SD1.5/SDXL bucket) for a sampler; REGION tells Stitch Region how to put them "
                "back. A mask of another size than the image is resized, and the node says so."),
            inputs=[
                io.Image.Input("image", tooltip="The image batch to repair."),
                io.Mask.Input("mask", tooltip="What to repair (1 = edit); one mask for the "
                              "batch or one per image."),
                io.Int.Input("mask_dilation", default=4, min=-512, max=512,
                             tooltip="Grow the mask by this many pixels, keeping its shape "
                             "(negative shrinks). adetailer default 4."),
                io.Int.Input("mask_blur", default=4, min=0, max=256,
                             tooltip="Gaussian blur radius in pixels after dilation; also the "
                             "default feather of the stitch. adetailer default 4."),
                io.Combo.Input("window_mode", options=region_ops.WindowMode,
                               tooltip="padding: mask_padding pixels of context (adetailer). "
                               "context_factor: the mask's box times context_factor (PiktID)."),
                io.Int.Input("mask_padding", default=32, min=0, max=8192,
                             tooltip="Context pixels around the processed mask, each side. "
                             "adetailer default 32."),
                io.Float.Input("context_factor", default=3.0, min=1.5, max=10.0, step=0.1,
                               tooltip="Window = mask box x this factor (PiktID range 1.5-10, "
                               "default 3)."),
                io.Combo.Input("region_mode", options=region_ops.RegionMode,
                               tooltip="union: one window around all masked parts. per_object: "
                               "one window per connected part (adetailer union_masks off)."),
                io.Boolean.Input("merge_overlapping", default=True,
                                 tooltip="Per object: merge windows that overlap into one."),
                io.Combo.Input("resize_mode", options=region_ops.ResizeMode,
                               tooltip="Crop size for the sampler: keep (native), snapped to "
                               "multiples of 8 (SD1.5, SDXL), 16 (Flux, SD3) or 64 at about "
                               "processing_size^2 pixels, or the nearest bucket (OctoAI's "
                               "SD1.5/SDXL lists, or your own)."),
                io.Int.Input("processing_size", default=512, min=64, max=8192, step=8,
                             tooltip="An area, not a side: for multiple_of_8/16/64 each crop "
                             "is scaled to about processing_size x processing_size pixels in all "
                             "(its aspect kept). Unused by the other resize modes."),
                io.String.Input("buckets", default="512x512, 768x512, 512x768",
                                tooltip="For custom_buckets: allowed WIDTHxHEIGHT sizes, "
                                "comma-separated; the nearest aspect ratio wins."),
            ],
            outputs=[
                io.Image.Output("crops", display_name="crops"),
                io.Mask.Output("crop_masks", display_name="crop_masks"),
                Region.Output("region", display_name="region"),
                io.Mask.Output("processed_mask", display_name="mask"),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    @finite_inputs
    def execute(cls, image: torch.Tensor, mask: torch.Tensor, mask_dilation: int,  # type: ignore[override]
                mask_blur: int, window_mode: str, mask_padding: int, context_factor: float,
                region_mode: str, merge_overlapping: bool, resize_mode: str,
                processing_size: int, buckets: str) -> io.NodeOutput:
        settings = region_ops.WindowSettings(
            mask_dilation, mask_blur, window_mode, mask_padding, context_factor, region_mode,
            merge_overlapping, resize_mode, processing_size,
            region_ops.parse_buckets(buckets) if resize_mode == "custom_buckets" else ())
        found, crops, crop_masks = region_ops.prepare_regions(image.to(compute_device()), mask,
                                                              settings, check_interrupt)
        report(cls.hidden.unique_id, found.notes)
        return io.NodeOutput(to_output(crops), to_output(crop_masks), found,
                             to_output(found.mask))


class StitchRegion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RegionRepair_StitchRegion",
            display_name="Stitch Region",
            category="region_repair/region",
            description=(
                "Puts processed crops back into the image at the original resolution. With the "
                "default seamless blend the crop replaces the user's mask completely and is "
                "blended in the gradient domain against the untouched pixels around it: no "
                "seam, nothing of the old content left inside, and every pixel outside the mask "
                "bit-identical to the input. 'inward' feathers inside the mask instead, 'hard' "
                "pastes the mask as it is, 'outward' blends through the dilated, blurred mask "
                "(changes reach past the mask), 'window' pastes the whole window. Give k crops "
                "per region (candidate-major) to get k results per image."),
            inputs=[
                io.Image.Input("image", tooltip="The original image batch, as given to "
                               "Dilate Blur Pad."),
                Region.Input("region", tooltip="The REGION output of Dilate Blur Pad."),
                io.Image.Input("crops", tooltip="The processed crops: one per region, or k per "
                               "region (all regions of candidate 1, then candidate 2, ...)."),
                io.Combo.Input("blend", options=region_ops.Blend,
                               tooltip=region_ops.BLEND_HELP + ". outward: the dilated, blurred "
                               "mask (pixels outside the mask change). window: the whole "
                               "window, feathered at its edge."),
                io.Int.Input("feather", default=-1, min=-1, max=256,
                             tooltip="Ramp of the inward and window blends, in pixels; -1 uses "
                             "the region's mask_blur. Not used by seamless, hard or outward."),
            ],
            outputs=[io.Image.Output("stitched", display_name="image")],
        )

    @classmethod
    def execute(cls, image: torch.Tensor, region: region_ops.Regions, crops: torch.Tensor,  # type: ignore[override]
                blend: str, feather: int) -> io.NodeOutput:
        device = region.mask.device
        out = region_ops.stitch(image.to(device), region, crops.to(device), blend,
                                None if feather < 0 else feather,
                                step=progress_and_cancel(len(region.windows)),
                                check_cancel=check_interrupt)
        return io.NodeOutput(to_output(out))


class OutpaintPad(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        side = "Pixels (or a fraction of the image's {}) to add on the {}."
        return io.Schema(
            node_id="RegionRepair_OutpaintPad",
            display_name="Outpaint Pad",
            category="region_repair/region",
            description=(
                "Grows the canvas for outpainting (PICPIK ModifyMaskedPixels outpaint) and "
                "returns a mask of the new area. The original pixels are copied unchanged; the "
                "new ones start as repeated edges, a blur of them, or the mean colour."),
            inputs=[
                io.Image.Input("image", tooltip="The image batch to extend."),
                io.Float.Input("left", default=0, min=0, max=8192, step=1,
                               tooltip=side.format("width", "left")),
                io.Float.Input("top", default=0, min=0, max=8192, step=1,
                               tooltip=side.format("height", "top")),
                io.Float.Input("right", default=0, min=0, max=8192, step=1,
                               tooltip=side.format("width", "right")),
                io.Float.Input("bottom", default=0, min=0, max=8192, step=1,
                               tooltip=side.format("height", "bottom")),
                io.Combo.Input("units", options=outpaint.PadUnits,
                               tooltip="pixels, or fraction of the image's size (0..4)."),
                io.Combo.Input("fill", options=outpaint.PadFill,
                               tooltip="What the new pixels start as: edge repeats the border, "
                               "blur softens it, mean is the image's mean colour."),
            ],
            outputs=[io.Image.Output("padded", display_name="image"),
                     io.Mask.Output("new_area", display_name="mask")],
        )

    @classmethod
    @finite_inputs
    def execute(cls, image: torch.Tensor, left: float, top: float, right: float,  # type: ignore[override]
                bottom: float, units: str, fill: str) -> io.NodeOutput:
        amounts = outpaint.pad_amounts(image.shape[1], image.shape[2],
                                       (left, top, right, bottom), units)
        padded, new_area = outpaint.outpaint_pad(image.to(compute_device()), *amounts, fill,
                                                 check_interrupt)
        return io.NodeOutput(to_output(padded), to_output(new_area))


NODES = [DilateBlurPad, StitchRegion, OutpaintPad]
