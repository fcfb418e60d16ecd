"""OctoAI-compatible `/adetailer` served locally: `POST /region-repair/octoai/adetailer`.

The documented request (Bearer key; `init_image` base64, a detector, dilation/blur/padding,
confidence, max detections, union, sampler, steps, strength, cfg_scale, seed, prompts) becomes
the pack's adetailer workflow (Detect Objects -> Detailer); the answer is synchronous,
`{"image_b64", "num_objects_inpainted", "num_objects_detected", "num_removed_for_safety"}`.
Validation errors are 422 in FastAPI's shape, as OctoAI answered them.
"""

from __future__ import annotations

import asyncio
import base64
import io
import math
import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from PIL import Image

from ..pipelines.detection.detect import YOLO_FILES
from . import prompts
from .auth import bearer
from .config import Limits, VendorConfig
from .inputs import ImageUpload, RequestError, base64_image, fetch_urls, is_url
from .service import Service, handler

VENDOR = "octoai"
PATH = "/region-repair/octoai/adetailer"
EMBEDDED = "OctoAI adetailer - face, blurred out (no weights)"
WITH_MODEL = "OctoAI adetailer - face (SD1.5 inpaint model)"
# The documented detectors. The YOLO ones run when their weights are in the ultralytics model
# folder (and the package is installed), else as their offline equivalents given here.
DETECTORS = {"face_yolov8n": "face_short_mediapipe", "hand_yolov8n": "hands_mediapipe",
             "face_full_mediapipe": "face_full_mediapipe",
             "face_short_mediapipe": "face_short_mediapipe",
             "face_mesh_mediapipe": "face_mesh_mediapipe",
             "eyes_mesh_mediapipe": "eyes_mesh_mediapipe"}
# OctoAI's sampler names -> ComfyUI's (sampler, scheduler); the nearest where none is equal.
SAMPLERS = {"PNDM": ("euler", "normal"), "LMS": ("lms", "normal"), "KLMS": ("lms", "karras"),
            "DDIM": ("ddim", "ddim_uniform"), "DDPM": ("ddpm", "normal"),
            "HEUN": ("heun", "normal"), "K_HEUN": ("heun", "karras"),
            "K_EULER": ("euler", "normal"), "K_EULER_ANCESTRAL": ("euler_ancestral", "normal"),
            "DPM_SOLVER_MULTISTEP": ("dpmpp_2m", "normal"),
            "DPM_PLUS_PLUS_2M_KARRAS": ("dpmpp_2m", "karras"),
            "DPM_SINGLE": ("dpmpp_2s_ancestral", "normal"), "DPM_2": ("dpm_2", "normal"),
            "DPM_2_ANCESTRAL": ("dpm_2_ancestral", "normal"),
            "DPM_PLUS_PLUS_SDE_KARRAS": ("dpmpp_sde", "karras"), "UNI_PC": ("uni_pc", "normal"),
            "LCM": ("lcm", "sgm_uniform")}
BASE_MODELS = ("sdxl", "sd15")


def error_body(status: int, message: str, field: str | None) -> dict[str, Any]:
    if status == 422:
        return {"detail": [{"loc": ["body", field] if field else ["body"], "msg": message,
                            "type": "value_error"}]}
    return {"detail": message}


def _invalid(field: str, message: str) -> RequestError:
    return RequestError(422, f"{field}: {message}", field)


