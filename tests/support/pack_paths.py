"""Where things are, for the tests: the pack, the host's ComfyUI, and the pack's package name."""

from __future__ import annotations

from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parents[2]
COMFYUI = PACK_ROOT / ".venv" / "ComfyUI"
# The pack is imported as this package in tests (ComfyUI itself names it after its folder).
PACKAGE = "region_repair"
