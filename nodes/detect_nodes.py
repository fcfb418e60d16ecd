"""Detection nodes: Detect Objects (OctoAI adetailer's detectors) and SAM Refine."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..pipelines.detection import detect as detect_ops
from ..pipelines.detection import sam as sam_ops
from ..pipelines.geometry import masks as mask_ops
from ._comfy import (
    check_interrupt,
    compute_device,
    finite_inputs,
    model_files,
    model_folders,
    progress_and_cancel,
    register_model_folder,
    report,
    to_output,
)
from .types import Detections

NO_FILE = "(none)"
register_model_folder("ultralytics", (".pt",))
register_model_folder("sams", sam_ops.CHECKPOINT_EXTENSIONS)


def _outputs(found: detect_ops.Detections) -> io.NodeOutput:
    masks = found.object_masks()
    if not len(masks):  # a MASK batch cannot be empty downstream; one blank mask says "none"
        masks = torch.zeros(1, found.height, found.width)
    return io.NodeOutput(found, to_output(found.union_mask()), to_output(masks))


# Output ids differ from SAM Refine's input ids (ComfyUI requires it); the names shown match.
OUTPUTS = [Detections.Output("found", display_name="detections"),
           io.Mask.Output("union_mask", display_name="mask"),
           io.Mask.Output("object_masks", display_name="object_masks")]


class Detect(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RegionRepair_Detect",
            display_name="Detect Objects",
            category="region_repair/detect",
            description=(
                "Finds faces, eyes, hands or people, offline (OctoAI adetailer's `detector`). "
                "mediapipe: face short/full range (boxes), face mesh (a face-shaped mask), eyes "
                "with iris, hands, person. Haar: faces and eyes without mediapipe. YOLO: your "
                "own .pt files in models/ultralytics (needs the ultralytics package). Outputs "
                "the detections for a detailer or SAM Refine, their union as one MASK, and one "
                "MASK per object. Nothing is downloaded."),
            inputs=[
                io.Image.Input("image", tooltip="The image batch to search."),
                io.Combo.Input("detector", options=detect_ops.Detector,
                               default=detect_ops.Detector.FACE_FULL_MEDIAPIPE,
                               tooltip="*_mediapipe need mediapipe 0.10.21; *_haar need only "
                               "OpenCV 4; face_yolov8n / hand_yolov8n need that .pt in "
                               "models/ultralytics; yolo_file uses yolo_model."),
                io.Float.Input("confidence", default=0.3, min=0.0, max=1.0, step=0.01,
                               tooltip="Minimum detection score (adetailer default 0.3); lower "
                               "finds more."),
                io.Int.Input("max_num_detections", default=0, min=0, max=1000,
                             tooltip="Keep at most this many per image, the most confident; "
                             "0 keeps all."),
                io.Combo.Input("sort_by", options=detect_ops.SortOrder,
                               tooltip="Output (and repair) order within an image: confidence, "
                               "area (largest first) or left_to_right."),
                io.Float.Input("min_area_ratio", default=0.0, min=0.0, max=1.0, step=0.001,
                               tooltip="Drop objects whose box is smaller than this share of "
                               "the image."),
                io.Float.Input("max_area_ratio", default=1.0, min=0.0, max=1.0, step=0.001,
                               tooltip="Drop objects whose box is larger than this share of "
                               "the image."),
                io.Combo.Input("yolo_model",
                               options=[NO_FILE, *model_files("ultralytics")],
                               tooltip="For detector yolo_file: a YOLOv8 .pt file from "
                               "models/ultralytics (bbox or segm)."),
            ],
            outputs=OUTPUTS,
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    @finite_inputs
    def execute(cls, image: torch.Tensor, detector: str, confidence: float,  # type: ignore[override]
                max_num_detections: int, sort_by: str, min_area_ratio: float,
                max_area_ratio: float, yolo_model: str = NO_FILE) -> io.NodeOutput:
        settings = detect_ops.DetectSettings(confidence, max_num_detections, sort_by,
                                             min_area_ratio, max_area_ratio)
        weights = None
        if detect_ops.Detector(detector) in detect_ops.YOLO_DETECTORS:
            weights = detect_ops.yolo_weights(detector, yolo_model, model_files("ultralytics"),
                                              model_folders("ultralytics"))
        found = detect_ops.detect(image, detector, settings, weights,
                                  step=progress_and_cancel(image.shape[0]),
                                  check_cancel=check_interrupt)
        report(cls.hidden.unique_id, found.notes + detect_ops.detection_summary(found))
        return _outputs(found)


class SAMRefine(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RegionRepair_SAMRefine",
            display_name="SAM Refine",
            category="region_repair/detect",
            description=(
                "Turns boxes into shape masks with Segment Anything: each detection's box (or "
                "each connected part of a mask) prompts SAM, optionally with points. Points "
                "alone segment one object per image. Loads a checkpoint you put in "
                "models/sams (the official ViT-B/L/H files or compatible); nothing is "
                "downloaded."),
            inputs=[
                io.Image.Input("image", tooltip="The image the detections or mask belong to."),
                io.Combo.Input("sam_model", options=[NO_FILE, *model_files("sams")],
                               tooltip="A segment-anything checkpoint in models/sams, e.g. "
                               "sam_vit_b_01ec64.pth."),
                Detections.Input("detections", optional=True,
                                 tooltip="Boxes to segment (from Detect Objects)."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Without detections: each connected part's box is "
                              "segmented."),
                io.String.Input("points", default="", multiline=True,
                                tooltip="Optional 'x, y' or 'x, y, label' per line, pixels; "
                                "label 1 = object (default), 0 = background. With boxes, "
                                "points inside a box join its prompt."),
                io.Boolean.Input("clip_to_box", default=True,
                                 tooltip="Keep each mask inside its box."),
            ],
            outputs=OUTPUTS,
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    @finite_inputs
    def execute(cls, image: torch.Tensor, sam_model: str, points: str,  # type: ignore[override]
                clip_to_box: bool, detections: detect_ops.Detections | None = None,
                mask: torch.Tensor | None = None) -> io.NodeOutput:
        files = model_files("sams")
        if sam_model not in files:
            raise ValueError(sam_ops.missing_checkpoint_message(
                model_folders("sams"), None if sam_model == NO_FILE else sam_model))
        batch, height, width = image.shape[:3]
        clicks = sam_ops.parse_points(points, width, height)
        notes: list[str] = []
        if detections is None and mask is not None:
            fitted, notes = mask_ops.fit_to_image(mask, batch, height, width)
            detections = sam_ops.boxes_from_mask(fitted)
        sam = sam_ops.load_sam(files[sam_model], compute_device())
        if detections is None:
            found = sam_ops.from_points(sam, image, clicks, progress_and_cancel(batch))
        else:
            if (detections.batch_size, detections.height, detections.width) != (batch, height,
                                                                                 width):
                raise ValueError(f"detections: found on {detections.batch_size} image(s) of "
                                 f"{detections.width}x{detections.height}; image is {batch} of "
                                 f"{width}x{height}")
            found = sam_ops.refine(sam, image, detections, clicks, clip_to_box,
                                   progress_and_cancel(max(len(detections), 1)))
        report(cls.hidden.unique_id, notes + found.notes)
        return _outputs(found)


NODES = [Detect, SAMRefine]
