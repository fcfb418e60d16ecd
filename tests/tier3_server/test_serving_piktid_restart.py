"""The served PiktID state survives a ComfyUI restart: on a server of its own, a finished job's
status, results and result images still answer after a restart, and a job the server stopped
under reports failed, saying the server restarted. No key is written to the state folder."""

from __future__ import annotations

import io
import threading

import pytest
import requests
from comfy_server import ComfyServer
from pack_paths import PACK_ROOT
from PIL import Image
from serving_images import SERVE_CONFIG, SERVE_ENV, SERVE_KEYS, png

pytestmark = pytest.mark.server

PHOTO = PACK_ROOT / "assets" / "photos" / "astronaut_garbled_patch.png"
HEADERS = {"Authorization": "Bearer " + SERVE_KEYS["piktid"]}


def upload(api, data):
    ticket = requests.post(api + "/upload", headers=HEADERS, json={"filename": "a.png"}).json()
    requests.put(ticket["upload_url"], headers={"Content-Type": "image/png"},
                 data=data).raise_for_status()
    return ticket["file_id"]


def status_of(api, job_id):
    return requests.get(api + f"/jobs/{job_id}/status", headers=HEADERS).json()


def test_a_restarted_server_still_answers_for_its_jobs(tmp_path):
    config = tmp_path / "serve.toml"
    config.write_text(SERVE_CONFIG)
    server = ComfyServer(tmp_path / "comfyui", env={
        "OMP_NUM_THREADS": "1", **SERVE_ENV, "REGION_REPAIR_SERVE_CONFIG": str(config)})
    with server:
        api = server.url + "/region-repair/piktid"
        image_id = upload(api, png(64, 64, 3))
        done = requests.post(api + "/detail-repair", headers=HEADERS, json={
            "image": image_id, "mask": {"bbox_norm": [0.25, 0.25, 0.5, 0.5]},
            "num_candidates": 2, "category": "general", "processing_size": 256}).json()["job_id"]
        for _ in range(1200):
            if status_of(api, done)["status"] == "completed":
                break
            threading.Event().wait(0.1)
        results = requests.get(api + f"/jobs/{done}/results", headers=HEADERS).json()
        images = [requests.get(r["output"]["full_size"]).content for r in results["results"]]
        big = Image.open(PHOTO).convert("RGB").resize((1536, 1536), Image.BICUBIC)
        buffer = io.BytesIO()
        big.save(buffer, "PNG")
        unfinished = requests.post(api + "/detail-repair", headers=HEADERS, json={
            "image": upload(api, buffer.getvalue()), "mask": {"bbox_norm": [0.1, 0.1, 0.8, 0.8]},
            "num_candidates": 4, "category": "general", "processing_size": 2048}).json()
        assert status_of(api, unfinished["job_id"])["status"] in ("pending", "processing")
    with server:   # the same base directory, a new process
        api = server.url + "/region-repair/piktid"
        assert status_of(api, done)["status"] == "completed"
        again = requests.get(api + f"/jobs/{done}/results", headers=HEADERS).json()
        assert again["results"] == results["results"]
        assert [requests.get(r["output"]["full_size"]).content
                for r in again["results"]] == images
        failed = status_of(api, unfinished["job_id"])
        assert failed["status"] == "failed" and "restarted" in failed["error_message"]
    state = tmp_path / "comfyui" / "user" / "region-repair-serving"
    written = b"".join(path.read_bytes() for path in state.rglob("*") if path.is_file())
    assert written and not any(key.encode() in written for key in SERVE_KEYS.values())
