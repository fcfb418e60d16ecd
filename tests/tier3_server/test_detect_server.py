"""Detect Objects and SAM Refine through POST /prompt on a real photo, with a tiny random SAM
checkpoint written into the server's models/sams folder."""

from __future__ import annotations

import io
import shutil
import uuid

import numpy as np
import pytest
from PIL import Image

import tiny_sam
from pack_paths import PACK_ROOT

pytestmark = pytest.mark.server

PHOTO = PACK_ROOT / "assets" / "photos" / "astronaut.png"
FACE = (177, 82, 272, 177)  # the short-range detector's box, x0, y0, x1, y1 (within 3 px)


@pytest.fixture(scope="module")
def photo(server):
    shutil.copy(PHOTO, server.base_dir / "input" / PHOTO.name)
    tiny_sam.write_tiny_sam(server.base_dir / "models" / "sams" / "tiny_sam.pth")
    return np.asarray(Image.open(PHOTO).convert("RGB"))


def detect(detector: str, **overrides) -> dict:
    inputs = {"image": ["load", 0], "detector": detector, "confidence": 0.3,
              "max_num_detections": 0, "sort_by": "confidence", "min_area_ratio": 0.0,
              "max_area_ratio": 1.0, "yolo_model": "(none)"} | overrides
    return {"load": {"class_type": "LoadImage", "inputs": {"image": PHOTO.name}},
            "detect": {"class_type": "RegionRepair_Detect", "inputs": inputs}}


def save_mask(name: str, source: list) -> dict:
    return {f"{name}_image": {"class_type": "MaskToImage", "inputs": {"mask": source}},
            name: {"class_type": "SaveImage", "inputs": {"images": [f"{name}_image", 0],
                                                         "filename_prefix": uuid.uuid4().hex}}}


def masks(server, history, node_id) -> list[np.ndarray]:
    return [np.asarray(Image.open(io.BytesIO(png)).convert("L")) > 127
            for png in server.output_files(history, node_id)]


def bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def test_detect_finds_the_face_and_its_eyes(server, photo):
    prompt = detect("face_short_mediapipe") | save_mask("union", ["detect", 1])
    (union,) = masks(server, server.run(prompt), "union")
    assert all(abs(a - b) <= 3 for a, b in zip(bbox(union), FACE))
    assert union.sum() == (bbox(union)[2] - bbox(union)[0]) * (bbox(union)[3] - bbox(union)[1])
    prompt = detect("eyes_mesh_mediapipe") | save_mask("eyes", ["detect", 2])
    eyes = masks(server, server.run(prompt), "eyes")
    assert len(eyes) == 2
    centres = sorted((bbox(eye)[0] + bbox(eye)[2]) / 2 for eye in eyes)
    assert 195 < centres[0] < 215 and 237 < centres[1] < 257


def test_sam_refine_turns_the_face_box_into_a_shape_inside_it(server, photo):
    prompt = detect("face_haar") | {
        "sam": {"class_type": "RegionRepair_SAMRefine",
                "inputs": {"image": ["load", 0], "sam_model": "tiny_sam.pth",
                           "detections": ["detect", 0], "points": "", "clip_to_box": True}},
    } | save_mask("box", ["detect", 1]) | save_mask("shape", ["sam", 1])
    history = server.run(prompt)
    (box,), (shape,) = masks(server, history, "box"), masks(server, history, "shape")
    assert shape.any() and not (shape & ~box).any()


def test_sam_refine_without_a_checkpoint_fails_clearly(server, photo):
    from comfy_server import PromptError

    prompt = detect("face_haar") | {
        "sam": {"class_type": "RegionRepair_SAMRefine",
                "inputs": {"image": ["load", 0], "sam_model": "missing.pth",
                           "detections": ["detect", 0], "points": "", "clip_to_box": True}},
    } | save_mask("shape", ["sam", 1])
    with pytest.raises(PromptError, match="SAM checkpoint 'missing.pth' not found.*models/sams"):
        server.run(prompt)
