"""The Ray Data actor: one per ComfyUI server, one job at a time.

A job's outputs are written exactly once however often it runs: each file goes to a temporary
name and is renamed into `OUT/<id>/`, and the done marker (`OUT/<id>/done.json`, the job's
result row) is renamed in last. Every failure becomes a result row: an exception escaping
map_batches would fail the whole dataset.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import requests

from fleet.comfy import ComfyClient, OwnedServer, PromptFailed, PromptTimedOut, ServerGone
from fleet.manifest import QUALITY_READER_PREFIX, Job

DONE_MARKER = "done.json"
# OUT/.attempts/<id>: how many attempts at the job have started, by any worker. Ray restarts a
# killed worker and retries its task on a fresh actor, which would count from 1 again; the
# driver removes the folder once the results are written.
ATTEMPTS_FOLDER = ".attempts"
RETRY_PAUSE_SECONDS = 2.0


def result_row(job: Job, status: str, error: str = "", outputs: list[str] | None = None,
               needs_review: bool | None = None, reasons: list[str] | None = None,
               seconds: float = 0.0, server: str = "", attempts: int = 0,
               retried: list[str] | None = None) -> dict[str, Any]:
    """One job's row of results.parquet; `retried` holds why earlier attempts were dropped."""
    return {"id": job.id, "line": job.line, "status": status, "error": error,
            "outputs": outputs or [], "needs_review": needs_review, "reasons": reasons or [],
            "seconds": round(seconds, 3), "server": server, "attempts": attempts,
            "retried": retried or [], "prompt_id": job.prompt_id}


