"""A faithful fake of an OctoAI-compatible /adetailer (vendor-protocols.md §4.4): Bearer auth,
FastAPI-style 422s, a deterministic 'detector' (pure red pixels are the faces), dilation before
the edit, a safety switch, and a 'service gone' mode."""

from __future__ import annotations

import base64

import cv2
import numpy as np
from aiohttp import web

from .base import FakeVendor, decode, edit, encode, unbase64

TOKEN = "octo-test-token-9a0b"
SD15 = {(384, 704), (448, 576), (512, 512), (512, 704), (512, 768), (512, 832), (576, 448),
        (576, 768), (576, 1024), (640, 512), (640, 640), (640, 768), (704, 384), (704, 1216),
        (768, 512), (768, 576), (768, 1024), (832, 512), (896, 896), (1024, 576), (1024, 768),
        (1024, 1024), (1024, 1536), (1216, 704), (1536, 1024)}
SDXL = {(640, 1536), (768, 1344), (832, 1216), (896, 1152), (1024, 1024), (1152, 896),
        (1216, 832), (1344, 768), (1536, 640), (1664, 2432), (2048, 2048), (2432, 1664)}
DETECTORS = {"face_yolov8n", "hand_yolov8n", "face_full_mediapipe", "face_short_mediapipe",
             "face_mesh_mediapipe", "eyes_mesh_mediapipe"}


def invalid(loc: str, msg: str, kind: str = "value_error") -> web.Response:
    return web.json_response({"detail": [{"loc": ["body", loc], "msg": msg, "type": kind}]},
                             status=422)


class FakeOctoAI(FakeVendor):
    name = "octoai"

    def __init__(self, latency: float = 0.0):
        super().__init__(latency)
        self.tokens = {TOKEN}
        self.safety = False
        self.gone = False  # answer 410, as a shut-down service might

    def authorized(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization", "").removeprefix("Bearer ") not in self.tokens:
            return web.json_response({"detail": "Invalid or missing token"}, status=401)
        return None

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/adetailer", self.adetailer)

    async def adetailer(self, request: web.Request) -> web.Response:
        if self.gone:
            return web.json_response({"detail": "This service has been shut down"}, status=410)
        body = await request.json()
        if body.get("detector") not in DETECTORS:
            return invalid("detector", "field required" if "detector" not in body else
                           "value is not a valid enumeration member",
                           "value_error.missing" if "detector" not in body else "enum")
        if not body.get("init_image"):
            return invalid("init_image", "init_image or init_image_url is required")
        if not 0 < body.get("cfg_scale", 7.5) <= 50:
            return invalid("cfg_scale", "must be > 0 and <= 50")
        image = decode(unbase64(body["init_image"]))
        size = (image.shape[1], image.shape[0])
        if size not in {"sdxl": SDXL, "sd15": SD15}[body.get("inpainting_base_model", "sdxl")]:
            return invalid("init_image", f"resolution {size[0]}x{size[1]} is not supported by "
                           f"{body.get('inpainting_base_model', 'sdxl')}")
        red = np.all(image == (255, 0, 0), axis=-1).astype(np.uint8)
        count, labels = cv2.connectedComponents(red)
        found = count - 1
        limit = body.get("max_num_detections") or found
        where = (labels > 0) & (labels <= limit)
        dilation = body.get("mask_dilation", 4)
        if dilation:
            where = cv2.dilate(where.astype(np.uint8), np.ones((2 * dilation + 1,) * 2,
                                                               np.uint8)) > 0
        if self.safety:
            return web.json_response({"image_b64": None, "num_objects_inpainted": 0,
                                      "num_objects_detected": found,
                                      "num_removed_for_safety": 1})
        fmt = "JPEG" if body.get("image_encoding") == "jpeg" else "PNG"
        out = edit(image, where, (body.get("seed") or 0) % 5)
        return web.json_response({"image_b64": base64.b64encode(encode(out, fmt)).decode(),
                                  "num_objects_inpainted": min(found, limit),
                                  "num_objects_detected": found, "num_removed_for_safety": 0})
