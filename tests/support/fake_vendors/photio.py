"""A faithful fake of Photio Regen (vendor-protocols.md §3.4): `X-Photio-Key`, bare base64, data
URIs or loopback URLs for both images, validation, and an edit only where the mask is BLACK."""

from __future__ import annotations

import asyncio
import base64
import binascii

import aiohttp
from aiohttp import web

from .base import FakeVendor, decode, edit, encode, unbase64

KEY = "pt-photio-test-key-71be"
QUALITY_DELAY = {"LOW": 1.0, "MIDDLE": 2.0, "HIGH": 3.0}  # x quality_latency


class FakePhotio(FakeVendor):
    name = "photio"

    def __init__(self, latency: float = 0.0):
        super().__init__(latency)
        self.keys = {KEY}
        self.auth_http_status = 200  # Photio's HTTP status for a bad key: 200 or 401
        self.quality_latency = 0.0
        self.envelope_errors: list[int] = []  # next answers: HTTP 200 with this status_code
        self.shift = 0

    def authorized(self, request: web.Request) -> web.Response | None:
        if request.headers.get("X-Photio-Key") not in self.keys:
            return web.json_response({"status_code": 401, "body": "Invalid API key"},
                                     status=self.auth_http_status)
        return None

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/inference/regen", self.regen)

    async def _load(self, value: str) -> bytes:
        if value.startswith("http://127.0.0.1") or value.startswith("http://localhost"):
            async with aiohttp.ClientSession() as session:
                async with session.get(value, timeout=aiohttp.ClientTimeout(total=5)) as got:
                    return await got.read()
        if value.startswith("http"):
            raise ValueError("the fake fetches loopback URLs only")
        return unbase64(value)

    async def regen(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.envelope_errors:
            code = self.envelope_errors.pop(0)
            return web.json_response({"status_code": code, "body": "API problem"})
        if body.get("quality", "LOW") not in QUALITY_DELAY:
            return web.json_response({"status_code": 400, "body": "quality: LOW|MIDDLE|HIGH"},
                                     status=400)
        seed = body.get("seed", -1)
        if seed != -1 and not 1 <= seed <= 4294967296:
            return web.json_response({"status_code": 400, "body": "seed out of range"},
                                     status=400)
        if not body.get("cfg_scale", 2.5) > 0:
            return web.json_response({"status_code": 400, "body": "cfg_scale must be > 0"},
                                     status=400)
        try:
            image = decode(await self._load(body["base_image"]))
            mask = decode(await self._load(body["mask_image"]), "L")
        except (KeyError, ValueError, binascii.Error, OSError) as exc:
            return web.json_response({"status_code": 400, "body": f"bad image: {exc}"},
                                     status=400)
        if mask.shape != image.shape[:2]:
            return web.json_response({"status_code": 400, "body": "mask_image must have the "
                                      "size of base_image"}, status=400)
        await asyncio.sleep(self.quality_latency * QUALITY_DELAY[body.get("quality", "LOW")])
        candidate = 0 if seed == -1 else seed % 5
        out = edit(image, mask < 128, candidate, self.shift)  # BLACK = edit
        return web.json_response({"status_code": 200,
                                  "body": base64.b64encode(encode(out)).decode()})
