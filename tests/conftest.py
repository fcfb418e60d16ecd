"""Shared test set-up.

The pack is imported as the package `region_repair` through a stub whose `__path__` is the pack
root: the root `__init__.py` (which needs ComfyUI) does not run, and the pack root itself is never
put on sys.path, where its `nodes/` folder would shadow ComfyUI's own `nodes` module.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

# Shared helpers: the tests' own support code, and the server launcher (also used by the demo).
sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import torch  # noqa: E402

from pack_paths import PACK_ROOT, PACKAGE  # noqa: E402

# One thread: on a 2-core shared machine two OpenMP threads stall at random (see tier3_server).
torch.set_num_threads(1)

if PACKAGE not in sys.modules:
    _stub = types.ModuleType(PACKAGE)
    _stub.__path__ = [str(PACK_ROOT)]
    sys.modules[PACKAGE] = _stub
