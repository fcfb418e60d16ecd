"""The served PiktID v2 endpoints on the session's real server, driven by the seeds' own Python
snippets with only the base URL and the token changed: upload -> job -> SSE -> results, a
dropped and reconnected stream, webhooks to a loopback receiver, the upload URL's signature,
expiry and single use, errors, and 20 concurrent jobs (none lost, none run twice)."""

from __future__ import annotations

import concurrent.futures
import hashlib
import hmac
import http.server
import io
import json
import threading
import zipfile
from typing import ClassVar
from urllib.parse import urlsplit

import numpy as np
import pytest
import requests
import torch
from pack_paths import PACK_ROOT
from PIL import Image, ImageOps
from region_repair.pipelines.vendors import keys, remote
from region_repair.pipelines.vendors.http import Timeouts
from serving_images import SERVE_KEYS, SERVE_PIKTID_CROWD, png
from vendor_testing import bounded, settings

pytestmark = pytest.mark.server

PHOTO = PACK_ROOT / "assets" / "photos" / "astronaut_garbled_patch.png"
REFERENCE = PACK_ROOT / "assets" / "photos" / "astronaut_patch_reference.png"
GARMENT_SET = PACK_ROOT / "assets" / "photos" / "garment_set"
SUIT = GARMENT_SET / "suit_studio.png"
BOX = (0.238, 0.652, 0.196, 0.196)   # the garbled patch, as the shipped workflow


@pytest.fixture(scope="module")
def api(server):
    return server.url + "/region-repair/piktid"


def headers(token=SERVE_KEYS["piktid"]):
    return {"Authorization": "Bearer " + token}


def mask_png() -> tuple[bytes, np.ndarray]:
    width, height = Image.open(PHOTO).size
    x, y, w, h = BOX
    edit = np.zeros((height, width), bool)
    edit[round(y * height):round((y + h) * height), round(x * width):round((x + w) * width)] = 1
    buffer = io.BytesIO()
    Image.fromarray(np.where(edit, 255, 0).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue(), edit


def upload(api_url, access_token, project_name, data, filename):
    """Seed 000's upload(), reading bytes instead of a path."""
    r = requests.post(
        api_url + "/upload",
        headers={"Authorization": "Bearer " + access_token},
        json={"project_name": project_name, "filename": filename},
    ).json()
    put = requests.put(r["upload_url"], headers={"Content-Type": r["content_type"]}, data=data)
    assert put.status_code in (200, 201), put.text
    return r["project_id"], r["file_id"]


def wait_sse(api_url, access_token, job_id):
    """Seed 001's SSE loop; returns the terminal notification's data."""
    with requests.get(api_url + "/notifications/events",
                      headers={"Authorization": "Bearer " + access_token},
                      stream=True, timeout=600) as response:
        response.raise_for_status()
        for raw_line in response.iter_lines(decode_unicode=True):
            if not raw_line or raw_line.startswith(":"):
                continue
            if not raw_line.startswith("data: "):
                continue
            notification = json.loads(raw_line[6:])
            data = notification.get("data", {})
            task_id = data.get("id_task") or data.get("job_id")
            if task_id != job_id:
                continue
            if notification["name"] == "batch_edit":
                status = data.get("status")
                if status == "completed":
                    return data
                if status == "failed":
                    raise RuntimeError(data.get("error_message", "Job failed"))


def test_detail_repair_upload_job_sse_results(api):
    access_token = SERVE_KEYS["piktid"]
    project = requests.post(api + "/project", headers=headers(),
                            json={"project_name": "served-detail-repair"}).json()
    mask, edit = mask_png()
    project_id, image_id = upload(api, access_token, project["project_name"],
                                  PHOTO.read_bytes(), "product.png")
    assert project_id == project["project_id"]
    _, reference_id = upload(api, access_token, project["project_name"],
                             REFERENCE.read_bytes(), "reference.png")
    _, mask_id = upload(api, access_token, project["project_name"], mask, "mask.png")
    response = requests.post(api + "/detail-repair", headers=headers(), json={
        "project_id": project_id, "image": image_id, "mask_image": mask_id,
        "references": [reference_id], "num_candidates": 2, "category": "logo",
        "reviewer_note": "Fix the wordmark to match the reference exactly.", "model": "auto",
        "processing_size": 512})
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] == "pending" and job["message"] == "Detail repair job created and queued"
    data = wait_sse(api, access_token, job["job_id"])
    assert data["status"] == "completed" and data["processed_images"] == 2
    status = requests.get(api + f"/jobs/{job['job_id']}/status", headers=headers()).json()
    assert status["status"] == "completed" and status["job_type"] == "detail_repair"
    results = requests.get(api + f"/jobs/{job['job_id']}/results", headers=headers()).json()
    assert [(r["image_index"], r["group_index"]) for r in results["results"]] == [(0, 0), (0, 1)]
    original = np.asarray(Image.open(PHOTO).convert("RGB"))
    for result in results["results"]:
        assert isinstance(result["needs_review"], bool) and isinstance(result["reasons"], list)
        image = np.asarray(Image.open(io.BytesIO(requests.get(
            result["output"]["full_size"], timeout=30).content)).convert("RGB"))  # no auth
        assert np.array_equal(image[~edit], original[~edit])
        assert np.abs(image[edit].astype(int) - original[edit]).mean() > 2
    # Seed 001's bulk download: a ZIP behind a keyless, expiring link.
    link = requests.post(api + "/download", headers=headers(),
                         json={"job_id": job["job_id"]}).json()
    assert link["expires"].endswith("Z")
    with zipfile.ZipFile(io.BytesIO(requests.get(link["download_url"]).content)) as archive:
        assert sorted(archive.namelist()) == ["output_0_0_v0.png", "output_0_1_v0.png"]
    assert requests.get(link["download_url"] + "x").status_code == 404


