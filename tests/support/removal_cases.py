"""Ground-truth removal cases for Quality Check's `residue` and `seam` (tests and bench/quality.py).

A clean photo region (160 px, from assets/photos and scikit-image's bundled photos and textures)
gets a foreign object pasted in (a two-ellipse blob cut from another photo) and is then repaired
with the mask exactly on the object, as users draw it:

- `feather`: cv2.inpaint Telea blended through the pack's old inward feather of 4 px
  (`masks.inward_feather` and a lerp, as `blend_masked` did): the outer pixels inside the mask
  keep part of the object, a visible outline (residue);
- `telea`: the same fill pasted hard (clean);
- `membrane`: a texture patch from beside the hole with its difference to the surroundings
  smoothed in from the edge (a membrane clone: texture continues, no step at the edge; clean);
- `truth`: the clean photo itself (clean).

Specks on plain backgrounds: a dark dot of radius 4 px, masked `tight` (the dot itself: the
feathered fill keeps its outline, residue) or `grown` by 6 px as a brush would (the feather then
only mixes wall with wall: clean), each repaired by `feather` and `telea`.

`inner_delta_e` measures the truth: the mean ΔE2000 to the clean photo on the 2 px just inside
the mask's edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import skimage.data
import torch
from PIL import Image

from pack_paths import PACK_ROOT
from region_repair.pipelines.geometry import masks as mask_ops
from region_repair.pipelines.core.color import ciede2000, srgb_to_lab

SIZE = 160
# Scikit-image's grey textures, tinted so that they have a colour.
TINTS = {"grass": (0.55, 0.8, 0.4), "gravel": (0.9, 0.85, 0.75), "brick": (0.95, 0.6, 0.45)}
# (background photo, crop's top-left y, x; object's source photo, its crop's top-left y, x)
OBJECTS = [("astronaut.png", 300, 20, "coffee.png", 150, 230),
           ("coffee.png", 10, 400, "chelsea.png", 100, 150),
           ("chelsea.png", 100, 280, "rocket.jpg", 80, 280),
           ("rocket.jpg", 250, 20, "astronaut.png", 100, 200),
           ("motorcycle", 300, 500, "grass", 0, 0),
           ("grass", 200, 200, "coffee.png", 230, 100),
           ("gravel", 100, 300, "chelsea.png", 50, 280),
           ("brick", 250, 150, "astronaut.png", 350, 300),
           ("immunohistochemistry", 200, 200, "rocket.jpg", 150, 300),
           ("astronaut.png", 20, 330, "immunohistochemistry", 50, 50)]
# Plain backgrounds for specks: (photo, crop's top-left y, x)
PLAIN = [("rocket.jpg", 10, 20), ("coffee.png", 0, 0), ("astronaut.png", 40, 20),
         ("chelsea.png", 20, 280)]
SPECK_COLOR = (0.12, 0.1, 0.08)


@dataclass
class Case:
    name: str
    clean: np.ndarray       # [H, W, 3] float32 0..1, the truth
    damaged: np.ndarray     # the input: the clean photo with the object or speck
    mask: np.ndarray        # [H, W] float32, 1 = edit
    candidates: dict[str, tuple[np.ndarray, bool]]  # label: (repair, has a visible residue)


def photo(name: str) -> np.ndarray:
    if name in TINTS:
        return (getattr(skimage.data, name)()[..., None] * np.float32(TINTS[name])
                ).astype(np.uint8)
    if name == "motorcycle":
        return skimage.data.stereo_motorcycle()[0]
    if name == "immunohistochemistry":
        return skimage.data.immunohistochemistry()
    return np.asarray(Image.open(PACK_ROOT / "assets" / "photos" / name).convert("RGB"))


def crop(name: str, y: int, x: int) -> np.ndarray:
    return photo(name)[y:y + SIZE, x:x + SIZE].astype(np.float32) / 255


def blob(seed: int) -> np.ndarray:
    """Two overlapping ellipses near the centre: an object's shape."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    for _ in range(2):
        centre = (int(SIZE / 2 + rng.integers(-15, 16)), int(SIZE / 2 + rng.integers(-15, 16)))
        axes = (int(rng.integers(18, 32)), int(rng.integers(12, 24)))
        cv2.ellipse(mask, centre, axes, float(rng.integers(0, 180)), 0, 360, 1, -1)
    return mask.astype(np.float32)


