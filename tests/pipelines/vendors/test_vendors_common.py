"""What all vendors share: keys (environment, file, never shown), redaction in logs and errors,
the HTTP layer's rules, the info contract and the node-facing settings."""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pytest
import torch
from fake_vendors import ENV, FakeOctoAI, FakePhotio, FakePICPIK, FakePiktID, Fault, serve
from pack_paths import PACK_ROOT
from PIL import Image
from region_repair.pipelines.vendors import http, images, keys, remote
from region_repair.pipelines.vendors.http import VendorError
from vendor_testing import bounded, interrupt_latency, run, scene, silent_server, with_client


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


# --- keys follow base_url -------------------------------------------------------------------
@pytest.mark.parametrize("endpoint", [e.value for e in remote.Endpoint])
def test_a_host_not_allowed_is_refused_before_any_request(endpoint):
    with serve(FakePhotio()) as capture:
        image, mask = scene()
        with pytest.raises(ValueError, match=rf"base_url: {capture.url} is not a host allowed.*"
                                             rf"set REGION_REPAIR_\w+_HOSTS={capture.url} in the "
                                             rf"environment.*allowed_hosts"):
            bounded(remote.run_remote(image, mask, remote.RemoteSettings(
                endpoint, base_url=capture.url, prompt="navy"), env=ENV))
        assert not capture.seen


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://api.photio.io", "api.photio.io",
                                 "https://user:pw@api.photio.io", "http://"])
def test_a_non_http_base_url_is_refused_naming_it(url):
    image, mask = scene()
    with pytest.raises(ValueError, match=r"base_url: .* is not an http:// or https:// URL"):
        bounded(remote.run_remote(image, mask, remote.RemoteSettings(
            "photio/regen", base_url=url), env=ENV))


def test_documented_hosts_need_https_and_allowed_hosts_are_exact_origins(tmp_path):
    assert keys.base_url("photio", "", {}) == "https://api.photio.io"
    assert keys.base_url("picpik", "https://API.picpikai.com:443/", {}) == \
        "https://API.picpikai.com:443/"
    with pytest.raises(ValueError, match="REGION_REPAIR_PHOTIO_HOSTS=http://api.photio.io"):
        keys.base_url("photio", "http://api.photio.io", {})
    env = {"REGION_REPAIR_PIKTID_HOSTS": "http://127.0.0.1:8123, https://proxy.example"}
    assert keys.base_url("piktid", "http://127.0.0.1:8123/v2", env) == "http://127.0.0.1:8123/v2"
    assert keys.base_url("piktid", "https://proxy.example:443", env)
    for other in ("http://127.0.0.1:8124", "https://127.0.0.1:8123", "http://proxy.example"):
        with pytest.raises(ValueError, match="not a host allowed"):
            keys.base_url("piktid", other, env)
    with pytest.raises(ValueError, match="not a host allowed"):  # another vendor's allowance
        keys.base_url("photio", "http://127.0.0.1:8123", env)
    path = tmp_path / "keys.toml"
    path.write_text('[octoai]\nallowed_hosts = ["http://10.0.0.5:8000"]\n')
    path.chmod(0o600)
    env = {"REGION_REPAIR_KEYS_FILE": str(path)}
    assert keys.base_url("octoai", "http://10.0.0.5:8000", env) == "http://10.0.0.5:8000"
    with pytest.raises(VendorError, match=r"REGION_REPAIR_PHOTIO_HOSTS: 'file:/x' is not an "
                                          r"http\(s\) origin"):
        keys.base_url("photio", "http://h", {"REGION_REPAIR_PHOTIO_HOSTS": "file:/x"})


def test_a_keyed_call_to_another_host_is_refused_by_the_client():
    with serve(FakePhotio()) as fake, serve(FakePhotio()) as capture:
        async def scenario(client):
            with pytest.raises(VendorError, match=f"refused to send the key to {capture.url}"):
                await client.request("POST", capture.url + "/v1/inference/regen")
        bounded(with_client("photio", fake.url, scenario, auth={"X-Photio-Key": "k"}))
    assert not capture.seen