def test_bbox_mask_and_the_packs_own_client(api, server):
    image = torch.from_numpy(np.asarray(Image.open(PHOTO).convert("RGB"),
                                        dtype=np.float32) / 255)[None]
    _, edit = mask_png()
    mask = torch.from_numpy(edit.astype(np.float32))[None]
    env = {"REGION_REPAIR_PIKTID_KEY": SERVE_KEYS["piktid"], keys.hosts_variable("piktid"):
           server.url, "REGION_REPAIR_KEYS_FILE": "/nonexistent/keys.toml"}
    result = bounded(remote.run_remote(image, mask, settings(
        "piktid/detail-repair", api, prompt="repair", timeouts=Timeouts(read=120.0,
                                                                         request=240.0),
        timeout=240.0, sse_idle=30.0, poll_interval=0.2), None, env=env), 250.0)
    assert result.images.shape == image.shape
    inside = torch.from_numpy(edit)
    assert torch.equal(result.images[0][~inside], image[0][~inside])


def finished(api, job_id, token=SERVE_KEYS["piktid"]):
    """The job's status once it is neither pending nor processing."""
    for _ in range(3000):
        status = requests.get(api + f"/jobs/{job_id}/status", headers=headers(token)).json()
        if status["status"] not in ("pending", "processing"):
            return status
        threading.Event().wait(0.1)
    raise AssertionError(f"job {job_id} did not finish: {status}")


