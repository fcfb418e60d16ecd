"""Benchmark (a measurement, not a test) of the garment recolour: `make bench`.

    .venv/bin/python bench/recolor.py [--device cpu] [--images 10] [--size 2048] [--repeats 3]
    .venv/bin/python bench/recolor.py --shading-only [--sheet docs/images/recolor_shading.jpg]
    .venv/bin/python bench/recolor.py --masks-only

`--masks-only`: the automatic garment mask against twelve garments marked by eye (garments.json
and garments_heldout.json), IoU with the garment's label and with an empty label, and whether a
note flags the mask as uncertain.

First the shading: six real garments (assets/photos/people/garments.json: polygons marked by eye
on public photos, dark, mid and light), each as a set of three shots (tests/support/shots.py),
and the demo set, recoloured with the node's defaults to each of SHADING_TARGETS. Per set and
target, on the 8-bit output: the std of L* inside the mask, output / input (the shading kept: 1
keeps the folds as they were), the worst ΔE2000 from a shot's garment mean to the target and the
set's spread. `--sheet` writes a contact sheet of the first shots (input row, then one row per
target).

Times the embedded engine (pipelines.recolor.garments.recolor_garments with its defaults: anchor and
post-process on, one variation) on a set of real photos (scikit-image's astronaut, coffee and
motorcycle, in turn) scaled to a long side of --size, with colour-key garment masks given, as a
node with connected masks runs. Prints the median seconds for the whole set and per image. Then
times the automatic garment mask (mediapipe + GrabCut) per image, once, when mediapipe is
installed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from _common import add_threads_option, import_pack, use_threads  # noqa: E402

PACK_ROOT = import_pack()
sys.path.insert(0, str(PACK_ROOT / "tests" / "support"))

from region_repair.pipelines.recolor import garments as recolor  # noqa: E402
from region_repair.pipelines.core.color import ciede2000, srgb_to_lab  # noqa: E402


SHADING_TARGETS = ["#228B22", "#1E3A8A", "#B03A2E", "#F5F5DC", "#111111"]
PEOPLE = PACK_ROOT / "assets" / "photos" / "people"


def marked_garments(*files: str) -> dict[str, dict]:
    """Garment name -> its entry (photo, label, polygon) from these files in PEOPLE."""
    return {name: garment for file in files
            for name, garment in json.loads((PEOPLE / file).read_text())["garments"].items()}


def garments(*files: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Garment name -> (image [H, W, 3], its polygon as a mask [H, W]), from `files`
    (garments.json, the shading set, when none are named)."""
    import cv2
    from PIL import Image

    marked = marked_garments(*(files or ("garments.json",)))
    out = {}
    for name, garment in marked.items():
        rgb = np.asarray(Image.open(PEOPLE / garment["photo"]).convert("RGB"))
        mask = np.zeros(rgb.shape[:2], np.uint8)
        cv2.fillPoly(mask, [np.array(garment["polygon"], np.int32)], 1)
        out[name] = (torch.from_numpy(rgb.copy()).float() / 255, torch.from_numpy(mask).float())
    return out


def as_png(image: torch.Tensor) -> torch.Tensor:
    return (image * 255).round() / 255


def mask_iou() -> None:
    """The automatic garment mask against the marked polygons (garments.json's six and
    garments_heldout.json's): IoU with the garment's label and with an empty label (the band
    detected), and the notes that say the mask is uncertain."""
    from region_repair.pipelines.recolor import garment_mask

    files = ("garments.json", "garments_heldout.json")
    marked = marked_garments(*files)
    print("automatic garment mask vs the marked polygons (IoU; uncertain: the notes' flags)")
    print("| garment | label | IoU with the label | IoU, empty label | uncertain (label / empty) |")
    print("|---|---|---|---|---|")
    scores = {"label": [], "empty": []}
    for name, (image, polygon) in garments(*files).items():
        label = marked[name]["label"]
        row, flags = [], []
        for key, region in (("label", garment_mask.region_for_label(label)), ("empty", None)):
            (found,), notes = garment_mask.garment_masks([image], region)
            inter = float((found.bool() & polygon.bool()).sum())
            union = float((found.bool() | polygon.bool()).sum())
            scores[key].append(inter / union)
            row.append(f"{inter / union:.2f}")
            flags.append("yes" if any(garment_mask.UNCERTAIN in note for note in notes)
                         else "no")
        print(f"| {name} | {label} | {row[0]} | {row[1]} | {' / '.join(flags)} |")
    print(f"| mean | | {np.mean(scores['label']):.2f} | {np.mean(scores['empty']):.2f} | |")
    print(f"| lowest | | {min(scores['label']):.2f} | {min(scores['empty']):.2f} | |")


