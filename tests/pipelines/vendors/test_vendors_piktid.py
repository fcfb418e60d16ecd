"""PiktID v2 against its fake: projects, uploads, both endpoints, SSE with reconnects and
deletions, the polling fallback, results and downloads, and every injected fault."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

import pytest
import torch
from aiohttp import web
from fake_vendors import FakePiktID, Fault, serve
from fake_vendors.piktid import TOKEN
from vendor_testing import allowing, bounded, inside_changed, outside, run, scene, with_client

from region_repair.pipelines.vendors import piktid
from region_repair.pipelines.vendors.http import VendorError

EP = "piktid/detail-repair"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def fake():
    with serve(FakePiktID()) as server:
        yield server


def bodies(fake, route):
    return [json.loads(seen.body) for seen in fake.requests_to(route)]


def test_detail_repair_happy_path_over_sse(fake):
    image, mask = scene(batch=2)
    references = torch.rand(2, 32, 32, 3)
    result, _ = run(image, mask, EP, fake.url, candidates=3, prompt="fix the logo",
                    references=references, options={"model": "seedream", "mode": "guided",
                                                    "context_factor": 2.0,
                                                    "image_notes": ["serif"]},
                    blend=False)
    assert result.images.shape == (6, 48, 64, 3)
    got, want = outside(result.images, image, mask)
    assert torch.allclose(got, want, atol=1 / 255), "the fake edits only where the mask is white"
    assert inside_changed(result.images, image, mask) > 0.9
    # Candidates differ (the fake offsets each), and come back candidate-major.
    assert not torch.equal(result.images[0], result.images[2])
    (job_a, job_b) = bodies(fake, "POST /detail-repair")
    assert job_a["num_candidates"] == 3 and job_a["category"] == "general"
    assert job_a["reviewer_note"] == "fix the logo" and job_a["model"] == "seedream"
    assert job_a["mode"] == "guided" and job_a["context_factor"] == 2.0
    assert len(job_a["references"]) == 2 and job_a["references"] == job_b["references"]
    assert job_a["image"] != job_b["image"] and job_a["mask_image"]
    # One project, uploads as two steps with the issued Content-Type and no key on the PUT.
    assert len(fake.requests_to("POST /project")) == 1
    puts = fake.requests_to("PUT /upload/{token}")
    assert len(puts) == 6 and all(p.headers["Content-Type"] == "image/png" for p in puts)
    assert all("Authorization" not in p.headers for p in puts)
    assert all("Authorization" not in s.headers for s in fake.requests_to("GET /files/{name}"))
    # Progress came over SSE, never by polling; every notification of the jobs was consumed.
    assert fake.requests_to("GET /notifications/events")
    assert not fake.requests_to("GET /jobs/{job_id}/status")
    assert fake.deleted == {note["id"] for note in fake.notifications}
    info = result.info
    assert len(info) == 6 and info[0]["job_id"] != info[1]["job_id"]
    assert info[0]["mode"] == "guided" and info[0]["references_used"]
    assert info[0]["reference_count"] == 2 and info[0]["engine"] == "vendor:piktid"


def test_garment_recolor_one_job_for_the_batch(fake):
    image, mask = scene(batch=2)
    result, _ = run(image, mask, "piktid/garment-recolor", fake.url, candidates=2,
                    prompt="make it forest green", references=torch.rand(1, 16, 16, 3),
                    options={"garment_label": "t-shirt", "processing_size": 1024,
                             "use_anchor": False, "post_process": False})
    (body,) = bodies(fake, "POST /garment-recolor")
    assert body["num_variations"] == 2 and len(body["images"]) == 2
    assert body["instruction"] == "make it forest green" and body["reference_image"]
    assert body["garment_label"] == "t-shirt" and body["processing_size"] == 1024
    assert result.images.shape == (4, 48, 64, 3)
    # The fake recolours the whole frame; the blend keeps it inside the mask.
    got, want = outside(result.images, image, mask)
    assert torch.equal(got, want)
    assert inside_changed(result.images, image, mask) > 0.9
    # image 1's candidates come from image_index 1
    assert [(i["image_index"], i["candidate_index"]) for i in result.info] == [
        (0, 0), (1, 0), (0, 1), (1, 1)]


def test_garment_recolor_needs_a_target(fake):
    image, mask = scene()
    with pytest.raises(ValueError, match="needs a target"):
        run(image, mask, "piktid/garment-recolor", fake.url)


def test_polling_fallback_tolerates_the_initial_404(fake):
    fake.hidden_polls = 3
    image, mask = scene()
    result, _ = run(image, mask, EP, fake.url, options={"transport": "poll"})
    statuses = fake.requests_to("GET /jobs/{job_id}/status")
    assert len(statuses) >= 4  # three 404s, then the job
    assert not fake.requests_to("GET /notifications/events")
    assert inside_changed(result.images, image, mask) > 0.9


def test_a_job_that_never_appears_is_an_error_naming_it(fake):
    fake.hidden_polls = 100
    image, mask = scene()
    with pytest.raises(VendorError, match=r"job job_\w+ not found \(HTTP 404 after 11"):
        run(image, mask, EP, fake.url, options={"transport": "poll"})


def test_an_unavailable_stream_falls_back_to_polling(fake):
    fake.sse_available = False
    statuses = []
    image, mask = scene()
    result = bounded(run_with_status(image, mask, fake, statuses))
    assert any("stream unavailable (HTTP 404)" in text for text in statuses)
    assert fake.requests_to("GET /jobs/{job_id}/status")
    assert inside_changed(result.images, image, mask) > 0.9


async def run_with_status(image, mask, fake, statuses, **overrides):
    from vendor_testing import settings

    from region_repair.pipelines.vendors.remote import run_remote

    return await run_remote(image, mask, settings(EP, fake.url, **overrides),
                            env=allowing(EP, fake.url),
                            on_status=statuses.append)


def test_a_stream_dropped_mid_job_reconnects_and_the_replay_completes_it(fake):
    fake.sse_drops = [1, 1]  # the first two streams drop after one live event each
    fake.step_delay = 0.15
    statuses = []
    image, mask = scene()
    result = bounded(run_with_status(image, mask, fake, statuses, candidates=3))
    streams = fake.requests_to("GET /notifications/events")
    drops = sum("stream lost" in text for text in statuses)
    assert drops >= 1 and len(streams) == drops + 1, statuses
    assert statuses[-1].endswith("completed 3/3")
    assert inside_changed(result.images, image, mask) > 0.9
    assert not fake.requests_to("GET /jobs/{job_id}/status")
    assert fake.deleted == {note["id"] for note in fake.notifications}


def test_a_stream_that_keeps_dropping_falls_back_to_polling(fake):
    fake.fail("GET /notifications/events", Fault.drop(), times=30)
    statuses = []
    image, mask = scene()
    result = bounded(run_with_status(image, mask, fake, statuses))
    assert any("connections failed" in text for text in statuses), "\n".join(statuses)
    assert fake.requests_to("GET /jobs/{job_id}/status")
    assert result.images.shape[0] == 1


def test_backfill_replays_what_was_not_deleted(fake):
    """A job that finished before the stream opened is reported by the backfill."""
    async def scenario(http):
        client = piktid.PiktID(http)
        project = await client.project("p")
        image_id = await client.upload(png_bytes(), "a.png", "p")
        mask_id = await client.upload(png_bytes(white=True), "m.png", "p")
        job = await client.start_detail_repair(piktid.DetailRepairRequest(
            project, image_id, mask_image=mask_id))
        # The job completes before anyone listens.
        assert await asyncio.to_thread(fake.jobs[job].ended.wait, 10)
        return job, await client.wait(job)

    job, status = bounded(with_client("piktid", fake.url, scenario, auth=AUTH))
    assert status.status == "completed" and status.job_id == job
    assert fake.deleted == {note["id"] for note in fake.notifications}


def png_bytes(white: bool = False) -> bytes:
    from region_repair.pipelines.vendors import images

    mask = torch.zeros(24, 24)
    mask[6:18, 6:18] = 1
    return images.mask_png(mask if white else 1 - mask)


def test_project_409_reuses_the_existing_one(fake):
    fake.projects["comfyui-region-repair"] = "prj_existing"
    image, mask = scene()
    run(image, mask, EP, fake.url)
    assert bodies(fake, "POST /detail-repair")[0]["project_id"] == "prj_existing"


def test_an_expired_token_is_a_clear_auth_error(fake):
    fake.expire_token()
    image, mask = scene()
    with pytest.raises(VendorError) as caught:
        run(image, mask, EP, fake.url)
    message = str(caught.value)
    assert caught.value.status == 401 and "Token expired or invalid" in message
    assert "REGION_REPAIR_PIKTID_KEY" in message and TOKEN not in message
    assert len(fake.requests_to("POST /project")) == 1  # no retries on 401


def test_insufficient_credits_names_required_and_available(fake):
    fake.credits = 4.0
    image, mask = scene()
    with pytest.raises(VendorError, match=r"HTTP 402 insufficient credits .*required 9, "
                                          r"available 4") as caught:
        run(image, mask, EP, fake.url, candidates=3)
    assert caught.value.kind == "credits"


def test_content_filter_403(fake):
    fake.block_content = True
    image, mask = scene()
    with pytest.raises(VendorError, match="HTTP 403 forbidden.*blocked by the content filter"):
        run(image, mask, EP, fake.url)


def test_unknown_project_404_and_unknown_file_400(fake):
    async def scenario(http):
        client = piktid.PiktID(http)
        with pytest.raises(VendorError, match="HTTP 404 not found.*Project not found"):
            await client.start_detail_repair(piktid.DetailRepairRequest("prj_nope", "img_x",
                                                                        mask_image="img_y"))
        project = await client.project("p")
        with pytest.raises(VendorError, match="HTTP 400 bad request.*Unknown image file_id"):
            await client.start_detail_repair(piktid.DetailRepairRequest(project, "img_x",
                                                                        mask_image="img_y"))

    bounded(with_client("piktid", fake.url, scenario, auth=AUTH))


def test_429_with_retry_after_then_success(fake):
    fake.fail("POST /detail-repair", Fault.status_code(429, retry_after="0.3"))
    image, mask = scene()
    _, seconds = run(image, mask, EP, fake.url)
    assert len(fake.requests_to("POST /detail-repair")) == 2 and seconds >= 0.3


def test_the_fakes_own_rate_limit_is_a_readable_429(fake):
    fake.max_creates_per_minute = 1
    image, mask = scene(batch=2)
    with pytest.raises(VendorError, match="HTTP 429 rate limited.*Concurrent job limit"):
        run(image, mask, EP, fake.url)


def test_500_on_status_and_results_is_retried(fake):
    fake.fail("GET /jobs/{job_id}/results", Fault.status_code(500))
    fake.fail("POST /upload", Fault.status_code(502))
    image, mask = scene()
    result, _ = run(image, mask, EP, fake.url)
    assert len(fake.requests_to("GET /jobs/{job_id}/results")) == 2
    assert inside_changed(result.images, image, mask) > 0.9


def test_malformed_json_on_job_creation_names_it(fake):
    fake.fail("POST /detail-repair", Fault.malformed())
    image, mask = scene()
    with pytest.raises(VendorError, match="malformed JSON from POST /detail-repair"):
        run(image, mask, EP, fake.url)


def test_a_slow_upload_times_out_with_a_clear_error(fake):
    fake.fail("PUT /upload/{token}", Fault.slow(5.0), times=3)
    image, mask = scene()
    with pytest.raises(VendorError, match=r"PUT /upload/\w+: timed out"):
        run(image, mask, EP, fake.url)


def test_a_failed_job_names_the_reason(fake):
    fake.fail_job = "Engine unavailable"
    image, mask = scene()
    with pytest.raises(VendorError, match=r"job job_\w+ failed: Engine unavailable") as caught:
        run(image, mask, EP, fake.url)
    assert caught.value.kind == "job_failed"


def test_a_failed_candidate_keeps_the_others_and_says_so(fake):
    fake.fail_candidates = {1}
    image, mask = scene()
    result, _ = run(image, mask, EP, fake.url, candidates=2)
    assert inside_changed(result.images[:1], image, mask) > 0.9
    assert torch.equal(result.images[1], image[0])
    assert any("Generation refused" in note for note in result.info[1]["notes"])


def test_a_shifted_result_cannot_leak_outside_the_mask(fake):
    fake.shift = 3
    image, mask = scene()
    blended, _ = run(image, mask, EP, fake.url)
    got, want = outside(blended.images, image, mask)
    assert torch.equal(got, want)
    raw, _ = run(image, mask, EP, fake.url, blend=False)
    got, want = outside(raw.images, image, mask)
    assert not torch.allclose(got, want, atol=0.02)


def test_results_without_links_come_from_the_zip(fake):
    fake.no_links = True
    image, mask = scene()
    result, _ = run(image, mask, EP, fake.url, candidates=2)
    assert fake.requests_to("POST /download") and fake.requests_to("GET /download/{token}")
    assert inside_changed(result.images, image, mask) > 0.9


def test_only_the_latest_version_of_each_result_is_used(fake):
    fake.old_versions = True
    image, mask = scene()
    result, _ = run(image, mask, EP, fake.url, blend=False)
    names = [seen.path for seen in fake.requests_to("GET /files/{name}")]
    assert names and all(name.endswith("_v1.png") for name in names)
    got, want = outside(result.images, image, mask)
    assert torch.allclose(got, want, atol=1 / 255)  # v0 was the whole frame inverted


def test_an_expired_upload_url_is_a_readable_403(fake):
    fake.upload_ttl = -1
    image, mask = scene()
    with pytest.raises(VendorError, match="HTTP 403 forbidden.*Request has expired"):
        run(image, mask, EP, fake.url)


def test_interrupt_stops_waiting_and_names_the_running_job(fake):
    fake.step_delay = 5.0
    statuses, calls = [], []

    def check_cancel():
        calls.append(1)
        if len(calls) > 3:
            raise InterruptedError("user interrupt")

    async def scenario():
        from vendor_testing import settings

        from region_repair.pipelines.vendors.remote import run_remote

        image, mask = scene()
        await run_remote(image, mask, settings(EP, fake.url), env=allowing(EP, fake.url),
                         check_cancel=check_cancel, on_status=statuses.append)

    with pytest.raises(InterruptedError):
        bounded(scenario(), limit=5)
    assert any("may still finish" in text and "job_" in text for text in statuses)


def test_webhook_events_are_signed_over_the_raw_body(fake):
    """The fake's webhooks (not used by the node, which cannot receive callbacks) follow the
    documented HMAC-SHA256 signature, and the corrupt switch breaks it."""
    received = []

    async def scenario():
        async def hook(request):
            received.append((await request.read(), request.headers["X-Webhook-Signature"]))
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]

        async def register(http):
            return await http.json("PUT", "/webhooks",
                                   json_body={"url": f"http://127.0.0.1:{port}/hook"})
        try:
            return await with_client("piktid", fake.url, register, auth=AUTH)
        finally:
            await runner.cleanup()

    setup = bounded(scenario())
    body, signature = received[0]
    assert json.loads(body)["name"] == "ping"
    expected = "sha256=" + hmac.new(setup["secret"].encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signature, expected)
