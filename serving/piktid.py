"""PiktID v2 served locally: the request checks and the prompts for `/detail-repair` (every
documented field: mask_image or mask.bbox_norm, references <= 10, num_candidates 1-4, category,
reviewer_note, image_notes, model, add_ai_watermark, mode, context_factor) and
`/garment-recolor` (images 1-10, a recolor target, num_variations 1-8, processing_size,
use_anchor, post_process, add_ai_watermark), Quality Check's verdict as each result's
`needs_review` and `reasons`, and the notifications (kept until deleted, their filters, the
webhook signature). The routes are serving/piktid_routes.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from . import prompts
from .config import VendorConfig
from .inputs import ImageUpload, RequestError

VENDOR_MODELS = ("auto", "nano_banana_2", "nano_banana_pro", "seedream", "gpt_image")
NOTIFICATION_TTL_S = 600   # replayed on reconnect for 10 minutes, as PiktID
MODES = ("marked", "marked-blend", "annotated", "annotated-blend", "guided", "guided-blend")
DETAIL = {(False, False): "PiktID Detail Repair - general edit (no weights)",
          (False, True): "PiktID Detail Repair - logo with reference (no weights)",
          (True, False): "PiktID Detail Repair - general edit (SD1.5 inpaint model)",
          (True, True): "PiktID Detail Repair - logo with reference (SD1.5 inpaint model)"}
RECOLOR = {False: "PiktID Garment Recolor - a set of three (no weights)",
           True: "PiktID Garment Recolor - a set of three, texture refined (SD1.5 inpaint model)"}


def error_body(status: int, message: str, field: str | None) -> dict[str, Any]:
    """PiktID's envelope: {"error", "detail": [{"field", "message", "position"}]}."""
    titles = {400: "Invalid request", 401: "Unauthorized", 404: "Not found",
              409: "Conflict", 413: "Request too large", 429: "Too many requests"}
    return {"error": titles.get(status, "Server error"),
            "detail": [{"field": field, "message": message, "position": "body"}]}