@pytest.mark.parametrize("content, message", [
    ('[photio]\nkey = 12345\n', r"\[photio\] key must be a string in quotes, not a number"),
    ('[photio]\nkey = ["pt-a"]\n', r"\[photio\] key must be a string in quotes, not a list"),
    ('[photio]\nkey = {v = "pt-a"}\n', r"\[photio\] key must be a string in quotes, not a table"),
    ('photio = "pt-secret-value"\n', r"\[photio\] must be a table"),
    ('[photio]\nkey = "pt-secret value"\n', r"\[photio\] key contains whitespace"),
    ('[photio]\nkey = """pt-secret-value\nsecond"""\n', r"\[photio\] key contains whitespace"),
    ('[photio]\nallowed_hosts = "http://h"\n', r"\[photio\] allowed_hosts must be a list"),
])
def test_a_bad_keys_file_field_is_named_never_its_value(tmp_path, content, message):
    path = tmp_path / "keys.toml"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(VendorError, match=message) as caught:
        keys.credentials("photio", {"REGION_REPAIR_KEYS_FILE": str(path)})
    assert str(path) in str(caught.value)
    assert "secret" not in str(caught.value) and "12345" not in str(caught.value)


def test_a_binary_or_unreadable_keys_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "keys.toml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00key")
    with pytest.raises(VendorError, match=rf"cannot read the keys file {path} .*UTF-8 TOML"):
        keys.credentials("photio", {"REGION_REPAIR_KEYS_FILE": str(path)})
    folder = tmp_path / "dir.toml"
    folder.mkdir()  # not a file: no keys from it, the usual "no key" error
    with pytest.raises(VendorError, match="no key"):
        keys.credentials("photio", {"REGION_REPAIR_KEYS_FILE": str(folder)})


def test_an_environment_key_with_a_line_break_is_refused_naming_the_variable():
    with pytest.raises(VendorError, match="REGION_REPAIR_PHOTIO_KEY contains whitespace"):
        keys.credentials("photio", {"REGION_REPAIR_PHOTIO_KEY": "pt-a\nX-Evil: 1"})


def test_a_keys_file_readable_by_others_is_used_with_one_warning(tmp_path, caplog):
    path = tmp_path / "keys.toml"
    path.write_text('[photio]\nkey = "pt-from-open-file"\n')
    path.chmod(0o644)
    env = {"REGION_REPAIR_KEYS_FILE": str(path)}
    with caplog.at_level(logging.WARNING, logger="region_repair.vendors"):
        for _ in range(3):
            assert keys.credentials("photio", env)["key"].reveal() == "pt-from-open-file"
    warnings = [r.getMessage() for r in caplog.records if "readable by group or others" in
                r.getMessage()]
    assert len(warnings) == 1 and str(path) in warnings[0] and "chmod 600" in warnings[0]
    assert "pt-from-open-file" not in caplog.text


# --- every vendor's parameters are checked before the first request ----------------------------
FAKES = {"piktid": FakePiktID, "picpik": FakePICPIK, "photio": FakePhotio, "octoai": FakeOctoAI}