def telea(image: np.ndarray, mask: np.ndarray, radius: int = 3) -> np.ndarray:
    u8 = (image * 255).round().astype(np.uint8)
    return cv2.inpaint(u8, mask.astype(np.uint8), radius, cv2.INPAINT_TELEA
                       ).astype(np.float32) / 255


def feathered(image: np.ndarray, fill: np.ndarray, mask: np.ndarray, feather: int = 4
              ) -> np.ndarray:
    """The old default blend: `fill` over `image` through the inward-feathered mask."""
    alpha = mask_ops.inward_feather(torch.from_numpy(mask)[None], feather)[0, ..., None].numpy()
    return image + (fill - image) * alpha


def hard(image: np.ndarray, fill: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where(mask[..., None] > 0, fill, image)


def membrane(clean: np.ndarray, damaged: np.ndarray, mask: np.ndarray, shift: int = 24
             ) -> np.ndarray:
    """A texture patch from `shift` px beside the hole, plus its difference to the surroundings
    smoothed in from the edge (Telea on the difference)."""
    source = np.roll(clean, shift, axis=1)
    difference = (np.clip((damaged - source) * 0.5 + 0.5, 0, 1) * 255).round().astype(np.uint8)
    difference = cv2.inpaint(difference, mask.astype(np.uint8), 5, cv2.INPAINT_TELEA)
    return hard(damaged, np.clip(source + (difference / 255 - 0.5) * 2, 0, 1), mask)


def cases() -> list[Case]:
    out = []
    for seed, (background, y, x, source, sy, sx) in enumerate(OBJECTS):
        clean, mask = crop(background, y, x), blob(seed)
        damaged = hard(clean, crop(source, sy, sx), mask)
        fill = telea(damaged, mask)
        out.append(Case(f"{background} + object from {source}", clean, damaged, mask, {
            "feather": (feathered(damaged, fill, mask), True),
            "telea": (hard(damaged, fill, mask), False),
            "membrane": (membrane(clean, damaged, mask), False),
            "truth": (clean, False)}))
    for background, y, x in PLAIN:
        clean = crop(background, y, x)
        speck = np.zeros((SIZE, SIZE), np.uint8)
        cv2.circle(speck, (SIZE // 2, SIZE // 2), 4, 1, -1)
        damaged = hard(clean, np.float32(SPECK_COLOR), speck.astype(np.float32))
        grown = cv2.dilate(speck, np.ones((13, 13), np.uint8)).astype(np.float32)
        for label, mask in (("tight", speck.astype(np.float32)), ("grown", grown)):
            fill = telea(damaged, mask)
            out.append(Case(f"{background}, speck, mask {label}", clean, damaged, mask, {
                "feather": (feathered(damaged, fill, mask), label == "tight"),
                "telea": (hard(damaged, fill, mask), False)}))
    return out


def inner_delta_e(candidate: np.ndarray, clean: np.ndarray, mask: np.ndarray, width: int = 2
                  ) -> float:
    """Mean ΔE2000 to the clean photo on the `width` px just inside the mask's edge."""
    support = torch.from_numpy(mask)[None]
    inner = ((mask_ops.dilate(1 - support, width) > 0) & (support > 0))[0]
    return float(ciede2000(srgb_to_lab(torch.from_numpy(candidate))[inner],
                           srgb_to_lab(torch.from_numpy(clean))[inner]).mean())
