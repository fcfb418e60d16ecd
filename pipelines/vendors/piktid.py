"""PiktID v2: Detail Repair and Garment Recolor (as PiktID documents them).

Flow: `POST /project` (409 = exists, reuse it), two-step uploads (`POST /upload` for a pre-signed
URL, then `PUT` of the bytes with the issued Content-Type), `POST /detail-repair` or
`POST /garment-recolor`, then the job's progress through the SSE stream `/notifications/events`
(backfill, `backfill_complete`, live `data:` lines, `:` keepalives; reconnects replay whatever was
not deleted, and every notification of the job is deleted once used). If the stream is
unavailable the client polls `GET /jobs/{id}/status`, tolerating the documented 404 before a new
job becomes visible. Then `GET /jobs/{id}/results` and the downloads (no key sent: CloudFront
links), or the ZIP from `POST /download` for results without a link.

PiktID documents no endpoint to cancel a job: an interrupted run stops waiting, and the job
finishes (and is billed) at PiktID.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import zipfile
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..repair.reference_warp import MAX_REFERENCES
from . import images
from .http import TRANSPORT_ERRORS, HttpClient, VendorError
from .job import Candidate, Endpoint, RemoteSettings, Unit, VendorRun, decode, fields, png

logger = logging.getLogger("region_repair.vendors")

VENDOR = "piktid"
BASE_URL = "https://v2.api.piktid.com"
TERMINAL = {"completed", "failed", "aborted"}
MODELS = ("auto", "nano_banana_2", "nano_banana_pro", "seedream", "gpt_image")
MODES = ("marked", "marked-blend", "annotated", "annotated-blend", "guided", "guided-blend")
PROCESSING_SIZES = (1024, 2048, 4096)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass
class DetailRepairRequest:
    """`POST /detail-repair`, as the vendor documents it. `mode` and `context_factor` are
    enterprise-only and left out of the body when None (PiktID then uses guided-blend and 3.0)."""

    project_id: str
    image: str
    mask_image: str | None = None
    mask: dict[str, list[float]] | None = None  # {"bbox_norm": [x, y, w, h]}
    references: list[str] = field(default_factory=list)
    num_candidates: int = 1
    category: str = "logo"
    reviewer_note: str | None = None
    image_notes: list[str] = field(default_factory=list)
    model: str = "auto"
    add_ai_watermark: bool = False
    mode: str | None = None
    context_factor: float | None = None

    def validate(self) -> None:
        _check(self.mask_image is not None or self.mask is not None,
               "piktid detail-repair: give mask_image or mask.bbox_norm")
        _check(len(self.references) <= MAX_REFERENCES,
               f"references: PiktID takes at most {MAX_REFERENCES}, got {len(self.references)}")
        _check(1 <= self.num_candidates <= 4,
               f"candidates: PiktID detail-repair allows 1-4, got {self.num_candidates}")
        _check(self.model in MODELS, f"model: {self.model!r} is not one of {MODELS}")
        _check(self.mode is None or self.mode in MODES,
               f"mode: {self.mode!r} is not one of {MODES}")
        _check(self.context_factor is None or 1.5 <= self.context_factor <= 10.0,
               f"context_factor: 1.5-10.0, got {self.context_factor}")

    def body(self) -> dict[str, Any]:
        self.validate()
        body = asdict(self)
        return {key: value for key, value in body.items()
                if value is not None or key not in ("mode", "context_factor")}


@dataclass
class GarmentRecolorRequest:
    """`POST /garment-recolor`, as the vendor documents it: 1-10 images, at least one recolor
    target."""

    project_id: str
    images: list[str]
    garment_label: str | None = None
    reference_image: str | None = None
    reference_text: str | None = None
    instruction: str | None = None
    num_variations: int = 1
    model: str = "auto"
    processing_size: int = 2048
    post_process: bool = True
    use_anchor: bool = True
    add_ai_watermark: bool = False

    def validate(self) -> None:
        _check(1 <= len(self.images) <= 10,
               f"image: PiktID garment-recolor takes 1-10 images, got {len(self.images)}")
        _check(any((self.reference_image, self.reference_text, self.instruction)),
               "piktid garment-recolor needs a target: a reference image, a prompt "
               "(instruction) or options.reference_text")
        _check(1 <= self.num_variations <= 8,
               f"candidates: PiktID garment-recolor allows 1-8, got {self.num_variations}")
        _check(self.model in MODELS, f"model: {self.model!r} is not one of {MODELS}")
        _check(self.processing_size in PROCESSING_SIZES,
               f"processing_size: one of {PROCESSING_SIZES}, got {self.processing_size}")

    def body(self) -> dict[str, Any]:
        self.validate()
        return {key: value for key, value in asdict(self).items() if value is not None}


@dataclass
class Upload:
    file_id: str
    upload_url: str
    content_type: str
    download_url: str | None = None

    @classmethod
    def parse(cls, payload: dict[str, Any]) -> Upload:
        return cls(str(payload["file_id"]), payload["upload_url"], payload["content_type"],
                   payload.get("download_url"))


@dataclass
class JobStatus:
    job_id: str
    status: str
    progress: float | None = None
    total_images: int | None = None
    processed_images: int | None = None
    error_message: str | None = None

    @classmethod
    def parse(cls, payload: dict[str, Any]) -> JobStatus:
        return cls(str(payload.get("job_id") or payload.get("id_task")),
                   str(payload.get("status", "")).lower(), payload.get("progress"),
                   payload.get("total_images"), payload.get("processed_images"),
                   payload.get("error_message"))

    def text(self) -> str:
        done = (f" {self.processed_images}/{self.total_images}"
                if self.total_images is not None else "")
        return f"piktid job {self.job_id}: {self.status}{done}"


@dataclass
class JobResult:
    image_index: int
    group_index: int
    version: int
    status: str
    full_size: str | None
    error_message: str | None = None
    model_used: str | None = None
    needs_review: Any = None  # the vendor's documentation names the flag, not where it lives

    @classmethod
    def parse(cls, payload: dict[str, Any]) -> JobResult:
        output = payload.get("output") or {}
        return cls(int(payload.get("image_index", 0)), int(payload.get("group_index", 0)),
                   int(payload.get("version", 0)), str(payload.get("status", "")).lower(),
                   output.get("full_size"), payload.get("error_message"),
                   payload.get("model_used"), payload.get("needs_review"))


@dataclass
class Notification:
    id: int
    name: str
    data: dict[str, Any]

    @property
    def task_id(self) -> str | None:
        return self.data.get("id_task") or self.data.get("job_id")


@dataclass
class SSEEvent:
    event: str | None
    data: str


async def sse_events(lines: AsyncIterator[bytes]) -> AsyncIterator[SSEEvent]:
    """Server-sent events from a byte-line stream. Comments (`: keepalive`) are skipped; an event
    cut off by a dropped connection is not yielded (PiktID replays it on reconnect)."""
    event, data = None, []
    async for raw in lines:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data:
                yield SSEEvent(event, "\n".join(data))
            event, data = None, []
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)


class StreamUnavailable(Exception):
    """The SSE stream cannot be used; fall back to polling."""


class PiktID:
    def __init__(self, http: HttpClient, *, poll_interval: float = 5.0, sse: bool = True,
                 sse_idle: float = 45.0, sse_reconnects: int = 5,
                 not_visible_retries: int = 10, not_visible_delay: float = 5.0,
                 on_status: Callable[[str], None] = lambda text: None):
        self.http = http
        self.poll_interval, self.sse, self.sse_idle = poll_interval, sse, sse_idle
        self.sse_reconnects = sse_reconnects
        self.not_visible_retries, self.not_visible_delay = not_visible_retries, not_visible_delay
        self.on_status = on_status
        self._projects: dict[str, str] = {}
        self._project_lock = asyncio.Lock()

    # --- projects and uploads -------------------------------------------------------------
    async def project(self, name: str) -> str:
        """The id of project `name`, created if needed (409 = it exists)."""
        async with self._project_lock:  # concurrent jobs share one creation
            if name not in self._projects:
                response = await self.http.request("POST", "/project",
                                                   json_body={"project_name": name},
                                                   passthrough=(409,))
                payload = response.json()
                project_id = payload.get("project_id") if isinstance(payload, dict) else None
                if response.status == 409 and not project_id:
                    project_id = await self._find_project(name)
                if not project_id:
                    raise self.http.error("protocol", f"POST /project gave no project_id "
                                          f"(HTTP {response.status})")
                self._projects[name] = str(project_id)
        return self._projects[name]

    async def _find_project(self, name: str) -> str | None:
        listing = await self.http.json("GET", "/project", params={"per_page": "100"})
        for project in listing.get("projects", []):
            if project.get("project_text") == name or project.get("project_name") == name:
                return project.get("project_key") or project.get("project_id")
        return None

    async def upload(self, data: bytes, filename: str, project_name: str) -> str:
        """Two-step upload; returns the file_id."""
        ticket = Upload.parse(await self.http.json(
            "POST", "/upload", json_body={"project_name": project_name, "filename": filename}))
        # The signed URL carries its own authorisation: no key, and exactly the issued type.
        await self.http.request("PUT", ticket.upload_url, data=data, auth=False,
                                headers={"Content-Type": ticket.content_type})
        return ticket.file_id

    # --- jobs -----------------------------------------------------------------------------
    async def start_detail_repair(self, request: DetailRepairRequest) -> str:
        return await self._start("/detail-repair", request.body())

    async def start_garment_recolor(self, request: GarmentRecolorRequest) -> str:
        return await self._start("/garment-recolor", request.body())

    async def _start(self, path: str, body: dict[str, Any]) -> str:
        payload = await self.http.json("POST", path, json_body=body)
        if not isinstance(payload, dict) or not payload.get("job_id"):
            raise self.http.error("protocol", f"POST {path} answered without a job_id")
        self.on_status(f"piktid job {payload['job_id']}: {payload.get('status', 'pending')}")
        return str(payload["job_id"])

    async def wait(self, job_id: str) -> JobStatus:
        """Wait for a terminal status: SSE first, polling if the stream is unavailable."""
        if self.sse:
            try:
                return await self._wait_stream(job_id)
            except StreamUnavailable as reason:
                self.on_status(f"piktid: notifications stream unavailable ({reason}); "
                               "polling the job status")
        return await self._poll(job_id)

    async def _wait_stream(self, job_id: str) -> JobStatus:
        drops = 0
        while True:
            try:
                async with self.http.stream("/notifications/events", idle=self.sse_idle,
                                            params={"id_task": job_id,
                                                    "name_list": "batch_edit"}) as stream:
                    async for event in sse_events(stream.content):
                        status = await self._use(event, job_id)
                        if status is not None and status.status in TERMINAL:
                            return status
                reason = "the stream ended"
            except VendorError as exc:
                if exc.status in (404, 405, 501):
                    raise StreamUnavailable(f"HTTP {exc.status}") from None
                if exc.status is None or exc.status < 500:
                    raise
                reason = f"HTTP {exc.status}"
            except TRANSPORT_ERRORS as exc:
                reason = "no data for too long" if isinstance(exc, asyncio.TimeoutError) \
                    else f"connection lost ({type(exc).__name__})"
            drops += 1
            if drops > self.sse_reconnects:
                raise StreamUnavailable(f"{reason}; {drops} connections failed")
            self.on_status(f"piktid job {job_id}: stream lost ({reason}); reconnecting")
            await asyncio.sleep(min(8.0, self.http.retry.base_delay * 2 ** (drops - 1)))

    async def _use(self, event: SSEEvent, job_id: str) -> JobStatus | None:
        """Apply one event; notifications of this job are deleted once used."""
        if event.event == "backfill_complete":
            return None
        try:
            payload = json.loads(event.data)
            note = Notification(int(payload["id"]), str(payload.get("name", "")),
                                dict(payload.get("data") or {}))
        except (ValueError, KeyError, TypeError):
            logger.debug("piktid: skipped an unreadable notification")
            return None
        if note.task_id != job_id:
            return None
        status = None
        if note.name == "batch_edit":
            status = JobStatus.parse({**note.data, "job_id": job_id})
            self.on_status(status.text())
        await self.delete_notification(note.id)
        return status

    async def delete_notification(self, notification_id: int) -> None:
        # 404: already consumed (e.g. replayed after a reconnect that raced the delete).
        await self.http.request("DELETE", f"/notifications/{notification_id}",
                                passthrough=(404,))

    async def status(self, job_id: str) -> JobStatus | None:
        """The job's status, or None while the job is not visible yet (HTTP 404)."""
        response = await self.http.request("GET", f"/jobs/{job_id}/status", passthrough=(404,))
        return None if response.status == 404 else JobStatus.parse(response.json())

    async def _poll(self, job_id: str) -> JobStatus:
        misses, seen = 0, False
        while True:
            status = await self.status(job_id)
            if status is None:
                if seen or misses >= self.not_visible_retries:
                    raise self.http.error("not_found", f"job {job_id} not found "
                                          f"(HTTP 404 after {misses + 1} status checks)", 404)
                misses += 1
                await asyncio.sleep(self.not_visible_delay)
                continue
            seen = True
            self.on_status(status.text())
            if status.status in TERMINAL:
                return status
            await asyncio.sleep(self.poll_interval)

    async def results(self, job_id: str) -> list[JobResult]:
        """The job's results, only the latest version per (image_index, group_index)."""
        payload = await self.http.json("GET", f"/jobs/{job_id}/results")
        latest: dict[tuple[int, int], JobResult] = {}
        for item in payload.get("results") or []:
            result = JobResult.parse(item)
            key = (result.image_index, result.group_index)
            if key not in latest or result.version > latest[key].version:
                latest[key] = result
        return [latest[key] for key in sorted(latest)]

    async def download(self, url: str) -> bytes:
        return (await self.http.request("GET", url, auth=False)).body

    async def download_zip(self, job_id: str) -> dict[str, bytes]:
        """All outputs of a job through `POST /download` and its no-auth ZIP link."""
        link = await self.http.json("POST", "/download", json_body={"job_id": job_id})
        archive = await self.download(link["download_url"])
        try:
            with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
                return {name: zipped.read(name) for name in zipped.namelist()}
        except zipfile.BadZipFile:
            raise self.http.error("protocol", f"the download for job {job_id} is not a ZIP"
                                  ) from None

    async def finish(self, job_id: str) -> list[tuple[JobResult, bytes | None]]:
        """Wait for the job, then fetch every result's image (None for a failed candidate)."""
        final = await self.wait(job_id)
        if final.status != "completed":
            raise self.http.error("job_failed", f"job {job_id} {final.status}: "
                                  f"{final.error_message or 'no reason given'}")
        results = await self.results(job_id)
        if not any(result.status == "completed" for result in results):
            reasons = "; ".join(filter(None, (r.error_message for r in results)))
            raise self.http.error("job_failed", f"job {job_id} produced no image"
                                  + (f": {reasons}" if reasons else ""))
        archive: dict[str, bytes] | None = None
        fetched = []
        for result in results:
            data = None
            if result.status == "completed" and result.full_size:
                data = await self.download(result.full_size)
            elif result.status == "completed":
                archive = archive if archive is not None else await self.download_zip(job_id)
                data = _from_archive(archive, result)
            fetched.append((result, data))
        return fetched