def now_iso(timestamp: float | None = None) -> str:
    moment = datetime.fromtimestamp(timestamp or time.time(), timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


# --- request checks (pure) ----------------------------------------------------------------
def _bool(body: dict, name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise RequestError(400, f"{name}: true or false", name)
    return value


def _int(body: dict, name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RequestError(400, f"{name}: an integer from {low} to {high}", name)
    return value


def text_field(body: dict, name: str) -> str:
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RequestError(400, f"{name}: a string", name)
    return value.strip()


def checkpoint_for(model: object, config: VendorConfig) -> str:
    """The local engine for the documented `model`: `auto` is the configured checkpoint (or the
    embedded engines); a vendor engine is served only if the owner mapped it."""
    if model in (None, "auto"):
        return config.checkpoint
    if isinstance(model, str) and model in config.models:
        return config.models[model]
    served = ", ".join(["auto", *config.models])
    raise RequestError(400, f"model: {model!r} is not served here (this server serves: "
                       f"{served}; the vendor's engines {', '.join(VENDOR_MODELS[1:])} exist "
                       "only where the owner maps them to local models)", "model")


def _processing_size(body: dict) -> int:
    """The crop's sampling size; PiktID caps processing at 2K."""
    size = _int(body, "processing_size", 1024, 256, 2048)
    if size % 8:
        raise RequestError(400, "processing_size: a multiple of 8", "processing_size")
    return size


@dataclass(frozen=True)
class DetailRepair:
    image: str
    mask_image: str | None
    bbox_norm: tuple[float, float, float, float] | None
    references: tuple[str, ...]
    num_candidates: int
    category: str
    reviewer_note: str
    image_notes: tuple[str, ...]
    checkpoint: str
    add_ai_watermark: bool
    mode: str
    context_factor: float
    processing_size: int


def parse_detail_repair(body: dict[str, Any], config: VendorConfig) -> DetailRepair:
    image = body.get("image")
    if not isinstance(image, str) or not image:
        raise RequestError(400, "image: required (the file_id of the image to fix)", "image")
    mask_image, bbox = body.get("mask_image"), None
    mask = body.get("mask")
    if mask is not None:
        values = mask.get("bbox_norm") if isinstance(mask, dict) else None
        if not (isinstance(values, list) and len(values) == 4 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                and 0 <= v <= 1 for v in values)) or values[2] <= 0 or values[3] <= 0:
            raise RequestError(400, "mask.bbox_norm: [x, y, w, h] in 0..1 with w, h > 0",
                               "mask.bbox_norm")
        bbox = tuple(float(v) for v in values)
    if mask_image is not None and not isinstance(mask_image, str):
        raise RequestError(400, "mask_image: a file_id", "mask_image")
    if not mask_image and bbox is None:
        raise RequestError(400, "mask_image: required, or mask.bbox_norm (no mask provided)",
                           "mask_image")
    references = body.get("references") or []
    if not isinstance(references, list) or not all(isinstance(r, str) for r in references):
        raise RequestError(400, "references: a list of file_ids", "references")
    if len(references) > 10:
        raise RequestError(400, f"references: at most 10, got {len(references)}", "references")
    notes = body.get("image_notes") or []
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise RequestError(400, "image_notes: a list of strings", "image_notes")
    mode = body.get("mode") or "guided-blend"
    if mode not in MODES:
        raise RequestError(400, f"mode: one of {', '.join(MODES)}", "mode")
    factor = body.get("context_factor", 3.0)
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or \
            not math.isfinite(factor):
        raise RequestError(400, "context_factor: a number (clamped to 1.5-10.0)",
                           "context_factor")
    return DetailRepair(
        image, mask_image or None, bbox, tuple(references),
        _int(body, "num_candidates", 1, 1, 4), text_field(body, "category") or "logo",
        text_field(body, "reviewer_note"), tuple(notes), checkpoint_for(body.get("model"), config),
        _bool(body, "add_ai_watermark", False), mode, min(10.0, max(1.5, float(factor))),
        _processing_size(body))


@dataclass(frozen=True)
class GarmentRecolor:
    images: tuple[str, ...]
    garment_label: str
    reference_image: str | None
    reference_text: str
    instruction: str
    num_variations: int
    checkpoint: str
    processing_size: int
    post_process: bool
    use_anchor: bool
    add_ai_watermark: bool


def parse_garment_recolor(body: dict[str, Any], config: VendorConfig) -> GarmentRecolor:
    images = body.get("images")
    if not isinstance(images, list) or not all(isinstance(i, str) for i in images) or \
            not 1 <= len(images) <= 10:
        raise RequestError(400, "images: 1 to 10 file_ids", "images")
    reference = body.get("reference_image")
    if reference is not None and not isinstance(reference, str):
        raise RequestError(400, "reference_image: a file_id", "reference_image")
    text, instruction = text_field(body, "reference_text"), text_field(body, "instruction")
    if not (reference or text or instruction):
        raise RequestError(400, "reference_image, reference_text or instruction: at least one "
                           "is required (no recolor target)", "reference_text")
    size = body.get("processing_size", 2048)
    if size not in (1024, 2048, 4096):
        raise RequestError(400, "processing_size: 1024, 2048 or 4096", "processing_size")
    return GarmentRecolor(
        tuple(images), text_field(body, "garment_label"), reference or None, text, instruction,
        _int(body, "num_variations", 1, 1, 8), checkpoint_for(body.get("model"), config),
        size, _bool(body, "post_process", True), _bool(body, "use_anchor", True),
        _bool(body, "add_ai_watermark", False))


def restored_request(kind: str, saved: dict[str, Any]) -> DetailRepair | GarmentRecolor:
    """A parsed request read back from JSON, where its tuples became lists."""
    kind_of = DetailRepair if kind == "detail_repair" else GarmentRecolor
    return kind_of(**{name: tuple(value) if isinstance(value, list) else value
                      for name, value in saved.items()})


# --- prompts (pure) -----------------------------------------------------------------------
def _batch(prompt: prompts.Prompt, loaders: list[str]) -> list[Any]:
    """One IMAGE batch from several loaders (ImageBatch; same-sized images)."""
    source = [loaders[0], 0]
    for loader in loaders[1:]:
        source = [prompts.add(prompt, "ImageBatch", image1=source, image2=[loader, 0]), 0]
    return source


def build_detail_repair(request: DetailRepair, image: str, mask: str | None,
                        references: list[str]) -> tuple[prompts.Prompt, dict[str, str]]:
    prompt = prompts.workflow(DETAIL[bool(request.checkpoint), bool(references)])
    inpaint_id = prompts.node_of(prompt, "RegionRepair_GuidedBlendInpaint")
    inpaint = prompt[inpaint_id]["inputs"]
    photo = inpaint["image"][0]
    prompt[photo]["inputs"]["image"] = image
    box = prompts.node_of(prompt, "RegionRepair_MaskFromBBox")
    if mask is not None:
        prompts.load_mask(prompt, box, mask, photo)
    else:
        prompt[box]["inputs"].update(bbox=", ".join(f"{v:.6f}" for v in request.bbox_norm),
                                     units="normalized")
    if references:
        first = inpaint["references"][0]
        prompt[first]["inputs"]["image"] = references[0]
        loaders = [first] + [prompts.add(prompt, "LoadImage", image=name)
                             for name in references[1:]]
        inpaint["references"] = _batch(prompt, loaders)
    inpaint.update(category=request.category, reviewer_note=request.reviewer_note,
                   image_notes="\n".join(request.image_notes), mode=request.mode,
                   context_factor=request.context_factor, num_candidates=request.num_candidates,
                   add_ai_watermark=request.add_ai_watermark,
                   processing_size=request.processing_size,
                   seed=secrets.randbelow(2 ** 31))
    if request.checkpoint:
        prompts.with_checkpoint(prompt, request.checkpoint)
        positive = inpaint.get("positive")
        if positive:
            prompt[positive[0]]["inputs"]["text"] = request.reviewer_note
    result = prompts.save_to_temp(prompt)
    quality = prompts.node_of(prompt, "RegionRepair_QualityCheck")
    report = prompts.preview(prompt, [quality, 0])
    return prompts.prune(prompt, [result, report]), {"result": result, "report": report}


def build_garment_recolor(request: GarmentRecolor, folder: str, reference: str | None
                          ) -> tuple[prompts.Prompt, dict[str, str]]:
    """The shipped workflow's Load Image Set reads the request's set from `folder` (a list in
    the request's order: each image keeps its size)."""
    prompt = prompts.workflow(RECOLOR[bool(request.checkpoint)])
    recolor = prompt[prompts.node_of(prompt, "RegionRepair_GarmentRecolorAnchor")]["inputs"]
    prompt[prompts.node_of(prompt, "RegionRepair_LoadImageSet")]["inputs"]["folder"] = folder
    if reference is not None:
        recolor["reference_image"] = [prompts.add(prompt, "LoadImage", image=reference), 0]
    recolor.update(reference_text=request.reference_text, instruction=request.instruction,
                   garment_label=request.garment_label, use_anchor=request.use_anchor,
                   post_process=request.post_process, num_variations=request.num_variations,
                   add_ai_watermark=request.add_ai_watermark,
                   processing_size=str(request.processing_size),
                   seed=secrets.randbelow(2 ** 31))
    if request.checkpoint:
        prompts.with_checkpoint(prompt, request.checkpoint)
    result = prompts.save_to_temp(prompt)
    return prompts.prune(prompt, [result]), {"result": result}


def layout(kind: str, position: int, set_size: int) -> tuple[int, int]:
    """The output at `position` as (image_index, group_index). Recolour outputs are
    variation-major over the set, in the request's order; Detail Repair's candidates are groups
    of image 0."""
    if kind == "garment_recolor":
        return position % set_size, position // set_size
    return 0, position


def position_of(kind: str, image_index: int, group_index: int, set_size: int) -> int:
    """`layout`'s inverse: where output (image_index, group_index) is."""
    if kind == "garment_recolor":
        return group_index * set_size + image_index
    return group_index


def review(report_text: str | None, count: int) -> list[dict[str, Any]]:
    """Quality Check's verdict per output: {needs_review, reasons}."""
    if not report_text:
        return [{} for _ in range(count)]
    candidates = json.loads(report_text).get("candidates", [])
    flags = [{"needs_review": bool(c.get("needs_review")), "reasons": list(c.get("reasons", []))}
             for c in candidates]
    return (flags + [{}] * count)[:count]


# --- state ---------------------------------------------------------------------------------
@dataclass
class StoredFile:
    key_id: str
    project_id: str
    filename: str
    content_type: str
    expires: float
    upload: ImageUpload | None = None


@dataclass
class Notification:
    id: int
    name: str
    data: dict[str, Any]
    timestamp: float = field(default_factory=time.time)

    def event(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "timestamp": self.timestamp,
                "data": self.data}


class Notifications:
    """Per key: stored until deleted (and at most 10 minutes), fanned out to open streams and
    to the key's webhook."""

    def __init__(self) -> None:
        self._next = 1
        self.stored: dict[str, list[Notification]] = defaultdict(list)
        self.listeners: dict[str, set[asyncio.Queue]] = defaultdict(set)

    def publish(self, key_id: str, name: str, data: dict[str, Any]) -> Notification:
        note = Notification(self._next, name, data)
        self._next += 1
        cutoff = time.time() - NOTIFICATION_TTL_S
        self.stored[key_id] = [n for n in self.stored[key_id] if n.timestamp >= cutoff] + [note]
        for queue in self.listeners[key_id]:
            queue.put_nowait(note)
        return note

    def backlog(self, key_id: str) -> list[Notification]:
        cutoff = time.time() - NOTIFICATION_TTL_S
        return [n for n in self.stored[key_id] if n.timestamp >= cutoff]

    def delete(self, key_id: str, note_id: int) -> bool:
        before = len(self.stored[key_id])
        self.stored[key_id] = [n for n in self.stored[key_id] if n.id != note_id]
        return len(self.stored[key_id]) < before


def matches(note: Notification, query: dict[str, str]) -> bool:
    """The stream's and the poll's filters: id_task, name_list (comma-separated)."""
    task = note.data.get("id_task") or note.data.get("job_id")
    if query.get("id_task") and task not in query["id_task"].split(","):
        return False
    return not query.get("name_list") or note.name in query["name_list"].split(",")


def webhook_signature(secret: str, body: bytes) -> str:
    """The documented X-Webhook-Signature: sha256= + HMAC-SHA256(secret, raw body) in hex."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
