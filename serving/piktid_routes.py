"""PiktID v2's routes under `/region-repair/piktid` (serving/piktid.py holds the request
checks and prompts): projects, pre-signed uploads, jobs, status and results, regenerating one
output (a new version), the ZIP download, the notifications stream (SSE, backfill and replay
until deleted), polling, and webhooks.

Every API route takes `Authorization: Bearer <key>` (the SSE stream also `?token=`); the
upload PUT URL and the result and download links carry no key: they are capabilities (an
HMAC-signed, expiring, single-use token; a random job id or token), as PiktID's S3 and CloudFront
links are. Projects, uploaded files, webhooks and each job's record and results are also kept on
disk (serving/piktid_store.py), so a restarted server still answers for them.
"""

from __future__ import annotations

import asyncio
import dataclasses
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
from .jobs import KEEP_FINISHED, Job
from .piktid import (
    DetailRepair,
    GarmentRecolor,
    Notification,
    Notifications,
    StoredFile,
    build_detail_repair,
    build_garment_recolor,
    error_body,
    layout,
    matches,
    now_iso,
    parse_detail_repair,
    parse_garment_recolor,
    position_of,
    restored_request,
    review,
    text_field,
    webhook_signature,
)
from .piktid_store import PiktidStore, result_name
from .service import Service, handler

logger = logging.getLogger("region_repair.serving")
VENDOR = "piktid"
REGENERATED = "piktid-regenerated"   # a regeneration's own job: no /jobs/ route answers it
PATH = "/region-repair/piktid"
UPLOAD_TTL_S = 600                     # a pre-signed PUT URL's life
UPLOAD_BYTES_PER_KEY = 512 * 1024 ** 2  # uploaded images kept in memory per key
FILE_TTL_S = 3600                      # an uploaded file's life
DOWNLOAD_TTL_S = 3600
KEEPALIVE_S = 15.0
WEBHOOK_TRIES = 4
# A request's uploads: those LoadImage reads, and a recolour set (a folder of its own).
Uploads = tuple[list[ImageUpload], "list[ImageUpload] | None"]
CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg",
                 "webp": "image/webp"}


# --- records -------------------------------------------------------------------------------
def job_record(job: Job) -> dict[str, Any]:
    """What a restarted server knows of a job (its key only by id)."""
    return {"id": job.id, "key_id": job.key_id, "kind": job.meta["kind"],
            "created": job.created, "total": job.meta["total"],
            "status": job.meta["status"], "error_message": job.meta.get("error_message"),
            "request": dataclasses.asdict(job.meta["request"]),
            "rows": job.meta.get("rows", [])}


