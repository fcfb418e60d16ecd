"""ComfyUI to ComfyUI: the pack's Remote Vendor Inpaint node, in a second ComfyUI server, calls
the session server's self-hosted endpoints for every vendor endpoint. The second server gets the
served keys and the first server's host only through its environment, as for any self-hosted
vendor; every pixel outside the mask stays bit-identical, and no key reaches its /history."""

from __future__ import annotations

import io
import json
import shutil
import uuid

import numpy as np
import pytest
from comfy_server import ComfyServer
from pack_paths import PACK_ROOT
from PIL import Image
from region_repair.pipelines.vendors.keys import hosts_variable
from serving_images import SERVE_KEYS, SERVE_PICPIK
from workflow_api import fill_defaults

pytestmark = pytest.mark.server

PHOTOS = {"astronaut.png": PACK_ROOT / "assets" / "photos" / "astronaut.png",
          "suit.png": PACK_ROOT / "assets" / "photos" / "garment_set" / "suit_studio.png"}
BOX = (0.35, 0.13, 0.19, 0.19)
CLIENT_KEYS = {"REGION_REPAIR_PIKTID_KEY": SERVE_KEYS["piktid"],
               "REGION_REPAIR_PICPIK_PUBLIC_KEY": SERVE_PICPIK[0],
               "REGION_REPAIR_PICPIK_PRIVATE_KEY": SERVE_PICPIK[1],
               "REGION_REPAIR_PHOTIO_KEY": SERVE_KEYS["photio"],
               "REGION_REPAIR_OCTOAI_KEY": SERVE_KEYS["octoai"],
               "REGION_REPAIR_KEYS_FILE": "/nonexistent/keys.toml"}
CASES = {  # endpoint: (photo, the node's options JSON)
    "piktid/detail-repair": ("astronaut.png", {}),
    "piktid/garment-recolor": ("suit.png", {"reference_text": "#2E5A3B",
                                            "garment_label": "jacket",
                                            "processing_size": 1024}),
    "picpik/ModifyMaskedPixels": ("astronaut.png", {}),
    "photio/regen": ("astronaut.png", {}),
    "octoai-compatible/adetailer": ("astronaut.png", {"detector": "face_short_mediapipe",
                                                      "inpainting_base_model": "sd15"}),
}


@pytest.fixture(scope="module")
def client_server(server, tmp_path_factory):
    """A second ComfyUI with the pack, allowed to send the served keys to the first one."""
    base = tmp_path_factory.mktemp("comfyui-client")
    hosts = {hosts_variable(vendor): server.url
             for vendor in ("piktid", "picpik", "photio", "octoai")}
    with ComfyServer(base, env={"OMP_NUM_THREADS": "1", **CLIENT_KEYS, **hosts}) as running:
        (base / "input").mkdir(exist_ok=True)
        for name, path in PHOTOS.items():
            shutil.copy(path, base / "input" / name)
        yield running


@pytest.mark.parametrize("endpoint", list(CASES))
def test_remote_vendor_inpaint_calls_the_first_server(server, client_server, endpoint):
    photo_name, options = CASES[endpoint]
    vendor = endpoint.split("/")[0].removesuffix("-compatible")
    prompt = fill_defaults({
        "load": {"class_type": "LoadImage", "inputs": {"image": photo_name}},
        "box": {"class_type": "RegionRepair_MaskFromBBox",
                "inputs": {"image": ["load", 0], "bbox": ", ".join(map(str, BOX)),
                           "units": "normalized"}},
        "remote": {"class_type": "RegionRepair_RemoteVendorInpaint",
                   "inputs": {"image": ["load", 0], "mask": ["box", 0], "endpoint": endpoint,
                              "base_url": f"{server.url}/region-repair/{vendor}",
                              "prompt": "" if vendor == "photio" else "repair it",
                              "negative_prompt": "", "candidates": 1, "seed": 5,
                              "options": json.dumps(options), "blend": True,
                              "timeout_s": 300}},
        "save": {"class_type": "SaveImage",
                 "inputs": {"images": ["remote", 0], "filename_prefix": uuid.uuid4().hex}},
    }, client_server.get_json("/object_info"))
    history = client_server.run(prompt, timeout=400)
    png = client_server.output_files(history, "save")[0]
    photo = np.asarray(Image.open(PHOTOS[photo_name]).convert("RGB"))
    result = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    height, width = photo.shape[:2]
    x, y, w, h = BOX
    inside = np.zeros((height, width), bool)
    inside[round(y * height):round((y + h) * height), round(x * width):round((x + w) * width)] = 1
    assert result.shape == photo.shape
    np.testing.assert_array_equal(result[~inside], photo[~inside])
    if vendor != "octoai":   # adetailer edits its own detections, which may miss the box
        assert (result != photo).any(-1)[inside].mean() > 0.2
    both = json.dumps(client_server.get_json("/history")) + json.dumps(
        server.get_json("/history"))
    for secret in [*SERVE_KEYS.values(), SERVE_PICPIK[1]]:
        assert secret not in both and secret not in client_server.log()
