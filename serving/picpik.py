"""PICPIK served locally: `POST /region-repair/picpik/` with the instruction-style JSON body.

`Action=ModifyMaskedPixels` (inpainting; outpainting is the same call on a padded image with the
new area masked) is verified with the documented SHA-1 signature (`PublicKey` + `Signature`, see
auth.KeyRing.verify_signed), queued as the pack's PICPIK workflow and answered with a `TaskUID`;
`Action=ListTasksDetails` polls it (`Queuing`, `Running`, `Finished`, `Error`) and lists the
result URLs in `ImgList` (served without a key, as PICPIK's, for 24 h); `ListRunningTasks` lists
the key's unfinished tasks. Errors are `RetCode != 0` with a `Message` naming the field, under
HTTP 200 as PICPIK answers them (401 for a bad signature, 413 and 429 from the common limits).
"""

from __future__ import annotations

import math
import re
import secrets
import string
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from . import prompts
from .config import Limits, VendorConfig
from .inputs import ImageUpload, RequestError, base64_image
from .service import Service, handler

VENDOR = "picpik"
PATH = "/region-repair/picpik"
EMBEDDED = "PICPIK ModifyMaskedPixels - inpaint with reference (no weights)"
WITH_MODEL = "PICPIK ModifyMaskedPixels - inpaint with LoRA and reference (SD1.5 inpaint model)"
GENERAL_MODEL = "PICPIK General"   # the documentation's example model: the configured engine
IMAGE_TTL_S = 24 * 3600
# RetCodes (PICPIK publishes no list; these follow the UCloud-style API it is built on).
PARAMS_ERROR, SIGNATURE_ERROR, UNKNOWN_ACTION = 230, 171, 160
UID_ALPHABET = string.ascii_lowercase + string.digits


def error_body(status: int, message: str, field: str | None) -> dict[str, Any]:
    return {"RetCode": SIGNATURE_ERROR if status == 401 else PARAMS_ERROR, "Message": message}


class PicpikError(RequestError):
    """A refused parameter: RetCode 230 (or `code`) under HTTP 200, as PICPIK answers."""

    def __init__(self, field: str, message: str, code: int = PARAMS_ERROR):
        super().__init__(200, f"{field}: {message}", field)
        self.code = code


@dataclass(frozen=True)
class Modify:
    image: ImageUpload
    mask: ImageUpload
    reference: ImageUpload | None
    reference_strength: float
    prompt: str
    negative_prompt: str
    checkpoint: str                      # "" = the embedded engines
    loras: tuple[tuple[str, float], ...]  # (file in models/loras, weight)
    seed: int
    steps: int
    processing_size: int
    candidates: int
    refer_strength: float
    invert_mask: bool


def _table(body: dict, field: str) -> dict:
    value = body.get(field) or {}
    if not isinstance(value, dict):
        raise PicpikError(field, "an object")
    return value


