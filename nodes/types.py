"""The pack's own socket types."""

from __future__ import annotations

from comfy_api.latest import io

# Carries pipelines.geometry.regions.Regions: the windows of DilateBlurPad, consumed by the stitch.
Region = io.Custom("RR_REGION")

# Carries pipelines.detection.detect.Detections: per-object boxes, confidences, labels and shape
# masks from Detect Objects or SAM Refine, consumed by the detailer and by SAM Refine.
Detections = io.Custom("RR_DETECTIONS")
