"""RemoteVendorInpaint through POST /prompt on the session's real server, against the fake vendors
on 127.0.0.1: the keys reach the server only through its environment, and afterwards appear
nowhere (saved PNG metadata, /history, the workflow JSON, the server log at DEBUG level)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import uuid

import numpy as np
import pytest
from aiohttp import web
from PIL import Image

from comfy_server import PromptError
from fake_vendors import ENV, Fault, FakeVendor, serve
from pack_paths import PACK_ROOT
from workflow_api import fill_defaults

pytestmark = pytest.mark.server

PHOTO = PACK_ROOT / "assets" / "photos" / "astronaut.png"
BOX = (0.35, 0.13, 0.19, 0.19)


@pytest.fixture(scope="module")
def photo(server):
    shutil.copy(PHOTO, server.base_dir / "input" / PHOTO.name)


def workflow(endpoint: str, url: str) -> dict:
    return {
        "load": {"class_type": "LoadImage", "inputs": {"image": PHOTO.name}},
        "box": {"class_type": "RegionRepair_MaskFromBBox",
                "inputs": {"image": ["load", 0], "bbox": ", ".join(map(str, BOX)),
                           "units": "normalized"}},
        "remote": {"class_type": "RegionRepair_RemoteVendorInpaint",
                   "inputs": {"image": ["load", 0], "mask": ["box", 0], "endpoint": endpoint,
                              "base_url": url, "prompt": "repair the visor",
                              "negative_prompt": "", "candidates": 2, "seed": 11,
                              "options": "{}", "blend": True, "feather": 0,
                              "timeout_s": 120}},
        "save": {"class_type": "SaveImage",
                 "inputs": {"images": ["remote", 0], "filename_prefix": uuid.uuid4().hex}},
    }


@pytest.mark.parametrize("endpoint", ["piktid/detail-repair", "photio/regen"])
def test_remote_inpaint_runs_and_the_keys_leak_nowhere(server, fake_vendors, photo, endpoint):
    prompt = workflow(endpoint, fake_vendors[endpoint.split("/")[0]].url)
    prompt_id = server.post_prompt(prompt)
    history = server.wait(prompt_id, timeout=180)
    pngs = server.output_files(history, "save")
    assert len(pngs) == 2
    photo = np.asarray(Image.open(PHOTO).convert("RGB"))
    height, width = photo.shape[:2]
    x, y, w, h = BOX
    inside = np.zeros((height, width), bool)
    inside[round(y * height):round((y + h) * height), round(x * width):round((x + w) * width)] = 1
    for png in pngs:
        result = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        assert result.shape == photo.shape
        np.testing.assert_array_equal(result[~inside], photo[~inside])
        assert (result != photo).any(-1)[inside].mean() > 0.9
    assert fake_vendors[endpoint.split("/")[0]].seen, "the vendor was called"

    log = server.log()
    assert f"{endpoint.split('/')[0]} POST" in log and "<redacted>" in log
    surfaces = {"workflow JSON": json.dumps(prompt),
                "/history": json.dumps(server.get_json(f"/history/{prompt_id}")),
                "server log": log}
    for index, png in enumerate(pngs):
        surfaces[f"PNG {index}"] = png.decode("latin-1")
        assert "prompt" in Image.open(io.BytesIO(png)).info  # metadata is there, keyless
    for name, secret in ENV.items():
        if name.endswith("KEYS_FILE"):
            continue
        for surface, text in surfaces.items():
            assert secret not in text, f"{name} leaked into the {surface}"


@pytest.mark.parametrize("blend", [True, False])
def test_quality_check_catches_a_vendor_that_shifts_the_frame(server, fake_vendors, photo,
                                                              blend):
    """A fake Photio that moves its whole result by 3 px: unblended, Quality Check flags
    framing_shift; blended, the pack confines the change to the mask and nothing is flagged
    outside it."""
    fake = fake_vendors["photio"]
    fake.shift = 3
    try:
        prompt = workflow("photio/regen", fake.url)
        prompt["remote"]["inputs"]["blend"] = blend
        prompt["qc"] = {"class_type": "RegionRepair_QualityCheck", "inputs": {
            "original": ["load", 0], "candidates": ["remote", 0], "mask": ["remote", 1],
            "info": ["remote", 2]}}
        prompt["report"] = {"class_type": "PreviewAny", "inputs": {"source": ["qc", 0]}}
        history = server.run(fill_defaults(prompt, server.get_json("/object_info")),
                                   timeout=180)
    finally:
        fake.shift = 0
    report = json.loads(history["outputs"]["report"]["text"][0])
    candidates = report["candidates"]
    assert len(candidates) == 2
    for candidate in candidates:
        if blend:
            assert "framing_shift" not in candidate["reasons"]
            assert candidate["scores"]["outside_max"] == 0
        else:
            assert candidate["needs_review"] and "framing_shift" in candidate["reasons"]


# --- keys follow base_url: a capture server on loopback that no graph may send a key to -------
ENDPOINTS = ["piktid/detail-repair", "piktid/garment-recolor", "picpik/ModifyMaskedPixels",
             "photio/regen", "octoai-compatible/adetailer"]
SECRETS = [value for name, value in ENV.items() if not name.endswith("KEYS_FILE")]


class Capture(FakeVendor):
    """Answers 200 to anything and records it: a host a shared workflow wants keys sent to."""

    name = "capture"

    def routes(self, app):
        async def anything(request):
            return web.json_response({})

        app.router.add_route("*", "/{tail:.*}", anything)


@pytest.fixture(scope="module")
def capture():
    with serve(Capture()) as running:
        yield running


def vendor_of(endpoint: str) -> str:
    return endpoint.split("/")[0].removesuffix("-compatible")


def keyless(capture) -> None:
    for seen in capture.seen:
        text = json.dumps(seen.headers) + seen.path + json.dumps(seen.query) + \
            seen.body.decode("latin-1")
        for secret in SECRETS:
            assert secret not in text, f"a key reached the capture server: {seen.route}"


def failure(server, prompt) -> str:
    with pytest.raises(PromptError) as caught:
        server.run(prompt, timeout=120)
    return str(caught.value)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("how", ["widget", "linked"])
def test_a_graph_cannot_send_a_key_to_a_host_not_allowed(server, photo, capture, endpoint, how):
    prompt = workflow(endpoint, capture.url)
    if how == "linked":  # the URL arrives through a socket from another node
        prompt["url"] = {"class_type": "PrimitiveString", "inputs": {"value": capture.url}}
        prompt["remote"]["inputs"]["base_url"] = ["url", 0]
    capture.seen.clear()
    message = failure(server, prompt)
    variable = f"REGION_REPAIR_{vendor_of(endpoint).upper()}_HOSTS"
    assert f"base_url: {capture.url} is not a host allowed" in message
    assert f"{variable}={capture.url}" in message
    assert not capture.seen, "a request reached a host that was not allowed"


REDIRECTED = {"piktid/detail-repair": "POST /project", "piktid/garment-recolor": "POST /project",
              "picpik/ModifyMaskedPixels": "POST /{tail}", "photio/regen":
              "POST /v1/inference/regen", "octoai-compatible/adetailer": "POST /adetailer"}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_an_allowed_host_redirecting_elsewhere_gets_no_key_through(server, photo, capture,
                                                                   fake_vendors, endpoint):
    fake = fake_vendors[vendor_of(endpoint)]
    route = REDIRECTED[endpoint]
    fake.fail(route, Fault.redirect(capture.url + "/stolen"))
    capture.seen.clear()
    try:
        message = failure(server, workflow(endpoint, fake.url))
    finally:
        fake.faults.pop(route, None)
    assert "redirected (HTTP 307); not followed with a key attached" in message
    assert not capture.seen


@pytest.mark.parametrize("endpoint, route", [("piktid/detail-repair", "PUT /upload/{token}"),
                                             ("picpik/ModifyMaskedPixels", "GET /img/{name}")])
def test_vendor_given_links_are_fetched_without_a_key(server, photo, capture, fake_vendors,
                                                      endpoint, route):
    """Signed upload URLs and result links come from the vendor's answers; they are followed
    (redirects too) but never carry the key."""
    fake = fake_vendors[vendor_of(endpoint)]
    fake.fail(route, Fault.redirect(capture.url + "/elsewhere"))
    capture.seen.clear()
    try:
        with contextlib.suppress(PromptError):
            server.run(workflow(endpoint, fake.url), timeout=120)
    finally:
        fake.faults.pop(route, None)
    assert capture.seen, "the redirected link was not followed"
    keyless(capture)