def _from_archive(archive: dict[str, bytes], result: JobResult) -> bytes:
    # The official script's naming; PiktID does not document the ZIP's own layout.
    pattern = re.compile(rf"(^|/)output_{result.image_index}_{result.group_index}"
                         rf"_v{result.version}\.\w+$")
    for name, data in archive.items():
        if pattern.search(name):
            return data
    raise VendorError(VENDOR, "protocol", f"result {result.image_index}/{result.group_index} "
                      "has no link and is not in the job's ZIP")

# --- Remote Vendor Inpaint's requests and units (see job.py) ----------------------------------

# Options that fill request fields by name (the rest steer the client: see job.CLIENT_OPTIONS).
DETAIL_FIELDS = ("image_notes", "model", "add_ai_watermark", "mode", "context_factor")
GARMENT_FIELDS = ("garment_label", "reference_text", "model", "processing_size",
                  "post_process", "use_anchor", "add_ai_watermark")


def detail_request(settings: RemoteSettings, project_id: str, image_id: str, mask_id: str,
                   ref_ids: list[str]) -> DetailRepairRequest:
    return DetailRepairRequest(
        project_id, image_id, mask_image=mask_id, references=ref_ids,
        num_candidates=settings.candidates,
        category=settings.options.get("category", "general"),
        reviewer_note=settings.prompt.strip() or None,
        **fields(settings, DETAIL_FIELDS))


