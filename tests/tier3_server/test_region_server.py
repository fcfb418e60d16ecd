"""MaskFromBBox -> DilateBlurPad -> an edit of the crops -> StitchRegion, through POST /prompt on
a real photo: only pixels inside the box may change, and they must."""

from __future__ import annotations

import io
import shutil
import uuid

import numpy as np
import pytest
from PIL import Image

from pack_paths import PACK_ROOT

pytestmark = pytest.mark.server

PHOTO = PACK_ROOT / "assets" / "photos" / "astronaut.png"
BOX = (0.35, 0.13, 0.19, 0.19)  # the face


@pytest.fixture(scope="module")
def photo(server):
    shutil.copy(PHOTO, server.base_dir / "input" / PHOTO.name)
    return np.asarray(Image.open(PHOTO).convert("RGB"))


def chain(resize_mode="multiple_of_64", region_mode="union", blend="inward", bbox=BOX):
    return {
        "load": {"class_type": "LoadImage", "inputs": {"image": PHOTO.name}},
        "box": {"class_type": "RegionRepair_MaskFromBBox",
                "inputs": {"image": ["load", 0], "bbox": ", ".join(map(str, bbox)),
                           "units": "normalized"}},
        "pad": {"class_type": "RegionRepair_DilateBlurPad",
                "inputs": {"image": ["load", 0], "mask": ["box", 0], "mask_dilation": 4,
                           "mask_blur": 4, "window_mode": "padding", "mask_padding": 32,
                           "context_factor": 3.0, "region_mode": region_mode,
                           "merge_overlapping": False, "resize_mode": resize_mode,
                           "processing_size": 256, "buckets": "512x512"}},
        "edit": {"class_type": "ImageInvert", "inputs": {"image": ["pad", 0]}},
        "stitch": {"class_type": "RegionRepair_StitchRegion",
                   "inputs": {"image": ["load", 0], "region": ["pad", 2], "crops": ["edit", 0],
                              "blend": blend, "feather": -1}},
        "save": {"class_type": "SaveImage",
                 "inputs": {"images": ["stitch", 0], "filename_prefix": uuid.uuid4().hex}},
        "save_crops": {"class_type": "SaveImage",
                       "inputs": {"images": ["edit", 0], "filename_prefix": uuid.uuid4().hex}},
    }


def box_mask(shape, bbox):
    height, width = shape[:2]
    x, y, w, h = bbox
    inside = np.zeros((height, width), bool)
    inside[round(y * height):round((y + h) * height), round(x * width):round((x + w) * width)] = 1
    return inside


def decode(png):
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


@pytest.mark.parametrize("resize_mode", ["keep", "multiple_of_64", "sd15_buckets"])
def test_only_pixels_inside_the_box_change(server, photo, resize_mode):
    history = server.run(chain(resize_mode))
    (result,) = [decode(png) for png in server.output_files(history, "save")]
    assert result.shape == photo.shape
    inside = box_mask(photo.shape, BOX)
    np.testing.assert_array_equal(result[~inside], photo[~inside])
    changed = (result != photo).any(axis=-1)
    assert changed[inside].mean() > 0.9, "the inverted crop did not reach the masked pixels"
    crops = [decode(png) for png in server.output_files(history, "save_crops")]
    expected = {"keep": None, "multiple_of_64": (256, 256, 3), "sd15_buckets": (512, 512, 3)}
    if expected[resize_mode]:
        assert crops[0].shape == expected[resize_mode]


def test_per_object_regions_each_get_a_crop_and_stay_inside_their_boxes(server, photo):
    boxes = "0.05, 0.05, 0.1, 0.1\n0.7, 0.7, 0.2, 0.2"
    prompt = chain(region_mode="per_object")
    prompt["box"]["inputs"]["bbox"] = boxes
    history = server.run(prompt)
    (result,) = [decode(png) for png in server.output_files(history, "save")]
    crops = server.output_files(history, "save_crops")
    assert len(crops) == 2
    inside = box_mask(photo.shape, (0.05, 0.05, 0.1, 0.1)) | box_mask(photo.shape,
                                                                       (0.7, 0.7, 0.2, 0.2))
    np.testing.assert_array_equal(result[~inside], photo[~inside])
    assert (result != photo).any(axis=-1)[inside].mean() > 0.9
