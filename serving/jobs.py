"""Served jobs: one prompt on ComfyUI's queue each, owned by the key that created it (another
key sees a 404), counted against that key's bound until it finishes, its saved inputs deleted
then. A watcher task per job follows the prompt through the queue and /history."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .inputs import JobLimiter, RequestError

logger = logging.getLogger("region_repair.serving")

KEEP_FINISHED = 1000   # finished jobs remembered (their status and results stay readable)


@dataclass
class Job:
    id: str
    vendor: str
    key_id: str
    created: float = field(default_factory=time.time)
    prompt_id: str | None = None
    files: list[Path] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)   # the vendor's own bookkeeping
    entry: dict[str, Any] | None = None                  # /history once finished
    error: RequestError | None = None                    # why it ended without an entry
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def status(self) -> str:
        """pending until done; then completed, aborted (interrupted on the server, e.g. from the
        editor) or failed."""
        if not self.done.is_set():
            return "pending"
        if self.entry is None:
            return "failed"
        if self.entry["status"].get("status_str") == "success":
            return "completed"
        messages = self.entry["status"].get("messages", [])
        interrupted = any(kind == "execution_interrupted" for kind, _ in messages)
        return "aborted" if interrupted else "failed"


class JobStore:
    def __init__(self, runner: Any, limiter: JobLimiter, timeout: float):
        self.runner, self.limiter, self.timeout = runner, limiter, timeout
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._tasks: set[asyncio.Task] = set()
        self.average_s = 5.0   # a finished job's duration, smoothed: the Retry-After estimate

    def reserve(self, vendor: str, key_id: str, job_id: str | None = None) -> Job:
        """A new job counted against `key_id`'s bound (429 when it is full); `job_id` in the
        vendor's own format, random either way (it is the capability to its results)."""
        job = Job(job_id or uuid.uuid4().hex, vendor, key_id)
        retry = self.average_s * max(1, self.runner.pending_count()) / self.limiter.limit
        self.limiter.acquire(key_id, job.id, retry)
        self._jobs[job.id] = job
        while len(self._jobs) > KEEP_FINISHED and self._forget_oldest():
            pass
        return job

    def _forget_oldest(self) -> bool:
        for job_id, job in self._jobs.items():
            if job.done.is_set():
                del self._jobs[job_id]
                return True
        return False

    def restore(self, job: Job) -> None:
        """A finished job read back after a restart (its vendor keeps its status and
        results)."""
        job.done.set()
        self._jobs[job.id] = job

    def cancel(self, job: Job) -> None:
        """A reserved job that never reached the queue (its request was refused)."""
        self.limiter.release(job.key_id, job.id)
        self.runner.delete(job.files)
        self._jobs.pop(job.id, None)

    def start(self, job: Job, prompt_id: str) -> None:
        job.prompt_id = prompt_id
        task = asyncio.get_running_loop().create_task(self._watch(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self, job: Job) -> None:
        try:
            job.entry = await self.runner.wait(job.prompt_id, self.timeout)
            elapsed = time.time() - job.created
            self.average_s = 0.8 * self.average_s + 0.2 * elapsed
        except RequestError as error:   # the timeout (504): the prompt stays queued
            job.error = error
        except Exception:
            logger.exception("region-repair serving: following job %s failed", job.id)
            job.error = RequestError(500, "the server lost track of the job; see its log")
        finally:
            self.limiter.release(job.key_id, job.id)
            self.runner.delete(job.files)
            job.done.set()

    def get(self, job_id: str, key_id: str) -> Job | None:
        job = self._jobs.get(job_id)
        return job if job is not None and job.key_id == key_id else None

    def find(self, job_id: str) -> Job | None:
        """Any key's job: for result links, which PICPIK and PiktID serve without a key."""
        return self._jobs.get(job_id)

    def of_key(self, key_id: str) -> list[Job]:
        return [job for job in self._jobs.values() if job.key_id == key_id]
