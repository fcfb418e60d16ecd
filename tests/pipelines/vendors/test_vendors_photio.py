"""Photio Regen against its fake: mask polarity, the body status_code, every injected fault,
and candidates running concurrently."""

from __future__ import annotations

import base64
import json
import struct
import time
import zlib

import pytest
import torch
from fake_vendors import ENV, FakePhotio, Fault, serve
from vendor_testing import inside_changed, outside, run, scene

from region_repair.pipelines.vendors.http import VendorError

REGEN = "POST /v1/inference/regen"
EP = "photio/regen"


@pytest.fixture
def fake():
    with serve(FakePhotio()) as server:
        yield server


def test_happy_path_inverts_the_mask_and_changes_only_inside(fake):
    image, mask = scene(batch=2)
    result, _ = run(image, mask, EP, fake.url, candidates=2, seed=7, blend=False,
                    prompt="starfish", options={"quality": "MIDDLE", "cfg_scale": 2.0})
    assert result.images.shape == (4, 48, 64, 3)
    # The fake edits only where Photio's mask is black: with blend off, the vendor's own output
    # is already confined to the pack's mask, so the inversion was right.
    got, want = outside(result.images, image, mask)
    assert torch.allclose(got, want, atol=1 / 255)
    assert inside_changed(result.images, image, mask) > 0.9
    sent = fake.requests_to(REGEN)
    assert len(sent) == 4 and all(s.headers["X-Photio-Key"] == ENV["REGION_REPAIR_PHOTIO_KEY"]
                                  for s in sent)
    assert sorted(json.loads(s.body)["seed"] for s in sent) == [7, 7, 8, 8]
    body = json.loads(sent[0].body)
    assert body["prompt"] == "starfish" and body["quality"] == "MIDDLE"
    assert not body["base_image"].startswith("data:")
    info = result.info
    assert [(i["image_index"], i["candidate_index"]) for i in info] == [(0, 0), (1, 0), (0, 1),
                                                                        (1, 1)]
    assert {i["seed"] for i in info if i["candidate_index"] == 1} == {8}
    assert all(i["engine"] == "vendor:photio" and i["blend"] == "none" for i in info)


def test_blend_keeps_every_outside_pixel_bit_identical_even_when_the_result_is_shifted(fake):
    fake.shift = 3
    image, mask = scene()
    blended, _ = run(image, mask, EP, fake.url)
    got, want = outside(blended.images, image, mask)
    assert torch.equal(got, want)
    assert blended.info[0]["blend"] == "mask"
    raw, _ = run(image, mask, EP, fake.url, blend=False, seed=3)
    got, want = outside(raw.images, image, mask)
    assert not torch.allclose(got, want, atol=0.02), "the shift should show outside the mask"


@pytest.mark.parametrize("http_status", [200, 401])
def test_a_bad_key_is_an_auth_error_whether_photio_says_so_in_http_or_in_the_body(fake,
                                                                                  http_status):
    fake.auth_http_status = http_status
    image, mask = scene()
    with pytest.raises(VendorError) as caught:
        run(image, mask, EP, fake.url, env={**ENV, "REGION_REPAIR_PHOTIO_KEY": "pt-wrong"})
    assert caught.value.kind == "auth" and caught.value.status == 401
    assert "unauthorized" in str(caught.value) and "REGION_REPAIR_PHOTIO_KEY" in str(caught.value)
    assert "pt-wrong" not in str(caught.value)


def test_a_500_in_the_body_is_retried_then_succeeds(fake):
    fake.envelope_errors = [500]
    image, mask = scene()
    result, _ = run(image, mask, EP, fake.url)
    assert len(fake.requests_to(REGEN)) == 2
    assert inside_changed(result.images, image, mask) > 0.9


def test_http_500_is_retried_then_succeeds(fake):
    fake.fail(REGEN, Fault.status_code(500), times=2)
    image, mask = scene()
    run(image, mask, EP, fake.url)
    assert len(fake.requests_to(REGEN)) == 3


def test_persistent_503_gives_an_error_naming_the_status_and_the_attempts(fake):
    fake.fail(REGEN, Fault.status_code(503), times=5)
    image, mask = scene()
    with pytest.raises(VendorError, match=r"HTTP 503 server error .*after 3 attempts"):
        run(image, mask, EP, fake.url)


