"""The command end to end on loopback: a local Ray cluster, real ComfyUI servers with the pack,
the weight-free removal workflow on small random photos. Faults are real: a SIGKILLed server, a
SIGKILLed driver, bad manifest rows."""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import requests

from fleet_testing import (REMOVAL, RUN_TIMEOUT, fleet_command, fleet_env, output_bytes,
                           removal_jobs, results, run_fleet, write_manifest, write_photos)
from pack_paths import PACK_ROOT

pytestmark = pytest.mark.server

JOBS = 40


def owned_servers() -> list[psutil.Process]:
    """The ComfyUI servers fleet workers started (their base folders are named fleet-comfyui-)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if any(part.endswith("ComfyUI/main.py") for part in cmdline) and any(
                "fleet-comfyui-" in part for part in cmdline):
            found.append(process)
    return found


def server_folders() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("fleet-comfyui-*"))


def executions(server) -> int:
    """Prompts the server has run, from its log (one line per prompt, cached or not)."""
    return server.log().count("Prompt executed in")


def assert_every_job_done_once(out, ids, statuses=frozenset({"done"})) -> None:
    rows = results(out)
    assert sorted(rows) == sorted(ids)
    assert {row["status"] for row in rows.values()} <= statuses
    for job_id in ids:  # one output per job, and nothing else left behind (no temporary files)
        assert sorted(path.name for path in (out / job_id).iterdir()) == ["4_00.png", "done.json"]
        assert list(rows[job_id]["outputs"]) == [f"{job_id}/4_00.png"]


@pytest.fixture(scope="module")
def forty(tmp_path_factory, servers):
    """40 jobs and their outputs from a single-server run (--servers with one URL)."""
    folder = tmp_path_factory.mktemp("forty")
    jobs = removal_jobs(write_photos(folder / "photos", JOBS, seed=40))
    manifest = write_manifest(folder / "manifest.jsonl", jobs)
    out = folder / "single"
    finished = run_fleet(manifest, out, "--servers", servers[0].url)
    assert finished.returncode == 0, finished.stderr
    assert_every_job_done_once(out, [job["id"] for job in jobs])
    return manifest, [job["id"] for job in jobs], output_bytes(out)


def test_two_workers_write_every_output_once_identical_to_one_server(forty, tmp_path):
    manifest, ids, single = forty
    out = tmp_path / "out"
    folders_before = server_folders()
    finished = run_fleet(manifest, out, "--workers", "2")
    assert finished.returncode == 0, finished.stderr
    assert_every_job_done_once(out, ids)
    assert output_bytes(out) == single
    assert server_folders() <= folders_before  # the servers' base folders are removed
    rows = results(out)
    assert len({row["server"] for row in rows.values()}) == 2  # both workers took jobs
    # Quality Check's verdict per job: the review queue.
    assert all(row["needs_review"] in (True, False) for row in rows.values())
    flagged = [row for row in rows.values() if row["needs_review"]]
    assert all(len(row["reasons"]) for row in flagged)
    csv = (out / "results.csv").read_text().splitlines()
    assert csv[0].split(",")[:3] == ["id", "line", "status"] and len(csv) == JOBS + 1
    # The same command again executes nothing.
    again = run_fleet(manifest, out, "--workers", "2")
    assert again.returncode == 0, again.stderr
    assert {row["status"] for row in results(out).values()} == {"skipped"}
    assert f"0 done, 0 failed, {JOBS} skipped" in again.stderr


def test_a_sigkilled_server_or_worker_is_restarted_and_its_job_rerun(forty, tmp_path):
    manifest, ids, single = forty
    out = tmp_path / "out"
    driver = subprocess.Popen(fleet_command(manifest, out, "--workers", "2"), cwd=PACK_ROOT,
                              env=fleet_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        killed_prompt = kill_a_server_mid_prompt(out)
        kill_a_worker(out)
        _, stderr = driver.communicate(timeout=RUN_TIMEOUT)
    finally:
        driver.kill()
    assert driver.returncode == 0, stderr
    assert_every_job_done_once(out, ids)
    assert output_bytes(out) == single
    rerun = [row for row in results(out).values() if row["prompt_id"] == killed_prompt]
    # Counted across a worker's restart too (the worker killed next may be the one that ran it).
    assert len(rerun) == 1 and rerun[0]["attempts"] >= 2, rerun[0]["retried"]
    assert not (out / ".attempts").exists()
    deadline = time.monotonic() + 15  # Ray's process-group clean-up takes a few seconds
    while owned_servers() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert owned_servers() == []


def kill_a_worker(out, after: int = 15) -> None:
    """SIGKILL a Ray worker (an actor of the pool) once `after` jobs are done: Ray restarts it
    and retries its task; a server it started goes with it."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while len(list(out.glob("*/done.json"))) < after and time.monotonic() < deadline:
        time.sleep(0.02)
    workers = [process for process in psutil.process_iter(["name"])
               if (process.info["name"] or "").startswith("ray::MapWorker")]
    assert workers, "no Ray worker found"
    workers[0].send_signal(signal.SIGKILL)


