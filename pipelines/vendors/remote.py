"""RemoteVendorInpaint's pipeline: one IMAGE batch and MASK through a vendor's API, back to IMAGE
batches at the original size, optionally confined to the mask by the pack's exact blend.

Work is split into units that run concurrently (at most `concurrency` at a time):
- PiktID Detail Repair and PICPIK: one job per image, all candidates in it (`num_candidates`,
  `BatchSize`), as the vendors bill and rate-limit per job;
- PiktID Garment Recolor: one job for up to 10 images, candidates as `num_variations`;
- Photio and OctoAI-compatible /adetailer return one image per call: one call per image and
  candidate, with seeds seed, seed+1, ...
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from .. import masks as mask_ops
from ..choices import Choice
from ..info import KEEPS_CONTENT_ENDPOINTS, record as info_record
from ..regions import Blend, blend_masked, confined_blend
from . import images, keys, octoai, photio, picpik, piktid
from .http import HttpClient, RetryPolicy, Timeouts, VendorError, new_session

NODE = "RemoteVendorInpaint"


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
        if self.endpoint.vendor == "octoai" and not self.base_url.strip():
            raise ValueError(f"base_url: {octoai.SHUTDOWN}")


def parse_options(text: str) -> dict[str, Any]:
    """The node's `options` string: a JSON object (empty = none)."""
    if not text.strip():
        return {}

    def not_finite(name: str) -> Any:
        raise ValueError(f"options: {name} is not a finite number")

    try:
        value = json.loads(text, parse_constant=not_finite)
    except json.JSONDecodeError as exc:
        raise ValueError(f"options: not valid JSON ({exc.msg} at line {exc.lineno}, column "
                         f"{exc.colno})") from None
    if not isinstance(value, dict):
        raise ValueError("options: must be a JSON object, e.g. {\"quality\": \"HIGH\"}")
    return value