def test_garment_recolor_of_a_set_of_mixed_sizes(api, server):
    """Three shots of different sizes in one set, none resized to another's: each output has
    its own input's size and keeps every pixel outside the garment bit-identical. Each long
    side is the processing size (1024), which therefore scales no one. The last is a phone's
    JPEG, stored on its side with an EXIF rotation: it is recoloured upright, as LoadImage
    shows it."""
    from region_repair.pipelines.recolor import garment_mask
    shots = [Image.open(GARMENT_SET / name).convert("RGB") for name in
             ("suit_dim_warm.png", "suit_studio.png", "suit_closeup.png")]
    shots = [shot.resize((round(shot.width * 1024 / max(shot.size)),
                          round(shot.height * 1024 / max(shot.size))), Image.BICUBIC)
             for shot in shots]
    files = []
    for shot in shots[:2]:
        buffer = io.BytesIO()
        shot.save(buffer, "PNG")
        files.append((buffer.getvalue(), "png"))
    exif = Image.Exif()
    exif[0x0112] = 6   # shown turned 90 degrees clockwise
    buffer = io.BytesIO()
    shots[2].rotate(90, expand=True).save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    files.append((buffer.getvalue(), "jpg"))
    shots[2] = ImageOps.exif_transpose(Image.open(io.BytesIO(files[2][0]))).convert("RGB")
    assert len({shot.size for shot in shots}) == 3 and shots[2].height == 1024
    ids = [upload(api, SERVE_KEYS["piktid"], "served-mixed", data, f"{index}.{extension}")[1]
           for index, (data, extension) in enumerate(files)]
    job = requests.post(api + "/garment-recolor", headers=headers(), json={
        "images": ids, "garment_label": "jacket", "reference_text": "#2E5A3B",
        "num_variations": 2, "processing_size": 1024})
    assert job.status_code == 202 and job.json()["total_outputs"] == 6, job.text
    job_id = job.json()["job_id"]
    assert finished(api, job_id)["status"] == "completed"
    assert not list((server.base_dir / "input" / "region-repair-serving").glob("set_*"))
    results = requests.get(api + f"/jobs/{job_id}/results", headers=headers()).json()["results"]
    assert [(r["image_index"], r["group_index"]) for r in results] == \
        [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]
    originals = [np.asarray(shot) for shot in shots]
    masks, _ = garment_mask.garment_masks(
        [torch.from_numpy(o.astype(np.float32) / 255) for o in originals],
        garment_mask.region_for_label("jacket"), outer=garment_mask.prefers_outer("jacket"))
    outputs = {}
    for result in results:
        original = originals[result["image_index"]]
        garment = masks[result["image_index"]].numpy() > 0
        image = np.asarray(Image.open(io.BytesIO(requests.get(
            result["output"]["full_size"], timeout=30).content)).convert("RGB"))
        assert image.shape == original.shape, (result["image_index"], image.shape)
        assert np.array_equal(image[~garment], original[~garment])
        assert np.abs(image[garment].astype(int) - original[garment]).mean() > 5
        outputs[result["image_index"], result["group_index"]] = image
    for index in range(3):   # the second variation is another shade
        assert not np.array_equal(outputs[index, 0], outputs[index, 1])


def test_regenerate_one_candidate(api):
    """POST /jobs/{id}/regenerate/{image_index}?group_index=1 queues that output again; once
    it ended, the results list its version 1 (and version 0 of the other candidate)."""
    photo = png(64, 64, 7)
    _, image_id = upload(api, SERVE_KEYS["piktid"], "served-regenerate", photo, "a.png")
    job_id = requests.post(api + "/detail-repair", headers=headers(), json={
        "image": image_id, "mask": {"bbox_norm": [0.25, 0.25, 0.5, 0.5]}, "num_candidates": 2,
        "category": "general", "processing_size": 256}).json()["job_id"]
    assert finished(api, job_id)["status"] == "completed"
    first = requests.get(api + f"/jobs/{job_id}/results", headers=headers()).json()["results"]
    assert requests.post(api + f"/jobs/{job_id}/regenerate/1",
                         headers=headers()).status_code == 404
    answer = requests.post(api + f"/jobs/{job_id}/regenerate/0", params={"group_index": 1},
                           headers=headers())
    assert answer.status_code == 200, answer.text
    assert answer.json()["success"] and answer.json()["image_index"] == 0
    assert finished(api, job_id)["status"] == "completed"
    results = requests.get(api + f"/jobs/{job_id}/results", headers=headers()).json()["results"]
    assert [(r["image_index"], r["group_index"], r["version"]) for r in results] == \
        [(0, 0, 0), (0, 1, 1)]
    assert results[0]["output"] == first[0]["output"]
    assert results[1]["output"]["full_size"] != first[1]["output"]["full_size"]
    original = np.asarray(Image.open(io.BytesIO(photo)).convert("RGB"))
    outside = np.ones(original.shape[:2], bool)
    outside[16:48, 16:48] = False
    image = np.asarray(Image.open(io.BytesIO(requests.get(
        results[1]["output"]["full_size"], timeout=30).content)).convert("RGB"))
    assert image.shape == original.shape and np.array_equal(image[outside], original[outside])
    notes = requests.post(api + "/notifications", headers=headers(),
                          json={"id_task": job_id}).json()
    assert [n["data"]["status"] for n in notes if n["data"].get("version") == 1][-1] == \
        "completed"


