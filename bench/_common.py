"""Shared by the benchmark scripts: the pack imported as a package, device-synchronised timing.

The pack is imported through a stub package whose __path__ is the pack root, as the tests do: the
root __init__.py (which needs ComfyUI) does not run, and the pack root is never put on sys.path,
where its nodes/ folder would shadow ComfyUI's own `nodes` module.
"""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

import torch

PACK_ROOT = Path(__file__).resolve().parents[1]
COMFYUI = PACK_ROOT / ".venv" / "ComfyUI"
PACKAGE = "region_repair"



def import_pack() -> Path:
    """Make `region_repair` importable (the stub package above); returns the pack root."""
    if PACKAGE not in sys.modules:
        stub = types.ModuleType(PACKAGE)
        stub.__path__ = [str(PACK_ROOT)]
        sys.modules[PACKAGE] = stub
    return PACK_ROOT


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(on: torch.device, function, /, *args, **kwargs):
    """(result, seconds) of function(*args, **kwargs), synchronising the device `on`."""
    sync(on)
    start = time.perf_counter()
    result = function(*args, **kwargs)
    sync(on)
    return result, time.perf_counter() - start


def with_comfyui(cpu: bool = True) -> None:
    """Make ComfyUI importable (and, before comfy.model_management loads, pick the CPU)."""
    if str(COMFYUI) not in sys.path:
        sys.path.insert(0, str(COMFYUI))
    from comfy.cli_args import args
    args.cpu = cpu


def add_threads_option(parser) -> None:
    parser.add_argument("--threads", type=int, default=0,
                        help="torch and OpenCV CPU threads (default: their own choice)")


def use_threads(threads: int) -> None:
    """Pin torch's and OpenCV's CPU threads (0 leaves their defaults)."""
    if threads > 0:
        import cv2
        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)
