"""The pack's self-hosted vendor endpoints on the session's real server (enabled in conftest):
the seeds' own request shapes and the pack's own vendor client, with only the base URL and the
key changed; outputs keep every pixel outside the mask; bad keys, missing fields, oversized
bodies and the per-key bound are refused before any work; no key reaches /history or the log."""

from __future__ import annotations

import base64
import concurrent.futures
import io
import json
import time

import numpy as np
import pytest
import requests
import torch
from pack_paths import PACK_ROOT
from PIL import Image
from region_repair.pipelines.vendors import keys, remote
from region_repair.pipelines.vendors.http import Timeouts
from region_repair.pipelines.vendors.picpik import sign
from serving_images import SERVE_KEYS, SERVE_MAX_BODY_MB, SERVE_MAX_JOBS_PER_KEY, SERVE_PICPIK, b64
from vendor_testing import bounded, settings

pytestmark = pytest.mark.server

PHOTO = PACK_ROOT / "assets" / "photos" / "astronaut.png"
BOX = (300, 60, 100, 90)   # x, y, w, h in pixels: the visor area


def photo() -> np.ndarray:
    return np.asarray(Image.open(PHOTO).convert("RGB"))


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def edit_mask(black_is_edit: bool) -> np.ndarray:
    edit = np.zeros(photo().shape[:2], bool)
    x, y, w, h = BOX
    edit[y:y + h, x:x + w] = True
    return np.where(edit ^ black_is_edit, 255, 0).astype(np.uint8), edit


def decoded(text: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))).convert("RGB"))


def regen_request(**changes) -> dict:
    mask, _ = edit_mask(black_is_edit=True)
    return {"prompt": "", "base_image": b64(PHOTO.read_bytes()),
            "mask_image": b64(png_bytes(mask)), **changes}


def post(server, path: str, body, headers: dict, **kwargs) -> requests.Response:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(server.url + path, data=data,
                         headers={"Content-Type": "application/json", **headers},
                         timeout=300, **kwargs)


PHOTIO = "/region-repair/photio/v1/inference/regen"
OCTOAI = "/region-repair/octoai/adetailer"
PICPIK = "/region-repair/picpik/"


def test_photio_seed_request_removes_inside_the_mask_only(server):
    """The vendor's documented curl request (X-Photio-Key, JSON prompt/base_image/mask_image), base64 in
    place of the URLs; black = edit."""
    response = post(server, PHOTIO, regen_request(quality="LOW", seed=5),
                    {"X-Photio-Key": SERVE_KEYS["photio"]})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status_code"] == 200
    result, original = decoded(answer["body"]), photo()
    _, edit = edit_mask(black_is_edit=True)
    assert result.shape == original.shape
    assert np.array_equal(result[~edit], original[~edit])
    assert np.abs(result[edit].astype(int) - original[edit]).mean() > 2


CLIENT_KEYS = {"photio": {"REGION_REPAIR_PHOTIO_KEY": SERVE_KEYS["photio"]},
               "picpik": {"REGION_REPAIR_PICPIK_PUBLIC_KEY": SERVE_PICPIK[0],
                          "REGION_REPAIR_PICPIK_PRIVATE_KEY": SERVE_PICPIK[1]}}


@pytest.mark.parametrize("endpoint, prompt", [("photio/regen", ""),
                                              ("picpik/ModifyMaskedPixels", "a visor")])