def unit_count(endpoint: Endpoint | str, batch: int, candidates: int) -> int:
    """How many concurrent units (jobs or calls) a run makes, for the progress bar."""
    endpoint = Endpoint(endpoint)
    if endpoint is Endpoint.PIKTID_GARMENT_RECOLOR:
        return -(-batch // 10)
    if endpoint in (Endpoint.PIKTID_DETAIL_REPAIR, Endpoint.PICPIK_MODIFY_MASKED_PIXELS):
        return batch
    return batch * candidates


@dataclass
class Candidate:
    """One vendor output for one image: the image (None when that candidate failed)."""

    image: torch.Tensor | None
    seed: int | None = None
    job_id: str | None = None
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RemoteResult:
    images: torch.Tensor  # [k*B, H, W, C], candidate-major
    mask: torch.Tensor    # [B, H, W], fitted to the image
    info: list[dict[str, Any]]
    notes: list[str]


def _vendor_seed(seed: int, index: int, top: int) -> int:
    """Candidate `index`'s seed in 1..top (-1 stays -1: the vendor picks)."""
    return -1 if seed < 0 else (max(1, seed) + index - 1) % top + 1


# --- the vendors' requests, built once for the run and once with placeholders to check them ---
PIKTID_DETAIL_FIELDS = ("image_notes", "model", "add_ai_watermark", "mode", "context_factor")
PIKTID_GARMENT_FIELDS = ("garment_label", "reference_text", "model", "processing_size",
                         "post_process", "use_anchor", "add_ai_watermark")
# Options that steer the client rather than fill a request field.
CLIENT_OPTIONS = ("transport", "project_name", "image2image_strength")


def _fields(settings: RemoteSettings, names: tuple[str, ...] | None = None) -> dict[str, Any]:
    return {key: value for key, value in settings.options.items()
            if (key in names if names else key not in CLIENT_OPTIONS)}


def _piktid_detail(settings: RemoteSettings, project_id: str, image_id: str, mask_id: str,
                   ref_ids: list[str]) -> piktid.DetailRepairRequest:
    return piktid.DetailRepairRequest(
        project_id, image_id, mask_image=mask_id, references=ref_ids,
        num_candidates=settings.candidates,
        category=settings.options.get("category", "general"),
        reviewer_note=settings.prompt.strip() or None,
        **_fields(settings, PIKTID_DETAIL_FIELDS))


def _piktid_garment(settings: RemoteSettings, project_id: str, image_ids: list[str],
                    ref_ids: list[str]) -> piktid.GarmentRecolorRequest:
    return piktid.GarmentRecolorRequest(
        project_id, image_ids, reference_image=ref_ids[0] if ref_ids else None,
        instruction=settings.prompt.strip() or None, num_variations=settings.candidates,
        **_fields(settings, PIKTID_GARMENT_FIELDS))


def _picpik(settings: RemoteSettings, listed: list[str], height: int, width: int
            ) -> picpik.ModifyMaskedPixelsRequest:
    """`listed`: the image and mask data URIs, and the first reference's when one is given."""
    scale = min(1.0, 2560 / max(height, width))
    size = {"width": max(64, round(width * scale / 8) * 8),
            "height": max(64, round(height * scale / 8) * 8)}
    extra = None
    if len(listed) > 2:  # the first reference, as Image2Image's extra image
        extra = {"ImageIndex": 2,
                 "ReferStrength": settings.options.get("image2image_strength", 0.5)}
    return picpik.ModifyMaskedPixelsRequest(
        listed, positive_prompts=[settings.prompt] if settings.prompt else [],
        negative_prompts=[settings.negative_prompt] if settings.negative_prompt else [],
        seed=settings.seed, batch_size=settings.candidates, image2image=extra,
        **{**size, **_fields(settings)})


def _photio(settings: RemoteSettings, image_b64: str, mask_b64: str, seed: int
            ) -> photio.RegenRequest:
    return photio.RegenRequest(
        image_b64, mask_b64, prompt=settings.prompt,
        negative_prompt=settings.negative_prompt or photio.DEFAULT_NEGATIVE, seed=seed,
        **_fields(settings))


def _octoai(settings: RemoteSettings, init_image: str, seed: int) -> octoai.AdetailerRequest:
    return octoai.AdetailerRequest(
        init_image=init_image, prompt=settings.prompt or None,
        negative_prompt=settings.negative_prompt or None, seed=None if seed < 0 else seed,
        **_fields(settings))


def check_requests(settings: RemoteSettings, height: int, width: int, ref_count: int) -> None:
    """Build every kind of request the run will send, with placeholders for the uploads, and
    validate it: a bad value is refused (with the vendor module's own message) before the first
    byte leaves."""
    endpoint = settings.endpoint
    refs = [f"reference_{i}" for i in range(ref_count)]
    try:
        if endpoint.vendor == "piktid":
            transport = settings.options.get("transport", "sse")
            if transport not in ("sse", "poll"):
                raise ValueError(f"options.transport: 'sse' or 'poll', got {transport!r}")
        if endpoint is Endpoint.PIKTID_DETAIL_REPAIR:
            _piktid_detail(settings, "project", "image", "mask", refs).body()
        elif endpoint is Endpoint.PIKTID_GARMENT_RECOLOR:
            _piktid_garment(settings, "project", ["image"], refs).body()
        elif endpoint is Endpoint.PICPIK_MODIFY_MASKED_PIXELS:
            _picpik(settings, ["image", "mask", *refs[:1]], height, width).params()
        elif endpoint is Endpoint.PHOTIO_REGEN:
            _photio(settings, "image", "mask", _vendor_seed(settings.seed, 0, 4294967296)
                    ).body()
        else:
            _octoai(settings, "image", _vendor_seed(settings.seed, 0, 2 ** 32 - 1)).body()
    except TypeError as exc:  # e.g. a string where the vendor takes a number
        raise ValueError(f"options: a value of the wrong type for {endpoint.value} ({exc})"
                         ) from None


class _Run:
    def __init__(self, settings: RemoteSettings, session: Any, base_url: str,
                 secrets: dict[str, keys.Secret], on_status: Callable[[str], None]):
        self.settings, self.on_status = settings, on_status
        self.jobs: list[str] = []
        vendor = settings.endpoint.vendor
        key = secrets["key"].reveal() if "key" in secrets else ""
        auth = {"photio": {"X-Photio-Key": key}, "picpik": {}}.get(
            vendor, {"Authorization": f"Bearer {key}"})
        retry = settings.retry
        if vendor == "octoai":  # a dead service: fail fast
            retry = replace(retry, attempts=min(retry.attempts, 3))
        self.http = HttpClient(session, vendor, base_url,
                               auth=auth, secrets=[s.reveal() for s in secrets.values()],
                               key_hint=keys.hint(vendor), retry=retry,
                               timeouts=settings.timeouts)
        self.secrets = secrets

    def poll(self, default: float) -> float:
        return self.settings.poll_interval if self.settings.poll_interval is not None else \
            default

    # --- PiktID -----------------------------------------------------------------------------
    def piktid(self) -> piktid.PiktID:
        transport = self.settings.options.get("transport", "sse")
        return piktid.PiktID(self.http, poll_interval=self.poll(5.0), sse=transport == "sse",
                             sse_idle=self.settings.sse_idle,
                             not_visible_delay=self.settings.not_visible_delay,
                             on_status=self.on_status)

    async def piktid_units(self, image, mask, refs) -> list[Callable[[], Awaitable]]:
        client = self.piktid()
        project_name = str(self.settings.options.get("project_name", "comfyui-region-repair"))
        project_id = await client.project(project_name)
        ref_ids = [await client.upload(await _png(ref), f"reference_{i}.png", project_name)
                   for i, ref in enumerate(refs)]

        async def finish(job_id: str, count: int) -> list[list[Candidate]]:
            self.jobs.append(job_id)
            per_image: list[list[Candidate]] = [[] for _ in range(count)]
            for result, data in await client.finish(job_id):
                slot = per_image[min(result.image_index, count - 1)]
                notes = [] if data else [f"candidate failed at PiktID: "
                                         f"{result.error_message or 'no reason given'}"]
                extra = {"needs_review": result.needs_review} if result.needs_review else {}
                if result.model_used:
                    extra["model_used"] = result.model_used
                slot.append(Candidate(await _decode(data, "piktid", "a result") if data
                                      else None, None, job_id, notes, extra))
            return per_image

        if self.settings.endpoint is Endpoint.PIKTID_DETAIL_REPAIR:
            def unit(b: int) -> Callable[[], Awaitable]:
                async def run() -> list[list[Candidate]]:
                    image_id = await client.upload(await _png(image[b]), f"image_{b}.png",
                                                   project_name)
                    mask_id = await client.upload(images.mask_png(mask[b]), f"mask_{b}.png",
                                                  project_name)
                    request = _piktid_detail(self.settings, project_id, image_id, mask_id,
                                             ref_ids)
                    return await finish(await client.start_detail_repair(request), 1)
                return run
            return [unit(b) for b in range(image.shape[0])]

        def chunk(start: int) -> Callable[[], Awaitable]:
            async def run() -> list[list[Candidate]]:
                ids = [await client.upload(await _png(image[b]), f"image_{b}.png", project_name)
                       for b in range(start, min(start + 10, image.shape[0]))]
                request = _piktid_garment(self.settings, project_id, ids, ref_ids)
                return await finish(await client.start_garment_recolor(request), len(ids))
            return run
        return [chunk(start) for start in range(0, image.shape[0], 10)]

    # --- PICPIK -----------------------------------------------------------------------------
    def picpik_units(self, image, mask, refs) -> list[Callable[[], Awaitable]]:
        client = picpik.PICPIK(self.http, self.secrets["public_key"].reveal(),
                               self.secrets["private_key"].reveal(),
                               poll_interval=self.poll(3.0), on_status=self.on_status)
        height, width = image.shape[1:3]
        k, seed = self.settings.candidates, self.settings.seed

        def unit(b: int) -> Callable[[], Awaitable]:
            async def run() -> list[list[Candidate]]:
                listed = [images.data_uri(await _png(image[b])),
                          images.data_uri(images.mask_png(mask[b]))]
                listed += [images.data_uri(await _png(ref)) for ref in refs[:1]]
                uid = await client.modify_masked_pixels(_picpik(self.settings, listed, height,
                                                                width))
                self.jobs.append(uid)
                detail = await client.wait(uid)
                # Downloaded at once: PICPIK keeps the images 24 h.
                blobs = [await client.download(url) for url in detail.img_list]
                return [[Candidate(await _decode(blob, "picpik", "a result"),
                                   seed if seed >= 0 else detail.seed, detail.task_uid)
                         for blob in blobs[:k]]]
            return run
        return [unit(b) for b in range(image.shape[0])]

    # --- Photio and OctoAI ------------------------------------------------------------------
    def photio_units(self, image, mask) -> list[Callable[[], Awaitable]]:
        client = photio.Photio(self.http)

        def unit(b: int, i: int) -> Callable[[], Awaitable]:
            async def run() -> list[list[Candidate]]:
                seed = _vendor_seed(self.settings.seed, i, 4294967296)
                request = _photio(self.settings, images.b64(await _png(image[b])),
                                  images.b64(images.mask_png(mask[b], edit_is_black=True)),
                                  seed)
                data = await client.regen(request)
                return [[Candidate(await _decode(data, "photio", "regen's image"),
                                   None if seed < 0 else seed)]]
            return run
        return [unit(b, i) for i in range(self.settings.candidates)
                for b in range(image.shape[0])]

    def octoai_units(self, image) -> list[Callable[[], Awaitable]]:
        client = octoai.OctoAI(self.http)
        base_model = self.settings.options.get("inpainting_base_model", "sdxl")
        height, width = image.shape[1:3]
        target_w, target_h = octoai.nearest_resolution(width, height, base_model)

        def unit(b: int, i: int) -> Callable[[], Awaitable]:
            async def run() -> list[list[Candidate]]:
                seed = _vendor_seed(self.settings.seed, i, 2 ** 32 - 1)
                sent = images.resize(image[b], target_h, target_w)
                answer = await client.adetailer(
                    _octoai(self.settings, images.b64(await _png(sent)), seed))
                if answer.image is None:
                    raise VendorError("octoai", "safety", f"the image was removed for safety "
                                      f"({answer.num_removed_for_safety} request(s))")
                notes = [f"adetailer detected {answer.num_objects_detected}, inpainted "
                         f"{answer.num_objects_inpainted} object(s) on its own (it takes no "
                         "mask)"]
                if (target_w, target_h) != (width, height):
                    notes.append(f"sent at {target_w}x{target_h}, a {base_model} resolution")
                return [[Candidate(await _decode(answer.image, "octoai", "image_b64"),
                                   None if seed < 0 else seed, None, notes,
                                   {"num_objects_detected": answer.num_objects_detected})]]
            return run
        return [unit(b, i) for i in range(self.settings.candidates)
                for b in range(image.shape[0])]


async def _png(image: torch.Tensor) -> bytes:
    # Encoding and decoding run in threads (zlib releases the GIL), so candidates overlap.
    return await asyncio.to_thread(images.png, image)


async def _decode(data: bytes, vendor: str, what: str) -> torch.Tensor:
    return await asyncio.to_thread(images.decode, data, vendor, what)


async def _run_units(units: list[Callable[[], Awaitable]], concurrency: int,
                     on_progress: Callable[[], None]) -> list[Any]:
    """Run the units concurrently; the first failure cancels the rest."""
    gate = asyncio.Semaphore(concurrency)

    async def gated(unit: Callable[[], Awaitable]) -> Any:
        async with gate:
            result = await unit()
        on_progress()
        return result

    tasks = [asyncio.ensure_future(gated(unit)) for unit in units]
    try:
        return await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _cancellable(work: Awaitable, check_cancel: Callable[[], None]) -> Any:
    """Await `work`, checking for an interrupt every 0.2 s whatever it is waiting on (a
    project, an upload, a server that never answers); an interrupt cancels it at once."""
    task = asyncio.ensure_future(work)
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=0.2)
            if not task.done():
                check_cancel()
        return task.result()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def run_remote(image: torch.Tensor, mask: torch.Tensor, settings: RemoteSettings,
                     references: torch.Tensor | None = None, *,
                     env: Mapping[str, str] = os.environ,
                     check_cancel: Callable[[], None] = mask_ops.never_cancelled,
                     on_progress: Callable[[], None] = lambda: None,
                     on_status: Callable[[str], None] = lambda text: None) -> RemoteResult:
    """Send each image of `image` ([B, H, W, C]) and its mask to the vendor; return k results per
    image at the original size (candidate-major), the fitted mask, the info list and notes."""
    endpoint = Endpoint(settings.endpoint)
    batch, height, width = image.shape[:3]
    mask, notes = mask_ops.fit_to_image(mask, batch, height, width)
    mask = mask.repeat(batch // mask.shape[0], 1, 1).to(image.device)
    for b in range(batch):
        if not (mask[b] > 0.5).any():
            raise ValueError(f"mask: image {b} has no masked pixel (values > 0.5); nothing "
                             "to send")
    rgb = image[..., :3] if image.shape[-1] >= 3 else image[..., :1].repeat(1, 1, 1, 3)
    refs = [] if references is None else [ref[..., :3] for ref in references]
    if len(refs) > 10:
        raise ValueError(f"references: at most 10 images, got {len(refs)}")
    check_requests(settings, height, width, len(refs))
    vendor = endpoint.vendor
    base_url = keys.base_url(vendor, settings.base_url, env)
    secrets = keys.credentials(vendor, env)
    if vendor == "octoai":
        notes.append(f"{octoai.SHUTDOWN}; using {settings.base_url.strip()}")
    if refs and endpoint in (Endpoint.PHOTIO_REGEN, Endpoint.OCTOAI_ADETAILER):
        notes.append(f"references ignored: {endpoint.value} takes none")
    refs_used = bool(refs) and endpoint not in (Endpoint.PHOTIO_REGEN, Endpoint.OCTOAI_ADETAILER)
    ref_count = (len(refs) if endpoint is Endpoint.PIKTID_DETAIL_REPAIR else min(1, len(refs))
                 ) if refs_used else 0

    async def main() -> list[Any]:
        async with new_session() as session:
            run = _Run(settings, session, base_url, secrets, on_status)
            try:
                if vendor == "piktid":
                    units = await run.piktid_units(rgb, mask, refs)
                elif vendor == "picpik":
                    units = run.picpik_units(rgb, mask, refs)
                elif vendor == "photio":
                    units = run.photio_units(rgb, mask)
                else:
                    units = run.octoai_units(rgb)
                return await _run_units(units, settings.concurrency, on_progress)
            except BaseException:
                if run.jobs:
                    on_status(f"stopped; {vendor} documents no cancel, so job(s) "
                              f"{', '.join(run.jobs)} may still finish (and be billed) there")
                raise

    try:
        outputs = await asyncio.wait_for(_cancellable(main(), check_cancel), settings.timeout)
    except asyncio.TimeoutError:
        raise VendorError(vendor, "timeout", f"no result within {settings.timeout:g} s "
                          "(timeout_s)") from None
    per_image = _per_image(endpoint, outputs, batch)
    return _assemble(image, rgb, mask, per_image, settings, notes, refs_used, ref_count,
                     check_cancel)


def _per_image(endpoint: Endpoint, outputs: list[Any], batch: int) -> list[list[Candidate]]:
    """Unit outputs to candidates per image, in candidate order."""
    if endpoint in (Endpoint.PHOTIO_REGEN, Endpoint.OCTOAI_ADETAILER):
        # units ran candidate-major: unit i*B + b
        per_image: list[list[Candidate]] = [[] for _ in range(batch)]
        for index, output in enumerate(outputs):
            per_image[index % batch] += output[0]
        return per_image
    return [candidates for output in outputs for candidates in output]


def _assemble(image: torch.Tensor, rgb: torch.Tensor, mask: torch.Tensor,
              per_image: list[list[Candidate]], settings: RemoteSettings, notes: list[str],
              refs_used: bool, ref_count: int, check_cancel: Callable[[], None]
              ) -> RemoteResult:
    endpoint = Endpoint(settings.endpoint)
    batch, height, width = rgb.shape[:3]
    k = settings.candidates
    results, info = [], []
    for i in range(k):
        for b in range(batch):
            found = per_image[b][i] if i < len(per_image[b]) else Candidate(
                None, notes=[f"the vendor returned {len(per_image[b])} of {k} candidates"])
            own = list(found.notes)
            new = found.image
            if new is None:
                new = rgb[b]
                own.append("output is the unchanged input")
            elif tuple(new.shape[:2]) != (height, width):
                own.append(f"the vendor returned {new.shape[1]}x{new.shape[0]}; resized to the "
                           f"original {width}x{height}")
                new = images.resize(new.to(rgb.device), height, width)
            results.append(new.to(rgb.device, rgb.dtype))
            entry = info_record(NODE, b, i, seed=found.seed, engine=f"vendor:{endpoint.vendor}",
                                mode=settings.options.get("mode") if endpoint is
                                Endpoint.PIKTID_DETAIL_REPAIR else None,
                                blend="mask" if settings.blend else "none",
                                references_used=refs_used, reference_count=ref_count, notes=own,
                                vendor=endpoint.vendor, endpoint=endpoint.value)
            if found.job_id:
                entry["job_id"] = found.job_id
            entry.update(found.extra)
            info.append(entry)
            notes += [f"image {b} candidate {i}: {note}" for note in own]
    new = torch.stack(results)
    out = (blend_masked(rgb, new, mask, settings.feather, settings.blend_method, check_cancel)
           if settings.blend else new)
    if image.shape[-1] == 4:  # the input's alpha comes back unchanged
        out = torch.cat([out, image[..., 3:].repeat(k, 1, 1, 1)], dim=-1)
    return RemoteResult(out, mask, info, notes)

