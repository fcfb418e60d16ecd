"""Photio Regen, as the vendor documents it: `POST /v1/inference/regen`, key in `X-Photio-Key`,
synchronous.

The answer is `{"status_code": ..., "body": "<base64 image>"}`; the body's `status_code` can
report an error under HTTP 200, so both are checked. Photio's mask is **black = edit**: the
pack's mask (1 = edit) is inverted before sending. The output has the input's size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from . import images
from .http import HttpClient, Response, VendorError
from .job import Candidate, RemoteSettings, Unit, VendorRun, decode, fields, png, vendor_seed

VENDOR = "photio"
BASE_URL = "https://api.photio.io"
QUALITIES = ("LOW", "MIDDLE", "HIGH")
DEFAULT_NEGATIVE = "worst quality, low quality, illustration, 3d, 2d, painting, cartoons, sketch"


@dataclass
class RegenRequest:
    base_image: str   # base64 PNG
    mask_image: str   # base64 PNG, black = edit
    prompt: str = ""  # "" removes what is masked; text adds it
    negative_prompt: str = DEFAULT_NEGATIVE
    quality: str = "LOW"
    seed: int = -1    # -1 = random, else 1..4294967296
    cfg_scale: float = 2.5

    def body(self) -> dict[str, Any]:
        if self.quality not in QUALITIES:
            raise ValueError(f"quality: {self.quality!r} is not one of {QUALITIES}")
        if self.seed != -1 and not 1 <= self.seed <= 4294967296:
            raise ValueError(f"seed: Photio takes -1 or 1..4294967296, got {self.seed}")
        if not self.cfg_scale > 0:
            raise ValueError(f"cfg_scale: must be > 0 (1.0-2.5 recommended), got "
                             f"{self.cfg_scale}")
        return asdict(self)


def _envelope(response: Response) -> tuple[int, Any] | None:
    """Photio's body status: an error reported under HTTP 200 is handled as that status."""
    payload = response.json()
    code = payload.get("status_code", 200) if isinstance(payload, dict) else 200
    if isinstance(code, str) and code.strip().isdigit():
        code = int(code)
    if isinstance(code, bool) or not isinstance(code, int):
        raise VendorError(VENDOR, "protocol", f"regen answered a status_code that is not a "
                          f"number (a {type(code).__name__}), HTTP {response.status}")
    return None if code == 200 else (code, payload)


class Photio:
    def __init__(self, http: HttpClient):
        self.http = http

    async def regen(self, request: RegenRequest) -> bytes:
        """The edited image's bytes."""
        payload = (await self.http.request("POST", "/v1/inference/regen",
                                           json_body=request.body(),
                                           envelope=_envelope)).json()
        body = payload.get("body") if isinstance(payload, dict) else None
        if not isinstance(body, str) or not body:
            raise self.http.error("protocol", "regen answered without an image in 'body'")
        return images.b64decode(body, VENDOR, "regen's body")

# --- Remote Vendor Inpaint's requests and units (see job.py) ----------------------------------

SEED_TOP = 4294967296  # seeds are 1..2^32


def request(settings: RemoteSettings, image_b64: str, mask_b64: str, seed: int
            ) -> RegenRequest:
    return RegenRequest(
        image_b64, mask_b64, prompt=settings.prompt,
        negative_prompt=settings.negative_prompt or DEFAULT_NEGATIVE, seed=seed,
        **fields(settings))


def check(settings: RemoteSettings, height: int, width: int, ref_count: int) -> None:
    """Build the run's request with placeholders for the images (a bad value raises)."""
    request(settings, "image", "mask", vendor_seed(settings.seed, 0, SEED_TOP)).body()


def auth_headers(key: str) -> dict[str, str]:
    return {"X-Photio-Key": key}


async def units(run: VendorRun, image: torch.Tensor, mask: torch.Tensor,
                refs: list[torch.Tensor]) -> list[Unit]:
    """One call per image and candidate (seeds seed, seed+1, ...); Photio takes no
    references."""
    client = Photio(run.http)

    def unit(b: int, i: int) -> Unit:
        async def work() -> list[list[Candidate]]:
            seed = vendor_seed(run.settings.seed, i, SEED_TOP)
            data = await client.regen(request(
                run.settings, images.b64(await png(image[b])),
                images.b64(images.mask_png(mask[b], edit_is_black=True)), seed))
            return [[Candidate(await decode(data, "photio", "regen's image"),
                               None if seed < 0 else seed)]]
        return work
    return [unit(b, i) for i in range(run.settings.candidates)
            for b in range(image.shape[0])]