def test_sse_reconnect_replays_until_deleted(api):
    access_token = SERVE_KEYS["piktid"]
    _, image_id = upload(api, access_token, "served-sse", png(64, 64, 3), "a.png")
    backfill(api, "job_not_started_yet")   # connect, read the backfill, then drop
    job = requests.post(api + "/detail-repair", headers=headers(), json={
        "image": image_id, "mask": {"bbox_norm": [0.25, 0.25, 0.5, 0.5]},
        "category": "general", "processing_size": 256}).json()
    for _ in range(1200):
        if requests.get(api + f"/jobs/{job['job_id']}/status",
                        headers=headers()).json()["status"] == "completed":
            break
        threading.Event().wait(0.1)
    replay = backfill(api, job["job_id"])
    statuses = [n["data"]["status"] for n in replay]   # "processing" when it was seen running
    assert statuses[0] == "pending" and statuses[-1] == "completed"
    assert set(statuses) <= {"pending", "processing", "completed"}
    for note in replay:
        assert requests.delete(api + f"/notifications/{note['id']}",
                               headers=headers()).status_code == 200
    assert backfill(api, job["job_id"]) == []
    polled = requests.post(api + "/notifications", headers=headers(),
                           json={"id_task": job["job_id"]}).json()
    assert polled == []


def backfill(api, job_id):
    """The backfill a reconnecting client gets (the token in the query, as EventSource)."""
    events = []
    with requests.get(api + "/notifications/events", params={
            "token": SERVE_KEYS["piktid"], "id_task": job_id}, stream=True, timeout=60) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        kind = None
        for line in stream.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                if kind == "backfill_complete":
                    return events
                events.append(json.loads(line[6:]))
    raise AssertionError("the stream ended before backfill_complete")


