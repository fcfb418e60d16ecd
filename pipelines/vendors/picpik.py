"""PICPIK `Action=ModifyMaskedPixels` (as the vendor documents it) and `Action=ListTasksDetails`.

Every call is a JSON POST whose body carries `Action`, `PublicKey`, `request_uuid` and a SHA-1
`Signature` over all other parameters (see `string_to_sign`). Errors come back as HTTP 200 with
`RetCode != 0`. The task's images are polled with ListTasksDetails and downloaded at once (PICPIK
keeps them 24 h). PICPIK documents no way to cancel a task.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import torch

from ..core.tensors import long_side_size
from . import images
from .http import HttpClient, Response
from .job import Candidate, RemoteSettings, Unit, VendorRun, decode, fields, png

VENDOR = "picpik"
BASE_URL = "https://api.picpik.ai"
CHINA_URL = "https://api.picpikai.com"
DONE = {"finished", "success", "succeeded", "completed", "done"}
FAILED = {"error", "failed", "fail"}


def value_string(value: Any) -> str:
    """A parameter's value as PICPIK signs it: lower-case booleans, integral floats as ints,
    plain decimals (never scientific notation), lists concatenated, maps as sorted key+value."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else format(Decimal(repr(value)), "f")
    if isinstance(value, (list, tuple)):
        return "".join(value_string(item) for item in value)
    if isinstance(value, dict):
        return "".join(key + value_string(value[key]) for key in sorted(value))
    return str(value)


def string_to_sign(params: dict[str, Any], private_key: str) -> str:
    """Every parameter but `Signature`, keys sorted in code-point order, then the private key."""
    return "".join(key + value_string(params[key]) for key in sorted(params)
                   if key != "Signature") + private_key


def sign(params: dict[str, Any], private_key: str) -> str:
    return hashlib.sha1(string_to_sign(params, private_key).encode("utf-8")).hexdigest()


@dataclass
class ModifyMaskedPixelsRequest:
    """The documented request, less `Action`/`PublicKey`/`Signature`/`request_uuid`."""

    image_and_mask_list: list[str]  # data URIs: [image, mask(, reference)]
    main_model: str = "PICPIK General"
    inference_params: dict[str, Any] = field(default_factory=lambda: {"Steps": 10})
    sub_models: list[dict[str, Any]] = field(default_factory=list)
    positive_prompts: list[str] = field(default_factory=list)
    negative_prompts: list[str] = field(default_factory=list)
    translate_prompts: bool = True
    seed: int = -1
    width: int = 1024
    height: int = 1024
    batch_size: int = 1
    use_main_model_vae: bool = False
    image2image: dict[str, Any] | None = None  # {"ImageIndex": 2, "ReferStrength": 0.5}
    refer_strength: float = 1.0
    invert_mask: bool = False
    mask_blur: int = 12
    prompts_more_important: bool = False

    def validate(self) -> None:
        checks = [(-1 <= self.seed <= 2147483647, f"seed: PICPIK takes -1..2147483647, "
                                                   f"got {self.seed}"),
                  (64 <= self.width <= 2560 and 64 <= self.height <= 2560,
                   f"Width/Height: 64-2560, got {self.width}x{self.height}"),
                  (1 <= self.batch_size <= 16, f"candidates: PICPIK BatchSize 1-16, got "
                                               f"{self.batch_size}"),
                  (0 <= self.refer_strength <= 2, f"ReferStrength: 0-2, got "
                                                  f"{self.refer_strength}"),
                  (0 <= self.mask_blur <= 64, f"MaskBlur: 0-64, got {self.mask_blur}"),
                  (len(self.image_and_mask_list) >= 2, "ImageAndMaskList needs an image and "
                                                       "a mask")]
        if self.image2image is not None:
            strength = self.image2image.get("ReferStrength", 0.5)
            checks.append((0 <= strength <= 1, f"Image2Image.ReferStrength: 0-1, got "
                                               f"{strength}"))
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def params(self) -> dict[str, Any]:
        self.validate()
        params = {
            "MainModel": {"ModelCode": self.main_model, "InferenceParams": self.inference_params},
            "SubModelList": self.sub_models,
            "PositivePrompts": self.positive_prompts, "NegativePrompts": self.negative_prompts,
            "TranslatePrompts": self.translate_prompts, "Seed": self.seed,
            "Width": self.width, "Height": self.height, "BatchSize": self.batch_size,
            "UseMainModelVAE": self.use_main_model_vae,
            "Masked": {"ImageIndex": 0, "MaskIndex": 1, "ReferStrength": self.refer_strength,
                       "InvertMask": self.invert_mask, "MaskBlur": self.mask_blur,
                       "PromptsMoreImportant": self.prompts_more_important},
            "ImageAndMaskList": self.image_and_mask_list,
        }
        if self.image2image is not None:
            params["Image2Image"] = self.image2image
        return params


@dataclass
class TaskDetail:
    task_uid: str
    status: str
    img_list: list[str]
    seed: int | None
    error_code: int
    error_message: str

    @classmethod
    def parse(cls, payload: dict[str, Any]) -> TaskDetail:
        return cls(str(payload.get("TaskUID", "")), str(payload.get("Status", "")),
                   list(payload.get("ImgList") or []), payload.get("Seed"),
                   int(payload.get("ErrorCode") or 0),
                   # The docs spell it ErrorMassage; accept the intended spelling too.
                   str(payload.get("ErrorMassage") or payload.get("ErrorMessage") or ""))