@pytest.mark.parametrize("endpoint, overrides, message", [
    ("piktid/detail-repair", {"candidates": 5}, "candidates: PiktID detail-repair allows 1-4, "
                                                "got 5"),
    ("piktid/detail-repair", {"options": {"context_factor": 20}},
     "context_factor: 1.5-10.0, got 20"),
    ("piktid/detail-repair", {"options": {"mode": "blend"}}, "mode: 'blend' is not one of"),
    ("piktid/detail-repair", {"options": {"transport": "ws"}}, "options.transport: 'sse' or "
                                                               "'poll', got 'ws'"),
    ("piktid/detail-repair", {"options": {"context_factor": "high"}},
     "options: a value of the wrong type for piktid/detail-repair"),
    ("piktid/garment-recolor", {"candidates": 9}, "candidates: PiktID garment-recolor allows "
                                                  "1-8, got 9"),
    ("piktid/garment-recolor", {"options": {"processing_size": 999}},
     r"processing_size: one of \(1024, 2048, 4096\), got 999"),
    ("picpik/ModifyMaskedPixels", {"options": {"width": 10}}, "Width/Height: 64-2560, got "
                                                              "10x64"),
    ("picpik/ModifyMaskedPixels", {"options": {"mask_blur": 99}}, "MaskBlur: 0-64, got 99"),
    ("photio/regen", {"options": {"quality": "ULTRA"}}, "quality: 'ULTRA' is not one of"),
    ("photio/regen", {"options": {"cfg_scale": 0}}, "cfg_scale: must be > 0"),
    ("octoai-compatible/adetailer", {"options": {"detector": "cat"}}, "detector: one of"),
    ("octoai-compatible/adetailer", {"options": {"inpainting_base_model": "sd3"}},
     "inpainting_base_model: sdxl or sd15"),
])
def test_bad_parameters_are_refused_before_any_request(endpoint, overrides, message):
    vendor = remote.Endpoint(endpoint).vendor
    with serve(FAKES[vendor]()) as fake:
        image, mask = scene()
        with pytest.raises(ValueError, match=message):
            run(image, mask, endpoint, fake.url, **{"prompt": "navy", **overrides})
        assert not fake.seen, [seen.route for seen in fake.seen]


def test_picpik_image2image_strength_is_checked_before_any_request():
    with serve(FakePICPIK()) as fake:
        image, mask = scene()
        with pytest.raises(ValueError, match="Image2Image.ReferStrength: 0-1, got 2"):
            run(image, mask, "picpik/ModifyMaskedPixels", fake.url,
                references=torch.rand(1, 8, 8, 3), options={"image2image_strength": 2})
        assert not fake.seen


@pytest.mark.parametrize("text", ['{"cfg_scale": NaN}', '{"cfg_scale": Infinity}',
                                  '{"strength": -Infinity}'])
def test_options_refuse_non_finite_numbers(text):
    with pytest.raises(ValueError, match=r"options: (NaN|Infinity|-Infinity) is not a finite"):
        remote.parse_options(text)


# --- interrupt within a second, whatever the run is waiting on --------------------------------
@pytest.mark.parametrize("route", ["POST /project", "POST /upload", "PUT /upload/{token}"])
def test_interrupt_during_piktid_project_creation_and_uploads(route):
    with serve(FakePiktID()) as fake:
        fake.fail(route, Fault.slow(60))
        latency = interrupt_latency("piktid/detail-repair", fake.url)
        assert fake.requests_to(route), "the run did not reach the slow call"
    assert latency < 1.0, f"interrupt took {latency:.2f} s"


@pytest.mark.parametrize("endpoint", [e.value for e in remote.Endpoint])
def test_interrupt_while_a_server_never_answers(endpoint):
    with silent_server() as url:
        latency = interrupt_latency(endpoint, url)
    assert latency < 1.0, f"interrupt took {latency:.2f} s"


def test_each_endpoint_has_its_own_blend_unless_one_is_chosen():
    """A recolour keeps its colour up to the garment's edge (inward); the edits replace content
    (seamless); a chosen method wins, and an unconfined one is refused naming the input."""
    from region_repair.pipelines.geometry.regions import Blend
    from region_repair.pipelines.vendors.remote import RemoteSettings
    assert RemoteSettings("piktid/garment-recolor").blend_method is Blend.INWARD
    assert RemoteSettings("photio/regen").blend_method is Blend.SEAMLESS
    assert RemoteSettings("piktid/detail-repair").blend_method is Blend.SEAMLESS
    assert RemoteSettings("piktid/garment-recolor", blend_method="hard").blend_method is Blend.HARD
    with pytest.raises(ValueError, match="blend_method: 'outward' is not confined"):
        RemoteSettings("photio/regen", blend_method="outward")


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_png_uploads_are_rgb_whatever_the_channels(channels):
    image = torch.rand(6, 5, channels, generator=torch.Generator().manual_seed(channels))
    decoded = Image.open(io.BytesIO(images.png(image)))
    expected = (image[..., [0, 0, 0]] if channels == 1 else image[..., :3]) * 255
    assert decoded.mode == "RGB"
    assert np.abs(np.asarray(decoded).astype(float) - expected.numpy()).max() <= 0.5 + 1e-6