def garment_request(settings: RemoteSettings, project_id: str, image_ids: list[str],
                    ref_ids: list[str]) -> GarmentRecolorRequest:
    return GarmentRecolorRequest(
        project_id, image_ids, reference_image=ref_ids[0] if ref_ids else None,
        instruction=settings.prompt.strip() or None, num_variations=settings.candidates,
        **fields(settings, GARMENT_FIELDS))


def check(settings: RemoteSettings, height: int, width: int, ref_count: int) -> None:
    """Build the run's request with placeholders for the uploads (a bad value raises)."""
    transport = settings.options.get("transport", "sse")
    if transport not in ("sse", "poll"):
        raise ValueError(f"options.transport: 'sse' or 'poll', got {transport!r}")
    refs = [f"reference_{i}" for i in range(ref_count)]
    if settings.endpoint is Endpoint.PIKTID_DETAIL_REPAIR:
        detail_request(settings, "project", "image", "mask", refs).body()
    else:
        garment_request(settings, "project", ["image"], refs).body()


def auth_headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _client(run: VendorRun) -> PiktID:
    transport = run.settings.options.get("transport", "sse")
    return PiktID(run.http, poll_interval=run.poll(5.0), sse=transport == "sse",
                         sse_idle=run.settings.sse_idle,
                         not_visible_delay=run.settings.not_visible_delay,
                         on_status=run.on_status)


