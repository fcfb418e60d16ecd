"""The driver: manifest -> Ray Data map_batches over an actor pool -> results.

Jobs whose outputs already exist are skipped before Ray starts, so re-running the same command
after a crash executes only what is missing.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleet.manifest import PACK_ROOT, Job, read_manifest
from fleet.worker import (ATTEMPTS_FOLDER, JobRunner, done_row, result_row, server_folder_prefix,
                          write_atomically)

RESULT_FILES = ("results.parquet", "results.csv")


@dataclass
class Options:
    manifest: Path
    out: Path
    workers: int | None = None
    servers: tuple[str, ...] = ()
    address: str | None = None
    job_timeout: float = 600.0
    retries: int = 2
    cpus_per_worker: float = 1.0


class ServerLeases:
    """Hands each actor the least-used --servers URL. A restarted actor keeps its actor id and
    gets its server back, where the prompt it was running is found again by its id."""

    def __init__(self, urls: list[str]):
        self.counts = {url: 0 for url in urls}
        self.holders: dict[str, str] = {}

    def lease(self, actor_id: str) -> str:
        if actor_id not in self.holders:
            self.holders[actor_id] = min(self.counts, key=self.counts.get)
            self.counts[self.holders[actor_id]] += 1
        return self.holders[actor_id]


def worker_resources(options: Options, cluster: dict[str, float]) -> dict[str, float]:
    """Ray resources for one worker: a GPU each where the cluster has GPUs and the workers start
    their own servers (a --servers worker only drives a server over HTTP)."""
    if not options.servers and cluster.get("GPU", 0) >= 1:
        return {"num_gpus": 1, "num_cpus": options.cpus_per_worker}
    return {"num_cpus": options.cpus_per_worker}


def start_ray(options: Options, workers: int) -> Any:
    import ray

    # A ComfyUI child dies with its worker only when Ray cleans up process groups.
    os.environ.setdefault("RAY_process_group_cleanup_enabled", "1")
    runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(
        filter(None, [str(PACK_ROOT), os.environ.get("PYTHONPATH")]))}}
    settings: dict[str, Any] = {"runtime_env": runtime_env, "log_to_driver": False,
                                "include_dashboard": False, "logging_level": "WARNING"}
    if options.address:
        ray.init(address=options.address, **settings)
    else:  # a local cluster with room for every worker, even past the core count
        cpus = max(os.cpu_count() or 1, math.ceil(workers * options.cpus_per_worker) + 1)
        ray.init(num_cpus=cpus, **settings)
    return ray


def execute(options: Options, jobs: list[Job], workers: int) -> Iterator[dict[str, Any]]:
    ray = start_ray(options, workers)
    run_tag = uuid.uuid4().hex[:12]
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        resources = worker_resources(options, ray.cluster_resources())
        leases = None
        if options.servers:
            leases = ray.remote(num_cpus=0)(ServerLeases).remote(list(options.servers))
        # One job per block and per call: a retried task redoes one job. An actor runs one call
        # at a time (one prompt in flight per server) and holds the next job queued, so that it
        # starts at once instead of after the driver's next scheduling round (0.12-0.20 s a job
        # with 2 workers on a busy 2-core machine, 0.01 s with the next job queued).
        dataset = ray.data.from_items([{"job": job.to_json()} for job in jobs],
                                      override_num_blocks=len(jobs))
        results = dataset.map_batches(
            JobRunner, batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=2),
            fn_constructor_kwargs={"out_dir": str(options.out.resolve()),
                                   "job_timeout": options.job_timeout,
                                   "retries": options.retries, "run_tag": run_tag,
                                   "leases": leases,
                                   "use_gpu": "num_gpus" in resources,
                                   "threads": max(1, int(options.cpus_per_worker))},
            **resources)
        for row in results.iter_rows():
            yield json.loads(row["row"])
    finally:
        ray.shutdown()
        # This machine's workers are gone; a cluster's other nodes keep theirs in their /tmp.
        for folder in Path(tempfile.gettempdir()).glob(server_folder_prefix(run_tag) + "*"):
            shutil.rmtree(folder, ignore_errors=True)


class Progress:
    """Jobs done / failed / skipped / left and the rate of executed jobs, on stderr: one line
    redrawn on a terminal, a line every PLAIN_EVERY seconds otherwise (logs, CI)."""

    PLAIN_EVERY = 10.0

    def __init__(self, total: int):
        self.total = total
        self.counts = {"done": 0, "failed": 0, "skipped": 0}
        self.started = time.monotonic()
        self.executed = 0
        self.shown = 0.0
        self.terminal = sys.stderr.isatty()

    def add(self, row: dict[str, Any]) -> None:
        self.counts[row["status"]] += 1
        self.executed += row["status"] != "skipped" and row["attempts"] > 0  # ran this time
        if self.terminal or time.monotonic() - self.shown >= self.PLAIN_EVERY:
            self.show()

    def show(self, final: bool = False) -> None:
        self.shown = time.monotonic()
        rate = 60 * self.executed / max(self.shown - self.started, 1e-9)
        left = self.total - sum(self.counts.values())
        print(f"fleet: {self.counts['done']} done, {self.counts['failed']} failed, "
              f"{self.counts['skipped']} skipped, {left} left, {rate:.1f} jobs/min",
              end="\r" if self.terminal and not final else "\n", file=sys.stderr, flush=True)


def write_results(out: Path, rows: list[dict[str, Any]]) -> None:
    import pandas as pd

    frame = pd.DataFrame(rows).sort_values("line", kind="stable")
    parquet = io.BytesIO()
    frame.to_parquet(parquet, index=False)
    write_atomically(out / RESULT_FILES[0], parquet.getvalue())
    flat = frame.assign(outputs=frame["outputs"].map(";".join),
                        reasons=frame["reasons"].map(";".join),
                        retried=frame["retried"].map(" | ".join))
    write_atomically(out / RESULT_FILES[1], flat.to_csv(index=False).encode())


def run(options: Options) -> int:
    jobs = read_manifest(options.manifest)  # raises ManifestError before anything runs
    if options.servers and options.workers and options.workers > len(options.servers):
        raise ValueError(f"--workers {options.workers} is more than the {len(options.servers)} "
                         "--servers: each server takes one prompt at a time")
    workers = options.workers or len(options.servers) or 1
    options.out.mkdir(parents=True, exist_ok=True)
    progress = Progress(len(jobs))
    rows, pending = [], []
    for job in jobs:
        if job.error:
            print(f"fleet: {job.error}", file=sys.stderr)
            rows.append(result_row(job, "failed", job.error))
        elif (finished := done_row(options.out, job)) is not None:
            rows.append({**finished, "status": "skipped", "line": job.line})
        else:
            pending.append(job)
    for row in rows:
        progress.add(row)
    if pending:
        for row in execute(options, pending, min(workers, len(pending))):
            rows.append(row)
            progress.add(row)
    progress.show(final=True)
    write_results(options.out, rows)
    shutil.rmtree(options.out / ATTEMPTS_FOLDER, ignore_errors=True)
    flagged = sum(bool(row["needs_review"]) for row in rows)
    elapsed = time.monotonic() - progress.started
    print(f"fleet: {len(rows)} jobs in {elapsed:.1f} s: {progress.counts['done']} done, "
          f"{progress.counts['failed']} failed, {progress.counts['skipped']} skipped; "
          f"{flagged} need review; results in {options.out / RESULT_FILES[0]} and "
          f"{RESULT_FILES[1]}", file=sys.stderr)
    return 1 if progress.counts["failed"] else 0
