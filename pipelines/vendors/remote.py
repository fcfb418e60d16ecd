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
from dataclasses import dataclass, replace
from typing import Any

import torch

from ..core import tensors
from ..core.cancel import never_cancelled
from ..core.info import record as info_record
from ..geometry import masks as mask_ops
from ..geometry.regions import blend_masked
from ..repair.reference_warp import check_reference_count
from . import images, keys, octoai, photio, picpik, piktid
from .http import HttpClient, VendorError, new_session
from .job import Candidate, Endpoint, RemoteSettings, Unit, VendorRun

# Each vendor module's `check`, `units`, `auth_headers` (and optionally MAX_ATTEMPTS).
VENDORS = {"piktid": piktid, "picpik": picpik, "photio": photio, "octoai": octoai}

NODE = "RemoteVendorInpaint"


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
class RemoteResult:
    images: torch.Tensor  # [k*B, H, W, C], candidate-major
    mask: torch.Tensor    # [B, H, W], fitted to the image
    info: list[dict[str, Any]]
    notes: list[str]


def check_requests(settings: RemoteSettings, height: int, width: int, ref_count: int) -> None:
    """Build every kind of request the run will send, with placeholders for the uploads, and
    validate it: a bad value is refused (with the vendor module's own message) before the first
    byte leaves."""
    try:
        VENDORS[settings.endpoint.vendor].check(settings, height, width, ref_count)
    except TypeError as exc:  # e.g. a string where the vendor takes a number
        raise ValueError(f"options: a value of the wrong type for {settings.endpoint.value} "
                         f"({exc})") from None


def _http(settings: RemoteSettings, session: Any, base_url: str,
          secrets: dict[str, keys.Secret]) -> HttpClient:
    vendor = settings.endpoint.vendor
    module = VENDORS[vendor]
    retry = settings.retry
    if hasattr(module, "MAX_ATTEMPTS"):
        retry = replace(retry, attempts=min(retry.attempts, module.MAX_ATTEMPTS))
    key = secrets["key"].reveal() if "key" in secrets else ""
    return HttpClient(session, vendor, base_url, auth=module.auth_headers(key),
                      secrets=[s.reveal() for s in secrets.values()],
                      key_hint=keys.hint(vendor), retry=retry, timeouts=settings.timeouts)


async def _run_units(units: list[Unit], concurrency: int,
                     step: Callable[[], None]) -> list[Any]:
    """Run the units concurrently; the first failure cancels the rest."""
    gate = asyncio.Semaphore(concurrency)

    async def gated(unit: Unit) -> Any:
        async with gate:
            result = await unit()
        step()
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
                     check_cancel: Callable[[], None] = never_cancelled,
                     step: Callable[[], None] = lambda: None,
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
    rgb = tensors.rgb(image)
    refs = [] if references is None else [tensors.rgb(ref) for ref in references]
    check_reference_count(len(refs))
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
            run = VendorRun(settings, _http(settings, session, base_url, secrets), secrets,
                            on_status)
            try:
                units = await VENDORS[vendor].units(run, rgb, mask, refs)
                return await _run_units(units, settings.concurrency, step)
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

