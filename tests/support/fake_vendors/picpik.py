"""A faithful fake of PICPIK (vendor-protocols.md §2.7): POST on any path, the SHA-1 body
signature recomputed and checked, ModifyMaskedPixels tasks moving Queuing -> Running -> Finished
(or Error), ListTasksDetails, ListRunningTasks, and image URLs that expire."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
from aiohttp import web
from PIL import Image

from .base import FakeVendor, decode, edit, encode, fit, unbase64

PUBLIC_KEY = "picpik-public-test-5d2e"
PRIVATE_KEY = "picpik-private-test-a81f"


def value_string(value) -> str:
    """The fake's own copy of the signing rule (not the client's), as PICPIK's signer."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value == int(value) else repr(value)
    if isinstance(value, list):
        return "".join(value_string(item) for item in value)
    if isinstance(value, dict):
        return "".join(key + value_string(value[key]) for key in sorted(value))
    return str(value)


def signature(params: dict, private_key: str) -> str:
    text = "".join(key + value_string(params[key]) for key in sorted(params)
                   if key != "Signature") + private_key
    return hashlib.sha1(text.encode()).hexdigest()


@dataclass
class Task:
    uid: str
    created: float
    images: list[bytes]
    seed: int
    failed: str | None = None
    urls: list[str] = field(default_factory=list)


class FakePICPIK(FakeVendor):
    name = "picpik"

    def __init__(self, latency: float = 0.0):
        super().__init__(latency)
        self.keys = {PUBLIC_KEY: PRIVATE_KEY}
        self.tasks: dict[str, Task] = {}
        self.images: dict[str, tuple[bytes, float]] = {}
        self.step_delay = 0.05        # Queuing, then Running, then Finished
        self.image_ttl = 24 * 3600.0
        self.error_http_status = 200  # PICPIK reports errors with RetCode under HTTP 200
        self.response_suffix = False  # echo "<Action>Response" instead of the Action
        self.fail_task: str | None = None
        self.retcode_on_submit: int | None = None
        self.retcode_on_query: int | None = None
        self.shift = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/{tail:.*}", self.dispatch)
        app.router.add_get("/img/{name}", self.image)
        self.open_routes = ("GET /img/{name}",)

    def answer(self, body: dict, ret_code: int = 0, message: str = "", **extra) -> web.Response:
        action = body.get("Action", "")
        return web.json_response({
            "Action": f"{action}Response" if self.response_suffix else action,
            "RetCode": ret_code, "Message": message,
            "request_uuid": body.get("request_uuid", ""), **extra},
            status=200 if ret_code == 0 else self.error_http_status)

    async def dispatch(self, request: web.Request) -> web.Response:
        body = await request.json()
        private = self.keys.get(body.get("PublicKey"))
        if private is None:
            return self.answer(body, 171, "Invalid PublicKey")
        if body.get("Signature") != signature(body, private):
            return self.answer(body, 172, "Signature error: signature verification failed")
        action = body.get("Action")
        if action == "ModifyMaskedPixels":
            if self.retcode_on_submit is not None:
                return self.answer(body, self.retcode_on_submit, "Insufficient API points")
            return self.modify(body)
        if action == "ListTasksDetails":
            if self.retcode_on_query is not None:
                return self.answer(body, self.retcode_on_query, "Internal error")
            return self.answer(body, TaskDetailList=[self.detail(self.tasks[uid])
                                                     for uid in body.get("TaskUIDList", [])
                                                     if uid in self.tasks])
        if action == "ListRunningTasks":
            return self.answer(body, TaskUIDList=[uid for uid, task in self.tasks.items()
                                                  if self.status(task) != "Finished"])
        return self.answer(body, 160, f"Unknown Action {action}")

    def modify(self, body: dict) -> web.Response:
        listed = body.get("ImageAndMaskList") or []
        masked = body.get("Masked") or {}
        width, height = body.get("Width", 1024), body.get("Height", 1024)
        batch, blur = body.get("BatchSize", 1), masked.get("MaskBlur", 12)
        problems = [(not 64 <= width <= 2560 or not 64 <= height <= 2560, "Width/Height 64-2560"),
                    (not 1 <= batch <= 16, "BatchSize 1-16"), (not 0 <= blur <= 64, "MaskBlur"),
                    (not 0 <= masked.get("ReferStrength", 1) <= 2, "ReferStrength 0-2"),
                    (not -1 <= body.get("Seed", -1) <= 2147483647, "Seed")]
        indices = (masked.get("ImageIndex", 0), masked.get("MaskIndex", 1))
        problems.append((any(not 0 <= i < len(listed) for i in indices), "ImageAndMaskList index"))
        for bad, what in problems:
            if bad:
                return self.answer(body, 230, f"Invalid parameter: {what}")
        try:
            image = decode(unbase64(listed[indices[0]]))
            mask = decode(unbase64(listed[indices[1]]), "L")
        except Exception:
            return self.answer(body, 230, "Invalid parameter: ImageAndMaskList decoding")
        where = fit(mask, *image.shape[:2]) > 127
        if masked.get("InvertMask"):
            where = ~where
        outputs = []
        for candidate in range(batch):
            out = edit(image, where, candidate, self.shift)
            outputs.append(encode(np.asarray(Image.fromarray(out).resize((width, height)))))
        uid = uuid.uuid4().hex[:20]
        seed = body.get("Seed", -1)
        self.tasks[uid] = Task(uid, time.time(), outputs, seed if seed >= 0 else 12345,
                               self.fail_task)
        return self.answer(body, TaskUID=uid)

    def status(self, task: Task) -> str:
        steps = (time.time() - task.created) / max(self.step_delay, 1e-9)
        if steps < 1:
            return "Queuing"
        if steps < 2:
            return "Running"
        return "Error" if task.failed else "Finished"

    def detail(self, task: Task) -> dict:
        status = self.status(task)
        if status == "Finished" and not task.urls:
            for index, data in enumerate(task.images):
                name = f"{task.uid}_{index}.png"
                self.images[name] = (data, time.time() + self.image_ttl)
                task.urls.append(f"{self.url}/img/{name}")
        return {"TaskUID": task.uid, "Action": "ModifyMaskedPixels", "Status": status,
                "ImgList": task.urls if status == "Finished" else [], "Seed": task.seed,
                "TxtList": [], "ConsumeApiPoint": 2 * len(task.images),
                "ErrorCode": 1001 if status == "Error" else 0,
                "ErrorMassage": task.failed if status == "Error" else ""}

    async def image(self, request: web.Request) -> web.Response:
        entry = self.images.get(request.match_info["name"])
        if entry is None or entry[1] < time.time():
            return web.Response(status=404)
        await asyncio.sleep(0)
        return web.Response(body=entry[0], content_type="image/png")
