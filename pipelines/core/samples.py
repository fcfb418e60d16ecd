"""The sample photos the shipped workflows load, copied into ComfyUI's input folder.

ComfyUI 0.3.75 has no way for a pack to ship inputs: Load Image only reads the input folder. So at
start the photos the workflows name are copied into one sub-folder of it, `SAMPLES_FOLDER`, and the
workflows name them there (`region-repair-samples/astronaut.png`). A file already present is
never overwritten (it may be the user's own), so the copy is skipped on every later start.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

SAMPLES_FOLDER = "region-repair-samples"
# What the workflows' loaders name: Load Image's file, or the folder of a dataset loader.
LOADER_INPUTS = {"LoadImage": 0, "RegionRepair_LoadImageSet": 0}
LICENCES = "CREDITS.md"


def sample_paths(workflows: Path) -> set[str]:
    """Every path under SAMPLES_FOLDER that a UI-format workflow in `workflows` loads."""
    paths = set()
    for workflow in workflows.glob("*.json"):
        for node in json.loads(workflow.read_text(encoding="utf-8"))["nodes"]:
            if node["type"] in LOADER_INPUTS:
                value = node["widgets_values"][LOADER_INPUTS[node["type"]]]
                if value.startswith(SAMPLES_FOLDER + "/"):
                    paths.add(value[len(SAMPLES_FOLDER) + 1:])
    return paths


def install_samples(photos: Path, workflows: Path, input_dir: Path) -> list[Path]:
    """Copy the photos the workflows load (and their licences) from `photos` into
    `input_dir/SAMPLES_FOLDER`, skipping every file that already exists. Returns what was
    copied."""
    target = input_dir / SAMPLES_FOLDER
    copied = []
    for name in sorted(sample_paths(workflows) | {LICENCES}):
        source = photos / name
        files = sorted(p for p in source.iterdir() if p.is_file()) if source.is_dir() else [source]
        for file in files:
            destination = target / file.relative_to(photos)
            destination.parent.mkdir(parents=True, exist_ok=True)
            try:  # "x": create only, so a file that appeared meanwhile is not overwritten either
                with file.open("rb") as source_file, destination.open("xb") as copy:
                    shutil.copyfileobj(source_file, copy)
            except FileExistsError:
                continue
            copied.append(destination)
    return copied
