"""GarmentRecolorAnchor through POST /prompt on the real server: with and without masks, each
target form (hex, name, swatch image, instruction), a list of images of different sizes, and the
400 for a prompt with no target."""

from __future__ import annotations

import io
import shutil
import uuid

import numpy as np
import pytest
import skimage.color
from PIL import Image

from comfy_server import PromptError
from pack_paths import PACK_ROOT

pytestmark = pytest.mark.server

PHOTOS = PACK_ROOT / "assets" / "photos"
BOX = (0.05, 0.55, 0.6, 0.45)  # the lower left of the astronaut's suit


@pytest.fixture(scope="module")
def inputs(server):
    folder = server.base_dir / "input"
    for name in ("astronaut.png", "coffee.png"):
        shutil.copy(PHOTOS / name, folder / name)
    # A set of one garment at two sizes, for the set loaders.
    shots = folder / "suit_set"
    shots.mkdir(exist_ok=True)
    astronaut = Image.open(PHOTOS / "astronaut.png").convert("RGB")
    astronaut.save(shots / "a_full.png")
    astronaut.crop((0, 128, 384, 512)).resize((288, 288), Image.BICUBIC).save(shots / "b_crop.png")
    return np.asarray(astronaut)


def decode(png):
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def recolor_prompt(with_mask=True, **target):
    prompt = {
        "load": {"class_type": "LoadImage", "inputs": {"image": "astronaut.png"}},
        "recolor": {"class_type": "RegionRepair_GarmentRecolorAnchor", "inputs": {
            "images": ["load", 0], "reference_text": "", "instruction": "",
            "garment_label": "", "use_anchor": True, "post_process": True, "anchor_index": 0,
            "num_variations": 1, "variation_step": 8.0, "contrast": 1.0,
            "processing_size": "native", "add_ai_watermark": False, "seed": 0, "steps": 20,
            "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 0.3}},
        "save": {"class_type": "SaveImage", "inputs": {"images": ["recolor", 0],
                                                       "filename_prefix": uuid.uuid4().hex}},
        "mask_image": {"class_type": "MaskToImage", "inputs": {"mask": ["recolor", 1]}},
        "save_mask": {"class_type": "SaveImage", "inputs": {"images": ["mask_image", 0],
                                                            "filename_prefix": uuid.uuid4().hex}},
    }
    if with_mask:
        prompt["box"] = {"class_type": "RegionRepair_MaskFromBBox",
                         "inputs": {"image": ["load", 0], "bbox": ", ".join(map(str, BOX)),
                                    "units": "normalized"}}
        prompt["recolor"]["inputs"]["masks"] = ["box", 0]
    for key, value in target.items():
        if key == "swatch":
            prompt["swatch"] = {"class_type": "LoadImage", "inputs": {"image": value}}
            prompt["recolor"]["inputs"]["reference_image"] = ["swatch", 0]
        else:
            prompt["recolor"]["inputs"][key] = value
    return prompt


def mean_lab(image, inside):
    return skimage.color.rgb2lab(image)[inside].mean(0)


def box_mask(shape):
    height, width = shape[:2]
    x, y, w, h = BOX
    inside = np.zeros((height, width), bool)
    inside[round(y * height):round((y + h) * height), round(x * width):round((x + w) * width)] = 1
    return inside


@pytest.mark.parametrize("target", [{"reference_text": "#2E5A3B"},
                                    {"reference_text": "forest green"},
                                    {"swatch": "coffee.png"},
                                    {"instruction": "make it a darker navy"}],
                         ids=["hex", "name", "swatch", "instruction"])
def test_with_a_mask_only_the_mask_changes(server, inputs, target):
    history = server.run(recolor_prompt(**target))
    (result,) = [decode(png) for png in server.output_files(history, "save")]
    inside = box_mask(inputs.shape)
    np.testing.assert_array_equal(result[~inside], inputs[~inside])
    assert (result != inputs).any(-1)[inside].mean() > 0.5


def test_hex_target_reaches_its_color_on_the_masked_suit(server, inputs):
    history = server.run(recolor_prompt(reference_text="#2E5A3B"))
    (result,) = [decode(png) for png in server.output_files(history, "save")]
    inside = box_mask(inputs.shape)
    target = skimage.color.rgb2lab(np.array([[[0x2E, 0x5A, 0x3B]]], np.uint8))[0, 0]
    lab = mean_lab(result, inside)
    assert np.linalg.norm(lab - target) < 2.5


def test_without_a_mask_the_garment_is_found_and_only_it_changes(server, inputs):
    history = server.run(recolor_prompt(with_mask=False, reference_text="steel blue",
                                        garment_label="suit"))
    (result,) = [decode(png) for png in server.output_files(history, "save")]
    (mask,) = [decode(png)[..., 0] > 127 for png in server.output_files(history, "save_mask")]
    assert 0.1 < mask.mean() < 0.5
    np.testing.assert_array_equal(result[~mask], inputs[~mask])
    assert (result != inputs).any(-1)[mask].mean() > 0.9


@pytest.mark.parametrize("loader", ["RegionRepair_LoadImageSet", "LoadImageDataSetFromFolder"])
def test_a_list_of_two_sizes_gives_two_outputs_per_variation(server, inputs, loader):
    prompt = recolor_prompt(with_mask=False, reference_text="#B03A2E")
    prompt["load"] = {"class_type": loader, "inputs": {"folder": "suit_set"}}
    prompt["recolor"]["inputs"]["num_variations"] = 2
    history = server.run(prompt)
    results = [decode(png) for png in server.output_files(history, "save")]
    shapes = [r.shape[:2] for r in results]
    if loader == "RegionRepair_LoadImageSet":  # the names' order: a_full, then b_crop
        assert shapes == [(512, 512), (288, 288)] * 2
    else:  # ComfyUI's loader lists files in directory order; variation 1 repeats it
        assert sorted(shapes[:2]) == [(288, 288), (512, 512)] and shapes[2:] == shapes[:2]
    assert len(server.output_files(history, "save_mask")) == 2


def test_no_target_is_refused_when_queued(server, inputs):
    with pytest.raises(PromptError) as error:
        server.post_prompt(recolor_prompt())
    text = str(error.value.details)
    assert all(name in text for name in ("reference_image", "reference_text", "instruction"))
