"""RemoteVendorInpaint in-process against a fake vendor: outputs, info, interrupt, schema."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time

import pytest
import torch

from fake_vendors import ENV, FakePhotio, FakePiktID, serve
from region_repair.pipelines.vendors import keys, remote
from vendor_testing import scene


@pytest.fixture(scope="module")
def remote_nodes(pack):
    from region_repair.nodes import remote_nodes

    return remote_nodes


@pytest.fixture(autouse=True)
def keys_in_env(monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    for vendor in keys.FIELDS:  # run() allows its fake's host; restored after each test
        monkeypatch.delenv(keys.hosts_variable(vendor), raising=False)


def run(node, **inputs):
    """Await a node's async execute as ComfyUI's executor does: on a clone with hidden inputs.
    A fake's `base_url` is allowed in the environment, as a user allows a self-hosted host."""
    defaults = dict(base_url="", prompt="", negative_prompt="", candidates=1, seed=-1,
                    options="{}", blend=True, feather=0, timeout_s=60)
    if inputs.get("base_url") and inputs.get("endpoint") in {e.value for e in remote.Endpoint}:
        os.environ[keys.hosts_variable(remote.Endpoint(inputs["endpoint"]).vendor)] = \
            inputs["base_url"]
    clone = node.PREPARE_CLASS_CLONE({"UNIQUE_ID": "9"})
    return asyncio.run(asyncio.wait_for(clone.execute(**{**defaults, **inputs}), 60)).result


def test_schema_has_no_key_input_and_documents_every_input(remote_nodes):
    info = remote_nodes.RemoteVendorInpaint.GET_NODE_INFO_V1()
    inputs = {**info["input"]["required"], **info["input"].get("optional", {})}
    assert not any("key" in name or "token" in name for name in inputs)
    assert all(spec[1].get("tooltip") for spec in inputs.values())
    assert info["output_name"] == ["images", "mask", "info"]


def test_photio_candidates_come_back_blended_with_info(remote_nodes):
    image, mask = scene()
    before = image.clone()
    with serve(FakePhotio()) as fake:
        images, fitted, info = run(remote_nodes.RemoteVendorInpaint, image=image, mask=mask,
                                   endpoint="photio/regen", base_url=fake.url, candidates=2,
                                   seed=3, options='{"quality": "HIGH"}')
    assert images.shape == (2, 48, 64, 3) and fitted.shape == (1, 48, 64)
    keep = (mask == 0).expand(2, -1, -1)
    assert torch.equal(images[keep], image.repeat(2, 1, 1, 1)[keep])
    assert not torch.equal(images[0], images[1])
    entries = json.loads(info)
    assert [e["seed"] for e in entries] == [3, 4] and entries[0]["engine"] == "vendor:photio"
    assert torch.equal(image, before)


def test_piktid_with_references(remote_nodes):
    image, mask = scene()
    with serve(FakePiktID()) as fake:
        images, _, info = run(remote_nodes.RemoteVendorInpaint, image=image, mask=mask,
                              endpoint="piktid/detail-repair", base_url=fake.url, candidates=2,
                              references=torch.rand(2, 16, 16, 3), prompt="fix it")
    entries = json.loads(info)
    assert images.shape[0] == 2 and entries[1]["reference_count"] == 2


def test_octoai_without_a_url_says_it_shut_down(remote_nodes):
    image, mask = scene()
    with pytest.raises(ValueError, match="OctoAI shut down on 2024-10-31"):
        run(remote_nodes.RemoteVendorInpaint, image=image, mask=mask,
            endpoint="octoai-compatible/adetailer")


def test_an_unknown_endpoint_lists_the_allowed_ones(remote_nodes):
    image, mask = scene()
    with pytest.raises(ValueError, match="'photio/regen'"):
        run(remote_nodes.RemoteVendorInpaint, image=image, mask=mask, endpoint="photio")


def test_interrupt_stops_a_running_call(remote_nodes):
    import comfy.model_management as mm

    image, mask = scene()
    with serve(FakePhotio()) as fake:
        fake.quality_latency = 10.0
        timer = threading.Timer(0.5, mm.interrupt_current_processing, args=(True,))
        timer.start()
        start = time.monotonic()
        try:
            with pytest.raises(mm.InterruptProcessingException):
                run(remote_nodes.RemoteVendorInpaint, image=image, mask=mask,
                    endpoint="photio/regen", base_url=fake.url)
            assert time.monotonic() - start < 3  # not the 10 s the vendor would take
        finally:
            timer.cancel()
            mm.interrupt_current_processing(False)