def _integer(body: dict, field: str, default: int | None, low: int, high: int) -> int | None:
    value = body.get(field, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _invalid(field, f"an integer from {low} to {high}")
    return value


def _number(body: dict, field: str, default: float, low: float, high: float,
            low_open: bool = False) -> float:
    value = body.get(field, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or not (low < value if low_open else low <= value) \
            or value > high:
        raise _invalid(field, f"a number {'>' if low_open else '>='} {low} and <= {high}")
    return float(value)


def _text(body: dict, field: str) -> str:
    value = body.get(field) or ""
    if not isinstance(value, str):
        raise _invalid(field, "a string")
    return value


@dataclass(frozen=True)
class Adetailer:
    image: ImageUpload
    detector: str
    base_model: str
    prompt: str
    negative_prompt: str
    sampler: tuple[str, str]
    steps: int
    strength: float
    cfg_scale: float
    seed: int
    mask_dilation: int
    mask_blur: int
    mask_padding: int
    max_num_detections: int
    confidence: float
    union_masks: bool
    image_encoding: str
    checkpoint: str                       # "" = the embedded engine
    loras: tuple[tuple[str, float], ...]  # (file in models/loras, weight)


def _checkpoint(body: dict, config: VendorConfig) -> str:
    """The requested checkpoint: the configured one, or a name the owner mapped in `models`."""
    checkpoint = body.get("checkpoint")
    if not checkpoint or checkpoint == config.checkpoint:
        return config.checkpoint
    if checkpoint not in config.models:
        served = ", ".join(map(repr, filter(None, [config.checkpoint, *config.models])))
        raise _invalid("checkpoint", "not a checkpoint this server serves "
                       f"({served or 'none: the embedded engine'}); leave it out")
    return config.models[checkpoint]


def _loras(body: dict, config: VendorConfig, checkpoint: str) -> tuple[tuple[str, float], ...]:
    """`loras` ({name: weight}) as the local files the owner mapped those names to."""
    loras = body.get("loras") or {}
    if not isinstance(loras, dict):
        raise _invalid("loras", "an object mapping a LoRA's name to its weight")
    if loras and not checkpoint:
        raise _invalid("loras", "a LoRA needs a checkpoint, and this server runs the embedded "
                       "engine; leave it out")
    unknown = sorted(set(loras) - set(config.loras))
    if unknown:
        raise _invalid("loras", f"{unknown[0]!r} is not served here (served: "
                       f"{', '.join(map(repr, config.loras)) or 'none'})")
    for name, weight in loras.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or \
                not math.isfinite(weight) or not -10 <= weight <= 10:
            raise _invalid("loras", f"{name!r}: a weight from -10 to 10")
    return tuple((config.loras[name], float(weight)) for name, weight in loras.items())


def parse(body: dict[str, Any], limits: Limits, config: VendorConfig,
          fetched: ImageUpload | None = None, yolo: frozenset[str] = frozenset()) -> Adetailer:
    """The request checked field by field: 422 naming the field, 413 for an oversized image.
    `fetched`: init_image_url already fetched from an allow-listed host (inputs.fetch_urls);
    `yolo`: the YOLO detectors whose weights this server has."""
    detector = body.get("detector")
    if detector not in DETECTORS:
        raise _invalid("detector", f"required, one of {', '.join(DETECTORS)}")
    if body.get("init_image_url") and fetched is None:
        raise _invalid("init_image_url", "URL inputs are refused unless the server's owner "
                       "allow-listed their host (image_url_hosts); send init_image as base64")
    if fetched is None and (not body.get("init_image") or is_url(body.get("init_image"))):
        raise _invalid("init_image", "required: the base64 image to modify")
    base_model = body.get("inpainting_base_model") or "sdxl"
    if base_model not in BASE_MODELS:
        raise _invalid("inpainting_base_model", "sdxl or sd15")
    sampler = body.get("sampler") or "K_EULER"
    if sampler not in SAMPLERS:
        raise _invalid("sampler", f"one of {', '.join(SAMPLERS)}")
    checkpoint = _checkpoint(body, config)
    loras = _loras(body, config, checkpoint)
    if body.get("use_refiner"):
        raise _invalid("use_refiner", "no refiner on this server; leave it false")
    seeds = body.get("seed")
    seeds = seeds if isinstance(seeds, list) else [seeds]
    if not seeds or any(s is not None and (isinstance(s, bool) or not isinstance(s, int)
                                           or not 0 < s < 2 ** 32) for s in seeds):
        raise _invalid("seed", "an integer (or a list) > 0 and < 2^32")
    union = body.get("union_masks", False)
    if not isinstance(union, bool):
        raise _invalid("union_masks", "true or false")
    encoding = body.get("image_encoding") or "png"
    if encoding not in ("png", "jpeg"):
        raise _invalid("image_encoding", "jpeg or png")
    image = fetched or base64_image(body["init_image"], "init_image", limits)
    return Adetailer(
        image, detector if detector in yolo else DETECTORS[detector],
        base_model, _text(body, "prompt"),
        _text(body, "negative_prompt"), SAMPLERS[sampler],
        _integer(body, "steps", 20, 1, 150), _number(body, "strength", 0.9, 0, 1, True),
        _number(body, "cfg_scale", 7.5, 0, 50, True),
        seeds[0] if seeds[0] is not None else secrets.randbelow(2 ** 32 - 1) + 1,
        _integer(body, "mask_dilation", 4, 0, 512), _integer(body, "mask_blur", 4, 0, 256),
        _integer(body, "mask_padding", 32, 0, 4096),
        _integer(body, "max_num_detections", None, 0, 1000) or 0,
        _number(body, "confidence", 0.3, 0, 1), union, encoding, checkpoint, loras)


COUNTS = ("num_objects_detected", "num_objects_inpainted", "num_removed_for_safety")


def build(request: Adetailer, image_file: str) -> tuple[prompts.Prompt, dict[str, str]]:
    """The adetailer workflow for `request`: the prompt, and its result node and the nodes
    that show each count."""
    prompt = prompts.workflow(WITH_MODEL if request.checkpoint else EMBEDDED)
    prompt[prompts.node_of(prompt, "LoadImage")]["inputs"]["image"] = image_file
    prompt[prompts.node_of(prompt, "RegionRepair_Detect")]["inputs"].update(
        detector=request.detector, confidence=request.confidence,
        max_num_detections=request.max_num_detections)
    detailer_id = prompts.node_of(prompt, "RegionRepair_Detailer")
    detailer = prompt[detailer_id]["inputs"]
    detailer.update(prompt=request.prompt, negative_prompt=request.negative_prompt,
                    mask_dilation=request.mask_dilation, mask_blur=request.mask_blur,
                    mask_padding=request.mask_padding, inpainting_base_model=request.base_model,
                    union_masks=request.union_masks, seed=request.seed, steps=request.steps,
                    cfg=request.cfg_scale, sampler_name=request.sampler[0],
                    scheduler=request.sampler[1], denoise=request.strength)
    if request.checkpoint:
        prompts.with_model(prompt, detailer, request.checkpoint, request.prompt,
                           request.negative_prompt, request.loras)
    result = prompts.save_to_temp(prompt)
    counts = {name: prompts.preview(prompt, [detailer_id, index])
              for index, name in enumerate(COUNTS, start=1)}
    return prompts.prune(prompt, [result, *counts.values()]), {"result": result, **counts}


def jpeg(png: bytes) -> bytes:
    buffer = io.BytesIO()
    with Image.open(io.BytesIO(png)) as image:
        image.convert("RGB").save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def add_routes(routes: web.RouteTableDef, service: Service) -> None:
    config = service.config.vendor(VENDOR)

    @routes.post(PATH)
    @handler(VENDOR, error_body)
    async def adetailer(request: web.Request) -> web.StreamResponse:
        key_id = service.keys[VENDOR].match(bearer(request.headers.get("Authorization")))
        if key_id is None:
            raise RequestError(401, "Authorization: a Bearer key of this server is required")
        body = await service.read_json(request)
        limits = service.config.limits
        try:
            fetched = await fetch_urls(body, ("init_image_url",), config.image_url_hosts, limits)
        except RequestError as error:   # OctoAI's validation errors are 422
            raise _invalid("init_image_url", str(error).split(": ", 1)[-1]) if \
                error.status == 400 else error
        yolo = frozenset(detector.value for detector in YOLO_FILES
                         if service.runner.has_yolo_weights(detector))
        parsed = await service.off_loop(parse, body, limits, config,
                                        fetched.get("init_image_url"), yolo)
        job = await service.run(VENDOR, key_id, [parsed.image],
                                lambda names: build(parsed, names[0]))
        image = (await service.runner.images(job.entry, job.meta["result"]))[0]
        if parsed.image_encoding == "jpeg":
            image = await asyncio.get_running_loop().run_in_executor(None, jpeg, image)
        counts = {name: int(service.runner.texts(job.entry, job.meta[name])[0])
                  for name in COUNTS}
        return web.json_response({"image_b64": base64.b64encode(image).decode("ascii"),
                                  **counts})
