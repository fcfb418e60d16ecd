"""Detect Objects -> Detailer through POST /prompt on a real photo with the tiny SD1.5 inpaint
checkpoint: counts, only the detected regions change, and every pixel outside the grown, blurred
masks is bit-identical; per-object and union modes; the embedded (no model) variant."""

from __future__ import annotations

import io
import json
import shutil
import uuid

import numpy as np
import pytest
import torch
from PIL import Image

import tiny_models
from pack_paths import PACK_ROOT
from region_repair.pipelines.geometry.masks import grow_and_blur
from workflow_api import fill_defaults

pytestmark = pytest.mark.server

PHOTO = PACK_ROOT / "assets" / "photos" / "hand_call.jpg"  # two bare hands
CHECKPOINT = "tiny_sd15_inpaint_detailer.safetensors"


@pytest.fixture(scope="module")
def photo(server):
    shutil.copy(PHOTO, server.base_dir / "input" / PHOTO.name)
    tiny_models.write_sd15_checkpoint(server.base_dir / "models" / "checkpoints" / CHECKPOINT,
                                      inpaint=True)
    return np.asarray(Image.open(PHOTO).convert("RGB"))


def prompt_for(union: bool, with_model: bool = True) -> dict:
    detailer = {"image": ["load", 0], "detections": ["detect", 0], "prompt": "a hand [SEP] "
                "another hand", "negative_prompt": "", "mask_dilation": 4, "mask_blur": 4,
                "mask_padding": 32, "inpainting_base_model": "sd15", "union_masks": union,
                "seed": 3, "steps": 2, "cfg": 7.5, "sampler_name": "euler",
                "scheduler": "normal", "denoise": 0.9}
    prompt = {
        "load": {"class_type": "LoadImage", "inputs": {"image": PHOTO.name}},
        "detect": {"class_type": "RegionRepair_Detect", "inputs": {
            "image": ["load", 0], "detector": "hands_mediapipe", "confidence": 0.3,
            "max_num_detections": 0, "sort_by": "left_to_right", "min_area_ratio": 0.0,
            "max_area_ratio": 1.0, "yolo_model": "(none)"}},
        "detail": {"class_type": "RegionRepair_Detailer", "inputs": detailer},
        "save": {"class_type": "SaveImage", "inputs": {"images": ["detail", 0],
                                                       "filename_prefix": uuid.uuid4().hex}},
        "masks_image": {"class_type": "MaskToImage", "inputs": {"mask": ["detect", 2]}},
        "masks": {"class_type": "SaveImage", "inputs": {"images": ["masks_image", 0],
                                                        "filename_prefix": uuid.uuid4().hex}},
        "counts": {"class_type": "PreviewAny", "inputs": {"source": ["detail", 4]}},
    }
    if with_model:
        prompt["ckpt"] = {"class_type": "CheckpointLoaderSimple",
                          "inputs": {"ckpt_name": CHECKPOINT}}
        prompt["cond"] = {"class_type": "RegionRepairTest_ZeroConditioning", "inputs": {}}
        detailer.update(model=["ckpt", 0], vae=["ckpt", 2], positive=["cond", 0],
                        negative=["cond", 0])
    return prompt


def decode(png: bytes, mode: str = "RGB") -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert(mode))


@pytest.mark.parametrize("union, with_model", [(False, True), (True, True), (False, False)])
def test_detailer_changes_only_the_detected_hands(server, photo, union, with_model):
    history = server.run(prompt_for(union, with_model))
    (result,) = [decode(png) for png in server.output_files(history, "save")]
    hands = [decode(png, "L") > 0 for png in server.output_files(history, "masks")]
    (info,) = json.loads(history["outputs"]["counts"]["text"][0])  # one record per image
    assert len(hands) == 2
    assert info["schema"] == "region_repair.info/1" and info["image_index"] == 0
    assert info["num_objects_detected"] == 2 and info["num_objects_inpainted"] == 2
    assert len(info["windows"]) == (1 if union else 2)
    assert info["blend"] == "window" and info["engine"] == ("diffusion" if with_model else "blur")
    grown = grow_and_blur(torch.from_numpy(np.stack(hands)).float(), 4, 4).amax(0) > 0
    allowed = grown.numpy()
    assert result.shape == photo.shape
    assert np.array_equal(result[~allowed], photo[~allowed])
    for hand in hands:
        assert (result[hand] != photo[hand]).any(-1).mean() > 0.5


def test_detailer_into_quality_check(server, photo):
    """The Detailer's info goes straight into Quality Check, which reads its records: with the
    seamless blend the outside of the detections must be exactly unchanged, and is."""
    prompt = prompt_for(union=False)
    prompt["detail"]["inputs"]["blend"] = "seamless"
    prompt["qc"] = {"class_type": "RegionRepair_QualityCheck", "inputs": {
        "original": ["load", 0], "candidates": ["detail", 0], "mask": ["detect", 1],
        "info": ["detail", 4]}}
    prompt["report"] = {"class_type": "PreviewAny", "inputs": {"source": ["qc", 0]}}
    history = server.run(fill_defaults(prompt, server.get_json("/object_info")))
    (info,) = json.loads(history["outputs"]["counts"]["text"][0])
    assert info["blend"] == "mask"
    (candidate,) = json.loads(history["outputs"]["report"]["text"][0])["candidates"]
    assert candidate["scores"]["outside_max"] == 0
    assert "outside_mask_changed" not in candidate["reasons"]