def restored_job(record: dict[str, Any]) -> Job:
    job = Job(record["id"], VENDOR, record["key_id"], record["created"])
    job.meta.update(kind=record["kind"], total=record["total"], status=record["status"],
                    error_message=record["error_message"], versions={},
                    request=restored_request(record["kind"], record["request"]),
                    rows=record["rows"])
    return job


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
    # Small JSON records are written on the loop; images in a worker thread.
    store = PiktidStore(service.runner.state_directory())
    saved = store.load(time.time())
    projects.update(saved.projects)
    webhooks.update(saved.webhooks)
    for file_id, (record, upload) in saved.files.items():
        try:   # a record this version cannot read is skipped
            files[file_id] = StoredFile(**record, upload=upload)
        except TypeError:
            logger.warning("region-repair serving: piktid file record %s skipped", file_id)
    for record in saved.jobs[-KEEP_FINISHED:]:
        try:
            service.jobs.restore(restored_job(record))
        except (KeyError, TypeError, ValueError):
            logger.warning("region-repair serving: piktid job record %s skipped",
                           record.get("id"))
    for record in saved.jobs[:-KEEP_FINISHED]:
        store.drop_job(record["id"])

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
        return web.json_response({"project_id": new_project(key_id, name),
                                  "project_name": name})

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
        return projects[key_id].get(name) or new_project(key_id, name)

    def new_project(key_id: str, name: str) -> str:
        projects[key_id][name] = f"prj_{secrets.token_hex(8)}"
        store.save_projects(projects)
        return projects[key_id][name]

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
        record = {name: value for name, value in dataclasses.asdict(stored).items()
                  if name != "upload"}
        await service.off_loop(store.save_file, file_id, record, upload)
        for stale in [i for i, f in files.items() if f.expires < time.time()]:
            del files[stale]
            store.drop_file(stale)
        return web.Response(status=200)

    def uploaded(key_id: str, file_id: str | None, field_name: str) -> ImageUpload:
        stored = files.get(file_id or "")
        if stored is None or stored.key_id != key_id or stored.upload is None or \
                stored.expires < time.time():
            raise RequestError(400, f"{field_name}: unknown or expired file_id {file_id!r} "
                               "(upload it first; an upload is kept an hour)", field_name)
        return stored.upload

    # jobs ----------------------------------------------------------------------------------
    def job_data(job: Job, status: str) -> dict[str, Any]:
        """A job's notification; a regeneration's is its job's, naming the output it remakes
        (image_index, group_index, version)."""
        data = {"id_task": job.meta.get("parent", job).id, "status": status,
                "total_images": job.meta["total"],
                "processed_images": job.meta["total"] if status == "completed" else 0,
                **job.meta.get("output", {})}
        if status in ("failed", "aborted"):
            data["error_message"] = job.meta["error_message"]
        return data

    async def follow(job: Job) -> None:
        """Notify each status change: processing once it runs, then the terminal one once its
        results are saved (the status says completed only when they can be read)."""
        while not job.done.is_set():
            if job.meta["status"] == "pending" and \
                    service.runner.state(job.prompt_id)[0] == "processing":
                job.meta["status"] = "processing"
                publish(job, "processing")
            try:
                await asyncio.wait_for(job.done.wait(), 0.1)
            except asyncio.TimeoutError:
                pass
        status, error = job.status, None
        if status == "completed":
            try:
                await save_results(job)
            except Exception:
                logger.exception("region-repair serving: saving job %s's results failed", job.id)
                status, error = "failed", "the results could not be saved; see the server's log"
        else:
            error = service.runner.error_message(job)
        job.meta.update(status=status, error_message=error)
        if "parent" not in job.meta:
            store.save_job(job_record(job))
        publish(job, status)

    async def save_results(job: Job) -> None:
        """The outputs (without ComfyUI's metadata) and Quality Check's verdicts, kept as
        `results/<job id>/<image>_<group>_v<version>.png`. A job makes version 0 of each of its
        outputs; a regeneration, the next version of its one output, in its job's record."""
        images = await service.runner.images(job.entry, job.meta["result"])
        report = service.runner.texts(job.entry, job.meta.get("report", ""))
        flags = review(report[0] if report else None, len(images))
        parent = job.meta.get("parent", job)
        if job is parent:
            outputs = [(i, g, 0, position) for i, g, position in pairs(job)]
        else:   # its one candidate, or its place in the set made again
            output = job.meta["output"]
            image_index, group_index = output["image_index"], output["group_index"]
            outputs = [(image_index, group_index, output["version"],
                        0 if job.meta["kind"] == "detail_repair" else position_of(
                            job.meta["kind"], image_index, group_index, set_size(parent)))]
        await service.off_loop(lambda: [
            store.save_result(parent.id, result_name(i, g, v), images[position])
            for i, g, v, position in outputs])
        rows = {(row["image_index"], row["group_index"]): row
                for row in parent.meta.get("rows", [])}
        for i, g, v, position in outputs:
            if v >= rows.get((i, g), {}).get("version", 0):
                rows[i, g] = {"image_index": i, "group_index": g, "version": v,
                              **flags[position]}
        parent.meta["rows"] = list(rows.values())
        if parent is not job:
            store.save_job(job_record(parent))

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

    def inputs_of(key_id: str, parsed: DetailRepair | GarmentRecolor) -> Uploads:
        """The request's uploads (a 400 naming the field of one unknown or expired): those
        LoadImage reads, and a recolour set."""
        if isinstance(parsed, DetailRepair):
            inputs = [uploaded(key_id, parsed.image, "image")]
            if parsed.mask_image:
                inputs.append(uploaded(key_id, parsed.mask_image, "mask_image"))
            return inputs + [uploaded(key_id, ref, "references") for ref in parsed.references], \
                None
        reference = ([uploaded(key_id, parsed.reference_image, "reference_image")]
                     if parsed.reference_image else [])
        return reference, [uploaded(key_id, image, "images") for image in parsed.images]

    def detail_names(parsed: DetailRepair, names: list[str]):
        mask = names[1] if parsed.mask_image else None
        return build_detail_repair(parsed, names[0], mask, names[1 + bool(mask):])

    def recolor_names(parsed: GarmentRecolor, names: list[str]):
        return build_garment_recolor(parsed, names[0],
                                     names[1] if parsed.reference_image else None)

    builders = {"detail_repair": detail_names, "garment_recolor": recolor_names}

    async def queue(job: Job, parsed: DetailRepair | GarmentRecolor, uploads: Uploads) -> None:
        await service.submit(job, uploads[0], lambda names: builders[job.meta["kind"]](
            parsed, names), uploads[1])
        spawn(follow(job))
        publish(job, "pending")

    async def start(request: web.Request, kind: str, parse, message: str
                    ) -> web.StreamResponse:
        key_id = key_of(request)
        body = await service.read_json(request)
        project_id(key_id, {"project_id": body.get("project_id")} if "project_id" in body
                   else {})
        parsed = parse(body, config)
        uploads = inputs_of(key_id, parsed)   # before a job is reserved
        total = (parsed.num_candidates if kind == "detail_repair"
                 else len(parsed.images) * parsed.num_variations)
        job = service.jobs.reserve(VENDOR, key_id, f"job_{secrets.token_hex(16)}")
        # `request` and the uploads it names remake one output (regenerate); `versions`:
        # (image_index, group_index) -> its regenerations, oldest first.
        job.meta.update(kind=kind, total=total, status="pending", request=parsed, versions={})
        await queue(job, parsed, uploads)
        store.save_job(job_record(job))   # a restart finds it and reports it failed
        answer = {"job_id": job.id, "status": "pending", "message": message}
        if kind == "garment_recolor":
            answer["total_outputs"] = total
        return web.json_response(answer, status=202)

    @routes.post(PATH + "/detail-repair")
    @handler(VENDOR, error_body)
    async def detail_repair(request: web.Request) -> web.StreamResponse:
        return await start(request, "detail_repair", parse_detail_repair,
                           "Detail repair job created and queued")

    @routes.post(PATH + "/garment-recolor")
    @handler(VENDOR, error_body)
    async def garment_recolor(request: web.Request) -> web.StreamResponse:
        return await start(request, "garment_recolor", parse_garment_recolor,
                           "Garment recolor job created and queued")

    def set_size(job: Job) -> int:
        """How many images a job's request recolours (1 for Detail Repair)."""
        return len(job.meta["request"].images) if job.meta["kind"] == "garment_recolor" else 1

    def pairs(job: Job) -> list[tuple[int, int, int]]:
        """(image_index, group_index, position) of each output, in the documented order
        (variation-major, then by image), which is the outputs' own."""
        return [(*layout(job.meta["kind"], position, set_size(job)), position)
                for position in range(job.meta["total"])]

    def status_of(job: Job) -> tuple[str, int]:
        """The job's status and its finished outputs: a completed job is processing again
        while one of its outputs is being regenerated."""
        status = job.meta["status"]
        if status != "completed":
            return status, 0
        running = sum(again.meta["status"] in ("pending", "processing")
                      for versions in job.meta["versions"].values() for again in versions)
        return ("processing" if running else status), job.meta["total"] - running

    def own_job(request: web.Request) -> Job:
        job = service.jobs.get(request.match_info["job_id"], key_of(request))
        if job is None or job.vendor != VENDOR:
            raise RequestError(404, "job_id: job not found", "job_id")
        return job

    @routes.get(PATH + "/jobs/{job_id}/status")
    @handler(VENDOR, error_body)
    async def job_status(request: web.Request) -> web.StreamResponse:
        job = own_job(request)
        status, done = status_of(job)
        return web.json_response({
            "job_id": job.id, "job_type": job.meta["kind"], "status": status,
            "progress": round(100.0 * done / job.meta["total"], 1),
            "total_images": job.meta["total"], "processed_images": done,
            "should_post_process": False, "post_processing_status": None,
            "post_processing_error": None,
            "error_message": job.meta.get("error_message"),
            "created_at": now_iso(job.created), "updated_at": now_iso()})

    @routes.get(PATH + "/jobs/{job_id}/results")
    @handler(VENDOR, error_body)
    async def job_results(request: web.Request) -> web.StreamResponse:
        job = own_job(request)
        results = []
        for row in sorted(job.meta.get("rows", []),
                          key=lambda row: (row["group_index"], row["image_index"])):
            link = (f"{base(request)}/results/{job.id}/"
                    f"{result_name(row['image_index'], row['group_index'], row['version'])}.png")
            results.append({"job_id": job.id, **row,
                            "output": {"full_size": link, "thumbnail": link},
                            "status": "completed", "error_message": None,
                            "model_used": "local"})
        status = status_of(job)[0]
        return web.json_response({
            "job_id": job.id, "job_type": job.meta["kind"], "status": status,
            "error_message": job.meta.get("error_message"), "results": results,
            "summary": {"total_images": job.meta["total"], "successful": len(results),
                        "failed": job.meta["total"] if status in ("failed", "aborted") else 0},
            "credits_used": None})

    @routes.post(PATH + "/jobs/{job_id}/regenerate/{image_index}")
    @handler(VENDOR, error_body)
    async def regenerate(request: web.Request) -> web.StreamResponse:
        """One output made again with a new seed, as a prompt of its own; its job's results
        show it as the next `version` once it completed."""
        job = own_job(request)
        status = status_of(job)[0]
        if job.meta["status"] != "completed":
            raise RequestError(400, f"job_id: the job is {status}; only a completed job's "
                               "outputs can be regenerated", "job_id")
        wanted = (request.match_info["image_index"], request.query.get("group_index", "0"))
        rows = {(str(row["image_index"]), str(row["group_index"])): row
                for row in job.meta["rows"]}
        if wanted not in rows:
            raise RequestError(404, f"image_index: job {job.id} has no output "
                               f"{wanted[0]} in group {wanted[1]}", "image_index")
        image_index, group_index = int(wanted[0]), int(wanted[1])
        kind, parsed = job.meta["kind"], job.meta["request"]
        # One candidate; or the set up to this output's variation (its shade step).
        parsed = (dataclasses.replace(parsed, num_candidates=1) if kind == "detail_repair"
                  else dataclasses.replace(parsed, num_variations=group_index + 1))
        uploads = inputs_of(job.key_id, parsed)   # kept an hour: a 400 naming one expired
        versions = job.meta["versions"].setdefault((image_index, group_index), [])
        version = 1 + max([rows[wanted]["version"]] +
                          [again.meta["output"]["version"] for again in versions])
        again = service.jobs.reserve(REGENERATED, job.key_id)
        again.meta.update(kind=kind, total=1, status="pending", parent=job, output={
            "image_index": image_index, "group_index": group_index, "version": version})
        versions.append(again)
        try:
            await queue(again, parsed, uploads)
        except BaseException:
            versions.remove(again)
            raise
        return web.json_response({"success": True, "message": "Image regeneration queued",
                                  "image_index": image_index})

    @routes.get(PATH + "/results/{job_id}/{name}.png")
    @handler(VENDOR, error_body)
    async def result_file(request: web.Request) -> web.StreamResponse:
        """A result link without a key (PiktID's are CloudFront URLs): the random job id is the
        capability."""
        image = await service.off_loop(store.result, request.match_info["job_id"],
                                       request.match_info["name"])
        if image is None:
            raise RequestError(404, "no such result")
        return web.Response(body=image, content_type="image/png")

    @routes.post(PATH + "/download")
    @handler(VENDOR, error_body)
    async def create_download(request: web.Request) -> web.StreamResponse:
        key_id = key_of(request)
        job = service.jobs.get(str((await service.read_json(request)).get("job_id")), key_id)
        if job is None or job.vendor != VENDOR:
            raise RequestError(404, "job_id: job not found", "job_id")
        if job.meta["status"] != "completed":
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
        def archive() -> bytes:
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zipped:
                for row in job.meta["rows"]:
                    name = result_name(row["image_index"], row["group_index"], row["version"])
                    zipped.writestr(f"output_{name}.png", store.result(job.id, name))
            return buffer.getvalue()
        return web.Response(body=await service.off_loop(archive),
                            content_type="application/zip")

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
        store.save_webhooks(webhooks)
        spawn(deliver(key_id, hook, Notification(0, "ping", {})))
        return web.json_response(hook)