def kill_a_server_mid_prompt(out) -> str:
    """SIGKILL a worker's server while it runs a prompt (after a few jobs are done); returns
    that prompt's id."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        if len(list(out.glob("*/done.json"))) >= 5:
            for process in owned_servers():
                port = process.cmdline()[process.cmdline().index("--port") + 1]
                try:
                    running = requests.get(f"http://127.0.0.1:{port}/queue",
                                           timeout=5).json()["queue_running"]
                except requests.RequestException:
                    continue
                if running:
                    process.send_signal(signal.SIGKILL)
                    return running[0][1]
        time.sleep(0.02)
    raise AssertionError("no server was seen running a prompt")


def test_on_running_servers_killed_worker_and_driver_rerun_runs_only_what_is_missing(
        servers, tmp_path):
    """--servers mode with two running servers: a worker SIGKILLed, then the driver half
    way."""
    jobs = removal_jobs(write_photos(tmp_path / "photos", JOBS, seed=41), prefix="resume")
    manifest = write_manifest(tmp_path / "manifest.jsonl", jobs)
    out = tmp_path / "out"
    urls = ",".join(server.url for server in servers)
    before = sum(executions(server) for server in servers)
    driver = subprocess.Popen(fleet_command(manifest, out, "--servers", urls), cwd=PACK_ROOT,
                              env=fleet_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        kill_a_worker(out, after=JOBS // 4)
        deadline = time.monotonic() + RUN_TIMEOUT
        while len(list(out.glob("*/done.json"))) < JOBS // 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        driver.kill()
    finished_first = len(list(out.glob("*/done.json")))
    assert JOBS // 2 <= finished_first < JOBS
    assert not (out / "results.parquet").exists()

    second = run_fleet(manifest, out, "--servers", urls)
    assert second.returncode == 0, second.stderr
    rows = results(out)
    statuses = [row["status"] for row in rows.values()]
    assert statuses.count("skipped") >= finished_first
    assert_every_job_done_once(out, [job["id"] for job in jobs], {"done", "skipped"})
    assert {row["server"] for row in rows.values()} == {server.url for server in servers}
    # Exactly one execution per job over both runs: a prompt that the killed worker or driver
    # left on a server is found there again by its deterministic id, not run again.
    assert sum(executions(server) for server in servers) - before == JOBS


def test_bad_rows_fail_with_their_reasons_and_the_rest_complete(servers, tmp_path):
    photos = write_photos(tmp_path / "photos", 4, seed=42)
    broken = json.loads((PACK_ROOT / "workflows_api" / f"{REMOVAL}.json").read_text())
    broken["3"]["class_type"] = "RegionRepair_NoSuchNode"
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    good = removal_jobs(photos, prefix="good")
    manifest = write_manifest(tmp_path / "manifest.jsonl", [
        good[0],
        {**good[1], "id": "bad-workflow", "workflow": "broken.json"},
        good[2],
        {**good[3], "id": "missing-input", "inputs": {"Photo": "nowhere/absent.png"}},
        {**good[3], "id": "bad-value", "params": {"Mask: the spoon": {"bbox": "not a box"}}},
        good[3],
    ])
    out = tmp_path / "out"
    finished = run_fleet(manifest, out, "--servers", ",".join(s.url for s in servers))
    assert finished.returncode == 1, finished.stderr  # some rows failed
    rows = results(out)
    assert [rows[job["id"]]["status"] for job in (good[0], good[2], good[3])] == ["done"] * 3
    assert rows["missing-input"]["status"] == "failed"
    assert rows["missing-input"]["error"].startswith("line 4: input 'Photo': file not found")
    assert "line 4: input 'Photo': file not found" in finished.stderr  # said before the run
    assert rows["bad-workflow"]["status"] == "failed"
    assert "RegionRepair_NoSuchNode" in rows["bad-workflow"]["error"]
    assert rows["bad-value"]["status"] == "failed"
    assert "bbox" in rows["bad-value"]["error"]
    assert not (out / "bad-value").exists() and not (out / "missing-input").exists()


def test_a_prompt_past_the_timeout_is_interrupted_and_retried(servers, tmp_path):
    """A 1024² job under a 0.3 s timeout: each attempt is interrupted, and the server is left
    idle with the interrupted attempt in its history."""
    photo, = write_photos(tmp_path / "photos", 1, seed=44, size=1024)
    manifest = write_manifest(tmp_path / "manifest.jsonl", removal_jobs([photo], prefix="slow"))
    finished = run_fleet(manifest, tmp_path / "out", "--servers", servers[0].url,
                         "--job-timeout", "0.3", "--retries", "1")
    assert finished.returncode == 1, finished.stderr
    row = results(tmp_path / "out")["slow000"]
    assert row["status"] == "failed" and row["attempts"] == 2
    assert row["error"].startswith("gave up after 2 attempts: PromptTimedOut")
    assert [reason.split(":")[0] for reason in row["retried"]] == ["PromptTimedOut"] * 2
    queue = servers[0].get_json("/queue")
    assert queue["queue_running"] == [] and queue["queue_pending"] == []
    history = servers[0].get_json(f"/history/{row['prompt_id']}")[row["prompt_id"]]
    assert "execution_interrupted" in [kind for kind, _ in history["status"]["messages"]]


def test_address_joins_a_running_ray_cluster(servers, tmp_path):
    """`--address` joins an existing Ray cluster (a head started apart, as on a LAN or KubeRay)
    instead of starting one; the jobs run on it. Ray 2.60 clusters want a token: the head and
    the command share one through RAY_AUTH_MODE/RAY_AUTH_TOKEN (docs/fleet.md)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**fleet_env(), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    ray_dir = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths must fit 107 bytes
    head = subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start", "--head",
                             "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
                             "--num-cpus=2", "--include-dashboard=false",
                             "--disable-usage-stats", f"--temp-dir={ray_dir}"],
                            env={**env, "RAY_process_group_cleanup_enabled": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        jobs = removal_jobs(write_photos(tmp_path / "photos", 4, seed=43))
        manifest = write_manifest(tmp_path / "manifest.jsonl", jobs)
        out = tmp_path / "out"
        command = fleet_command(manifest, out, "--address", f"127.0.0.1:{port}",
                                "--servers", ",".join(s.url for s in servers))
        deadline = time.monotonic() + 120
        while True:  # the head takes a few seconds to listen
            finished = subprocess.run(command, cwd=PACK_ROOT, env=env, capture_output=True,
                                      text=True, timeout=RUN_TIMEOUT, check=False)
            if finished.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert finished.returncode == 0, finished.stderr
        assert_every_job_done_once(out, [job["id"] for job in jobs])
        # The workers ran on that cluster: their logs are in its session folder (a local Ray
        # instance would have used another).
        assert list(Path(ray_dir).glob("session_*/logs/worker-*")), "no worker ran on the head"
    finally:
        head.terminate()
        head.wait(60)
        shutil.rmtree(ray_dir, ignore_errors=True)