async def units(run: VendorRun, image: torch.Tensor, mask: torch.Tensor,
                refs: list[torch.Tensor]) -> list[Unit]:
    """One job per image (Detail Repair) or per 10 images (Garment Recolor)."""
    client = _client(run)
    project_name = str(run.settings.options.get("project_name", "comfyui-region-repair"))
    project_id = await client.project(project_name)
    ref_ids = [await client.upload(await png(ref), f"reference_{i}.png", project_name)
               for i, ref in enumerate(refs)]

    async def finish(job_id: str, count: int) -> list[list[Candidate]]:
        run.jobs.append(job_id)
        per_image: list[list[Candidate]] = [[] for _ in range(count)]
        for result, data in await client.finish(job_id):
            slot = per_image[min(result.image_index, count - 1)]
            notes = [] if data else [f"candidate failed at PiktID: "
                                     f"{result.error_message or 'no reason given'}"]
            extra = {"needs_review": result.needs_review} if result.needs_review else {}
            if result.model_used:
                extra["model_used"] = result.model_used
            slot.append(Candidate(await decode(data, "piktid", "a result") if data
                                  else None, None, job_id, notes, extra))
        return per_image

    if run.settings.endpoint is Endpoint.PIKTID_DETAIL_REPAIR:
        def unit(b: int) -> Unit:
            async def work() -> list[list[Candidate]]:
                image_id = await client.upload(await png(image[b]), f"image_{b}.png",
                                               project_name)
                mask_id = await client.upload(images.mask_png(mask[b]), f"mask_{b}.png",
                                              project_name)
                request = detail_request(run.settings, project_id, image_id, mask_id,
                                         ref_ids)
                return await finish(await client.start_detail_repair(request), 1)
            return work
        return [unit(b) for b in range(image.shape[0])]

    def chunk(start: int) -> Unit:
        async def work() -> list[list[Candidate]]:
            ids = [await client.upload(await png(image[b]), f"image_{b}.png", project_name)
                   for b in range(start, min(start + 10, image.shape[0]))]
            request = garment_request(run.settings, project_id, ids, ref_ids)
            return await finish(await client.start_garment_recolor(request), len(ids))
        return work
    return [chunk(start) for start in range(0, image.shape[0], 10)]
