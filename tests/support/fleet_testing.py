"""Helpers for the fleet runner's tests (tests/fleet_runner): photos, manifests, running the command
and reading what it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from pack_paths import PACK_ROOT
from PIL import Image

REMOVAL = "Photio Regen - remove an object (no weights)"
RUN_TIMEOUT = 240


def write_photos(folder: Path, count: int, seed: int, size: int = 80) -> list[Path]:
    """Distinct random photos: every job is a different prompt."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        path = folder / f"photo_{seed}_{index:03d}.png"
        Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def write_manifest(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def removal_jobs(photos: list[Path], prefix: str = "job") -> list[dict]:
    return [{"id": f"{prefix}{index:03d}", "workflow": REMOVAL, "inputs": {"Photo": str(photo)},
             "params": {"Mask: the spoon": {"bbox": "0.3, 0.3, 0.35, 0.3"}}}
            for index, photo in enumerate(photos)]


def fleet_command(manifest: Path, out: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "fleet", "run", str(manifest), "--out", str(out),
            "--cpus-per-worker", "0.5", *options]


def fleet_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


def run_fleet(manifest: Path, out: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(fleet_command(manifest, out, *options), cwd=PACK_ROOT,
                          env=fleet_env(), capture_output=True, text=True,
                          timeout=RUN_TIMEOUT, check=False)


def results(out: Path) -> dict[str, dict]:
    import pandas as pd

    frame = pd.read_parquet(out / "results.parquet")
    return {row["id"]: row for row in frame.to_dict("records")}


def output_bytes(out: Path) -> dict[str, bytes]:
    """Every file under OUT/<id>/ but the done marker, by path relative to OUT."""
    return {str(path.relative_to(out)): path.read_bytes()
            for path in sorted(out.glob("*/*")) if path.name != "done.json"}
