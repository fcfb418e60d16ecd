"""GuidedBlendInpaint: PiktID Detail Repair in the graph."""

from __future__ import annotations

import json

import torch
from comfy_api.latest import io

from ..pipelines.geometry import regions as region_ops
from ..pipelines.repair import detail_repair as repair
from ..pipelines.repair.reference_warp import MAX_REFERENCES
from ._comfy import (
    check_interrupt,
    compute_device,
    finite_inputs,
    progress_and_cancel,
    report,
    to_output,
)
from ._sampling import conditioning, diffusion_generator, diffusion_inputs
from .types import Region


class GuidedBlendInpaint(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RegionRepair_GuidedBlendInpaint",
            display_name="Guided Blend Inpaint (Detail Repair)",
            category="region_repair/repair",
            description=(
                "PiktID Detail Repair, locally: regenerates a masked logo, text or detail in a "
                "context crop (mask box x context_factor, processed at most 2048 px) and blends "
                "only that region back at the original size. Reference shots are aligned by "
                "feature matching and guide the fix. Engine by what is connected: a diffusion "
                "model; else the aligned reference (by features, or by intensity for tight "
                "references); else classical fill (removal), except that a logo or text whose "
                "references do not align is kept as it was. -blend modes "
                "keep every pixel outside the mask bit-identical; plain modes paste the whole "
                "window. The default seamless blend replaces the mask's content completely, with "
                "no seam at its edge. Outputs candidates (seed, seed+1, ...) and an info JSON "
                "for Quality Check."),
            inputs=[
                io.Image.Input("image", tooltip="The images to repair (a batch)."),
                io.Mask.Input("mask", optional=True, tooltip="What to repair, 1 = edit; the "
                              "repair follows its exact shape. Resized when its size differs."),
                Region.Input("region", optional=True, tooltip="Instead of a mask: Dilate Blur "
                             "Pad's REGION (its windows and processing size are used)."),
                io.Image.Input("references", optional=True,
                               tooltip=f"Up to {MAX_REFERENCES} shots where the "
                               "detail is clearly visible (any size, one batch)."),
                io.Combo.Input("mode", options=repair.Mode, default=repair.Mode.GUIDED_BLEND,
                               tooltip="guided: crop + mask, reference as init. annotated: crop "
                               "beside the reference on one canvas. marked: region highlighted, "
                               "whole window may change. -blend: change confined to the mask."),
                io.Combo.Input("category", options=repair.Category, tooltip="Prompt family "
                               "(with clip): logo, text, artifact, or general (the note is the "
                               "instruction; empty = remove). When references are given but "
                               "none aligns, logo and text keep the input in the mask; "
                               "artifact and general get the classical fill."),
                io.String.Input("reviewer_note", default="", multiline=True, tooltip="Targeted "
                                "instruction, e.g. 'fix the first letter only'."),
                io.String.Input("image_notes", default="", multiline=True, tooltip="Brand or "
                                "style hints, one per line (font, casing, ...)."),
                io.Float.Input("context_factor", default=3.0, min=1.5, max=10.0, step=0.1,
                               tooltip="Context window = mask box x this (1.5-10)."),
                io.Int.Input("processing_size", default=1024, min=0, max=2048, step=8,
                             tooltip="An area, not a side: crops are sampled at about "
                             "processing_size x processing_size pixels in all (aspect kept; 0 = "
                             "each crop's native size); the long side never exceeds 2048."),
                io.Int.Input("num_candidates", default=1, min=1, max=repair.MAX_CANDIDATES,
                             tooltip="Variations per image, output candidate-major: PiktID "
                             "allows 1-4, PICPIK's BatchSize 1-16. The classical fill has "
                             "four distinct variants; more repeat them."),
                io.Float.Input("reference_denoise", default=0.6, min=0.0, max=1.0, step=0.01,
                               tooltip="Denoise when an aligned reference is the init."),
                io.Int.Input("feather", default=4, min=0, max=256,
                             tooltip="Pixels of soft edge: the inward blend's ramp inside the "
                             "mask, and the plain modes' window edge. Not used by the "
                             "seamless blend."),
                io.Boolean.Input("add_ai_watermark", default=False,
                                 tooltip="Bake an 'AI-generated' mark into each output."),
                *diffusion_inputs(),
                # Last, so workflows saved before it keep their widget order.
                io.Combo.Input("blend", options=[b.value for b in region_ops.Blend
                                                 if b.confined],
                               default=region_ops.Blend.SEAMLESS.value, optional=True,
                               tooltip="How the -blend modes put the result back (outside the "
                               "mask nothing changes in any of them). "
                               + region_ops.BLEND_HELP + "."),
            ],
            outputs=[
                io.Image.Output("images", display_name="images"),
                io.Mask.Output("mask_used", display_name="mask"),
                Region.Output("region_used", display_name="region"),
                io.String.Output("info", display_name="info"),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    @finite_inputs
    def execute(cls, image: torch.Tensor, mode: str, category: str, reviewer_note: str,  # type: ignore[override]
                image_notes: str, context_factor: float, processing_size: int,
                num_candidates: int, reference_denoise: float, feather: int,
                add_ai_watermark: bool, seed: int, steps: int, cfg: float, sampler_name: str,
                scheduler: str, denoise: float, mask=None, region=None, references=None,
                model=None, vae=None, positive=None, negative=None, clip=None,
                blend: str = region_ops.Blend.SEAMLESS.value) -> io.NodeOutput:
        category = repair.Category(category)  # unknown values are an error, model or not
        settings = repair.RepairSettings(mode, context_factor, num_candidates, seed,
                                         processing_size, denoise, reference_denoise, feather,
                                         add_ai_watermark, blend, category=category)
        if mask is None and region is None:
            raise ValueError("mask/region: connect a mask, or a region from Dilate Blur Pad")
        device = compute_device()
        per_candidate = steps + 1 if model is not None else 1
        step = progress_and_cancel(num_candidates * per_candidate)
        generator = None
        if model is not None:
            if vae is None:
                raise ValueError("vae: a model is connected, so its VAE is needed too")
            texts = repair.compose_prompt(category, reviewer_note, image_notes.splitlines())
            generator = diffusion_generator(model, vae, *conditioning(clip, positive, negative,
                                                                      texts),
                                            steps, cfg, sampler_name, scheduler, step)
        refs = [] if references is None else list(references.to(device))
        result = repair.repair(image.to(device), region.user_mask if region is not None else mask,
                               settings, refs, generator, region, step, check_interrupt)
        report(cls.hidden.unique_id, result.regions.notes)
        return io.NodeOutput(to_output(result.images), to_output(result.mask), result.regions,
                             json.dumps(result.info))


NODES = [GuidedBlendInpaint]