def done_row(out_dir: Path, job: Job) -> dict[str, Any] | None:
    """The job's recorded result when it finished for this very prompt with every output in
    place; None otherwise."""
    try:
        row = json.loads((out_dir / job.id / DONE_MARKER).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if row.get("prompt_id") != job.prompt_id:
        return None
    if not all((out_dir / output).is_file() for output in row["outputs"]):
        return None
    return row


def start_attempt(out_dir: Path, job: Job) -> int:
    """Count one more attempt at `job` (one worker runs a job at a time); returns the count."""
    counter = out_dir / ATTEMPTS_FOLDER / job.id
    counter.parent.mkdir(parents=True, exist_ok=True)
    try:
        count = int(counter.read_text()) + 1
    except (OSError, ValueError):
        count = 1
    write_atomically(counter, str(count).encode())
    return count


def write_atomically(path: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, 0o644)  # mkstemp's 0600 would hide outputs from other users
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def review(outputs: dict[str, Any]) -> tuple[bool | None, list[str]]:
    """Quality Check's verdict: whether any candidate needs review, and the reasons; (None, [])
    for a workflow without Quality Check."""
    reports = [json.loads(ui["text"][0]) for node_id, ui in outputs.items()
               if node_id.startswith(QUALITY_READER_PREFIX)]
    if not reports:
        return None, []
    reasons = sorted({reason for report in reports for candidate in report["candidates"]
                      for reason in candidate["reasons"]})
    return any(report["needs_review"] for report in reports), reasons


def server_folder_prefix(run_tag: str) -> str:
    """Owned servers' base folders (in the temporary folder) start with this: the driver
    removes a run's own after it, since Ray ends the workers without running __del__."""
    return f"fleet-comfyui-{run_tag}-"


def saved_files(ui: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """The files the workflow saved (Save Image's `output` type, not previews), by node id."""
    files = {node_id: [info for info in ui[node_id].get("images", [])
                       if info.get("type") == "output"] for node_id in sorted(ui, key=str)}
    return {node_id: infos for node_id, infos in files.items() if infos}


class JobRunner:
    """map_batches callable: each batch is one or more jobs (column `job`, JSON)."""

    def __init__(self, out_dir: str, job_timeout: float, retries: int, run_tag: str,
                 leases: Any = None, use_gpu: bool = False, threads: int = 1):
        """`use_gpu`: the worker holds a GPU (num_gpus=1) and its server runs on it."""
        self.out_dir = Path(out_dir)
        self.job_timeout = job_timeout
        self.retries = retries
        self.owned: OwnedServer | None = None
        self.server_failed = False
        import ray  # only here: the worker module itself stays importable without Ray

        if leases is None:
            base = Path(tempfile.mkdtemp(prefix=server_folder_prefix(run_tag)))
            gpus = ray.get_runtime_context().get_accelerator_ids()["GPU"] if use_gpu else []
            self.owned = OwnedServer(base, tuple(gpus), threads)
            self.client = self.owned.start()
        else:
            actor_id = ray.get_runtime_context().get_actor_id()
            self.client = ComfyClient(ray.get(leases.lease.remote(actor_id)))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[str]]:
        rows = [self.run_job(Job.from_json(text)) for text in batch["job"]]
        return {"row": [json.dumps(row) for row in rows]}

    def __del__(self) -> None:
        if self.owned is not None:
            self.owned.close()

    def connect(self) -> ComfyClient:
        """The client, after restarting an owned server that died or stopped answering (a
        SIGKILLed server can drop its connections before its process is seen to exit)."""
        if self.owned is not None and (self.server_failed or not self.client.alive()):
            self.owned.stop()
            self.client = self.owned.start()
            self.server_failed = False
        return self.client

    def run_job(self, job: Job) -> dict[str, Any]:
        started = time.monotonic()
        finished = done_row(self.out_dir, job)
        if finished is not None:  # a retried task whose job had already been written
            return finished
        attempts, retried = 0, []
        while attempts <= self.retries:
            attempts += 1
            started_attempts = start_attempt(self.out_dir, job)
            if started_attempts > attempts and not retried:
                retried.append(f"{started_attempts - attempts} earlier attempt(s) ended with "
                               "their worker")
            try:
                client = self.connect()
                timing = {"server": client.url, "attempts": started_attempts,
                          "retried": retried}
                ui = client.run(job.prompt, job.prompt_id, job.uploads, self.job_timeout)
                files = saved_files(ui)
                outputs = self.save(job, client, files)
                needs_review, reasons = review(ui)
                row = result_row(job, "done", outputs=outputs, needs_review=needs_review,
                                 reasons=reasons, seconds=time.monotonic() - started, **timing)
                write_atomically(self.out_dir / job.id / DONE_MARKER, json.dumps(row).encode())
                if self.owned is not None:
                    self.owned.remove([info for infos in files.values() for info in infos],
                                      list(job.uploads))
                return row
            except PromptFailed as error:
                return result_row(job, "failed", str(error), seconds=time.monotonic() - started,
                                  **timing)
            except PromptTimedOut as error:  # interrupted: the server is free again
                retried.append(f"{type(error).__name__}: {error}")
            except (ServerGone, requests.RequestException) as error:
                retried.append(f"{type(error).__name__}: {error}")
                self.server_failed = self.owned is not None
                if self.owned is None:
                    time.sleep(RETRY_PAUSE_SECONDS * attempts)  # a remote server restarting
            except Exception as error:  # noqa: BLE001 - a row, never a failed dataset
                return result_row(job, "failed", f"{type(error).__name__}: {error}",
                                  seconds=time.monotonic() - started, server=self.client.url,
                                  attempts=started_attempts, retried=retried)
        return result_row(job, "failed", f"gave up after {attempts} attempts: {retried[-1]}",
                          seconds=time.monotonic() - started, server=self.client.url,
                          attempts=started_attempts, retried=retried)

    def save(self, job: Job, client: ComfyClient,
             files: dict[str, list[dict[str, str]]]) -> list[str]:
        """Every saved image, as OUT/<id>/<node id>_<index><suffix>; paths relative to OUT."""
        folder = self.out_dir / job.id
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for node_id, infos in files.items():
            for index, info in enumerate(infos):
                name = f"{node_id}_{index:02d}{Path(info['filename']).suffix}"
                write_atomically(folder / name, client.fetch(info))
                written.append(f"{job.id}/{name}")
        return written
