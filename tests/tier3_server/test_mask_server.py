"""MaskFromBBox through POST /prompt on the real server, checked pixel by pixel."""

from __future__ import annotations

import io
import uuid

import numpy as np
import pytest
from PIL import Image

from comfy_server import PromptError

pytestmark = pytest.mark.server


def bbox_prompt(bbox, units="normalized", width=64, height=48, batch=2):
    return {
        "image": {"class_type": "EmptyImage",
                  "inputs": {"width": width, "height": height, "batch_size": batch, "color": 0}},
        "mask": {"class_type": "RegionRepair_MaskFromBBox",
                 "inputs": {"image": ["image", 0], "bbox": bbox, "units": units}},
        "preview": {"class_type": "MaskToImage", "inputs": {"mask": ["mask", 0]}},
        "save": {"class_type": "SaveImage",
                 "inputs": {"images": ["preview", 0], "filename_prefix": uuid.uuid4().hex}},
    }


def test_the_node_is_listed_with_its_inputs(server):
    info = server.get_json("/object_info/RegionRepair_MaskFromBBox")["RegionRepair_MaskFromBBox"]
    assert info["output"] == ["MASK"]
    assert set(info["input"]["required"]) == {"image", "bbox", "units"}
    assert info["input"]["required"]["units"][1]["options"] == ["normalized", "pixels"]


def test_mask_from_bbox_output_matches_pixel_by_pixel(server):
    history = server.run(bbox_prompt("0.25, 0.5, 0.5, 0.25\n0, 0, 0.125, 0.125"))
    pngs = server.output_files(history, "save")
    expected = np.zeros((48, 64), np.uint8)
    expected[24:36, 16:48] = 255
    expected[0:6, 0:8] = 255
    assert len(pngs) == 2
    for png in pngs:
        image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        assert image.shape == (48, 64, 3)
        for channel in range(3):
            np.testing.assert_array_equal(image[..., channel], expected)


def test_an_out_of_range_box_fails_with_a_message_naming_it(server):
    with pytest.raises(PromptError) as error:
        server.run(bbox_prompt("0.5, 0.5, 0.75, 0.25"))
    messages = str(error.value)
    assert "execution_error" in messages
    assert "x + w = 1.25 exceeds 1" in messages


def test_an_unknown_units_value_fails_with_the_allowed_values(server):
    # ComfyUI 0.3.75 queues V3 combo values unchecked, so the node itself must say what is wrong.
    with pytest.raises(PromptError) as error:
        server.run(bbox_prompt("0, 0, 1, 1", units="percent"))
    assert "units = 'percent'; allowed: 'normalized', 'pixels'" in str(error.value)


def test_a_nan_float_from_json_is_refused_naming_the_input(server):
    """JSON's NaN passes ComfyUI's min/max check; the node itself refuses it."""
    prompt = bbox_prompt("0.25, 0.5, 0.5, 0.25")
    prompt["clean"] = {"class_type": "RegionRepair_CleanMask", "inputs": {
        "mask": ["mask", 0], "polarity": "white = edit", "invert": False,
        "threshold": float("nan"), "stabilize": 0.02}}
    prompt["preview"]["inputs"]["mask"] = ["clean", 0]
    with pytest.raises(PromptError) as error:
        server.run(prompt)
    assert "threshold: must be a finite number, got nan" in str(error.value)


def test_a_box_list_mixing_boxes_and_numbers_names_the_item(server):
    with pytest.raises(PromptError) as error:
        server.run(bbox_prompt("[[0.1, 0.1, 0.2, 0.2], 0.5]"))
    assert "bbox[1]: expected a box [x, y, w, h], got 0.5" in str(error.value)