class Receiver(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append((body, self.headers.get("X-Webhook-Signature", "")))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhooks_to_an_allowed_loopback_receiver(api, serving_webhook_url):
    parts = urlsplit(serving_webhook_url)
    receiver = http.server.ThreadingHTTPServer((parts.hostname, parts.port), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        refused = requests.put(api + "/webhooks", headers=headers(),
                               json={"url": "http://127.0.0.1:1/elsewhere"})
        assert refused.status_code == 400 and refused.json()["detail"][0]["field"] == "url"
        setup = requests.put(api + "/webhooks", headers=headers(),
                             json={"url": serving_webhook_url}).json()
        secret = setup["secret"]
        _, image_id = upload(api, SERVE_KEYS["piktid"], "served-hooks", SUIT.read_bytes(),
                             "suit.png")
        job = requests.post(api + "/garment-recolor", headers=headers(), json={
            "images": [image_id], "garment_label": "jacket", "reference_text": "#2E5A3B",
            "processing_size": 1024})
        assert job.status_code == 202 and job.json()["total_outputs"] == 1, job.text
        job_id = job.json()["job_id"]
        for _ in range(1200):
            events = [json.loads(body) for body, _ in Receiver.received]
            if any(e["data"].get("id_task") == job_id and e["data"]["status"] in
                   ("completed", "failed") for e in events):
                break
            threading.Event().wait(0.1)
        names = [json.loads(body)["name"] for body, _ in Receiver.received]
        assert names[0] == "ping"
        events = [json.loads(body)["data"] for body, _ in Receiver.received
                  if json.loads(body)["data"].get("id_task") == job_id]
        assert [e["status"] for e in events][-1] == "completed", events
        for body, signature in Receiver.received:   # the vendor's documented verify_signature
            expected = "sha256=" + hmac.new(secret.encode("utf-8"), body,
                                            hashlib.sha256).hexdigest()
            assert hmac.compare_digest(expected, signature)
    finally:
        receiver.shutdown()


def test_interrupt_from_the_editor_aborts_a_served_job(api, server):
    """The served job is an ordinary prompt: ComfyUI's interrupt stops it, and PiktID's
    clients see the terminal status `aborted`."""
    big = Image.open(PHOTO).convert("RGB").resize((1536, 1536), Image.BICUBIC)
    buffer = io.BytesIO()
    big.save(buffer, "PNG")
    _, image_id = upload(api, SERVE_KEYS["piktid"], "served-interrupt", buffer.getvalue(),
                         "big.png")
    job = requests.post(api + "/detail-repair", headers=headers(), json={
        "image": image_id, "mask": {"bbox_norm": [0.1, 0.1, 0.8, 0.8]}, "num_candidates": 4,
        "category": "general", "processing_size": 2048}).json()["job_id"]
    for _ in range(3000):
        status = requests.get(api + f"/jobs/{job}/status", headers=headers()).json()["status"]
        if status != "pending":
            break
        threading.Event().wait(0.02)
    assert status == "processing", status
    requests.post(server.url + "/interrupt", json={}).raise_for_status()
    for _ in range(1200):
        answer = requests.get(api + f"/jobs/{job}/status", headers=headers()).json()
        if answer["status"] not in ("pending", "processing"):
            break
        threading.Event().wait(0.05)
    assert answer["status"] == "aborted", answer
    assert "interrupted" in answer["error_message"]


def test_upload_url_is_signed_and_single_use(api):
    ticket = requests.post(api + "/upload", headers=headers(),
                           json={"project_name": "served-put", "filename": "x.png"}).json()
    data = png(32, 32)
    assert requests.put(ticket["upload_url"], headers={"Content-Type": "image/jpeg"},
                        data=data).status_code == 403
    forged = ticket["upload_url"][:-4] + ("0000" if not ticket["upload_url"].endswith("0000")
                                          else "1111")
    assert requests.put(forged, headers={"Content-Type": "image/png"}, data=data
                        ).status_code == 403
    assert requests.put(ticket["upload_url"], headers={"Content-Type": "image/png"},
                        data=data).status_code == 200
    assert requests.put(ticket["upload_url"], headers={"Content-Type": "image/png"},
                        data=data).status_code == 403
    assert requests.put(api + "/upload/img_x.1.ab", headers={"Content-Type": "image/png"},
                        data=data).status_code == 403


def test_documented_errors(api):
    assert requests.post(api + "/detail-repair", json={}).status_code == 401
    assert requests.post(api + "/detail-repair", headers=headers("wrong-token-123"),
                         json={}).status_code == 401
    _, image_id = upload(api, SERVE_KEYS["piktid"], "served-errors", png(32, 32), "a.png")
    missing = requests.post(api + "/detail-repair", headers=headers(), json={"image": image_id})
    assert missing.status_code == 400
    assert missing.json()["detail"][0]["field"] == "mask_image"
    unknown = requests.post(api + "/detail-repair", headers=headers(), json={
        "image": "img_unknown", "mask": {"bbox_norm": [0, 0, 1, 1]}})
    assert unknown.status_code == 400 and unknown.json()["detail"][0]["field"] == "image"
    other_key = requests.post(api + "/detail-repair", headers=headers(SERVE_PIKTID_CROWD[0]),
                              json={"image": image_id, "mask": {"bbox_norm": [0, 0, 1, 1]}})
    assert other_key.status_code == 400   # another key's upload is not visible
    assert requests.post(api + "/detail-repair", headers=headers(), json={
        "project_id": "prj_none", "image": image_id}).status_code == 404
    assert requests.get(api + "/jobs/job_none/status", headers=headers()).status_code == 404
    assert requests.post(api + "/garment-recolor", headers=headers(), json={
        "images": [image_id]}).status_code == 400


def test_twenty_concurrent_jobs_none_lost_none_run_twice(api, server):
    tokens = [token for token in SERVE_PIKTID_CROWD for _ in range(2)]
    images = [upload(api, token, "crowd", png(64, 64, n), f"{n}.png")[1]
              for n, token in enumerate(tokens)]
    before = len(server.get_json("/history?max_items=100000"))

    def start(n):
        return requests.post(api + "/detail-repair", headers=headers(tokens[n]), json={
            "image": images[n], "mask": {"bbox_norm": [0.25, 0.25, 0.5, 0.5]},
            "category": "general", "processing_size": 256})
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        started = list(pool.map(start, range(20)))
    assert [r.status_code for r in started] == [202] * 20
    jobs = [r.json()["job_id"] for r in started]
    assert len(set(jobs)) == 20
    for n, job_id in enumerate(jobs):
        for _ in range(1200):
            status = requests.get(api + f"/jobs/{job_id}/status",
                                  headers=headers(tokens[n])).json()["status"]
            if status in ("completed", "failed"):
                break
            threading.Event().wait(0.1)
        assert status == "completed"
    assert len(server.get_json("/history?max_items=100000")) - before == 20