class PICPIK:
    def __init__(self, http: HttpClient, public_key: str, private_key: str, *,
                 poll_interval: float = 3.0, unknown_retries: int = 5,
                 on_status: Callable[[str], None] = lambda text: None):
        self.http, self.public_key, self._private_key = http, public_key, private_key
        self.poll_interval, self.unknown_retries = poll_interval, unknown_retries
        self.on_status = on_status

    async def call(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        """One signed Action; a non-zero RetCode raises with PICPIK's message."""
        body = {"Action": action, "PublicKey": self.public_key,
                "request_uuid": str(uuid.uuid4()), **params}
        body["Signature"] = sign(body, self._private_key)
        # The same signed body (and request_uuid) is resent on a retry.
        payload = (await self.http.request("POST", "/", json_body=body)).json()
        if not isinstance(payload, dict):
            raise self.http.error("protocol", f"{action} answered {type(payload).__name__}, "
                                  "not an object")
        code = payload.get("RetCode")
        if code != 0:
            message = payload.get("Message") or "no message"
            hint = (" (check REGION_REPAIR_PICPIK_PUBLIC_KEY / _PRIVATE_KEY)"
                    if "sign" in str(message).lower() or "key" in str(message).lower() else "")
            raise self.http.error("rejected", f"{action} rejected: RetCode {code}: "
                                  f"{message}{hint}")
        return payload

    async def modify_masked_pixels(self, request: ModifyMaskedPixelsRequest) -> str:
        payload = await self.call("ModifyMaskedPixels", request.params())
        if not payload.get("TaskUID"):
            raise self.http.error("protocol", "ModifyMaskedPixels answered without a TaskUID")
        self.on_status(f"picpik task {payload['TaskUID']}: queued")
        return str(payload["TaskUID"])

    async def task_details(self, uids: list[str]) -> dict[str, TaskDetail]:
        payload = await self.call("ListTasksDetails", {"TaskUIDList": uids})
        details = [TaskDetail.parse(item) for item in payload.get("TaskDetailList") or []]
        return {detail.task_uid: detail for detail in details}

    async def wait(self, uid: str) -> TaskDetail:
        misses = 0
        while True:
            detail = (await self.task_details([uid])).get(uid)
            if detail is None:
                misses += 1
                if misses > self.unknown_retries:
                    raise self.http.error("not_found", f"task {uid} is not listed by "
                                          "ListTasksDetails")
            else:
                self.on_status(f"picpik task {uid}: {detail.status}")
                if detail.error_code != 0 or detail.status.lower() in FAILED:
                    raise self.http.error("job_failed", f"task {uid} failed: ErrorCode "
                                          f"{detail.error_code}: {detail.error_message or '-'}")
                if detail.status.lower() in DONE and detail.img_list:
                    return detail
            await asyncio.sleep(self.poll_interval)

    async def download(self, url: str) -> bytes:
        response: Response = await self.http.request("GET", url, auth=False)
        return response.body

# --- Remote Vendor Inpaint's requests and units (see job.py) ----------------------------------

def request(settings: RemoteSettings, listed: list[str], height: int, width: int
            ) -> ModifyMaskedPixelsRequest:
    """`listed`: the image and mask data URIs, and the first reference's when one is given."""
    scale = long_side_size(height, width, 2560)[2]
    size = {"width": max(64, round(width * scale / 8) * 8),
            "height": max(64, round(height * scale / 8) * 8)}
    extra = None
    if len(listed) > 2:  # the first reference, as Image2Image's extra image
        extra = {"ImageIndex": 2,
                 "ReferStrength": settings.options.get("image2image_strength", 0.5)}
    return ModifyMaskedPixelsRequest(
        listed, positive_prompts=[settings.prompt] if settings.prompt else [],
        negative_prompts=[settings.negative_prompt] if settings.negative_prompt else [],
        seed=settings.seed, batch_size=settings.candidates, image2image=extra,
        **{**size, **fields(settings)})


def check(settings: RemoteSettings, height: int, width: int, ref_count: int) -> None:
    """Build the run's request with placeholders for the uploads (a bad value raises)."""
    request(settings, ["image", "mask", *["reference"] * min(1, ref_count)], height, width
            ).params()


def auth_headers(key: str) -> dict[str, str]:
    return {}  # every request is signed instead (`sign`)


async def units(run: VendorRun, image: torch.Tensor, mask: torch.Tensor,
                refs: list[torch.Tensor]) -> list[Unit]:
    """One task per image, all candidates in it (`BatchSize`), the first reference as
    Image2Image's extra image."""
    client = PICPIK(run.http, run.secrets["public_key"].reveal(),
                           run.secrets["private_key"].reveal(),
                           poll_interval=run.poll(3.0), on_status=run.on_status)
    height, width = image.shape[1:3]
    k, seed = run.settings.candidates, run.settings.seed

    def unit(b: int) -> Unit:
        async def work() -> list[list[Candidate]]:
            listed = [images.data_uri(await png(image[b])),
                      images.data_uri(images.mask_png(mask[b]))]
            listed += [images.data_uri(await png(ref)) for ref in refs[:1]]
            uid = await client.modify_masked_pixels(request(run.settings, listed, height,
                                                            width))
            run.jobs.append(uid)
            detail = await client.wait(uid)
            # Downloaded at once: PICPIK keeps the images 24 h.
            blobs = [await client.download(url) for url in detail.img_list]
            return [[Candidate(await decode(blob, "picpik", "a result"),
                               seed if seed >= 0 else detail.seed, detail.task_uid)
                     for blob in blobs[:k]]]
        return work
    return [unit(b) for b in range(image.shape[0])]
