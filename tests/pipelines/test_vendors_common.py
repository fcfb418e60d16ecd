"""What all vendors share: keys (environment, file, never shown), redaction in logs and errors,
the HTTP layer's rules, the info contract and the node-facing settings."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from fake_vendors import ENV, Fault, FakePhotio, FakePiktID, serve
from pack_paths import PACK_ROOT
from region_repair.pipelines.vendors import http, keys, remote
from region_repair.pipelines.vendors.http import VendorError
from vendor_testing import bounded, run, scene, with_client


def test_keys_come_from_the_environment_first_then_the_file(tmp_path):
    path = tmp_path / "keys.toml"
    path.write_text('[photio]\nkey = "pt-from-file"\n[picpik]\npublic_key = "pub"\n'
                    'private_key = "priv"\n')
    env = {"REGION_REPAIR_KEYS_FILE": str(path)}
    assert keys.credentials("photio", env)["key"].reveal() == "pt-from-file"
    assert keys.credentials("photio", {**env, "REGION_REPAIR_PHOTIO_KEY": "pt-env"}
                            )["key"].reveal() == "pt-env"
    assert keys.credentials("picpik", env)["private_key"].reveal() == "priv"
    assert keys.keys_file({"XDG_CONFIG_HOME": "/cfg"}).as_posix() == \
        "/cfg/comfyui-region-repair/keys.toml"


def test_a_missing_key_names_the_variable_and_the_file(tmp_path):
    with pytest.raises(VendorError, match=r"no key: set REGION_REPAIR_PICPIK_PRIVATE_KEY .*"
                                          r"private_key = .* under \[picpik\]"):
        keys.credentials("picpik", {"REGION_REPAIR_PICPIK_PUBLIC_KEY": "pub",
                                    "REGION_REPAIR_KEYS_FILE": str(tmp_path / "none.toml")})


def test_a_keys_file_inside_the_pack_is_refused():
    inside = PACK_ROOT / "tests" / "support" / "fake_vendors" / "__init__.py"
    with pytest.raises(VendorError, match="inside the pack's folder"):
        keys.credentials("photio", {"REGION_REPAIR_KEYS_FILE": str(inside)})


def test_an_unreadable_keys_file_does_not_quote_it(tmp_path):
    path = tmp_path / "keys.toml"
    path.write_text('[photio]\nkey = "pt-secret-value\n')  # unterminated string
    with pytest.raises(VendorError) as caught:
        keys.credentials("photio", {"REGION_REPAIR_KEYS_FILE": str(path)})
    assert "pt-secret-value" not in str(caught.value) and "TOMLDecodeError" in str(caught.value)


def test_secrets_never_print_themselves():
    secret = keys.Secret("pt-abc")
    assert "pt-abc" not in repr(secret) + str(secret) + f"{secret}" + repr([secret])


def test_redaction_of_headers_and_urls():
    headers = http.redact_headers({"Authorization": "Bearer x", "X-Photio-Key": "pt-x",
                                   "Content-Type": "image/png"})
    assert headers == {"Authorization": "<redacted>", "X-Photio-Key": "<redacted>",
                       "Content-Type": "image/png"}
    assert "abc" not in http.redact_url("http://h/notifications/events?token=abc&id_task=j")


def test_no_key_reaches_any_log_record_or_error(caplog):
    caplog.set_level(logging.DEBUG)
    with serve(FakePiktID()) as fake:
        fake.fail("POST /detail-repair", Fault.status_code(500))
        image, mask = scene()
        run(image, mask, "piktid/detail-repair", fake.url)
        fake.expire_token()
        with pytest.raises(VendorError) as caught:
            run(image, mask, "piktid/detail-repair", fake.url)
    text = caplog.text + str(caught.value)
    assert "piktid POST" in caplog.text and "<redacted>" in caplog.text
    for secret in ENV.values():
        assert secret not in text


def test_an_error_body_echoing_the_key_is_scrubbed():
    with serve(FakePhotio()) as fake:
        fake.fail("POST /v1/inference/regen", Fault.status_code(
            400, body={"error": f"bad key {ENV['REGION_REPAIR_PHOTIO_KEY']}"}))
        image, mask = scene()
        with pytest.raises(VendorError) as caught:
            run(image, mask, "photio/regen", fake.url)
    assert ENV["REGION_REPAIR_PHOTIO_KEY"] not in str(caught.value)
    assert "bad key <redacted>" in str(caught.value)


def test_keyed_calls_do_not_follow_redirects_but_downloads_do():
    from aiohttp import web

    from fake_vendors.base import FakeVendor

    class Redirecting(FakeVendor):
        def routes(self, app):
            async def moved(request):
                raise web.HTTPFound("http://127.0.0.1:9/elsewhere")

            async def moved_here(request):
                raise web.HTTPFound(self.url + "/target")

            async def target(request):
                return web.Response(body=b"ok")

            app.router.add_get("/api", moved)
            app.router.add_get("/file", moved_here)
            app.router.add_get("/target", target)

    with serve(Redirecting()) as fake:
        async def scenario(client):
            with pytest.raises(VendorError, match="redirected .* not followed"):
                await client.request("GET", "/api")
            return (await client.request("GET", fake.url + "/file", auth=False)).body

        assert bounded(with_client("x", fake.url, scenario, auth={"X-Key": "k"})) == b"ok"
    assert "X-Key" not in fake.requests_to("GET /target")[0].headers


@pytest.mark.parametrize("status, expected", [
    (400, "HTTP 400 bad request"), (403, "HTTP 403 forbidden"), (404, "HTTP 404 not found"),
    (402, "HTTP 402 insufficient credits .*no credit figures given")])
def test_each_status_has_a_readable_message(status, expected):
    with serve(FakePhotio()) as fake:
        fake.fail("POST /v1/inference/regen", Fault.status_code(status))
        image, mask = scene()
        with pytest.raises(VendorError, match=expected):
            run(image, mask, "photio/regen", fake.url)
        assert len(fake.requests_to("POST /v1/inference/regen")) == 1  # never retried


def test_408_is_retried():
    with serve(FakePhotio()) as fake:
        fake.fail("POST /v1/inference/regen", Fault.status_code(408))
        image, mask = scene()
        run(image, mask, "photio/regen", fake.url)
        assert len(fake.requests_to("POST /v1/inference/regen")) == 2


def test_retry_after_as_an_http_date():
    assert 0 <= http.retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0
    assert http.retry_after("2.5") == 2.5 and http.retry_after("soon") is None


def test_info_contract_alpha_and_mask_resize():
    with serve(FakePhotio()) as fake:
        image, mask = scene(batch=2)
        rgba = torch.cat([image, torch.rand(2, 48, 64, 1)], dim=-1)
        small = mask[:, ::2, ::2]
        result, _ = run(rgba, small, "photio/regen", fake.url, candidates=2, seed=10,
                        references=torch.rand(1, 8, 8, 3))
    assert result.images.shape == (4, 48, 64, 4)
    assert torch.equal(result.images[..., 3], rgba[..., 3].repeat(2, 1, 1))
    assert result.mask.shape == (2, 48, 64)
    assert any("mask resized from 32x24" in note for note in result.notes)
    assert any("references ignored" in note for note in result.notes)
    required = {"schema", "node", "image_index", "candidate_index", "seed", "engine", "mode",
                "blend", "references_used", "reference_count", "notes"}
    for index, entry in enumerate(result.info):
        assert required <= set(entry) and entry["schema"] == "region_repair.info/1"
        assert entry["node"] == "RemoteVendorInpaint" and entry["blend"] == "mask"
        assert entry["candidate_index"] == index // 2 and entry["image_index"] == index % 2
        assert entry["references_used"] is False and entry["reference_count"] == 0
    assert json.loads(json.dumps(result.info)) == result.info


def test_settings_refuse_unknown_options_and_bad_json():
    with pytest.raises(ValueError, match="options: bogus not accepted by photio/regen; "
                                         "allowed: quality, cfg_scale"):
        remote.RemoteSettings("photio/regen", options={"bogus": 1})
    with pytest.raises(ValueError, match="options: not valid JSON"):
        remote.parse_options("{quality: HIGH}")
    with pytest.raises(ValueError, match="endpoint|Endpoint"):
        remote.RemoteSettings("acme/inpaint")


def test_an_empty_mask_is_refused_before_any_call():
    with serve(FakePhotio()) as fake:
        image, _ = scene()
        with pytest.raises(ValueError, match="mask: image 0 has no masked pixel"):
            run(image, torch.zeros(1, 48, 64), "photio/regen", fake.url)
        assert not fake.seen


def test_the_whole_run_is_bounded_by_timeout():
    with serve(FakePhotio()) as fake:
        fake.quality_latency = 3.0
        image, mask = scene()
        with pytest.raises(VendorError, match=r"no result within 0.5 s \(timeout_s\)"):
            run(image, mask, "photio/regen", fake.url, timeout=0.5)
