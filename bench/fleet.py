"""The fleet runner (`python -m fleet`): throughput with 1 and 2 workers, and its per-job overhead
against posting the same prompts to the server directly. bench/README.md has the figures.

Weight-free Photio removal (classical fill) on random photos, each job a different photo (a
re-posted prompt would be a cache hit). Throughput is the steady rate: jobs finished between the
first and the last done marker, so the servers' and Ray's start-up are left out and reported on
their own.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
from PIL import Image

PACK_ROOT = Path(__file__).resolve().parents[1]
REMOVAL = "Photio Regen - remove an object (no weights)"

if "fleet" not in sys.modules:  # the package without the pack root on sys.path (bench/_common.py)
    stub = types.ModuleType("fleet")
    stub.__path__ = [str(PACK_ROOT / "fleet")]
    sys.modules["fleet"] = stub

from fleet.comfy import ComfyClient, comfy_server_module
from fleet.manifest import read_manifest


def write_jobs(folder: Path, count: int, size: int, seed: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    lines = []
    for index in range(count):
        photo = folder / f"photo_{index:03d}.png"
        Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(photo)
        lines.append(json.dumps({"id": f"job{index:03d}", "workflow": REMOVAL,
                                 "inputs": {"Photo": str(photo)},
                                 "params": {"Mask: the spoon": {"bbox": "0.3, 0.3, 0.3, 0.3"}}}))
    manifest = folder / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def run_fleet(manifest: Path, out: Path, *options: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fleet", "run", str(manifest), "--out", str(out),
                    *options], cwd=PACK_ROOT, check=True, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def steady_rate(out: Path) -> float:
    """Jobs per minute between the first and the last job to finish."""
    finished = sorted(path.stat().st_mtime for path in out.glob("*/done.json"))
    return 60 * (len(finished) - 1) / (finished[-1] - finished[0])


def execution_seconds(entry: dict) -> float:
    """The server's own time for a prompt, from its /history messages (ms timestamps)."""
    stamps = {kind: data["timestamp"] for kind, data in entry["status"]["messages"]}
    return (stamps["execution_success"] - stamps["execution_start"]) / 1000


def direct_seconds(client: ComfyClient, manifest: Path) -> list[tuple[float, float]]:
    """(client seconds, server execution seconds) of each job's prompt posted straight to the
    server, its input already in place: the client's time runs from POST to the end of the
    prompt as the websocket reports it."""
    times = []
    for job in read_manifest(manifest):
        for name, path in job.uploads.items():
            client.upload(name, path)
        started = time.perf_counter()
        client.post(job.prompt, job.prompt_id)
        entry = client.finished(job.prompt_id, timeout=600)
        times.append((time.perf_counter() - started, execution_seconds(entry)))
    return times


def overhead(work: Path, jobs: int, size: int) -> None:
    """Time outside the prompt's execution, per job: the server's own execution time varies
    with the machine's load from one job to the next, the rest is what a runner adds."""
    module = comfy_server_module()
    with module.ComfyServer(work / "server", env={"OMP_NUM_THREADS": "1"}) as server:
        client = ComfyClient(server.url)
        direct_seconds(client, write_jobs(work / "warm", 1, size, seed=0))  # first-load costs
        direct = direct_seconds(client, write_jobs(work / "direct", jobs, size, seed=1))
        out = work / "fleet-overhead"
        wall = run_fleet(write_jobs(work / "fleet", jobs, size, seed=2), out,
                         "--servers", server.url)
        rows = [json.loads(path.read_text()) for path in out.glob("*/done.json")]
        runner = [(row["seconds"], execution_seconds(client.history(row["prompt_id"])))
                  for row in rows]
    print(f"\n## Per-job overhead, {size}² weight-free removal, {jobs} jobs on one server\n")
    print("| | median s/job | median execution s | median overhead s (% of execution) |")
    print("|---|---|---|---|")
    for name, times in (("posted directly (POST to the websocket's end)", direct),
                        ("fleet worker (upload, POST, wait, fetch, atomic write)", runner)):
        total = statistics.median(t for t, _ in times)
        execution = statistics.median(e for _, e in times)
        extra = statistics.median(t - e for t, e in times)
        print(f"| {name} | {total:.3f} | {execution:.3f} | {extra:.3f} "
              f"({100 * extra / execution:.1f} %) |")
    print(f"\nThe fleet command's wall time, Ray's start included: {wall:.1f} s for {jobs} jobs "
          f"({wall / jobs:.2f} s/job).")


def throughput(work: Path, jobs: int, size: int) -> None:
    manifest = write_jobs(work / "throughput", jobs, size, seed=3)
    rates, walls, loads = {}, {}, {}
    for workers in (1, 2):
        out = work / f"workers-{workers}"
        load_before = os.getloadavg()[0]  # other work on the machine takes cores from the run
        walls[workers] = run_fleet(manifest, out, "--workers", str(workers))
        rates[workers] = steady_rate(out)
        loads[workers] = f"{load_before:.2f} -> {os.getloadavg()[0]:.2f}"
    print(f"\n## Throughput, {size}² weight-free removal, {jobs} jobs, servers started by the "
          "workers\n")
    print("| workers | jobs/min (steady) | wall s (Ray and server start included) | load average "
          "(1 min) before -> after |")
    print("|---|---|---|---|")
    for workers in (1, 2):
        print(f"| {workers} | {rates[workers]:.1f} | {walls[workers]:.1f} | {loads[workers]} |")
    print(f"\n2 workers / 1 worker: {rates[2] / rates[1]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--overhead-jobs", type=int, default=8)
    parser.add_argument("--overhead-size", type=int, default=1024)
    parser.add_argument("--throughput-jobs", type=int, default=24)
    parser.add_argument("--throughput-size", type=int, default=512)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as folder:
        overhead(Path(folder), args.overhead_jobs, args.overhead_size)
        throughput(Path(folder), args.throughput_jobs, args.throughput_size)


if __name__ == "__main__":
    main()
