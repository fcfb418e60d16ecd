"""Tier 2: the pack's nodes in-process, with ComfyUI importable and forced onto the CPU."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from pack_paths import COMFYUI, PACK_ROOT, PACKAGE

if not (COMFYUI / "main.py").exists():
    raise RuntimeError(f"ComfyUI is missing at {COMFYUI}: run `make test`, which builds the host")
sys.path.insert(0, str(COMFYUI))
from comfy.cli_args import args  # noqa: E402

# Must precede the first import of comfy.model_management: the CUDA torch build otherwise looks
# for an NVIDIA driver and fails.
args.cpu = True


@pytest.fixture(scope="session")
def pack():
    """The pack imported for real, as ComfyUI does: its root __init__.py runs."""
    spec = importlib.util.spec_from_file_location(
        PACKAGE, PACK_ROOT / "__init__.py", submodule_search_locations=[str(PACK_ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def interrupted():
    """ComfyUI's interrupt flag raised (as the Cancel button does) for one test; yields the
    exception a node must then raise."""
    import comfy.model_management as model_management

    model_management.interrupt_current_processing(True)
    yield model_management.InterruptProcessingException
    model_management.interrupt_current_processing(False)


@pytest.fixture
def interrupt_later():
    """`measure(delay, work)`: runs `work()` while ComfyUI's interrupt flag goes up `delay` s in
    (the Cancel button pressed mid-run); the node must raise ComfyUI's interrupt exception, and
    the latency from the press to that comes back."""
    import threading
    import time

    import comfy.model_management as model_management

    def measure(delay: float, work) -> float:
        timer = threading.Timer(delay, model_management.interrupt_current_processing, (True,))
        start = time.monotonic()
        timer.start()
        try:
            with pytest.raises(model_management.InterruptProcessingException):
                work()
            return time.monotonic() - start - delay
        finally:
            timer.cancel()
            model_management.interrupt_current_processing(False)
    return measure
