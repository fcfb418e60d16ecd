"""An OctoAI-compatible /adetailer against its fake: the shutdown is said plainly, the detector
edits its own regions, the blend confines them to the user's mask, and the faults."""

from __future__ import annotations

import json

import pytest
import torch
from fake_vendors import ENV, FakeOctoAI, Fault, serve
from fake_vendors.octoai import TOKEN
from vendor_testing import bounded, closed_url, outside, run, with_client

from region_repair.pipelines.vendors import images, octoai
from region_repair.pipelines.vendors.http import VendorError

EP = "octoai-compatible/adetailer"
ROUTE = "POST /adetailer"


def faces():
    """A 512x512 grey image with two pure-red 'faces'; the mask covers only the first."""
    image = torch.full((1, 512, 512, 3), 0.5)
    image[0, 100:140, 100:140] = torch.tensor([1.0, 0.0, 0.0])
    image[0, 300:340, 300:340] = torch.tensor([1.0, 0.0, 0.0])
    mask = torch.zeros(1, 512, 512)
    mask[0, 90:150, 90:150] = 1
    return image, mask


@pytest.fixture
def fake():
    with serve(FakeOctoAI()) as server:
        yield server


def test_no_base_url_says_octoai_shut_down():
    image, mask = faces()
    with pytest.raises(ValueError, match="OctoAI shut down on 2024-10-31"):
        run(image, mask, EP, "")


def test_happy_path_the_blend_keeps_the_unmasked_face(fake):
    image, mask = faces()
    result, _ = run(image, mask, EP, fake.url, seed=5, prompt="a smiling face",
                    options={"inpainting_base_model": "sd15", "detector": "face_yolov8n",
                             "mask_dilation": 2})
    body = json.loads(fake.requests_to(ROUTE)[0].body)
    assert body["detector"] == "face_yolov8n" and body["seed"] == 5
    assert body["inpainting_base_model"] == "sd15" and body["prompt"] == "a smiling face"
    assert fake.requests_to(ROUTE)[0].headers["Authorization"] == f"Bearer {TOKEN}"
    got, want = outside(result.images, image, mask)
    assert torch.equal(got, want)  # the second face was edited by the vendor, not kept
    assert not torch.equal(result.images[0, 110:130, 110:130], image[0, 110:130, 110:130])
    info = result.info[0]
    assert info["num_objects_detected"] == 2 and "detected 2, inpainted 2" in info["notes"][0]
    assert any("OctoAI shut down" in note for note in result.notes)


def test_without_blend_the_vendor_edits_past_the_mask(fake):
    image, mask = faces()
    result, _ = run(image, mask, EP, fake.url, blend=False,
                    options={"inpainting_base_model": "sd15"})
    assert not torch.equal(result.images[0, 310:330, 310:330], image[0, 310:330, 310:330])


def test_the_image_is_sent_at_a_listed_resolution_and_comes_back_at_its_own(fake):
    image = torch.full((1, 100, 80, 3), 0.5)
    mask = torch.ones(1, 100, 80)
    result, _ = run(image, mask, EP, fake.url, options={"inpainting_base_model": "sd15"})
    assert result.images.shape == (1, 100, 80, 3)
    assert any("sent at 448x576" in note for note in result.info[0]["notes"])


def test_422_is_readable(fake):
    async def scenario(http):
        client = octoai.OctoAI(http)
        small = images.b64(images.png(torch.zeros(64, 64, 3)))
        await client.adetailer(octoai.AdetailerRequest(init_image=small))

    with pytest.raises(VendorError, match=r"HTTP 422 invalid parameters .*body.init_image: "
                                          r"resolution 64x64 is not supported"):
        bounded(with_client("octoai", fake.url, scenario, auth={"Authorization":
                                                                 f"Bearer {TOKEN}"}))


def test_removed_for_safety_is_an_error(fake):
    fake.safety = True
    image, mask = faces()
    with pytest.raises(VendorError, match="removed for safety"):
        run(image, mask, EP, fake.url, options={"inpainting_base_model": "sd15"})


def test_a_gone_service_names_the_shutdown(fake):
    fake.gone = True
    image, mask = faces()
    with pytest.raises(VendorError, match="HTTP 410 gone.*OctoAI shut down on 2024-10-31"):
        run(image, mask, EP, fake.url, options={"inpainting_base_model": "sd15"})


def test_nothing_listening_fails_fast_and_names_the_shutdown():
    image, mask = faces()
    with pytest.raises(VendorError, match=r"cannot connect .*after 3 attempts.*OctoAI shut "
                                          r"down") as caught:
        run(image, mask, EP, closed_url(), options={"inpainting_base_model": "sd15"})
    assert caught.value.kind == "connection"


def test_a_bad_token_is_401(fake):
    image, mask = faces()
    with pytest.raises(VendorError, match="HTTP 401 unauthorized.*REGION_REPAIR_OCTOAI_KEY"):
        run(image, mask, EP, fake.url, env={**ENV, "REGION_REPAIR_OCTOAI_KEY": "nope"},
            options={"inpainting_base_model": "sd15"})


def test_429_then_success(fake):
    fake.fail(ROUTE, Fault.status_code(429, retry_after="0.2"))
    image, mask = faces()
    _, seconds = run(image, mask, EP, fake.url, options={"inpainting_base_model": "sd15"})
    assert len(fake.requests_to(ROUTE)) == 2 and seconds >= 0.2
