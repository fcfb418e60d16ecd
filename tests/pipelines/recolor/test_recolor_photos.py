"""The issue's "Done when" figures, on real photos, as asserting tests.

Three sets, each built from one real photo shot three ways (the original; a tighter crop scaled
by 0.7; another crop scaled by 1.2 under dimmer, warmer light), recoloured to eleven targets given
as hex, as names, as swatch images and as instructions:

- astronaut's orange suit (scikit-image `astronaut`), masked by the pack's automatic garment mask
  (mediapipe + GrabCut) on the original, carried through the same crop and scale;
- the red saucer and cup (`coffee`) and the red tank and fenders (`motorcycle_left`), masked by a
  hand-written colour key (hue, chroma, opening and closing), also carried through.

Measures (outputs rounded to 8 bits, as a saved PNG holds them):
- ΔE2000 between the garment's mean Lab (pixels with mask >= 0.5) and the target; <= 2 for every
  image when the target's L* is 25..85;
- spread: the largest ΔE2000 between two images' garment means within a set; <= 1 with the
  defaults (use_anchor and post_process on);
- SSIM of the luminance structure: L* of input and output, each standardised over the garment
  (zero mean, unit deviation), SSIM map (Gaussian window, sigma 1.5) averaged over the garment
  eroded by 5 px; >= 0.95 for targets of L* 25..85 (reported only for near-black and
  near-white, where the folds live in a shoulder);
- the folds' spread: std of L* inside the garment, output / input, 0.7..1.4 for every target;
- pixels changed outside the mask: 0.

Run with -s to print the table (docs/recolor.md holds a copy).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.color
import skimage.data
import torch
from pack_paths import PACK_ROOT
from PIL import Image
from shots import shots
from skimage.metrics import structural_similarity

from region_repair.pipelines.core.color import ciede2000, parse_hex
from region_repair.pipelines.recolor import garment_mask
from region_repair.pipelines.recolor import garments as recolor

MOTORCYCLE = (PACK_ROOT / ".venv").glob("lib/python3*/site-packages/skimage/data/"
                                        "motorcycle_left.png")

TARGETS = [  # (form, reference_text, instruction, swatch name)
    ("hex", "#2E5A3B", None, None),
    ("hex", "#B03A2E", None, None),
    ("name", "forest green", None, None),
    ("name", "steel blue", None, None),
    ("name", "navy", None, None),
    ("swatch", None, None, "striped purple"),
    ("swatch", None, None, "tabby fur (chelsea)"),
    ("instruction", None, "make it a slightly darker teal", None),
    ("instruction", None, "pastel pink please", None),
    ("instruction", None, "turn it into a muted mustard", None),
    ("hex", "#111111", None, None),
    ("name", "white", None, None),
]


def swatch(name: str) -> torch.Tensor:
    if name == "striped purple":
        image = torch.zeros(64, 64, 3)
        image[:] = torch.tensor(parse_hex("#8E44AD"))
        image[:, ::3] = torch.tensor(parse_hex("#F4D03F"))
        return image[None]
    fur = skimage.data.chelsea()[40:160, 100:260]  # the cat's forehead: stripes of two browns
    return torch.from_numpy(fur).float()[None] / 255


def color_key(image: np.ndarray, hue: tuple[float, float], chroma: float) -> np.ndarray:
    lab = skimage.color.rgb2lab(image)
    angle = np.degrees(np.arctan2(lab[..., 2], lab[..., 1]))
    key = ((angle > hue[0]) & (angle < hue[1]) & (np.hypot(lab[..., 1], lab[..., 2]) > chroma))
    key = cv2.morphologyEx(key.astype(np.uint8), cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    return cv2.morphologyEx(key, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8)).astype(np.float32)


@pytest.fixture(scope="module")
def sets():
    astronaut = skimage.data.astronaut()
    masks, _ = garment_mask.garment_masks([torch.from_numpy(astronaut).float() / 255])
    coffee = skimage.data.coffee()
    motorcycle = np.asarray(Image.open(next(MOTORCYCLE)).convert("RGB"))
    return {
        "astronaut suit (auto mask)": shots(astronaut, masks[0].numpy()),
        "coffee saucer (colour key)": shots(coffee, color_key(coffee, (0, 45), 28)),
        "motorcycle (colour key)": shots(motorcycle, color_key(motorcycle, (10, 50), 40)),
    }


def garment_lab(image: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    as_png = (image.numpy() * 255).round().astype(np.uint8)
    return skimage.color.rgb2lab(as_png)[mask.numpy() >= 0.5]


def structure_ssim(before: torch.Tensor, after: torch.Tensor, mask: torch.Tensor) -> float:
    inside = mask.numpy() >= 0.5
    planes = []
    for image in (before, after):
        lightness = skimage.color.rgb2lab((image.numpy() * 255).round().astype(np.uint8))[..., 0]
        values = lightness[inside]
        planes.append(np.where(inside, (lightness - values.mean()) / (values.std() + 1e-6), 0))
    data_range = float(planes[0][inside].max() - planes[0][inside].min())
    _, ssim_map = structural_similarity(planes[0], planes[1], data_range=data_range,
                                        gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, full=True)
    core = cv2.erode(inside.astype(np.uint8), np.ones((11, 11), np.uint8)).astype(bool)
    return float(ssim_map[core].mean())


def run(set_images, form, text, instruction, swatch_name, **options):
    images = [image for image, _ in set_images]
    masks = [mask for _, mask in set_images]
    reference = swatch(swatch_name) if swatch_name else None
    return recolor.recolor_garments(images, masks, reference, text, instruction,
                                    recolor.RecolorSettings(**options))


@pytest.fixture(scope="module")
def figures(sets):
    rows = []
    for form, text, instruction, swatch_name in TARGETS:
        row = {"form": form, "given": text or instruction or swatch_name, "delta_e": [],
               "spread": [], "spread_anchor_only": [], "spread_independent": [], "ssim": [],
               "shading": [], "outside_changed": 0}
        for set_images in sets.values():
            result = run(set_images, form, text, instruction, swatch_name)
            target = torch.tensor(result.report["target"]["lab"], dtype=torch.float64)
            row["target"] = result.report["target"]
            means = []
            for (image, mask), out in zip(set_images, result.images):
                lab_out = garment_lab(out, mask)
                mean = torch.from_numpy(lab_out.mean(0))
                means.append(mean)
                source = garment_lab(image, mask)[:, 0]
                row["shading"].append(float(lab_out[:, 0].std() / source.std()))
                row["delta_e"].append(float(ciede2000(mean, target)))
                row["ssim"].append(structure_ssim(image, out, mask))
                outside = mask == 0
                row["outside_changed"] += int((out[outside] != image[outside]).any(-1).sum())
            stacked = torch.stack(means)
            row["spread"].append(float(ciede2000(stacked[:, None], stacked[None]).max()))
            for key, options in (("spread_anchor_only", {"post_process": False}),
                                 ("spread_independent", {"post_process": False,
                                                         "use_anchor": False})):
                loose = run(set_images, form, text, instruction, swatch_name, **options)
                stacked = torch.stack([torch.from_numpy(garment_lab(out, mask).mean(0))
                                       for (_, mask), out in zip(set_images, loose.images)])
                row[key].append(float(ciede2000(stacked[:, None], stacked[None]).max()))
        rows.append(row)
    print_table(rows, list(sets))
    return rows


def print_table(rows, set_names):
    print(f"\nsets: {'; '.join(set_names)} (3 shots each: original, crop 0.7x, crop 1.2x "
          "dimmer+warmer)")
    print("| form | given | target | L* | mean ΔE00 (max) | spread, defaults (max) | "
          "spread, anchor w/o post | spread, independent | SSIM structure (min) | "
          "L* std out/in (min-max) | outside px changed |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['form']} | {row['given']} | {row['target']['hex']} | "
              f"{row['target']['lab'][0]:.1f} | {np.mean(row['delta_e']):.2f} "
              f"({max(row['delta_e']):.2f}) | {np.mean(row['spread']):.2f} "
              f"({max(row['spread']):.2f}) | {max(row['spread_anchor_only']):.2f} | "
              f"{max(row['spread_independent']):.2f} | {np.mean(row['ssim']):.3f} "
              f"({min(row['ssim']):.3f}) | {min(row['shading']):.2f}-{max(row['shading']):.2f} | "
              f"{row['outside_changed']} |")


def test_every_form_of_target_is_covered(figures):
    assert {row["form"] for row in figures} == {"hex", "name", "swatch", "instruction"}
    assert sum(25 <= row["target"]["lab"][0] <= 85 for row in figures) >= 6


def test_garment_mean_reaches_targets_of_lightness_25_to_85(figures):
    for row in figures:
        if 25 <= row["target"]["lab"][0] <= 85:
            assert max(row["delta_e"]) <= 2.0, row


def test_the_set_stays_within_one_delta_e_with_the_anchor(figures):
    for row in figures:
        assert max(row["spread"]) <= 1.0, row


def test_folds_and_texture_keep_their_structure(figures):
    # Near black and white the folds live in a shoulder (the shadows of a near-black garment
    # crushed, its lit folds spread), so the local structure SSIM falls there; the table
    # reports it and the next test asserts the folds' spread.
    for row in figures:
        if 25 <= row["target"]["lab"][0] <= 85:
            assert min(row["ssim"]) >= 0.95, row


def test_the_folds_keep_0_7_to_1_4_of_their_lightness_spread(figures):
    for row in figures:
        assert 0.7 <= min(row["shading"]) and max(row["shading"]) <= 1.4, row


def test_no_pixel_outside_the_mask_changes(figures):
    assert all(row["outside_changed"] == 0 for row in figures)
