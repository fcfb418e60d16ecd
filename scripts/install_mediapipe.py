"""Install the optional mediapipe detectors the lean way, into the Python that runs this script.

    <ComfyUI's python> custom_nodes/comfyui-region-repair/scripts/install_mediapipe.py [--dry-run]

It runs `<that python> -m pip install ...` twice; --dry-run only prints the two commands.

A plain `pip install mediapipe==0.10.21` pulls jax and jaxlib (330 MB) and downgrades numpy to 1.x
(the wheel pins numpy<2). The detectors need neither: mediapipe goes in with --no-deps, then only
what its solutions API imports (requirements-mediapipe.txt, which keeps protobuf below 5).
0.10.21 is the last release that ships its models and the solutions API, and it has no wheel for
Python 3.13 or newer.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parents[1] / "requirements-mediapipe.txt"
STEPS = [["--no-deps", "mediapipe==0.10.21"], ["-r", str(REQUIREMENTS)]]


def main(argv: list[str]) -> int:
    if sys.version_info >= (3, 13):
        print(f"mediapipe 0.10.21 has no wheel for Python {sys.version_info.major}."
              f"{sys.version_info.minor}; use Python 3.9-3.12, or the *_haar detectors.",
              file=sys.stderr)
        return 1
    for step in STEPS:
        command = [sys.executable, "-m", "pip", "install", *step]
        print(" ".join(command))
        if "--dry-run" not in argv:
            subprocess.run(command, check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