def _int(value: object, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PicpikError(field, f"an integer from {low} to {high}")
    return value


def _float(value: object, field: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or not low <= value <= high:
        raise PicpikError(field, f"a number from {low} to {high}")
    return float(value)


def _prompt(value: object, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise PicpikError(field, "a list of strings")
    return ", ".join(item.strip() for item in value if item.strip())


def _sub_models(body: dict[str, Any], config: VendorConfig
                ) -> tuple[tuple[tuple[str, float], ...], list[str]]:
    """SubModelList's LoRAs, as the local files the owner mapped their ModelCodes to with their
    weights, and their trigger words (which PICPIK adds to the prompt)."""
    listed = body.get("SubModelList") or []
    if not isinstance(listed, list):
        raise PicpikError("SubModelList", "a list of Model objects")
    loras, words = [], []
    for index, entry in enumerate(listed):
        where = f"SubModelList[{index}]"
        if not isinstance(entry, dict):
            raise PicpikError(where, "a Model object")
        code = entry.get("ModelCode")
        if code not in config.loras:
            served = ", ".join(map(repr, config.loras)) or "none"
            raise PicpikError(f"{where}.ModelCode", f"{code!r} is not served here (LoRAs "
                              f"served: {served}; embeddings and hypernetworks are not)")
        if not config.checkpoint:
            raise PicpikError(where, "a LoRA needs a checkpoint, and this server runs the "
                              "embedded engines; send an empty list")
        weight = _float(_table(entry, "InferenceParams").get("LoraWeight", 1),
                        f"{where}.InferenceParams.LoraWeight", -1, 2)
        loras.append((config.loras[code], weight))
        words.append(_prompt(entry.get("TriggerWordList"), f"{where}.TriggerWordList"))
    return tuple(loras), words


def parse(body: dict[str, Any], limits: Limits, config: VendorConfig) -> Modify:
    model = _table(body, "MainModel")
    if model.get("ModelCode", GENERAL_MODEL) not in {GENERAL_MODEL, config.checkpoint} - {""}:
        raise PicpikError("MainModel.ModelCode", f"this server serves {GENERAL_MODEL!r}"
                          + (f" and {config.checkpoint!r}" if config.checkpoint else ""))
    steps = _int(_table(model, "InferenceParams").get("Steps", 10), "MainModel.InferenceParams"
                 ".Steps", 1, 100)
    loras, trigger_words = _sub_models(body, config)
    for flag in ("TranslatePrompts", "UseMainModelVAE"):
        if not isinstance(body.get(flag, False), bool):
            raise PicpikError(flag, "true or false")
    seed = _int(body.get("Seed", -1), "Seed", -1, 2147483647)
    width = _int(body.get("Width", 1024), "Width", 64, 2560)
    height = _int(body.get("Height", 1024), "Height", 64, 2560)
    candidates = _int(body.get("BatchSize", 1), "BatchSize", 1, 16)
    masked = _table(body, "Masked")
    if not masked:
        raise PicpikError("Masked", "required: {ImageIndex, MaskIndex, ...}")
    listed = body.get("ImageAndMaskList")
    if not isinstance(listed, list) or not listed:
        raise PicpikError("ImageAndMaskList", "required: a list of base64 images")

    def indexed(table: dict, key: str, where: str) -> ImageUpload:
        index = _int(table.get(key), f"{where}.{key}", 0, len(listed) - 1)
        return base64_image(listed[index], f"ImageAndMaskList[{index}]", limits)
    image = indexed(masked, "ImageIndex", "Masked")
    mask = indexed(masked, "MaskIndex", "Masked")
    if (mask.width, mask.height) != (image.width, image.height):
        raise PicpikError("Masked.MaskIndex", f"the mask is {mask.width}x{mask.height}, the "
                          f"image {image.width}x{image.height}")
    invert = masked.get("InvertMask", False)
    if not isinstance(invert, bool):
        raise PicpikError("Masked.InvertMask", "true or false")
    _int(masked.get("MaskBlur", 12), "Masked.MaskBlur", 0, 64)
    if not isinstance(masked.get("PromptsMoreImportant", False), bool):
        raise PicpikError("Masked.PromptsMoreImportant", "true or false")
    positive = _prompt(body.get("PositivePrompts"), "PositivePrompts")
    refer = _table(body, "Image2Image")
    reference = indexed(refer, "ImageIndex", "Image2Image") if refer else None
    return Modify(
        image, mask, reference,
        _float(refer.get("ReferStrength", 0.5), "Image2Image.ReferStrength", 0, 1),
        ", ".join(part for part in [positive, *trigger_words] if part),
        _prompt(body.get("NegativePrompts"), "NegativePrompts"), config.checkpoint, loras,
        seed if seed != -1 else secrets.randbelow(2147483647) + 1, steps,
        min(2048, max(64, round(math.sqrt(width * height) / 8) * 8)), candidates,
        _float(masked.get("ReferStrength", 1), "Masked.ReferStrength", 0, 2), invert)


def build(request: Modify, names: list[str]) -> tuple[prompts.Prompt, dict[str, str]]:
    """The PICPIK workflow for `request`: image, mask (and reference) from `names`."""
    prompt = prompts.workflow(WITH_MODEL if request.checkpoint else EMBEDDED)
    inpaint_id = prompts.node_of(prompt, "RegionRepair_GuidedBlendInpaint")
    inpaint = prompt[inpaint_id]["inputs"]
    photo = inpaint["image"][0]
    prompt[photo]["inputs"]["image"] = names[0]
    clean = prompt[inpaint["mask"][0]]["inputs"]
    prompt[clean["mask"][0]] = {"class_type": "LoadImageMask",
                                "inputs": {"image": names[1], "channel": "red"}}
    clean.update(invert=request.invert_mask, threshold=0.5, image=[photo, 0])
    if request.reference is not None:
        prompt[inpaint["references"][0]]["inputs"]["image"] = names[2]
    else:
        del inpaint["references"]
    inpaint.update(reviewer_note=request.prompt, seed=request.seed, steps=request.steps,
                   processing_size=request.processing_size, num_candidates=request.candidates,
                   reference_denoise=round(1 - request.reference_strength, 4),
                   denoise=min(1.0, request.refer_strength / 2))  # docs/vendors.md's mapping
    if request.checkpoint:
        prompts.with_model(prompt, inpaint, request.checkpoint, request.prompt,
                           request.negative_prompt, request.loras)
    result = prompts.save_to_temp(prompt)
    return prompts.prune(prompt, [result]), {"result": result}


def task_uid() -> str:
    """PICPIK's 20-character task ids; random, so a result URL cannot be guessed."""
    return "".join(secrets.choice(UID_ALPHABET) for _ in range(20))


def add_routes(routes: web.RouteTableDef, service: Service) -> None:
    config = service.config.vendor(VENDOR)

    def status(job) -> str:
        if job.done.is_set():
            return "Finished" if job.status == "completed" else "Error"
        state, _ = service.runner.state(job.prompt_id)
        return "Running" if state == "processing" else "Queuing"

    def detail(job, base: str) -> dict[str, Any]:
        state = status(job)
        count = len(job.entry.get("outputs", {}).get(job.meta["result"], {}).get("images", [])) \
            if state == "Finished" else 0
        return {"TaskUID": job.id, "Action": "ModifyMaskedPixels", "Status": state,
                "ImgList": [f"{base}/img/{job.id}/{index}.png" for index in range(count)],
                "Seed": job.meta["seed"], "TxtList": [], "ConsumeApiPoint": 0,
                "ErrorCode": 0 if state != "Error" else 500,
                "ErrorMassage": service.runner.error_message(job)
                if state == "Error" else ""}

    async def dispatch(request: web.Request) -> web.StreamResponse:
        body = await service.read_json(request)
        echo = {"Action": str(body.get("Action", "")), "request_uuid": body.get("request_uuid")}
        key_id = await service.off_loop(service.keys[VENDOR].verify_signed, body)
        if key_id is None:
            return web.json_response({**echo, "RetCode": SIGNATURE_ERROR, "Message":
                                      "signature error: unknown PublicKey or a Signature that "
                                      "does not match the body"}, status=401)
        base = f"{request.url.origin()}{PATH}"
        try:
            answer = await act(body, key_id, base)
        except RequestError as error:   # a field's error is a RetCode; 413 and 429 stay HTTP
            if error.status not in (200, 400):
                raise
            return web.json_response({**echo, "RetCode": getattr(error, "code", PARAMS_ERROR),
                                      "Message": str(error)})
        return web.json_response({**echo, "RetCode": 0, "Message": "", **answer})

    async def act(body: dict[str, Any], key_id: str, base: str) -> dict[str, Any]:
        action = body.get("Action")
        if action == "ModifyMaskedPixels":
            parsed = await service.off_loop(parse, body, service.config.limits, config)
            job = service.jobs.reserve(VENDOR, key_id, task_uid())
            job.meta["seed"] = parsed.seed
            uploads = [parsed.image, parsed.mask] + ([parsed.reference]
                                                     if parsed.reference else [])
            await service.submit(job, uploads, lambda names: build(parsed, names))
            return {"TaskUID": job.id}
        if action == "ListTasksDetails":
            uids = body.get("TaskUIDList")
            if not isinstance(uids, list):
                raise PicpikError("TaskUIDList", "a list of TaskUIDs")
            jobs = [service.jobs.get(str(uid), key_id) for uid in uids]
            return {"TaskDetailList": [detail(job, base) for job in jobs if job is not None]}
        if action == "ListRunningTasks":
            return {"TaskUIDList": [job.id for job in service.jobs.of_key(key_id)
                                    if job.vendor == VENDOR and not job.done.is_set()]}
        raise PicpikError("Action", "ModifyMaskedPixels, ListTasksDetails or ListRunningTasks",
                          UNKNOWN_ACTION)

    wrapped = handler(VENDOR, error_body)(dispatch)
    routes.post(PATH)(wrapped)
    routes.post(PATH + "/")(wrapped)

    @routes.get(PATH + "/img/{uid}/{index}.png")
    @handler(VENDOR, error_body)
    async def image(request: web.Request) -> web.StreamResponse:
        """A result, without a key (PICPIK's ImgList URLs need none): the random TaskUID is the
        capability, and the image is gone after 24 h."""
        job = service.jobs.find(request.match_info["uid"])
        index = request.match_info["index"]
        if job is None or job.vendor != VENDOR or not job.done.is_set() or \
                not re.fullmatch(r"\d{1,2}", index) or time.time() - job.created > IMAGE_TTL_S:
            raise RequestError(404, "no such image")
        images = await service.runner.images(job.entry, job.meta["result"])
        if int(index) >= len(images):
            raise RequestError(404, "no such image")
        return web.Response(body=images[int(index)], content_type="image/png")
