"""What every served vendor shares: the body limit (413 before reading past it), JSON parsing,
the local keys, the job store with its per-key bound, and submitting a built prompt."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .auth import KeyRing
from .config import VENDORS, ServeConfig
from .inputs import ImageUpload, JobLimiter, RequestError
from .jobs import Job, JobStore
from .prompts import Prompt

logger = logging.getLogger("region_repair.serving")
CHUNK = 1 << 16
# A vendor's error body for (status, message, field).
ErrorBody = Callable[[int, str, "str | None"], Any]
# Input file names -> the prompt, and the nodes its results are read from.
Build = Callable[[list[str]], "tuple[Prompt, dict[str, Any]]"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Service:
    def __init__(self, config: ServeConfig, runner: Any):
        self.config, self.runner = config, runner
        self.keys = {vendor: KeyRing(vendor, config.vendor(vendor)) for vendor in VENDORS}
        self.jobs = JobStore(runner, JobLimiter(config.limits.max_jobs_per_key),
                             config.limits.job_timeout_s)

    async def read_body(self, request: web.Request) -> bytes:
        """The body; 413 from Content-Length, or while reading, before the rest is read."""
        limit = self.config.limits.max_body_bytes
        too_big = RequestError(413, f"the request body is over this server's limit of "
                               f"{limit} bytes")
        if request.content_length is not None and request.content_length > limit:
            raise too_big
        chunks, size = [], 0
        while chunk := await request.content.read(CHUNK):
            size += len(chunk)
            if size > limit:
                raise too_big
            chunks.append(chunk)
        return b"".join(chunks)

    async def read_json(self, request: web.Request) -> dict[str, Any]:
        """The JSON object body (read_body's limit); 400 for anything but a JSON object."""
        data = await self.read_body(request)   # its 413 is a ValueError too: read it first
        try:
            body = await self.off_loop(json.loads, data)
        except (ValueError, UnicodeDecodeError):
            raise RequestError(400, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise RequestError(400, "the body must be a JSON object")
        return body

    @staticmethod
    async def off_loop(function: Callable[..., Any], *args: Any) -> Any:
        """Run `function` in a worker thread: decoding a large body (JSON, base64, image
        headers) must not stall the event loop the editor's own requests share."""
        return await asyncio.get_running_loop().run_in_executor(None, function, *args)

    async def submit(self, job: Job, uploads: list[ImageUpload], build: Build,
                     image_set: list[ImageUpload] | None = None) -> Job:
        """Save the job's inputs, build its prompt from their names and queue it; `build` also
        returns the nodes to read the results from, kept in `job.meta`. An `image_set` (images
        of any sizes, for the pack's Load Image Set) goes into a folder of its own whose name
        comes first in the names. The saved inputs are deleted when the job ends."""
        try:
            names, job.files = await self.runner.save_inputs(uploads)
            if image_set:
                folder, path = await self.runner.save_set(image_set)
                job.files.append(path)
                names.insert(0, folder)
            prompt, outputs = build(names)
            job.meta.update(outputs)
            prompt_id = await self.runner.queue(prompt)
        except BaseException:
            self.jobs.cancel(job)
            raise
        self.jobs.start(job, prompt_id)
        return job

    async def run(self, vendor: str, key_id: str, uploads: list[ImageUpload], build: Build
                  ) -> Job:
        """A synchronous endpoint's job: queued, waited for; a 504 when it did not finish in
        time, else a 500 with ComfyUI's error message when it failed or was interrupted."""
        job = await self.submit(self.jobs.reserve(vendor, key_id), uploads, build)
        await job.done.wait()
        if job.error is not None:
            raise job.error
        if job.status != "completed":
            raise RequestError(500, self.runner.error_message(job))
        return job


def handler(vendor: str, error_body: ErrorBody) -> Callable[[Handler], Handler]:
    """Wrap a route: RequestError becomes the vendor's own error shape (with Retry-After on
    429); anything unexpected a 500 whose details go to the log, not to the caller."""
    def wrap(function: Handler) -> Handler:
        async def route(request: web.Request) -> web.StreamResponse:
            try:
                return await function(request)
            except RequestError as error:
                headers = ({"Retry-After": str(int(error.retry_after))}
                           if error.retry_after else None)
                return web.json_response(error_body(error.status, str(error), error.field),
                                         status=error.status, headers=headers)
            except web.HTTPException:
                raise
            except Exception:
                logger.exception("region-repair serving: %s %s failed", vendor, request.path)
                return web.json_response(error_body(500, "internal error; see the server's "
                                                    "log", None), status=500)
        route.__name__ = function.__name__
        return route
    return wrap
