"""GarmentRecolorAnchor: PiktID Garment Recolor, done locally, consistent across a set."""

from __future__ import annotations

import json

import torch
from comfy_api.latest import io

from ..pipelines.geometry.masks import as_bhw, is_placeholder
from ..pipelines.recolor import garment_mask
from ..pipelines.recolor import garments as recolor
from ..pipelines.recolor import target as recolor_target
from ._comfy import (
    check_interrupt,
    compute_device,
    finite_inputs,
    progress_and_cancel,
    report,
    to_output,
)
from ._sampling import conditioning, diffusion_generator, diffusion_inputs


def _first(value, default=None):
    """A widget value from an input list (this node takes lists: images may differ in size)."""
    if isinstance(value, (list, tuple)):
        return value[0] if value else default
    return default if value is None else value


class GarmentRecolorAnchor(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RegionRepair_GarmentRecolorAnchor",
            display_name="Garment Recolor (Anchor)",
            category="region_repair/recolor",
            description=(
                "Recolours one garment across 1-10 product images (a batch, or a list of "
                "images of different sizes) to one colour: a swatch image, a hex code or CSS4/"
                "XKCD colour name, or an instruction such as 'a slightly darker navy'. Works in "
                "CIELAB: hue and chroma move to the target, lightness is remapped so the "
                "garment's mean reaches the target's while folds, texture and highlights keep "
                "their contrast. With use_anchor one transfer fitted on the anchor image is "
                "applied to the whole set; post_process pulls every image onto the anchor's "
                "result. Pixels outside the garment mask are bit-identical. Without masks the "
                "garment is found automatically (mediapipe pose + segmentation + GrabCut, or "
                "the product on a plain background). Outputs are lists, variation-major. "
                "Optional: connect model, vae and conditioning (or clip, which composes "
                "'a <garment> in <colour>') to refine the garment's texture at low denoise; "
                "post_process then pulls the refined set back onto one colour."),
            is_input_list=True,
            inputs=[
                io.Image.Input("images", tooltip="1-10 images of the same garment: a batch, or "
                               "a list (e.g. Load Image Set, in name order) of any sizes."),
                io.String.Input("reference_text", default="", tooltip="Target colour as text: "
                                "#2E5A3B, or a CSS4/XKCD name such as 'forest green'."),
                io.String.Input("instruction", default="", multiline=True, tooltip="Free text, "
                                "e.g. 'make it forest green', 'a darker navy', 'slightly "
                                "lighter': a colour and/or modifiers (darker, lighter, deeper, "
                                "pale, pastel, muted, vivid, warmer, cooler; slightly/much)."),
                io.String.Input("garment_label", default="", tooltip="Which garment, e.g. "
                                "t-shirt, jacket, trousers, dress, hat; empty takes the top. "
                                "Over two layers, coat or jacket takes the outer one, shirt or "
                                "dress the inner one. Used only when no masks are connected; "
                                "the report's notes say when the mask is uncertain."),
                io.Boolean.Input("use_anchor", default=True, tooltip="One colour transfer, "
                                 "fitted on the anchor image, for the whole set."),
                io.Boolean.Input("post_process", default=True, tooltip="Finishing pass: pull "
                                 "every image's garment colour onto the anchor's result."),
                io.Int.Input("anchor_index", default=0, min=0, max=9,
                             tooltip="Which image is the anchor (0 = the first)."),
                io.Int.Input("num_variations", default=1, min=1, max=8, tooltip="Outputs per "
                             "image: the target, then lighter/darker shade steps around it."),
                io.Float.Input("variation_step", default=8.0, min=0.0, max=40.0, step=0.5,
                               tooltip="Lightness step (ΔL*) between shade variations."),
                io.Float.Input("contrast", default=1.0, min=0.1, max=3.0, step=0.05,
                               tooltip="Multiplies the shading kept: the spread of lightness "
                               "inside the garment, output / input, is aimed at 0.8-1.25 times "
                               "this (1 = folds as a dye change keeps them)."),
                io.Combo.Input("processing_size", options=recolor.ProcessingSize,
                               tooltip="A long side, not an area: native keeps each image's "
                               "size (outside pixels bit-identical); 1024/2048/4096 scale each "
                               "image so its long side is that many pixels, first."),
                io.Boolean.Input("add_ai_watermark", default=False, tooltip="Bake an "
                                 "'AI-generated' mark into the bottom-right corner."),
                io.Mask.Input("masks", optional=True, tooltip="Garment masks (1 = garment): "
                              "one per image, or one for all; resized when sizes differ."),
                io.Image.Input("reference_image", optional=True, tooltip="A colour swatch; a "
                               "patterned one gives its dominant colour."),
                *diffusion_inputs(steps=20, cfg=5.0, denoise=0.3),
            ],
            outputs=[
                io.Image.Output("recolored", display_name="images", is_output_list=True),
                io.Mask.Output("garment_masks", display_name="masks", is_output_list=True),
                io.String.Output("report_json", display_name="report"),
                io.String.Output("info_json", display_name="info"),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, **inputs) -> bool | str:  # type: ignore[override]
        texts = [_first(inputs.get(name)) for name in ("reference_text", "instruction")]
        if "reference_image" in inputs or any(text is None for text in texts):
            return True  # a linked input: known only when the prompt runs
        try:
            recolor_target.check_target_inputs(False, *texts)
            garment_mask.region_for_label(_first(inputs.get("garment_label"), ""))
        except ValueError as error:
            return str(error)
        return True

    @classmethod
    @finite_inputs
    def execute(cls, images: list[torch.Tensor], reference_text: list[str],  # type: ignore[override]
                instruction: list[str], garment_label: list[str], use_anchor: list[bool],
                post_process: list[bool], anchor_index: list[int], num_variations: list[int],
                variation_step: list[float], contrast: list[float],
                processing_size: list[str], add_ai_watermark: list[bool], seed: list[int],
                steps: list[int], cfg: list[float], sampler_name: list[str],
                scheduler: list[str], denoise: list[float],
                masks: list[torch.Tensor] | None = None,
                reference_image: list[torch.Tensor] | None = None, model=None, vae=None,
                positive=None, negative=None, clip=None) -> io.NodeOutput:
        device = compute_device()
        frames = [frame.to(device) for batch in images for frame in batch]
        given = [m for mask in masks or [] if not is_placeholder(mask) for m in as_bhw(mask)]
        settings = recolor.RecolorSettings(_first(use_anchor), _first(post_process),
                                           _first(anchor_index), _first(num_variations),
                                           _first(variation_step), _first(contrast))
        label = _first(garment_label, "")
        region = garment_mask.region_for_label(label)
        model, vae, steps = _first(model), _first(vae), _first(steps)
        # Per image: transfer, output, the mask when found here, and sampling steps + stitch.
        step = progress_and_cancel(len(frames) * (2 + (not given)
                                                  + (steps + 1 if model is not None else 0)))
        if model is not None and vae is None:
            raise ValueError("vae: a model is connected, so its VAE is needed too")

        def refine(texts: tuple[str, str]):
            return diffusion_generator(model, vae, *conditioning(
                _first(clip), _first(positive), _first(negative), texts), steps, _first(cfg),
                _first(sampler_name), _first(scheduler), step)

        def find_masks(found_for: list[torch.Tensor]):
            return garment_mask.garment_masks(found_for, region, step=step,
                                              check_cancel=check_interrupt,
                                              outer=garment_mask.prefers_outer(label))

        result = recolor.recolor_garments(
            frames, given or None, _first(reference_image), _first(reference_text),
            _first(instruction), settings, _first(processing_size), _first(add_ai_watermark),
            find_masks, step, refine if model is not None else None,
            recolor.RefineSettings(_first(denoise), _first(seed), label),
            check_cancel=check_interrupt)
        report(cls.hidden.unique_id, result.report["notes"])
        return io.NodeOutput([to_output(image[None]) for image in result.images],
                             [to_output(mask[None]) for mask in result.masks],
                             json.dumps(result.report, indent=1), json.dumps(result.info, indent=1))


NODES = [GarmentRecolorAnchor]