def test_the_packs_client_works_against_the_served_endpoint(server, endpoint, prompt):
    """Remote Vendor Inpaint's client code, pointed at this server by base URL and key only
    (the host allowed outside the graph, as for any self-hosted server)."""
    image = torch.from_numpy(photo().astype(np.float32) / 255)[None]
    _, edit = edit_mask(black_is_edit=False)
    mask = torch.from_numpy(edit.astype(np.float32))[None]
    vendor = endpoint.split("/")[0]
    url = f"{server.url}/region-repair/{vendor}"
    env = {**CLIENT_KEYS[vendor], keys.hosts_variable(vendor): server.url,
           "REGION_REPAIR_KEYS_FILE": "/nonexistent/keys.toml"}
    result = bounded(remote.run_remote(
        image, mask, settings(endpoint, url, prompt=prompt, seed=3, timeouts=Timeouts(
            read=120.0, request=240.0), timeout=240.0, poll_interval=0.2), None, env=env),
        250.0)
    assert result.images.shape == image.shape
    inside = torch.from_numpy(edit)
    assert torch.equal(result.images[0][~inside], image[0][~inside])
    assert (result.images[0][inside] - image[0][inside]).abs().mean() > 0.01


@pytest.mark.parametrize("headers", [{}, {"X-Photio-Key": "pt-wrong-key-123"},
                                     {"X-Photio-Key": SERVE_KEYS["octoai"]}])
def test_photio_bad_key_is_401(server, headers):
    response = post(server, PHOTIO, regen_request(), headers)
    assert response.status_code == 401
    assert response.json()["status_code"] == 401


def test_photio_missing_mask_is_400_naming_it(server):
    body = regen_request()
    del body["mask_image"]
    response = post(server, PHOTIO, body, {"X-Photio-Key": SERVE_KEYS["photio"]})
    assert response.status_code == 400 and "mask_image" in response.json()["body"]


def test_photio_url_input_is_refused_without_a_request(server):
    response = post(server, PHOTIO, regen_request(base_image="http://127.0.0.1:9/a.png"),
                    {"X-Photio-Key": SERVE_KEYS["photio"]})
    assert response.status_code == 400 and "base_image" in response.json()["body"]


def test_oversized_body_is_413(server):
    body = b'{"prompt": "' + b"x" * (SERVE_MAX_BODY_MB * 1024 * 1024 + 10) + b'"}'
    response = post(server, PHOTIO, body, {"X-Photio-Key": SERVE_KEYS["photio"]})
    assert response.status_code == 413 and response.json()["status_code"] == 413


def test_a_key_over_its_job_bound_gets_429_with_retry_after(server):
    count = SERVE_MAX_JOBS_PER_KEY + 2
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        responses = list(pool.map(
            lambda seed: post(server, PHOTIO, regen_request(seed=seed + 1),
                              {"X-Photio-Key": SERVE_KEYS["photio"]}), range(count)))
    statuses = sorted(response.status_code for response in responses)
    assert statuses.count(200) >= SERVE_MAX_JOBS_PER_KEY and 429 in statuses, statuses
    for response in responses:
        if response.status_code == 429:
            assert int(response.headers["Retry-After"]) >= 1
            assert response.json()["status_code"] == 429


def test_octoai_adetailer_counts_and_keeps_the_rest(server):
    """The vendor's documented /adetailer request with the offline face detector (no weights)."""
    response = post(server, OCTOAI, {"init_image": b64(PHOTO.read_bytes()),
                                      "detector": "face_short_mediapipe", "seed": 3,
                                      "mask_padding": 16, "image_encoding": "png"},
                    {"Authorization": f"Bearer {SERVE_KEYS['octoai']}"})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == {"image_b64", "num_objects_inpainted", "num_objects_detected",
                           "num_removed_for_safety"}
    assert answer["num_objects_detected"] >= 1
    assert answer["num_objects_inpainted"] == answer["num_objects_detected"]
    assert answer["num_removed_for_safety"] == 0
    result, original = decoded(answer["image_b64"]), photo()
    assert result.shape == original.shape
    changed = np.any(result != original, axis=-1)
    assert 0 < changed.mean() < 0.5   # the face, blurred; most of the picture untouched


def test_octoai_errors(server):
    bearer = {"Authorization": f"Bearer {SERVE_KEYS['octoai']}"}
    assert post(server, OCTOAI, {"detector": "face_short_mediapipe"}, {}).status_code == 401
    response = post(server, OCTOAI, {"init_image": b64(PHOTO.read_bytes())}, bearer)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "detector"]


