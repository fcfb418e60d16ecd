"""GarmentRecolorAnchor with diffusion refinement through POST /prompt: the tiny SD1.5 inpaint
checkpoint, zero conditioning, one small image. Only the masked garment changes, and the anchor
correction brings the refined garment back onto the target."""

from __future__ import annotations

import io
import json
import uuid

import numpy as np
import pytest
import skimage.color
from PIL import Image

import tiny_models
from pack_paths import PACK_ROOT

pytestmark = pytest.mark.server

CHECKPOINT = "tiny_sd15_inpaint_recolor.safetensors"
IMAGE = "astronaut_small_recolor.png"
BOX = (0.05, 0.55, 0.6, 0.45)  # the lower left of the astronaut's suit


@pytest.fixture(scope="module")
def photo(server):
    tiny_models.write_sd15_checkpoint(server.base_dir / "models" / "checkpoints" / CHECKPOINT,
                                      inpaint=True)
    small = Image.open(PACK_ROOT / "assets" / "photos" / "astronaut.png").convert("RGB")
    small = small.resize((128, 128), Image.BICUBIC)
    small.save(server.base_dir / "input" / IMAGE)
    return np.asarray(small)


def decode(png):
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_refined_recolor_changes_only_the_mask_and_lands_on_target(server, photo):
    prompt = {
        "load": {"class_type": "LoadImage", "inputs": {"image": IMAGE}},
        "box": {"class_type": "RegionRepair_MaskFromBBox", "inputs": {
            "image": ["load", 0], "bbox": ", ".join(map(str, BOX)), "units": "normalized"}},
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "cond": {"class_type": "RegionRepairTest_ZeroConditioning", "inputs": {}},
        "recolor": {"class_type": "RegionRepair_GarmentRecolorAnchor", "inputs": {
            "images": ["load", 0], "masks": ["box", 0], "reference_text": "#2E5A3B",
            "instruction": "", "garment_label": "suit", "use_anchor": True,
            "post_process": True, "anchor_index": 0, "num_variations": 1,
            "variation_step": 8.0, "contrast": 1.0, "processing_size": "native",
            "add_ai_watermark": False, "model": ["ckpt", 0], "vae": ["ckpt", 2],
            "positive": ["cond", 0], "negative": ["cond", 0], "seed": 3, "steps": 2,
            "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 0.3}},
        "save": {"class_type": "SaveImage", "inputs": {"images": ["recolor", 0],
                                                       "filename_prefix": uuid.uuid4().hex}},
        "info": {"class_type": "PreviewAny", "inputs": {"source": ["recolor", 3]}},
    }
    history = server.run(prompt)
    (result,) = [decode(png) for png in server.output_files(history, "save")]
    info = json.loads(history["outputs"]["info"]["text"][0])
    height, width = photo.shape[:2]
    x, y, w, h = BOX
    inside = np.zeros((height, width), bool)
    inside[round(y * height):round((y + h) * height), round(x * width):round((x + w) * width)] = 1
    np.testing.assert_array_equal(result[~inside], photo[~inside])
    assert (result != photo).any(-1)[inside].mean() > 0.5
    assert info[0]["engine"] == "embedded+diffusion" and info[0]["seed"] == 3
    assert any("denoise 0.3" in note for note in info[0]["notes"])
    target = skimage.color.rgb2lab(np.array([[[0x2E, 0x5A, 0x3B]]], np.uint8))[0, 0]
    measured = skimage.color.rgb2lab(result)[inside].mean(0)
    assert np.abs(measured - target).max() < 3
