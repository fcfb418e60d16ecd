"""A faithful fake of PiktID v2 (vendor-protocols.md §1.9): projects, pre-signed uploads, Detail
Repair and Garment Recolor jobs, status and results, the SSE notifications stream, notification
polling and deletion, ZIP downloads and webhooks. Knobs and switches are plain attributes."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import itertools
import json
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web

from .base import FakeVendor, decode, edit, encode, fit

TOKEN = "piktid-test-token-3f9c2a"
CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg"}
MODELS = ("auto", "nano_banana_2", "nano_banana_pro", "seedream", "gpt_image")


def envelope(message: str, status: int, field_name: str | None = None) -> web.Response:
    return web.json_response({"error": message, "detail": [
        {"field": field_name, "message": message, "position": "body"}]}, status=status)


@dataclass
class Output:
    image_index: int
    group_index: int
    data: bytes | None
    error: str | None = None
    done: bool = False
    version: int = 0


@dataclass
class Job:
    id: str
    kind: str
    project: str
    outputs: list[Output]
    status: str = "pending"
    processed: int = 0
    error: str | None = None
    hidden_polls: int = 0
    created: float = field(default_factory=time.time)
    ended: threading.Event = field(default_factory=threading.Event)  # set after the last notice


class FakePiktID(FakeVendor):
    name = "piktid"
    open_routes = ("PUT /upload/{token}", "GET /files/{name}", "GET /download/{token}")

    def __init__(self, latency: float = 0.0):
        super().__init__(latency)
        self.tokens = {TOKEN: True}  # token -> still valid
        self.projects: dict[str, str] = {}
        self.files: dict[str, tuple[bytes, str]] = {}
        self.tickets: dict[str, tuple[str, str, float]] = {}  # token -> file_id, type, expiry
        self.served: dict[str, bytes] = {}
        self.zips: dict[str, tuple[str, float]] = {}
        self.jobs: dict[str, Job] = {}
        self.notifications: list[dict[str, Any]] = []
        self.deleted: set[int] = set()
        self.ids = itertools.count(1)
        self.creates: list[float] = []
        self.webhook: dict[str, Any] | None = None
        # Knobs.
        self.step_delay = 0.05          # seconds per job step
        self.job_status_code = 202
        self.hidden_polls = 0           # 404s from /jobs/{id}/status before a job is visible
        self.credits: float | None = None  # None: unlimited; each candidate costs 3
        self.block_content = False      # 403 content filter on job creation
        self.fail_job: str | None = None  # the job ends failed with this message
        self.fail_candidates: set[int] = set()  # group indices that fail
        self.shift = 0                  # results shifted by this many pixels
        self.no_links = False           # results without output.full_size (use the ZIP)
        self.old_versions = False       # also list a stale version 0 under a version 1
        self.upload_ttl = 300.0
        self.keepalive = 0.05
        self.sse_drops: list[int] = []  # per new stream: drop after this many live events
        self.sse_available = True
        self.max_active = 5
        self.max_creates_per_minute = 5
        self.corrupt_webhook_signature = False

    def authorized(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else \
            request.query.get("token")
        if not token or not self.tokens.get(token):
            return envelope("Token expired or invalid", 401)
        return None

    def expire_token(self, token: str = TOKEN) -> None:
        self.tokens[token] = False

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/project", self.create_project)
        app.router.add_get("/project", self.list_projects)
        app.router.add_post("/upload", self.upload_ticket)
        app.router.add_put("/upload/{token}", self.upload_put)
        app.router.add_post("/detail-repair", self.detail_repair)
        app.router.add_post("/garment-recolor", self.garment_recolor)
        app.router.add_get("/jobs/{job_id}/status", self.job_status)
        app.router.add_get("/jobs/{job_id}/results", self.job_results)
        app.router.add_get("/files/{name}", self.file)
        app.router.add_post("/download", self.download_link)
        app.router.add_get("/download/{token}", self.download_zip)
        app.router.add_get("/notifications/events", self.events)
        app.router.add_post("/notifications", self.poll_notifications)
        app.router.add_delete("/notifications/{id}", self.delete_notification)
        app.router.add_put("/webhooks", self.put_webhook)

    # --- projects and uploads ------------------------------------------------------------
    async def create_project(self, request: web.Request) -> web.Response:
        name = (await request.json()).get("project_name", "")
        if name in self.projects:
            return web.json_response({"error": "Project already exists",
                                      "project_id": self.projects[name]}, status=409)
        self.projects[name] = f"prj_{uuid.uuid4().hex[:8]}"
        return web.json_response({"project_id": self.projects[name], "project_name": name})

    async def list_projects(self, request: web.Request) -> web.Response:
        return web.json_response({"projects": [{"project_text": name, "project_key": key}
                                               for name, key in self.projects.items()]})

    async def upload_ticket(self, request: web.Request) -> web.Response:
        body = await request.json()
        filename = body.get("filename") or f"{uuid.uuid4()}.png"
        content_type = CONTENT_TYPES.get(filename.rsplit(".", 1)[-1].lower(),
                                         "application/octet-stream")
        project = body.get("project_name", "default")
        self.projects.setdefault(project, f"prj_{uuid.uuid4().hex[:8]}")
        file_id = f"img_{uuid.uuid4().hex[:10]}"
        token = uuid.uuid4().hex
        self.tickets[token] = (file_id, content_type, time.time() + self.upload_ttl)
        return web.json_response({
            "upload_url": f"{self.url}/upload/{token}", "download_url": f"{self.url}/files/"
            f"{file_id}", "project_id": self.projects[project], "project_name": project,
            "file_id": file_id, "filename": filename, "content_type": content_type})

    async def upload_put(self, request: web.Request) -> web.Response:
        ticket = self.tickets.get(request.match_info["token"])
        if ticket is None or ticket[2] < time.time():
            return web.Response(status=403, text="<Error><Code>AccessDenied</Code>"
                                "<Message>Request has expired</Message></Error>")
        file_id, content_type, _ = ticket
        if request.headers.get("Content-Type") != content_type:
            return web.Response(status=403, text="<Error><Code>SignatureDoesNotMatch</Code>"
                                "</Error>")
        self.files[file_id] = (await request.read(), content_type)
        return web.Response(status=200)

    # --- job creation --------------------------------------------------------------------
    def _limits(self, cost: float) -> web.Response | None:
        now = time.time()
        self.creates = [t for t in self.creates if now - t < 60]
        active = sum(job.status in ("pending", "processing") for job in self.jobs.values())
        if len(self.creates) >= self.max_creates_per_minute or active >= self.max_active:
            return envelope("Concurrent job limit reached or rate limited", 429)
        if self.credits is not None and self.credits < cost:
            return web.json_response({"error": "Insufficient credits",
                                      "required_credits": float(cost),
                                      "in_progress_credits": 0.0,
                                      "user_credits": float(self.credits)}, status=402)
        if self.block_content:
            return envelope("A subject was blocked by the content filter", 403)
        self.creates.append(now)
        return None

    def _image(self, file_id: Any, name: str) -> np.ndarray | web.Response:
        if file_id not in self.files:
            return envelope(f"Unknown {name} file_id: {file_id}", 400, name)
        try:
            return decode(self.files[file_id][0])
        except Exception:
            return envelope(f"Unreadable {name}", 400, name)

    async def detail_repair(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("project_id") not in self.projects.values():
            return envelope("Project not found", 404, "project_id")
        image = self._image(body.get("image"), "image")
        if isinstance(image, web.Response):
            return image
        references = body.get("references") or []
        if len(references) > 10:
            return envelope("At most 10 references", 400, "references")
        for reference in references:
            if reference not in self.files:
                return envelope(f"Unknown reference file_id: {reference}", 400, "references")
        count = body.get("num_candidates", 1)
        if not isinstance(count, int) or not 1 <= count <= 4:
            return envelope("num_candidates must be 1-4", 400, "num_candidates")
        if body.get("model", "auto") not in MODELS:
            return envelope("Unsupported model", 400, "model")
        height, width = image.shape[:2]
        if body.get("mask_image"):
            mask = self._image(body["mask_image"], "mask_image")
            if isinstance(mask, web.Response):
                return mask
            where = fit(mask[..., 0], height, width) > 127  # white = repair
        elif (body.get("mask") or {}).get("bbox_norm"):
            x, y, w, h = body["mask"]["bbox_norm"]
            where = np.zeros((height, width), bool)
            where[round(y * height):round((y + h) * height),
                  round(x * width):round((x + w) * width)] = True
        else:
            return envelope("Provide mask_image or mask", 400, "mask_image")
        limited = self._limits(3 * count)
        if limited is not None:
            return limited
        outputs = [self._output(0, g, image, where) for g in range(count)]
        job = self._start("detail_repair", body["project_id"], outputs)
        return web.json_response({"job_id": job.id, "status": "pending",
                                  "message": "Detail repair job created and queued"},
                                 status=self.job_status_code)

    async def garment_recolor(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("project_id") not in self.projects.values():
            return envelope("Project not found", 404, "project_id")
        ids = body.get("images") or []
        if not 1 <= len(ids) <= 10:
            return envelope("images: 1-10 file ids", 400, "images")
        if not any(body.get(key) for key in ("reference_image", "reference_text",
                                              "instruction")):
            return envelope("No recolor target", 400, "instruction")
        if body.get("reference_image") and body["reference_image"] not in self.files:
            return envelope("Unknown reference image", 400, "reference_image")
        variations = body.get("num_variations", 1)
        if not 1 <= variations <= 8 or body.get("processing_size", 2048) not in (1024, 2048,
                                                                                 4096):
            return envelope("num_variations 1-8, processing_size 1024|2048|4096", 400)
        if body.get("model", "auto") not in MODELS:
            return envelope("Unsupported model", 400, "model")
        pictures = []
        for file_id in ids:
            image = self._image(file_id, "images")
            if isinstance(image, web.Response):
                return image
            pictures.append(image)
        limited = self._limits({1024: 3, 2048: 5, 4096: 10}[body.get("processing_size", 2048)]
                               * variations * len(ids))
        if limited is not None:
            return limited
        # The fake 'recolours' the whole frame; the node's blend confines it to the mask.
        outputs = [self._output(i, g, image, np.ones(image.shape[:2], bool))
                   for i, image in enumerate(pictures) for g in range(variations)]
        job = self._start("garment_recolor", body["project_id"], outputs)
        return web.json_response({"job_id": job.id, "status": "pending",
                                  "message": "Garment recolor job created and queued",
                                  "total_outputs": len(outputs)}, status=202)

    def _output(self, image_index: int, group: int, image: np.ndarray, where: np.ndarray
                ) -> Output:
        if group in self.fail_candidates:
            return Output(image_index, group, None, "Generation refused by the engine")
        return Output(image_index, group, encode(edit(image, where, group, self.shift)))

    def _start(self, kind: str, project: str, outputs: list[Output]) -> Job:
        job = Job(f"job_{uuid.uuid4().hex[:10]}", kind, project, outputs,
                  hidden_polls=self.hidden_polls)
        self.jobs[job.id] = job
        asyncio.get_running_loop().create_task(self._advance(job))
        return job

    async def _advance(self, job: Job) -> None:
        await asyncio.sleep(self.step_delay)
        job.status = "processing"
        self._notify(job)
        for index, output in enumerate(job.outputs):
            await asyncio.sleep(self.step_delay)
            output.done = True
            job.processed = index + 1
            self._notify(job)
        job.status, job.error = ("failed", self.fail_job) if self.fail_job else ("completed",
                                                                                  None)
        self._notify(job)
        job.ended.set()

    def _notify(self, job: Job) -> None:
        data = {"id_task": job.id, "status": job.status, "total_images": len(job.outputs),
                "processed_images": job.processed}
        if job.error:
            data["error_message"] = job.error
        note = {"id": next(self.ids), "name": "batch_edit", "timestamp": time.time(),
                "data": data}
        self.notifications.append(note)
        if self.webhook is not None:
            asyncio.get_running_loop().create_task(self._deliver(note))

    # --- status and results --------------------------------------------------------------
    def _job(self, request: web.Request) -> Job | web.Response:
        job = self.jobs.get(request.match_info["job_id"])
        return job if job is not None else envelope("Job not found", 404)

    async def job_status(self, request: web.Request) -> web.Response:
        job = self._job(request)
        if isinstance(job, web.Response):
            return job
        if job.hidden_polls > 0:  # not visible yet, as right after creation
            job.hidden_polls -= 1
            return envelope("Job not found", 404)
        total = len(job.outputs)
        return web.json_response({
            "job_id": job.id, "job_type": job.kind, "status": job.status,
            "progress": 100.0 * job.processed / total, "total_images": total,
            "processed_images": job.processed, "should_post_process": False,
            "post_processing_status": None, "post_processing_error": None,
            "error_message": job.error, "created_at": "2024-12-17T10:00:00Z",
            "updated_at": "2024-12-17T10:05:00Z", "project_key": job.project})

    async def job_results(self, request: web.Request) -> web.Response:
        job = self._job(request)
        if isinstance(job, web.Response):
            return job
        results = []
        for output in (o for o in job.outputs if o.done):
            versions = [0, 1] if self.old_versions else [0]
            for version in versions:
                stale = version < versions[-1]
                name = f"{job.id}_{output.image_index}_{output.group_index}_v{version}.png"
                link = None
                if output.data is not None:
                    data = decode(output.data)
                    self.served[name] = encode(255 - data) if stale else output.data
                    link = None if self.no_links else f"{self.url}/files/{name}"
                results.append({
                    "job_id": job.id, "image_index": output.image_index,
                    "group_index": output.group_index, "version": version,
                    "original_filename": f"image_{output.image_index}.png",
                    "output": {"full_size": link, "thumbnail": link},
                    "status": "failed" if output.data is None else "completed",
                    "error_message": output.error, "model_used": "nano_banana_2",
                    "quality_score": 0, "processing_time": 0})
        ok = sum(o.done and o.data is not None for o in job.outputs)
        return web.json_response({
            "job_id": job.id, "job_type": job.kind, "status": job.status,
            "error_message": job.error, "results": results,
            "summary": {"total_images": len(job.outputs), "successful": ok,
                        "failed": sum(o.done and o.data is None for o in job.outputs)},
            "credits_used": 3.0 * ok})

    async def file(self, request: web.Request) -> web.Response:
        data = self.served.get(request.match_info["name"])
        return web.Response(body=data, content_type="image/png") if data else \
            web.Response(status=404)

    async def download_link(self, request: web.Request) -> web.Response:
        job = self.jobs.get((await request.json()).get("job_id"))
        if job is None:
            return envelope("Job not found", 404)
        token = uuid.uuid4().hex
        self.zips[token] = (job.id, time.time() + 3600)
        return web.json_response({"download_url": f"{self.url}/download/{token}",
                                  "expires": "2099-12-17T11:00:00Z"})

    async def download_zip(self, request: web.Request) -> web.Response:
        entry = self.zips.get(request.match_info["token"])
        if entry is None or entry[1] < time.time():
            return web.Response(status=410)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for output in self.jobs[entry[0]].outputs:
                if output.data is not None and output.done:
                    archive.writestr(f"output_{output.image_index}_{output.group_index}_v0.png",
                                     output.data)
        return web.Response(body=buffer.getvalue(), content_type="application/zip")

    # --- notifications -------------------------------------------------------------------
    def _matching(self, query: Any) -> list[dict[str, Any]]:
        task = query.get("id_task")
        names = set(filter(None, query.get("name_list", "").split(",")))
        now = time.time()
        return [note for note in self.notifications
                if note["id"] not in self.deleted and now - note["timestamp"] < 600
                and (not task or note["data"].get("id_task") == task)
                and (not names or note["name"] in names)]

    async def events(self, request: web.Request) -> web.StreamResponse:
        if not self.sse_available:
            return envelope("Not found", 404)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        drop_after = self.sse_drops.pop(0) if self.sse_drops else None
        sent: set[int] = set()
        try:
            for note in self._matching(request.query):
                await response.write(f"event: backfill\ndata: {json.dumps(note)}\n\n".encode())
                sent.add(note["id"])
            await response.write(b"event: backfill_complete\ndata: {}\n\n")
            live, last_keepalive = 0, time.monotonic()
            while True:
                for note in self._matching(request.query):
                    if note["id"] in sent:
                        continue
                    if drop_after is not None and live >= drop_after:
                        request.transport.abort()  # the connection drops mid-stream
                        return response
                    await response.write(f"data: {json.dumps(note)}\n\n".encode())
                    sent.add(note["id"])
                    live += 1
                if time.monotonic() - last_keepalive > self.keepalive:
                    await response.write(b": keepalive\n\n")
                    last_keepalive = time.monotonic()
                await asyncio.sleep(0.01)
        except (ConnectionResetError, RuntimeError):
            return response

    async def poll_notifications(self, request: web.Request) -> web.Response:
        body = await request.json()
        tasks = body.get("id_task") or []
        tasks = [tasks] if isinstance(tasks, str) else tasks
        notes = self._matching({"name_list": body.get("name_list", "")})
        return web.json_response([note for note in notes
                                  if not tasks or note["data"].get("id_task") in tasks])

    async def delete_notification(self, request: web.Request) -> web.Response:
        note_id = int(request.match_info["id"])
        if note_id in self.deleted or all(n["id"] != note_id for n in self.notifications):
            return envelope("Notification not found", 404)
        self.deleted.add(note_id)
        return web.json_response({"success": True})

    # --- webhooks ------------------------------------------------------------------------
    async def put_webhook(self, request: web.Request) -> web.Response:
        url = (await request.json()).get("url", "")
        if not url.startswith(("http://127.0.0.1", "http://localhost")):
            return envelope("Webhook URL must be loopback in the fake", 400, "url")
        self.webhook = {"id": 1, "url": url, "secret": uuid.uuid4().hex, "is_active": True,
                        "created_at": "2024-12-17T10:00:00Z",
                        "updated_at": "2024-12-17T10:00:00Z", "last_response_status": None,
                        "last_response_at": None}
        await self._deliver({"id": next(self.ids), "name": "ping", "data": {},
                             "timestamp": time.time()})
        return web.json_response(self.webhook)

    async def _deliver(self, note: dict[str, Any]) -> None:
        assert self.webhook is not None
        body = json.dumps(note).encode()
        signature = "sha256=" + hmac.new(self.webhook["secret"].encode(), body,
                                         hashlib.sha256).hexdigest()
        if self.corrupt_webhook_signature:
            signature = signature[:-4] + "0000"
        async with aiohttp.ClientSession() as session:
            async with session.post(self.webhook["url"], data=body, headers={
                    "Content-Type": "application/json", "X-Webhook-Signature": signature},
                    timeout=aiohttp.ClientTimeout(total=5)) as answer:
                self.webhook["last_response_status"] = answer.status