def shading_sets() -> dict[str, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Each marked garment as a set of three shots (tests/support/shots.py), and the demo set
    (assets/photos/garment_set, the automatic mask for "jacket", when mediapipe is installed)."""
    from shots import shots

    sets = {name: shots((image.numpy() * 255).round().astype(np.uint8), mask.numpy())
            for name, (image, mask) in garments().items()}
    try:
        from PIL import Image

        from region_repair.pipelines.recolor import garment_mask

        folder = PACK_ROOT / "assets" / "photos" / "garment_set"
        demo = [torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).copy()).float()
                / 255 for path in sorted(folder.glob("*.png"))]
        masks, _ = garment_mask.garment_masks(demo, garment_mask.region_for_label("jacket"))
        sets["demo set: astronaut suit (auto mask)"] = list(zip(demo, masks))
    except ImportError as error:
        print(f"demo set skipped: {error}")
    return sets


def shading(sheet: Path | None) -> None:
    sets = shading_sets()
    print("shading: per set (three shots of one garment; the node's defaults, anchor and "
          "post-process on) and target: the std of L* inside the garment, output / input, over "
          "the shots (min-max); the worst ΔE2000 from a shot's garment mean to the target; the "
          "set's spread (largest ΔE2000 between two shots' means). 8-bit output.")
    print("| garment | input L* mean (std) | "
          + " | ".join(f"{target}: ratio, ΔE, spread" for target in SHADING_TARGETS) + " |")
    print("|---|---|" + "---|" * len(SHADING_TARGETS))
    ratios, deltas, spreads = [], [], []
    firsts = {target: [] for target in SHADING_TARGETS}
    for name, shots_of in sets.items():
        images = [image for image, _ in shots_of]
        masks = [mask for _, mask in shots_of]
        before = [srgb_to_lab(image[None])[0][mask >= 0.5] for image, mask in zip(images, masks)]
        cells = []
        for target in SHADING_TARGETS:
            result = recolor.recolor_garments(images, masks, None, target, None,
                                              recolor.RecolorSettings())
            firsts[target].append(result.images[0])
            goal = torch.tensor(result.report["target"]["lab"], dtype=torch.float64)
            means, shot_ratios, shot_deltas = [], [], []
            for out, mask, lab_in in zip(result.images, masks, before):
                lab_out = srgb_to_lab(as_png(out)[None])[0][mask >= 0.5]
                means.append(lab_out.mean(0).double())
                shot_ratios.append(float(lab_out[:, 0].std() / lab_in[:, 0].std()))
                shot_deltas.append(float(ciede2000(means[-1], goal)))
            stacked = torch.stack(means)
            spread = float(ciede2000(stacked[:, None], stacked[None]).max())
            ratios += shot_ratios
            deltas += shot_deltas
            spreads.append(spread)
            cells.append(f"{min(shot_ratios):.2f}-{max(shot_ratios):.2f}, "
                         f"{max(shot_deltas):.2f}, {spread:.2f}")
        source = before[0][:, 0]
        print(f"| {name} | {float(source.mean()):.1f} ({float(source.std()):.1f}) | "
              + " | ".join(cells) + " |")
    print(f"all: std ratio {min(ratios):.2f}..{max(ratios):.2f}; ΔE2000 <= 1 for "
          f"{sum(d <= 1 for d in deltas)} of {len(deltas)} shots (worst {max(deltas):.2f}); "
          f"spread <= 0.5 for {sum(v <= 0.5 for v in spreads)} of {len(spreads)} sets (worst "
          f"{max(spreads):.2f})")
    if sheet is not None:
        contact_sheet([shots_of[0][0] for shots_of in sets.values()],
                      [shots_of[0][1] for shots_of in sets.values()],
                      [firsts[target] for target in SHADING_TARGETS], sheet)


def contact_sheet(images, masks, outputs, path: Path, height: int = 220) -> None:
    """Crops around each garment, scaled to one height: inputs, then one row per target."""
    from PIL import Image

    crops = []
    for image, mask in zip(images, masks):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        pad = 12
        crops.append((max(int(ys.min()) - pad, 0), int(ys.max()) + pad,
                      max(int(xs.min()) - pad, 0), int(xs.max()) + pad))
    rows = []
    for row in [images, *outputs]:
        tiles = []
        for image, (y0, y1, x0, x1) in zip(row, crops):
            tile = Image.fromarray((image[y0:y1, x0:x1].numpy() * 255).round().astype(np.uint8))
            tiles.append(tile.resize((round(tile.width * height / tile.height), height),
                                     Image.LANCZOS))
        rows.append(tiles)
    width = sum(tile.width for tile in rows[0]) + 4 * (len(rows[0]) - 1)
    canvas = Image.new("RGB", (width, len(rows) * (height + 4) - 4), "white")
    for r, tiles in enumerate(rows):
        x = 0
        for tile in tiles:
            canvas.paste(tile, (x, r * (height + 4)))
            x += tile.width + 4
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    print(f"contact sheet: {path} (rows: input, " + ", ".join(SHADING_TARGETS) + ")")


def photos() -> list[torch.Tensor]:
    import skimage.data
    from PIL import Image

    motorcycle = next(Path(skimage.data.__file__).parent.glob("motorcycle_left.png"))
    arrays = [skimage.data.astronaut(), skimage.data.coffee(),
              np.asarray(Image.open(motorcycle).convert("RGB"))]
    return [torch.from_numpy(array.copy()).float() / 255 for array in arrays]


def color_key(image: torch.Tensor) -> torch.Tensor:
    """Orange-to-red, saturated pixels: the suit, the saucer, the motorcycle's tank."""
    lab = srgb_to_lab(image[None])[0]
    hue = torch.rad2deg(torch.atan2(lab[..., 2], lab[..., 1]))
    return ((hue > 0) & (hue < 60) & (torch.hypot(lab[..., 1], lab[..., 2]) > 35)).float()


def scaled(image: torch.Tensor, size: int) -> torch.Tensor:
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new = (round(height * scale), round(width * scale))
    return F.interpolate(image.movedim(-1, 0)[None], size=new, mode="bicubic",
                         align_corners=False)[0].movedim(0, -1).clamp(0, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shading-only", action="store_true",
                        help="only the shading figures on the real garments")
    parser.add_argument("--masks-only", action="store_true",
                        help="only the automatic garment mask against the marked polygons")
    parser.add_argument("--sheet", type=Path, default=None,
                        help="write the shading contact sheet to this image (PNG or JPEG, "
                        "by its extension)")
    add_threads_option(parser)
    options = parser.parse_args(argv)
    use_threads(options.threads)
    if not options.masks_only:
        shading(options.sheet)
    if not options.shading_only:
        mask_iou()
    if options.shading_only or options.masks_only:
        return 0
    device = torch.device(options.device)
    sources = photos()
    images = [scaled(sources[i % len(sources)], options.size).to(device)
              for i in range(options.images)]
    masks = [color_key(image) for image in images]
    coverage = float(np.mean([float(mask.mean()) for mask in masks]))
    settings = recolor.RecolorSettings()
    print(f"recolour benchmark: device {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {options.images} images at a long side of "
          f"{options.size} px (garment {100 * coverage:.0f} % of the pixels on average), masks "
          f"given, target 'forest green', anchor + post_process on")

    def once() -> tuple[float, recolor.RecolorResult]:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        result = recolor.recolor_garments(images, masks, None, "forest green", None, settings)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start, result

    _, result = once()  # warm-up
    for image, mask, out in zip(images, masks, result.images):
        assert torch.equal(out[mask == 0], image[mask == 0]), "a pixel outside the mask changed"
    times = [once()[0] for _ in range(options.repeats)]
    worst = max(record["delta_e_target"] for record in result.report["outputs"])
    print(f"set of {options.images}: median {statistics.median(times):.2f} s, best "
          f"{min(times):.2f} s ({statistics.median(times) / options.images:.3f} s per image); "
          f"worst garment ΔE00 to the target {worst:.3f}, set spread "
          f"{result.report['spread_delta_e'][0]:.3f}")

    try:
        from region_repair.pipelines.recolor import garment_mask

        on_model = [image.cpu() for image in images[::len(sources)]][:3]  # the astronauts
        start = time.perf_counter()
        garment_mask.garment_masks(on_model)
        elapsed = (time.perf_counter() - start) / len(on_model)
        print(f"automatic garment mask: {elapsed:.2f} s per on-model image at {options.size} px "
              f"(detection at {garment_mask.WORK_SIZE} px; {len(on_model)} images, building the "
              "mediapipe solutions included)")
    except ImportError as error:
        print(f"automatic garment mask skipped: {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