def test_429_honours_retry_after(fake):
    fake.fail(REGEN, Fault.status_code(429, retry_after="0.6"))
    image, mask = scene()
    _, seconds = run(image, mask, EP, fake.url)
    assert len(fake.requests_to(REGEN)) == 2
    assert seconds >= 0.6  # the backoff alone would be 0.02 s


def test_429_asking_for_longer_than_the_budget_fails_at_once_naming_the_wait(fake):
    fake.fail(REGEN, Fault.status_code(429, retry_after="3600"))
    image, mask = scene()
    start = time.monotonic()
    with pytest.raises(VendorError, match="rate limited.*3600 s"):
        run(image, mask, EP, fake.url)
    assert time.monotonic() - start < 5


def test_a_connection_reset_is_retried(fake):
    fake.fail(REGEN, Fault.drop())
    image, mask = scene()
    run(image, mask, EP, fake.url)
    assert len(fake.requests_to(REGEN)) == 2


def test_a_slow_answer_times_out_and_says_so(fake):
    fake.fail(REGEN, Fault.slow(5.0), times=3)
    image, mask = scene()
    start = time.monotonic()
    with pytest.raises(VendorError, match="timed out") as caught:
        run(image, mask, EP, fake.url)
    assert caught.value.kind == "timeout"
    assert time.monotonic() - start < 12


def test_a_slow_answer_once_then_success(fake):
    fake.fail(REGEN, Fault.slow(5.0))
    image, mask = scene()
    result, _ = run(image, mask, EP, fake.url)
    assert inside_changed(result.images, image, mask) > 0.9


def test_malformed_json_is_an_error_naming_it(fake):
    fake.fail(REGEN, Fault.malformed())
    image, mask = scene()
    with pytest.raises(VendorError, match="malformed JSON from POST /v1/inference/regen"):
        run(image, mask, EP, fake.url)


def test_invalid_quality_is_refused_before_sending(fake):
    image, mask = scene()
    with pytest.raises(ValueError, match="quality"):
        run(image, mask, EP, fake.url, options={"quality": "ULTRA"})
    assert not fake.requests_to(REGEN)


def test_four_candidates_run_concurrently():
    """The concurrency figure: 4 candidates cost at most 1.3 x one candidate's wall time."""
    with serve(FakePhotio(latency=0.5)) as fake:
        image, mask = scene()
        _, one = run(image, mask, EP, fake.url, candidates=1)
        _, four = run(image, mask, EP, fake.url, candidates=4)
    ratio = four / one
    print(f"photio: 1 candidate {one:.3f} s, 4 candidates {four:.3f} s, ratio {ratio:.2f}")
    assert ratio <= 1.3


def test_a_400_keeps_photio_s_reason():
    with serve(FakePhotio()) as fake:
        fake.fail("POST /v1/inference/regen", Fault.status_code(
            400, body={"status_code": 400, "body": "prompt contains banned words"}))
        image, mask = scene()
        with pytest.raises(VendorError, match="HTTP 400 bad request .*: prompt contains banned "
                                              "words"):
            run(image, mask, EP, fake.url)


@pytest.mark.parametrize("code", ["abc", None, [500], 2.5])
def test_a_status_code_that_is_not_a_number_is_a_named_error(code):
    with serve(FakePhotio()) as fake:
        fake.envelope_errors = [code]
        image, mask = scene()
        with pytest.raises(VendorError, match="status_code that is not a number"):
            run(image, mask, EP, fake.url)


def huge_png_header(width: int, height: int) -> bytes:
    """A PNG whose header says width x height (its pixel data is a stub): what a decoder
    would allocate for is known from the header alone."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_a_huge_result_is_refused_from_its_header_before_decoding():
    body = {"status_code": 200, "body": base64.b64encode(huge_png_header(12000, 12000)).decode()}
    with serve(FakePhotio()) as fake:
        fake.fail("POST /v1/inference/regen", Fault.status_code(200, body=body))
        image, mask = scene()
        start = time.monotonic()
        with pytest.raises(VendorError, match="regen's image is 12000x12000; results larger "
                                              "than 8192 px a side are refused"):
            run(image, mask, EP, fake.url)
    assert time.monotonic() - start < 5
