"""OctoAI-compatible `POST /adetailer`, as the vendor documents it. OctoAI itself shut down on
2024-10-31: there is no default URL, and the caller must name a self-hosted compatible server.

/adetailer takes no mask: its detector (faces, hands, eyes) finds the regions itself, with
`mask_dilation`, `mask_blur` and `mask_padding`. The input must have one of the resolutions
listed for `inpainting_base_model`, so the image is resized to the nearest one and the result back.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..geometry.regions import SD15_BUCKETS, SDXL_BUCKETS
from . import images
from .http import HttpClient, VendorError
from .job import Candidate, RemoteSettings, Unit, VendorRun, decode, fields, png, vendor_seed

VENDOR = "octoai"
SHUTDOWN = ("OctoAI shut down on 2024-10-31 (acquired by NVIDIA); /adetailer only works with a "
            "self-hosted OctoAI-compatible server whose URL you give in base_url")
DETECTORS = ("face_yolov8n", "hand_yolov8n", "face_full_mediapipe", "face_short_mediapipe",
             "face_mesh_mediapipe", "eyes_mesh_mediapipe")
SAMPLERS = ("PNDM", "LMS", "KLMS", "DDIM", "DDPM", "HEUN", "K_HEUN", "K_EULER",
            "K_EULER_ANCESTRAL", "DPM_SOLVER_MULTISTEP", "DPM_PLUS_PLUS_2M_KARRAS", "DPM_SINGLE",
            "DPM_2", "DPM_2_ANCESTRAL", "DPM_PLUS_PLUS_SDE_KARRAS", "UNI_PC", "LCM")
RESOLUTIONS = {"sdxl": SDXL_BUCKETS, "sd15": SD15_BUCKETS}


def nearest_resolution(width: int, height: int, base_model: str) -> tuple[int, int]:
    """The listed resolution closest in aspect ratio, then in pixel count."""
    aspect = math.log(width / height)
    return min(RESOLUTIONS[base_model],
               key=lambda b: (round(abs(math.log(b[0] / b[1]) - aspect), 6),
                              abs(math.log(b[0] * b[1] / (width * height)))))


@dataclass
class AdetailerRequest:
    detector: str = "face_yolov8n"
    init_image: str | None = None       # base64
    init_image_url: str | None = None
    inpainting_base_model: str = "sdxl"
    prompt: str | None = None
    negative_prompt: str | None = None
    sampler: str | None = None
    steps: int = 20
    checkpoint: str | None = None
    loras: dict[str, float] | None = None
    use_refiner: bool = False
    style_preset: str = "base"
    strength: float = 0.9
    cfg_scale: float = 7.5
    seed: int | list[int] | None = None
    mask_dilation: int = 4
    mask_blur: int = 4
    mask_padding: int = 32
    max_num_detections: int | None = None
    confidence: float = 0.3
    union_masks: bool = False
    image_encoding: str = "png"

    def body(self) -> dict[str, Any]:
        seeds = self.seed if isinstance(self.seed, list) else [self.seed]
        checks = [(self.detector in DETECTORS, f"detector: one of {DETECTORS}"),
                  (self.init_image or self.init_image_url, "init_image or init_image_url"),
                  (self.inpainting_base_model in RESOLUTIONS,
                   "inpainting_base_model: sdxl or sd15"),
                  (self.sampler is None or self.sampler in SAMPLERS, f"sampler: one of {SAMPLERS}"),
                  (0 < self.cfg_scale <= 50, "cfg_scale: > 0 and <= 50"),
                  (all(s is None or 0 < s < 2 ** 32 for s in seeds), "seed: > 0 and < 2^32"),
                  (min(self.mask_dilation, self.mask_blur, self.mask_padding) >= 0,
                   "mask_dilation, mask_blur, mask_padding: >= 0"),
                  (self.image_encoding in ("png", "jpeg"), "image_encoding: png or jpeg")]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"octoai adetailer: {message}")
        return {key: value for key, value in asdict(self).items() if value is not None}


@dataclass
class AdetailerResponse:
    image: bytes | None
    num_objects_inpainted: int
    num_objects_detected: int
    num_removed_for_safety: int


class OctoAI:
    def __init__(self, http: HttpClient):
        if not http.base_url:
            raise VendorError(VENDOR, "config", SHUTDOWN)
        self.http = http

    async def adetailer(self, request: AdetailerRequest) -> AdetailerResponse:
        try:
            response = await self.http.request("POST", "/adetailer", json_body=request.body(),
                                               headers={"Accept": "application/json"})
        except VendorError as exc:
            if exc.kind in ("connection", "gone", "timeout") or exc.status == 404:
                raise VendorError(VENDOR, exc.kind, f"{str(exc).split(': ', 1)[1]}. {SHUTDOWN}",
                                  exc.status) from None
            raise
        payload = response.json()
        encoded = payload.get("image_b64")
        return AdetailerResponse(
            images.b64decode(encoded, VENDOR, "image_b64") if encoded else None,
            int(payload.get("num_objects_inpainted") or 0),
            int(payload.get("num_objects_detected") or 0),
            int(payload.get("num_removed_for_safety") or 0))

# --- Remote Vendor Inpaint's requests and units (see job.py) ----------------------------------

SEED_TOP = 2 ** 32 - 1


def request(settings: RemoteSettings, init_image: str, seed: int) -> AdetailerRequest:
    return AdetailerRequest(
        init_image=init_image, prompt=settings.prompt or None,
        negative_prompt=settings.negative_prompt or None, seed=None if seed < 0 else seed,
        **fields(settings))


def check(settings: RemoteSettings, height: int, width: int, ref_count: int) -> None:
    """A base URL is required (the service is gone); build the run's request with a
    placeholder image (a bad value raises)."""
    if not settings.base_url.strip():
        raise ValueError(f"base_url: {SHUTDOWN}")
    request(settings, "image", vendor_seed(settings.seed, 0, SEED_TOP)).body()


def auth_headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


MAX_ATTEMPTS = 3  # a dead service: fail fast


async def units(run: VendorRun, image: torch.Tensor, mask: torch.Tensor,
                refs: list[torch.Tensor]) -> list[Unit]:
    """One call per image and candidate; /adetailer finds its own regions (no mask, no
    references)."""
    client = OctoAI(run.http)
    base_model = run.settings.options.get("inpainting_base_model", "sdxl")
    height, width = image.shape[1:3]
    target_w, target_h = nearest_resolution(width, height, base_model)

    def unit(b: int, i: int) -> Unit:
        async def work() -> list[list[Candidate]]:
            seed = vendor_seed(run.settings.seed, i, SEED_TOP)
            sent = images.resize(image[b], target_h, target_w)
            answer = await client.adetailer(
                request(run.settings, images.b64(await png(sent)), seed))
            if answer.image is None:
                raise VendorError("octoai", "safety", f"the image was removed for safety "
                                  f"({answer.num_removed_for_safety} request(s))")
            notes = [f"adetailer detected {answer.num_objects_detected}, inpainted "
                     f"{answer.num_objects_inpainted} object(s) on its own (it takes no "
                     "mask)"]
            if (target_w, target_h) != (width, height):
                notes.append(f"sent at {target_w}x{target_h}, a {base_model} resolution")
            return [[Candidate(await decode(answer.image, "octoai", "image_b64"),
                               None if seed < 0 else seed, None, notes,
                               {"num_objects_detected": answer.num_objects_detected})]]
        return work
    return [unit(b, i) for i in range(run.settings.candidates)
            for b in range(image.shape[0])]
