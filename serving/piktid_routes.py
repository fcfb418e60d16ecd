"""PiktID v2's routes under `/region-repair/piktid` (serving/piktid.py holds the request
checks and prompts): projects, pre-signed uploads, jobs, status and results, the ZIP download,
the notifications stream (SSE, backfill and replay until deleted), polling, and webhooks.

Every API route takes `Authorization: Bearer <key>` (the SSE stream also `?token=`); the
upload PUT URL and the result and download links carry no key: they are capabilities (an
HMAC-signed, expiring, single-use token; a random job id or token), as PiktID's S3 and CloudFront
links are. State lives in memory and ends with the server.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import logging
import secrets
import time
import zipfile
from collections import defaultdict
from typing import Any

import aiohttp
from aiohttp import web

from ..pipelines.vendors.http import origin
from .auth import bearer
from .config import Limits
from .inputs import ImageUpload, RequestError, sniff
from .jobs import Job
from .piktid import (
    DetailRepair,
    GarmentRecolor,
    Notification,
    Notifications,
    StoredFile,
    build_detail_repair,
    build_garment_recolor,
    error_body,
    matches,
    layout,
    now_iso,
    parse_detail_repair,
    parse_garment_recolor,
    review,
    text_field,
    webhook_signature,
)
from .service import Service, handler

logger = logging.getLogger("region_repair.serving")
VENDOR = "piktid"
PATH = "/region-repair/piktid"
UPLOAD_TTL_S = 600                     # a pre-signed PUT URL's life
UPLOAD_BYTES_PER_KEY = 512 * 1024 ** 2  # uploaded images kept in memory per key
FILE_TTL_S = 3600                      # an uploaded file's life
DOWNLOAD_TTL_S = 3600
KEEPALIVE_S = 15.0
WEBHOOK_TRIES = 4
CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg",
                 "webp": "image/webp"}


# --- routes ----------------------------------------------------------------------------------
def add_routes(routes: web.RouteTableDef, service: Service) -> None:
    config = service.config.vendor(VENDOR)
    limits: Limits = service.config.limits
    signing_key = secrets.token_bytes(32)   # upload tokens; new at every start
    projects: dict[str, dict[str, str]] = defaultdict(dict)   # key -> name -> id
    files: dict[str, StoredFile] = {}
    notes = Notifications()
    webhooks: dict[str, dict[str, Any]] = {}
    downloads: dict[str, tuple[str, float]] = {}   # ZIP token -> (job id, expiry)
    hook_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
    background: set[asyncio.Task] = set()
    allowed_hooks = {origin(url) for url in config.webhook_urls}

    def key_of(request: web.Request, allow_query: bool = False) -> str:
        token = bearer(request.headers.get("Authorization"))
        if token is None and allow_query:
            token = request.query.get("token")
        key_id = service.keys[VENDOR].match(token)
        if key_id is None:
            raise RequestError(401, "Authorization: a Bearer key of this server is required "
                               "(token expired or invalid)")
        return key_id

    def base(request: web.Request) -> str:
        return f"{request.url.origin()}{PATH}"

    def spawn(coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        background.add(task)
        task.add_done_callback(background.discard)

    # projects ------------------------------------------------------------------------------
    @routes.post(PATH + "/project")
    @handler(VENDOR, error_body)
    async def create_project(request: web.Request) -> web.StreamResponse:
        key_id = key_of(request)
        name = text_field(await service.read_json(request), "project_name")
        if not name:
            raise RequestError(400, "project_name: required", "project_name")
        if name in projects[key_id]:
            return web.json_response({**error_body(409, "project_name: exists", "project_name"),
                                      "project_id": projects[key_id][name]}, status=409)
        projects[key_id][name] = f"prj_{secrets.token_hex(8)}"
        return web.json_response({"project_id": projects[key_id][name], "project_name": name})

    @routes.get(PATH + "/project")
    @handler(VENDOR, error_body)
    async def list_projects(request: web.Request) -> web.StreamResponse:
        key_id = key_of(request)
        return web.json_response({"projects": [
            {"project_text": name, "project_key": pid, "project_id": pid}
            for name, pid in projects[key_id].items()]})

    def project_id(key_id: str, body: dict[str, Any]) -> str:
        wanted = body.get("project_id")
        if wanted is not None:
            if wanted not in projects[key_id].values():
                raise RequestError(404, "project_id: project not found", "project_id")
            return wanted
        name = text_field(body, "project_name") or "default"
        return projects[key_id].setdefault(name, f"prj_{secrets.token_hex(8)}")

    # uploads -------------------------------------------------------------------------------
    def upload_token(file_id: str, expires: int, content_type: str) -> str:
        message = f"{file_id}|{expires}|{content_type}".encode()
        mac = hmac.new(signing_key, message, hashlib.sha256).hexdigest()
        return f"{file_id}.{expires}.{mac}"

    @routes.post(PATH + "/upload")
    @handler(VENDOR, error_body)
    async def start_upload(request: web.Request) -> web.StreamResponse:
        key_id = key_of(request)
        body = await service.read_json(request)
        filename = text_field(body, "filename") or f"{secrets.token_hex(8)}.png"
        extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
        if extension not in CONTENT_TYPES:
            raise RequestError(400, "filename: a .png, .jpg, .jpeg or .webp name", "filename")
        pid = project_id(key_id, body)
        file_id = f"img_{secrets.token_hex(12)}"
        expires = int(time.time() + UPLOAD_TTL_S)
        content_type = CONTENT_TYPES[extension]
        files[file_id] = StoredFile(key_id, pid, filename, content_type, expires)
        name = next(name for name, value in projects[key_id].items() if value == pid)
        return web.json_response({
            "upload_url": f"{base(request)}/upload/{upload_token(file_id, expires, content_type)}",
            "download_url": None, "project_id": pid, "project_name": name, "file_id": file_id,
            "filename": filename, "content_type": content_type})

    @routes.put(PATH + "/upload/{token}")
    @handler(VENDOR, error_body)
    async def put_upload(request: web.Request) -> web.StreamResponse:
        """The pre-signed PUT: no key; the token is signed, expires and works once."""
        file_id, _, rest = request.match_info["token"].partition(".")
        expires = rest.partition(".")[0]   # the whole token is compared below, its MAC included
        stored = files.get(file_id)
        valid = stored is not None and expires.isdigit() and hmac.compare_digest(
            upload_token(file_id, int(expires), stored.content_type).encode(),
            request.match_info["token"].encode())
        if not valid or stored.upload is not None or int(expires) < time.time():
            raise RequestError(403, "the upload URL is invalid, expired or already used")
        if request.headers.get("Content-Type", "").split(";")[0].strip() != stored.content_type:
            raise RequestError(403, f"Content-Type: must be {stored.content_type}, as issued")
        data = await service.read_body(request)
        upload = sniff(data, "file", limits)
        held = sum(len(f.upload.data) for f in files.values()
                   if f.key_id == stored.key_id and f.upload is not None)
        if held + len(data) > UPLOAD_BYTES_PER_KEY:
            raise RequestError(429, "this key holds too many uploaded bytes; start jobs or "
                               "wait an hour", retry_after=60)
        stored.upload, stored.expires = upload, time.time() + FILE_TTL_S
        for stale in [i for i, f in files.items() if f.expires < time.time()]:
            del files[stale]
        return web.Response(status=200)

    def uploaded(key_id: str, file_id: str | None, field_name: str) -> ImageUpload:
        stored = files.get(file_id or "")
        if stored is None or stored.key_id != key_id or stored.upload is None or \
                stored.expires < time.time():
            raise RequestError(400, f"{field_name}: unknown file_id {file_id!r} (upload it "
                               "first)", field_name)
        return stored.upload

    # jobs ----------------------------------------------------------------------------------
    def job_data(job: Job, status: str) -> dict[str, Any]:
        data = {"id_task": job.id, "status": status, "total_images": job.meta["total"],
                "processed_images": job.meta["total"] if status == "completed" else 0}
        if status in ("failed", "aborted"):
            data["error_message"] = service.runner.error_message(job)
        return data

    async def follow(job: Job) -> None:
        """Notify each status change: processing once it runs, then the terminal one."""
        while not job.done.is_set():
            if job.meta["status"] == "pending" and \
                    service.runner.state(job.prompt_id)[0] == "processing":
                job.meta["status"] = "processing"
                publish(job, "processing")
            try:
                await asyncio.wait_for(job.done.wait(), 0.1)
            except asyncio.TimeoutError:
                pass
        job.meta["status"] = job.status
        publish(job, job.status)

    def publish(job: Job, status: str) -> None:
        note = notes.publish(job.key_id, "batch_edit", job_data(job, status))
        if job.key_id in webhooks:
            spawn(deliver(job.key_id, webhooks[job.key_id], note))

    async def deliver(key_id: str, hook: dict[str, Any], note: Notification) -> None:
        """POST the event with its signature; retried with backoff on errors. One key's events
        go out one at a time, in order (a receiver sees pending before completed)."""
        body = json.dumps(note.event()).encode()
        headers = {"Content-Type": "application/json",
                   "X-Webhook-Signature": webhook_signature(hook["secret"], body)}
        timeout = aiohttp.ClientTimeout(total=10)
        async with hook_locks[key_id], aiohttp.ClientSession(timeout=timeout) as session:
            for attempt in range(WEBHOOK_TRIES):
                try:
                    async with session.post(hook["url"], data=body, headers=headers,
                                            allow_redirects=False) as response:
                        hook["last_response_status"] = response.status
                        hook["last_response_at"] = now_iso()
                        if response.status < 500:
                            return
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    hook["last_response_status"] = None
                await asyncio.sleep(0.5 * 2 ** attempt)
        logger.warning("region-repair serving: piktid webhook delivery failed after %d tries",
                       WEBHOOK_TRIES)

    async def start(request: web.Request, kind: str, parse, build, message: str
                    ) -> web.StreamResponse:
        key_id = key_of(request)
        body = await service.read_json(request)
        project_id(key_id, {"project_id": body.get("project_id")} if "project_id" in body
                   else {})
        parsed = parse(body, config)
        inputs, image_set = [], None
        if kind == "detail_repair":
            inputs.append(uploaded(key_id, parsed.image, "image"))
            if parsed.mask_image:
                inputs.append(uploaded(key_id, parsed.mask_image, "mask_image"))
            inputs += [uploaded(key_id, ref, "references") for ref in parsed.references]
            total = parsed.num_candidates
        else:
            image_set = [uploaded(key_id, image, "images") for image in parsed.images]
            if parsed.reference_image:
                inputs.append(uploaded(key_id, parsed.reference_image, "reference_image"))
            total = len(parsed.images) * parsed.num_variations
        job = service.jobs.reserve(VENDOR, key_id, f"job_{secrets.token_hex(16)}")
        job.meta.update(kind=kind, total=total, status="pending")
        await service.submit(job, inputs, lambda names: build(parsed, names), image_set)
        spawn(follow(job))
        publish(job, "pending")
        answer = {"job_id": job.id, "status": "pending", "message": message}
        if kind == "garment_recolor":
            answer["total_outputs"] = total
        return web.json_response(answer, status=202)

    def detail_names(parsed: DetailRepair, names: list[str]):
        mask = names[1] if parsed.mask_image else None
        return build_detail_repair(parsed, names[0], mask, names[1 + bool(mask):])

    def recolor_names(parsed: GarmentRecolor, names: list[str]):
        return build_garment_recolor(parsed, names[0],
                                     names[1] if parsed.reference_image else None)

    @routes.post(PATH + "/detail-repair")
    @handler(VENDOR, error_body)
    async def detail_repair(request: web.Request) -> web.StreamResponse:
        return await start(request, "detail_repair", parse_detail_repair, detail_names,
                           "Detail repair job created and queued")

    @routes.post(PATH + "/garment-recolor")
    @handler(VENDOR, error_body)
    async def garment_recolor(request: web.Request) -> web.StreamResponse:
        return await start(request, "garment_recolor", parse_garment_recolor, recolor_names,
                           "Garment recolor job created and queued")

    def pairs(job: Job) -> list[tuple[int, int, int]]:
        """(image_index, group_index, position) of each output, in the documented order:
        variation-major, then by image."""
        found = [(*layout(job.meta["kind"], position, job.meta.get("set_order", [])), position)
                 for position in range(job.meta["total"])]
        return sorted(found, key=lambda pair: (pair[1], pair[0]))

    def own_job(request: web.Request) -> Job:
        job = service.jobs.get(request.match_info["job_id"], key_of(request))
        if job is None or job.vendor != VENDOR:
            raise RequestError(404, "job_id: job not found", "job_id")
        return job

    @routes.get(PATH + "/jobs/{job_id}/status")
    @handler(VENDOR, error_body)
    async def job_status(request: web.Request) -> web.StreamResponse:
        job = own_job(request)
        status = job.status if job.done.is_set() else job.meta["status"]
        done = job.meta["total"] if status == "completed" else 0
        return web.json_response({
            "job_id": job.id, "job_type": job.meta["kind"], "status": status,
            "progress": 100.0 if status == "completed" else 0.0,
            "total_images": job.meta["total"], "processed_images": done,
            "should_post_process": False, "post_processing_status": None,
            "post_processing_error": None,
            "error_message": service.runner.error_message(job)
            if status in ("failed", "aborted") else None,
            "created_at": now_iso(job.created), "updated_at": now_iso()})

    @routes.get(PATH + "/jobs/{job_id}/results")
    @handler(VENDOR, error_body)
    async def job_results(request: web.Request) -> web.StreamResponse:
        job = own_job(request)
        results = []
        if job.done.is_set() and job.status == "completed":
            paths = service.runner.image_paths(job.entry, job.meta["result"])
            report = service.runner.texts(job.entry, job.meta.get("report", ""))
            flags = review(report[0] if report else None, len(paths))
            for image_index, group_index, position in pairs(job):
                flag = flags[position]
                link = f"{base(request)}/results/{job.id}/{position}.png"
                results.append({"job_id": job.id, "image_index": image_index,
                                "group_index": group_index, "version": 0,
                                "output": {"full_size": link, "thumbnail": link},
                                "status": "completed", "error_message": None,
                                "model_used": "local", **flag})
        status = job.status if job.done.is_set() else job.meta["status"]
        return web.json_response({
            "job_id": job.id, "job_type": job.meta["kind"], "status": status,
            "error_message": service.runner.error_message(job)
            if status in ("failed", "aborted") else None, "results": results,
            "summary": {"total_images": job.meta["total"], "successful": len(results),
                        "failed": job.meta["total"] if status in ("failed", "aborted") else 0},
            "credits_used": None})

    @routes.get(PATH + "/results/{job_id}/{index}.png")
    @handler(VENDOR, error_body)
    async def result_file(request: web.Request) -> web.StreamResponse:
        """A result link without a key (PiktID's are CloudFront URLs): the random job id is the
        capability."""
        job = service.jobs.find(request.match_info["job_id"])
        index = request.match_info["index"]
        if job is None or job.vendor != VENDOR or job.status != "completed" or \
                not index.isdigit():
            raise RequestError(404, "no such result")
        images = await service.runner.images(job.entry, job.meta["result"])
        if int(index) >= len(images):
            raise RequestError(404, "no such result")
        return web.Response(body=images[int(index)], content_type="image/png")

    @routes.post(PATH + "/download")
    @handler(VENDOR, error_body)
    async def create_download(request: web.Request) -> web.StreamResponse:
        key_id = key_of(request)
        job = service.jobs.get(str((await service.read_json(request)).get("job_id")), key_id)
        if job is None or job.vendor != VENDOR:
            raise RequestError(404, "job_id: job not found", "job_id")
        if job.status != "completed":
            raise RequestError(400, f"job_id: the job is {job.meta['status']}, not completed",
                               "job_id")
        token, expires = secrets.token_urlsafe(24), time.time() + DOWNLOAD_TTL_S
        downloads[token] = (job.id, expires)
        return web.json_response({"download_url": f"{base(request)}/download/{token}",
                                  "expires": now_iso(expires)})

    @routes.get(PATH + "/download/{token}")
    @handler(VENDOR, error_body)
    async def download(request: web.Request) -> web.StreamResponse:
        """The job's outputs as a ZIP, without a key (the random token, for an hour), named as
        PiktID's official script names them."""
        job_id, expires = downloads.get(request.match_info["token"], ("", 0.0))
        job = service.jobs.find(job_id)
        if job is None or expires < time.time():
            raise RequestError(404, "the download link is unknown or expired")
        images = await service.runner.images(job.entry, job.meta["result"])
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            for image_index, group_index, position in pairs(job):
                archive.writestr(f"output_{image_index}_{group_index}_v0.png", images[position])
        return web.Response(body=buffer.getvalue(), content_type="application/zip")

    # notifications -------------------------------------------------------------------------
    @routes.get(PATH + "/notifications/events")
    @handler(VENDOR, error_body)
    async def events(request: web.Request) -> web.StreamResponse:
        key_id = key_of(request, allow_query=True)
        query = dict(request.query)
        queue: asyncio.Queue = asyncio.Queue()
        notes.listeners[key_id].add(queue)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})
        try:
            await response.prepare(request)
            for note in notes.backlog(key_id):
                if matches(note, query):
                    await response.write(f"event: backfill\ndata: {json.dumps(note.event())}"
                                         "\n\n".encode())
            await response.write(b"event: backfill_complete\ndata: {}\n\n")
            while True:
                try:
                    note = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except asyncio.TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                if matches(note, query):
                    await response.write(f"data: {json.dumps(note.event())}\n\n".encode())
        except ConnectionResetError:   # the client went away; it may reconnect for a replay
            pass
        finally:
            notes.listeners[key_id].discard(queue)
        return response

    @routes.post(PATH + "/notifications")
    @handler(VENDOR, error_body)
    async def poll_notifications(request: web.Request) -> web.StreamResponse:
        key_id = key_of(request)
        body = await service.read_json(request)
        tasks = body.get("id_task")
        query = {"id_task": ",".join(tasks if isinstance(tasks, list) else [tasks])
                 if tasks else "", "name_list": body.get("name_list") or ""}
        return web.json_response([n.event() for n in notes.backlog(key_id)
                                  if matches(n, query)])

    @routes.delete(PATH + "/notifications/{note_id}")
    @handler(VENDOR, error_body)
    async def delete_notification(request: web.Request) -> web.StreamResponse:
        key_id = key_of(request)
        note_id = request.match_info["note_id"]
        if not note_id.isdigit() or not notes.delete(key_id, int(note_id)):
            raise RequestError(404, "notification not found")
        return web.json_response({"deleted": int(note_id)})

    @routes.put(PATH + "/webhooks")
    @handler(VENDOR, error_body)
    async def set_webhook(request: web.Request) -> web.StreamResponse:
        key_id = key_of(request)
        url = text_field(await service.read_json(request), "url")
        if origin(url) is None or origin(url) not in allowed_hooks:
            raise RequestError(400, "url: this server posts webhooks only to URLs its owner "
                               "allowed (webhook_urls under [serve.piktid])", "url")
        previous = webhooks.get(key_id, {})
        hook = {"id": previous.get("id", len(webhooks) + 1), "url": url,
                "secret": secrets.token_hex(24), "is_active": True,
                "created_at": previous.get("created_at", now_iso()), "updated_at": now_iso(),
                "last_response_status": None, "last_response_at": None}
        webhooks[key_id] = hook
        spawn(deliver(key_id, hook, Notification(0, "ping", {})))
        return web.json_response(hook)
