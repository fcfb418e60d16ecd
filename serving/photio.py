"""Photio Regen served locally: `POST /region-repair/photio/v1/inference/regen`.

The documented request (key in `X-Photio-Key`, base64 `base_image` and `mask_image` with black =
edit, `prompt` "" removes and text adds, `quality`, `seed`, `cfg_scale`) becomes the pack's
Photio Regen workflow; the answer is synchronous, `{"status_code": 200, "body": <base64 PNG>}`,
at the input's size. Errors carry the same envelope and the same HTTP status.
"""

from __future__ import annotations

import base64
import math
import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from . import prompts
from .config import Limits, VendorConfig
from .inputs import ImageUpload, RequestError, base64_image, fetch_urls, is_url
from .service import Service, handler

VENDOR = "photio"
PATH = "/region-repair/photio/v1/inference/regen"
QUALITY_STEPS = {"LOW": 12, "MIDDLE": 20, "HIGH": 30}
DEFAULT_NEGATIVE = "worst quality, low quality, illustration, 3d, 2d, painting, cartoons, sketch"
EMBEDDED = "Photio Regen - remove an object (no weights)"
WITH_MODEL = {False: "Photio Regen - remove an object (SD1.5 inpaint model)",
              True: "Photio Regen - add an object (SD1.5 inpaint model)"}


def error_body(status: int, message: str, field: str | None) -> dict[str, Any]:
    return {"status_code": status, "body": message}


@dataclass(frozen=True)
class Regen:
    base_image: ImageUpload
    mask_image: ImageUpload
    prompt: str
    negative_prompt: str
    quality: str
    seed: int
    cfg_scale: float


IMAGE_FIELDS = ("base_image", "mask_image")


def _image(body: dict, field: str, limits: Limits, fetched: dict[str, ImageUpload]
           ) -> ImageUpload:
    value = body.get(field)
    if value is None or value == "":
        raise RequestError(400, f"{field}: required (base64 image; black = edit for the mask)",
                           field)
    if is_url(value):
        if field not in fetched:   # fetch_urls fetched every allowed one
            raise RequestError(400, f"{field}: URL inputs are refused unless the server's "
                               "owner allow-listed their host; send base64", field)
        return fetched[field]
    return base64_image(value, field, limits)


def parse(body: dict[str, Any], limits: Limits, config: VendorConfig,
          fetched: dict[str, ImageUpload] | None = None) -> Regen:
    """The request checked field by field: 400 naming the field, 413 for an oversized image.
    `fetched`: the URL inputs already fetched from allow-listed hosts (inputs.fetch_urls)."""
    prompt = body.get("prompt", "")
    if not isinstance(prompt, str):
        raise RequestError(400, "prompt: a string (\"\" removes what is masked)", "prompt")
    negative = body.get("negative_prompt") or DEFAULT_NEGATIVE
    if not isinstance(negative, str):
        raise RequestError(400, "negative_prompt: a string", "negative_prompt")
    quality = body.get("quality") or "LOW"
    if quality not in QUALITY_STEPS:
        raise RequestError(400, f"quality: one of {', '.join(QUALITY_STEPS)}", "quality")
    seed = body.get("seed", -1)
    if seed is None or seed == "":
        seed = -1
    if isinstance(seed, bool) or not isinstance(seed, int) or \
            not (seed == -1 or 1 <= seed <= 4294967296):
        raise RequestError(400, "seed: -1 (random) or 1..4294967296", "seed")
    cfg = body.get("cfg_scale", 2.5)
    if isinstance(cfg, bool) or not isinstance(cfg, (int, float)) or not math.isfinite(cfg) \
            or not 0 < cfg <= 30:
        raise RequestError(400, "cfg_scale: a number > 0 and <= 30 (1.0-2.5 recommended)",
                           "cfg_scale")
    image = _image(body, "base_image", limits, fetched or {})
    mask = _image(body, "mask_image", limits, fetched or {})
    if (mask.width, mask.height) != (image.width, image.height):
        raise RequestError(400, f"mask_image: {mask.width}x{mask.height} is not the size of "
                           f"base_image ({image.width}x{image.height})", "mask_image")
    if prompt.strip() and not config.checkpoint:
        raise RequestError(400, "prompt: adding an object needs a model, and this server has "
                           "none configured for Photio (checkpoint under [serve.photio]); an "
                           "empty prompt removes what is masked", "prompt")
    return Regen(image, mask, prompt.strip(), negative, quality,
                 seed if seed != -1 else secrets.randbelow(4294967296) + 1, float(cfg))


def build(regen: Regen, image_file: str, mask_file: str, checkpoint: str
          ) -> tuple[prompts.Prompt, dict[str, str]]:
    """The Photio workflow for `regen`: the prompt and its result node."""
    name = WITH_MODEL[bool(regen.prompt)] if checkpoint else EMBEDDED
    prompt = prompts.workflow(name)
    photo = prompts.node_of(prompt, "LoadImage")
    prompt[photo]["inputs"]["image"] = image_file
    prompts.load_mask(prompt, prompts.node_of(prompt, "RegionRepair_MaskFromBBox"), mask_file,
                      photo, black_is_edit=True)
    inpaint = prompt[prompts.node_of(prompt, "RegionRepair_GuidedBlendInpaint")]["inputs"]
    inpaint.update(seed=regen.seed, steps=QUALITY_STEPS[regen.quality], cfg=regen.cfg_scale,
                   reviewer_note=regen.prompt)
    if checkpoint:
        prompts.with_model(prompt, inpaint, checkpoint, regen.prompt, regen.negative_prompt)
    result = prompts.save_to_temp(prompt)
    return prompts.prune(prompt, [result]), {"result": result}


def add_routes(routes: web.RouteTableDef, service: Service) -> None:
    config = service.config.vendor(VENDOR)

    @routes.post(PATH)
    @handler(VENDOR, error_body)
    async def regen(request: web.Request) -> web.StreamResponse:
        key_id = service.keys[VENDOR].match(request.headers.get("X-Photio-Key"))
        if key_id is None:
            raise RequestError(401, "X-Photio-Key: missing or not a key of this server")
        body = await service.read_json(request)
        limits = service.config.limits
        fetched = await fetch_urls(body, IMAGE_FIELDS, config.image_url_hosts, limits)
        parsed = await service.off_loop(parse, body, limits, config, fetched)
        job = await service.run(VENDOR, key_id, [parsed.base_image, parsed.mask_image],
                                lambda names: build(parsed, *names, config.checkpoint))
        image = (await service.runner.images(job.entry, job.meta["result"]))[0]
        return web.json_response({"status_code": 200,
                                  "body": base64.b64encode(image).decode("ascii")})
