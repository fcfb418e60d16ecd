"""What Remote Vendor Inpaint's run shares with each vendor's module: the settings, the run
(its HTTP client, status line and started jobs), one candidate, and the helpers a unit needs.

Each vendor module builds its own requests behind two functions of one signature, which
remote.py picks from a table: `check(settings, height, width, ref_count)` builds every request
with placeholders, so a bad value is refused before anything is sent, and
`units(run, image, mask, refs)` returns the run's units: coroutines, each giving candidates per
image.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ..core.choices import Choice
from ..core.info import KEEPS_CONTENT_ENDPOINTS
from ..geometry.regions import Blend, confined_blend
from . import images
from .http import HttpClient, RetryPolicy, Timeouts

if TYPE_CHECKING:  # keys imports the vendor modules, which import this one
    from .keys import Secret


class Endpoint(Choice):
    PIKTID_DETAIL_REPAIR = "piktid/detail-repair"
    PIKTID_GARMENT_RECOLOR = "piktid/garment-recolor"
    PICPIK_MODIFY_MASKED_PIXELS = "picpik/ModifyMaskedPixels"
    PHOTIO_REGEN = "photio/regen"
    OCTOAI_ADETAILER = "octoai-compatible/adetailer"

    @property
    def vendor(self) -> str:
        return self.value.split("/")[0].removesuffix("-compatible")

    @property
    def blend(self) -> Blend:
        """The endpoint's own blend: a recolour keeps the old content's shading on purpose and
        changes colour up to the garment's edge, which a seamless blend would pull back to the
        old colour wherever the mask is tighter than the garment; the edits replace content."""
        return Blend.INWARD if self.value in KEEPS_CONTENT_ENDPOINTS else Blend.SEAMLESS


# What the `options` JSON may set per endpoint; everything else comes from the node's inputs.
OPTIONS: dict[Endpoint, tuple[str, ...]] = {
    Endpoint.PIKTID_DETAIL_REPAIR: ("project_name", "category", "image_notes", "model",
                                    "add_ai_watermark", "mode", "context_factor", "transport"),
    Endpoint.PIKTID_GARMENT_RECOLOR: ("project_name", "garment_label", "reference_text",
                                      "model", "processing_size", "post_process", "use_anchor",
                                      "add_ai_watermark", "transport"),
    Endpoint.PICPIK_MODIFY_MASKED_PIXELS: (
        "main_model", "inference_params", "sub_models", "translate_prompts", "width", "height",
        "use_main_model_vae", "image2image_strength", "refer_strength", "mask_blur",
        "prompts_more_important"),
    Endpoint.PHOTIO_REGEN: ("quality", "cfg_scale"),
    Endpoint.OCTOAI_ADETAILER: (
        "detector", "inpainting_base_model", "sampler", "steps", "checkpoint", "loras",
        "use_refiner", "style_preset", "strength", "cfg_scale", "mask_dilation", "mask_blur",
        "mask_padding", "max_num_detections", "confidence", "union_masks", "image_encoding"),
}


@dataclass
class RemoteSettings:
    endpoint: Endpoint | str
    base_url: str = ""
    prompt: str = ""
    negative_prompt: str = ""
    candidates: int = 1
    seed: int = -1          # -1: the vendor picks
    options: dict[str, Any] = field(default_factory=dict)
    blend: bool = True
    feather: int = 4  # the inward blend method's ramp
    blend_method: Blend | str | None = None  # None: the endpoint's own (Endpoint.blend)
    timeout: float = 900.0  # the whole run
    concurrency: int = 4
    retry: RetryPolicy = RetryPolicy()
    timeouts: Timeouts = Timeouts()
    poll_interval: float | None = None  # None: the vendor client's default
    sse_idle: float = 45.0
    not_visible_delay: float = 5.0

    def __post_init__(self) -> None:
        self.endpoint = Endpoint(self.endpoint)
        self.blend_method = (self.endpoint.blend if self.blend_method is None
                             else confined_blend(self.blend_method, "blend_method"))
        allowed = OPTIONS[self.endpoint]
        unknown = sorted(set(self.options) - set(allowed))
        if unknown:
            raise ValueError(f"options: {', '.join(unknown)} not accepted by {self.endpoint.value}"
                             f"; allowed: {', '.join(allowed)}")
        if not 1 <= self.candidates <= 16:
            raise ValueError(f"candidates: 1-16, got {self.candidates}")


@dataclass
class Candidate:
    """One vendor output for one image: the image (None when that candidate failed)."""

    image: torch.Tensor | None
    seed: int | None = None
    job_id: str | None = None
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


Unit = Callable[[], Awaitable[list[list[Candidate]]]]


@dataclass
class VendorRun:
    """One node run against one vendor."""

    settings: RemoteSettings
    http: HttpClient
    secrets: dict[str, Secret]
    on_status: Callable[[str], None]
    jobs: list[str] = field(default_factory=list)  # started, for the message on a stop

    def poll(self, default: float) -> float:
        """The poll interval: the settings' when set, else the vendor client's `default`."""
        return default if self.settings.poll_interval is None else self.settings.poll_interval


def vendor_seed(seed: int, index: int, top: int) -> int:
    """Candidate `index`'s seed in 1..top (-1 stays -1: the vendor picks)."""
    return -1 if seed < 0 else (max(1, seed) + index - 1) % top + 1


# Options that steer the client rather than fill a request field.
CLIENT_OPTIONS = ("transport", "project_name", "image2image_strength")


def fields(settings: RemoteSettings, names: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The options that fill request fields: `names` only, or all but CLIENT_OPTIONS."""
    return {key: value for key, value in settings.options.items()
            if (key in names if names else key not in CLIENT_OPTIONS)}


async def png(image: torch.Tensor) -> bytes:
    # Encoding and decoding run in threads (zlib releases the GIL), so candidates overlap.
    return await asyncio.to_thread(images.png, image)


async def decode(data: bytes, vendor: str, what: str) -> torch.Tensor:
    return await asyncio.to_thread(images.decode, data, vendor, what)
