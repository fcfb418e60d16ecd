"""The fleet runner's tests: the command itself, run as `python -m fleet` on loopback. The
folder is not named `fleet`: pytest's importlib mode would register it as module `fleet`.

`fleet` is imported here through a stub whose `__path__` is the package folder: the pack root
is never put on sys.path (its `nodes/` would shadow ComfyUI's own for the other tiers).
"""

from __future__ import annotations

import sys
import types
from concurrent.futures import ThreadPoolExecutor

import pytest

from comfy_server import COMFYUI, ComfyServer
from pack_paths import PACK_ROOT

if "fleet" not in sys.modules:
    _stub = types.ModuleType("fleet")
    _stub.__path__ = [str(PACK_ROOT / "fleet")]
    sys.modules["fleet"] = _stub


@pytest.fixture(scope="session")
def servers(tmp_path_factory):
    """Two ComfyUI servers with the pack, started side by side, for --servers mode."""
    if not (COMFYUI / "main.py").exists():
        pytest.fail(f"ComfyUI is missing at {COMFYUI}: run `make test`, which builds the host")
    started = [ComfyServer(tmp_path_factory.mktemp(f"fleet-server-{index}"),
                           env={"OMP_NUM_THREADS": "1"}) for index in range(2)]
    try:
        with ThreadPoolExecutor(len(started)) as pool:
            list(pool.map(ComfyServer.start, started))  # re-raises a failed start
        yield started
    finally:
        for server in started:
            server.stop()
