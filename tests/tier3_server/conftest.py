"""Tier 3: one real ComfyUI server (`main.py --cpu`) for the whole run, with the pack linked in.

Start-up fails loudly when the pack's import failed or any of its nodes is missing from
/object_info (see scripts/comfy_server.py). Test-only nodes under tests/support/test_nodes are
linked in too; they are never shipped.
"""

from __future__ import annotations

import contextlib

import pytest
from comfy_server import COMFYUI, ComfyServer, free_port
from fake_vendors import ENV, FakeOctoAI, FakePhotio, FakePICPIK, FakePiktID, serve
from pack_paths import PACK_ROOT
from region_repair.pipelines.vendors.keys import hosts_variable
from serving_images import SERVE_CONFIG, SERVE_ENV

TEST_NODES = PACK_ROOT / "tests" / "support" / "test_nodes"


@pytest.fixture(scope="session")
def serving_webhook_url():
    """Where the served PiktID endpoints may post webhooks: a loopback receiver the owner
    allowed (tests/tier3_server/test_serving_piktid.py listens there)."""
    return f"http://127.0.0.1:{free_port()}/webhooks/piktid"


@pytest.fixture(scope="session")
def server(tmp_path_factory, fake_vendors, serving_webhook_url):
    if not (COMFYUI / "main.py").exists():
        pytest.fail(f"ComfyUI is missing at {COMFYUI}: run `make test`, which builds the host")
    base = tmp_path_factory.mktemp("comfyui-base")
    # One OpenMP thread: on a 2-core shared CI machine, two threads made the same tiny inpaint
    # take 0.5 s or 60 s at random (a barrier waiting on a descheduled thread).
    # The fake vendors' keys (never real ones) reach the nodes the documented way: the
    # server's environment, which also allows each fake's loopback host to receive its
    # vendor's key (a graph cannot). DEBUG logging puts the vendor clients' request lines in
    # the log, where the key-leak test looks.
    hosts = {hosts_variable(name): fake.url for name, fake in fake_vendors.items()}
    # The pack's own vendor endpoints are on, with test keys and small limits
    # (tests/tier3_server/test_serving_*.py).
    serve_config = base / "serve.toml"
    serve_config.write_text(SERVE_CONFIG)
    serving = {**SERVE_ENV, "REGION_REPAIR_SERVE_CONFIG": str(serve_config),
               "REGION_REPAIR_SERVE_PIKTID_WEBHOOK_URLS": serving_webhook_url}
    with ComfyServer(base, extra_packs={"region_repair_test_nodes": TEST_NODES},
                     env={"OMP_NUM_THREADS": "1", **ENV, **hosts, **serving},
                     extra_args=("--verbose", "DEBUG")) as running:
        yield running


@pytest.fixture(scope="session")
def fake_vendors():
    """Every vendor's fake server on 127.0.0.1, by vendor name (`.url` is its base URL)."""
    fakes = {"piktid": FakePiktID(), "picpik": FakePICPIK(), "photio": FakePhotio(),
             "octoai": FakeOctoAI()}
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(serve(fake)) for name, fake in fakes.items()}
