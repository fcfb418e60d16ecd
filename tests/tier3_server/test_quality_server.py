"""QualityCheck through POST /prompt on a real photo: LoadImage -> MaskFromBBox -> DilateBlurPad
-> ImageInvert -> StitchRegion gives an exact blend; ImageCrop + ImagePadForOutpaint make a copy
whose whole frame moved 8 px (a vendor-style framing shift); both go into QualityCheck."""

from __future__ import annotations

import io
import json
import shutil
import uuid

import numpy as np
import pytest
from PIL import Image

from pack_paths import PACK_ROOT

pytestmark = pytest.mark.server

PHOTO = PACK_ROOT / "assets" / "photos" / "astronaut.png"  # 512 x 512
BOX = "0.35, 0.13, 0.19, 0.19"  # the face


def workflow(info: str | None = None) -> dict:
    prompt = {
        "load": {"class_type": "LoadImage", "inputs": {"image": PHOTO.name}},
        "box": {"class_type": "RegionRepair_MaskFromBBox",
                "inputs": {"image": ["load", 0], "bbox": BOX, "units": "normalized"}},
        "pad": {"class_type": "RegionRepair_DilateBlurPad",
                "inputs": {"image": ["load", 0], "mask": ["box", 0], "mask_dilation": 4,
                           "mask_blur": 4, "window_mode": "padding", "mask_padding": 32,
                           "context_factor": 3.0, "region_mode": "union",
                           "merge_overlapping": False, "resize_mode": "keep",
                           "processing_size": 512, "buckets": "512x512"}},
        "edit": {"class_type": "ImageInvert", "inputs": {"image": ["pad", 0]}},
        "stitch": {"class_type": "RegionRepair_StitchRegion",
                   "inputs": {"image": ["load", 0], "region": ["pad", 2], "crops": ["edit", 0],
                              "blend": "inward", "feather": -1}},
        "crop": {"class_type": "ImageCrop",
                 "inputs": {"image": ["stitch", 0], "width": 504, "height": 512, "x": 8, "y": 0}},
        "moved": {"class_type": "ImagePadForOutpaint",
                  "inputs": {"image": ["crop", 0], "left": 0, "top": 0, "right": 8, "bottom": 0,
                             "feathering": 0}},
        "batch": {"class_type": "ImageBatch",
                  "inputs": {"image1": ["moved", 0], "image2": ["stitch", 0]}},
        "check": {"class_type": "RegionRepair_QualityCheck",
                  "inputs": {"original": ["load", 0], "candidates": ["batch", 0],
                             "mask": ["box", 0], "max_shift_px": 1.0,
                             "max_scale_drift_percent": 0.5, "max_outside_mean": 1.0,
                             "max_seam_delta_e": 3.0, "max_seam_gradient": 3.0,
                             "seam_width": 4, "min_reference_similarity": 0.5,
                             "max_target_delta_e": 3.0, "max_color_spread": 2.0,
                             "max_residue": 0.6}},
        "show": {"class_type": "PreviewAny", "inputs": {"source": ["check", 0]}},
        "show_order": {"class_type": "PreviewAny", "inputs": {"source": ["check", 4]}},
        "save_best": {"class_type": "SaveImage",
                      "inputs": {"images": ["check", 2], "filename_prefix": uuid.uuid4().hex}},
        "save_sorted": {"class_type": "SaveImage",
                        "inputs": {"images": ["check", 1], "filename_prefix": uuid.uuid4().hex}},
    }
    if info is not None:
        prompt["info"] = {"class_type": "PrimitiveStringMultiline", "inputs": {"value": info}}
        prompt["check"]["inputs"]["info"] = ["info", 0]
    return prompt


def decode(png):
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


@pytest.fixture(scope="module")
def photo(server):
    shutil.copy(PHOTO, server.base_dir / "input" / PHOTO.name)
    return np.asarray(Image.open(PHOTO).convert("RGB"))


def test_quality_check_flags_the_moved_frame_and_returns_the_exact_blend(server, photo):
    history = server.run(workflow())
    report = json.loads(history["outputs"]["show"]["text"][0])
    moved, exact = report["candidates"]
    assert "framing_shift" in moved["reasons"] and "outside_mask_changed" in moved["reasons"]
    assert moved["scores"]["shift_xy"][0] == pytest.approx(-8, abs=0.2)
    assert exact["scores"]["outside_max"] == 0 and exact["scores"]["shift_px"] == 0
    assert report["best"] == [1]
    assert history["outputs"]["show_order"]["text"][0] == "1, 0"
    (best,) = [decode(png) for png in server.output_files(history, "save_best")]
    sorted_images = [decode(png) for png in server.output_files(history, "save_sorted")]
    assert len(sorted_images) == 2 and np.array_equal(sorted_images[0], best)
    # The best is the exact blend: bit-identical to the photo outside the box.
    changed = (best != photo).any(axis=-1)
    assert changed.any() and not changed[:, :150].any() and not changed[:, 300:].any()


def test_the_info_json_adds_no_reference(server, photo):
    entry = {"schema": "region_repair.info/1", "node": "Test", "candidate_index": 0, "seed": 0,
             "engine": "test", "mode": None, "blend": "mask", "references_used": False,
             "reference_count": 0, "notes": []}
    info = [{**entry, "image_index": 0, "candidate_index": j} for j in range(2)]
    history = server.run(workflow(json.dumps(info)))
    report = json.loads(history["outputs"]["show"]["text"][0])
    assert all("no_reference" in e["reasons"] for e in report["candidates"])
    assert report["best"] == [1]
