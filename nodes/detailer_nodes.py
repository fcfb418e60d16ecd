"""Detailer: OctoAI /adetailer in the graph, on Detect Objects' detections."""

from __future__ import annotations

import json

import torch
from comfy_api.latest import io

from ..pipelines.detection import detailer
from ..pipelines.geometry import regions as region_ops
from ._comfy import (
    check_interrupt,
    compute_device,
    finite_inputs,
    progress_and_cancel,
    report,
    to_output,
)
from ._sampling import conditioning, diffusion_generator, diffusion_inputs
from .types import Detections


class Detailer(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RegionRepair_Detailer",
            display_name="Detailer (adetailer)",
            category="region_repair/detect",
            description=(
                "OctoAI adetailer, locally: each detection (or their union) is grown by "
                "mask_dilation, blurred by mask_blur, padded by mask_padding of context "
                "(sliding inward at borders), rescaled to the nearest SD1.5/SDXL resolution, "
                "inpainted at `denoise` (adetailer strength), and stitched back; every pixel "
                "outside the grown, blurred masks is bit-identical. Detections run in order, "
                "each on the previous result. Without a model, a strong blur hides each "
                "detection (offline anonymising). Per-detection prompts: separate them with [SEP]. "
                "blend seamless is the exact mode: only each detection's own shape changes."),
            inputs=[
                io.Image.Input("image", tooltip="The image batch the detections came from."),
                Detections.Input("detections", tooltip="From Detect Objects or SAM Refine."),
                io.String.Input("prompt", default="", multiline=True, tooltip="With clip: "
                                "the prompt; 'a [SEP] b' gives detection 1 'a', detection 2 and "
                                "later 'b'."),
                io.String.Input("negative_prompt", default="", multiline=True,
                                tooltip="With clip: the negative prompt, [SEP] as above."),
                io.Int.Input("mask_dilation", default=4, min=0, max=512,
                             tooltip="Grow each detection's mask by this many pixels, 0-512 "
                             "(adetailer 4). Never negative here: a shrunk mask would leave the "
                             "object's edge unrepaired (Dilate Blur Pad's also shrinks)."),
                io.Int.Input("mask_blur", default=4, min=0, max=256,
                             tooltip="Gaussian blur radius after dilation (adetailer 4)."),
                io.Int.Input("mask_padding", default=32, min=0, max=8192,
                             tooltip="Context pixels around each mask, each side, 0-8192 "
                             "(adetailer 32), as Dilate Blur Pad's."),
                io.Combo.Input("inpainting_base_model", options=detailer.BaseModel,
                               tooltip="sd15 or sdxl: the crop snaps to that model's "
                               "resolutions (the vendor's documented lists)."),
                io.Boolean.Input("union_masks", default=False, tooltip="One inpaint over the "
                                 "union of all detections instead of one per detection."),
                *diffusion_inputs(steps=20, cfg=7.5, denoise=0.9),
                # Last, so workflows saved before it keep their widget order.
                io.Combo.Input("blend", options=[region_ops.Blend.OUTWARD.value,
                                                 region_ops.Blend.SEAMLESS.value,
                                                 region_ops.Blend.INWARD.value,
                                                 region_ops.Blend.HARD.value],
                               default=region_ops.Blend.OUTWARD.value, optional=True,
                               tooltip="outward (adetailer): through the grown, blurred mask; "
                               "pixels outside it are bit-identical. The others keep every "
                               "pixel outside the detection's own shape bit-identical: "
                               + region_ops.BLEND_HELP + "."),
            ],
            outputs=[io.Image.Output("detailed", display_name="image"),
                     io.Int.Output("num_objects_detected", display_name="num_objects_detected"),
                     io.Int.Output("num_objects_inpainted",
                                   display_name="num_objects_inpainted"),
                     io.Int.Output("num_removed_for_safety",
                                   display_name="num_removed_for_safety"),
                     io.String.Output("info", display_name="info")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    @finite_inputs
    def execute(cls, image: torch.Tensor, detections, prompt: str, negative_prompt: str,  # type: ignore[override]
                mask_dilation: int, mask_blur: int, mask_padding: int,
                inpainting_base_model: str, union_masks: bool, seed: int, steps: int,
                cfg: float, sampler_name: str, scheduler: str, denoise: float, model=None,
                vae=None, positive=None, negative=None, clip=None,
                blend: str = region_ops.Blend.OUTWARD.value) -> io.NodeOutput:
        settings = detailer.DetailerSettings(mask_dilation, mask_blur, mask_padding,
                                             inpainting_base_model, union_masks, denoise, seed,
                                             blend)
        objects = [(item.batch_index, item.mask) for item in detections.items]
        jobs = 1 if union_masks and objects else len(objects)
        step = progress_and_cancel(max(jobs, 1) * (steps + 1 if model is not None else 1))
        if model is not None and vae is None:
            raise ValueError("vae: a model is connected, so its VAE is needed too")
        prompts = detailer.split_prompts(prompt)
        negatives = detailer.split_prompts(negative_prompt)

        def generator_for(number: int):
            texts = (detailer.prompt_for(prompts, number), detailer.prompt_for(negatives, number))
            return diffusion_generator(model, vae, *conditioning(clip, positive, negative, texts),
                                       steps, cfg, sampler_name, scheduler, step)
        result = detailer.detail(image.to(compute_device()), objects, settings,
                                 generator_for if model is not None else None, step,
                                 check_interrupt)
        report(cls.hidden.unique_id, [f"{result.num_objects_inpainted} of "
                                      f"{result.num_objects_detected} objects inpainted"])
        info = detailer.info_records(result, settings, image.shape[0], detections.detector,
                                     "diffusion" if model is not None else "blur")
        return io.NodeOutput(to_output(result.image), result.num_objects_detected,
                             result.num_objects_inpainted, result.num_removed_for_safety,
                             json.dumps(info))


NODES = [Detailer]
