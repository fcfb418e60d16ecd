"""A set of shots read from one folder, in the order of their names.

ComfyUI 0.3.75's Load Image Dataset from Folder takes the files in `os.listdir` order (a hash
order on ext4: `0.png, 2.png, 1.png`) and ignores a photo's EXIF rotation. A set's order decides
its anchor (the first image by default) and which output is which shot, so the pack's set loader
sorts the names naturally (`2` before `10`) and turns each photo upright as Load Image does.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def natural_key(name: str) -> tuple[list[str | int], str]:
    """Sorts `shot2` before `shot10`: the digit runs compare as numbers, the rest ignoring case."""
    parts = re.split(r"(\d+)", name.lower())  # text, digits, text, ...: same types line up
    return [int(part) if index % 2 else part for index, part in enumerate(parts)], name


def set_files(folder: Path) -> list[Path]:
    """The folder's images (by suffix, not its subfolders), in natural name order."""
    files = [path for path in folder.iterdir()
             if path.is_file() and path.suffix.lower() in SUFFIXES]
    if not files:
        raise ValueError(f"folder: {folder.name!r} holds no {', '.join(SUFFIXES)} image")
    return sorted(files, key=lambda path: natural_key(path.name))


def load_upright(path: Path) -> torch.Tensor:
    """One photo as IMAGE `[1, H, W, 3]`, turned as its EXIF orientation says."""
    with Image.open(path) as image:
        upright = ImageOps.exif_transpose(image).convert("RGB")
    return torch.from_numpy(np.asarray(upright, dtype=np.float32) / 255.0)[None]