def signed(params: dict, private: str = SERVE_PICPIK[1]) -> dict:
    """The vendor's documented signing: every parameter but Signature, sorted, then the private key."""
    body = {"PublicKey": SERVE_PICPIK[0], "request_uuid": "5ae03609-451b-44d7-a351-c72904df881b",
            **params}
    return {**body, "Signature": sign(body, private)}


def test_picpik_signed_request_task_polling_and_results(server):
    mask, edit = edit_mask(black_is_edit=False)
    body = signed({"Action": "ModifyMaskedPixels",
                   "MainModel": {"ModelCode": "PICPIK General", "InferenceParams": {"Steps": 10}},
                   "PositivePrompts": [], "NegativePrompts": [], "TranslatePrompts": True,
                   "Seed": 7, "Width": 512, "Height": 512, "BatchSize": 6,
                   "Masked": {"ImageIndex": 0, "MaskIndex": 1, "ReferStrength": 1,
                              "InvertMask": False, "MaskBlur": 12},
                   "ImageAndMaskList": ["data:image/png;base64," + b64(PHOTO.read_bytes()),
                                        "data:image/png;base64," + b64(png_bytes(mask))]})
    answer = post(server, PICPIK, body, {}).json()
    assert answer["RetCode"] == 0 and answer["Action"] == "ModifyMaskedPixels", answer
    assert answer["request_uuid"] == body["request_uuid"] and len(answer["TaskUID"]) == 20
    for _ in range(600):
        listed = post(server, PICPIK, signed({"Action": "ListTasksDetails",
                                              "TaskUIDList": [answer["TaskUID"]]}), {}).json()
        detail = listed["TaskDetailList"][0]
        assert detail["Status"] in ("Queuing", "Running", "Finished"), detail
        if detail["Status"] == "Finished":
            break
        time.sleep(0.2)
    assert detail["ErrorCode"] == 0 and detail["Seed"] == 7 and len(detail["ImgList"]) == 6
    original = photo()
    results = [np.asarray(Image.open(io.BytesIO(requests.get(url, timeout=30).content))
                          .convert("RGB")) for url in detail["ImgList"]]   # no key, as PICPIK
    for result in results:
        assert np.array_equal(result[~edit], original[~edit])
        assert np.abs(result[edit].astype(int) - original[edit]).mean() > 2
    # The embedded engine's four fills, then repeated (a checkpoint would vary the seed).
    assert not np.array_equal(results[0], results[1])
    assert np.array_equal(results[4], results[0]) and np.array_equal(results[5], results[1])


def test_picpik_refusals(server):
    bad = signed({"Action": "ListRunningTasks"}, private="not-the-private-key")
    response = post(server, PICPIK, bad, {})
    assert response.status_code == 401 and response.json()["RetCode"] == 171
    tampered = {**signed({"Action": "ListRunningTasks"}), "request_uuid": "changed"}
    assert post(server, PICPIK, tampered, {}).json()["RetCode"] == 171
    missing = post(server, PICPIK, signed({"Action": "ModifyMaskedPixels",
                                            "ImageAndMaskList": []}), {}).json()
    assert missing["RetCode"] == 230 and "Masked" in missing["Message"]
    other = post(server, PICPIK, signed({"Action": "ListTasksDetails",
                                         "TaskUIDList": ["aaaaaaaaaaaaaaaaaaaa"]}), {}).json()
    assert other["RetCode"] == 0 and other["TaskDetailList"] == []
    assert requests.get(f"{server.url}{PICPIK}img/aaaaaaaaaaaaaaaaaaaa/0.png",
                        timeout=30).status_code == 404


def test_no_served_key_in_history_or_the_log(server):
    history = json.dumps(server.get_json("/history"))
    log = server.log()
    for key in (*SERVE_KEYS.values(), SERVE_PICPIK[1]):
        assert key not in history and key not in log
