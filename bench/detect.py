"""Benchmark (a measurement, not a test) of the detectors on the pack's real photos: `make bench`.

    .venv/bin/python bench/detect.py [--repeats 5] [--detectors face_haar,hands_mediapipe]
    .venv/bin/python bench/detect.py --truth-only

First the accuracy against ground truth: faces and hands marked by eye on the photos of people in
assets/photos/people/boxes.json (sources in assets/photos/CREDITS.md). Detections run with
default settings (confidence 0.3) are matched to marked boxes greedily, most confident first, at
box intersection-over-union >= MATCH_IOU (loose, because detectors frame a face differently: Haar
includes the forehead); found / false / missed per detector, overall and on `group x4`, the
16-person montage made by tiling group_montage4.jpg 2x2 (3072x1024, synthetic: small faces in a
wide image). The face-mesh detectors are scored on faces (the mesh's face-oval box).

For every offline detector (mediapipe, Haar) and every photo in assets/photos, times
`pipelines.detect.detect(image, detector)` with default settings (confidence 0.3), the whole call
as the node makes it (the mediapipe solution object is built and closed on each call), and prints
the median and best of the timed runs after one warm-up, with the boxes found. Then times SAM
refinement of one face box with a tiny random-weight SAM (tests/support/tiny_sam.py; a real
ViT-B takes about 30-43 s per image on 2 CPU cores, offline-models.md section 4). Prints a
Markdown table. Detectors whose package is missing are reported as such.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from _common import import_pack  # noqa: E402

PACK_ROOT = import_pack()
sys.path.insert(0, str(PACK_ROOT / "tests" / "support"))

from region_repair.pipelines.detection import detect as det  # noqa: E402
from region_repair.pipelines.detection import sam as sam_ops  # noqa: E402

MATCH_IOU = 0.3
PEOPLE = PACK_ROOT / "assets" / "photos" / "people"
TRUTH_DETECTORS = {"face": ["face_short_mediapipe", "face_full_mediapipe", "face_mesh_mediapipe",
                            "face_haar"],
                   "hand": ["hands_mediapipe"]}
PHOTOS = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "hand_call.jpg",
          "hand_four.jpg"]


def load(name: str, folder: Path = PACK_ROOT / "assets" / "photos") -> torch.Tensor:
    rgb = np.asarray(Image.open(folder / name).convert("RGB"))
    return torch.from_numpy(rgb.astype(np.float32) / 255)[None]


def truth() -> dict[str, tuple[torch.Tensor, dict[str, list]]]:
    """Photo name -> (image, {"face": boxes, "hand": boxes or None}), plus the group x4 montage."""
    marked = json.loads((PEOPLE / "boxes.json").read_text())["photos"]
    out = {name: (load(name, PEOPLE), {"face": boxes["faces"], "hand": boxes["hands"]})
           for name, boxes in marked.items()}
    montage, boxes = out["group_montage4.jpg"]
    height, width = montage.shape[1:3]
    shifted = {kind: [[x0 + dx, y0 + dy, x1 + dx, y1 + dy] for x0, y0, x1, y1 in boxes[kind]
                      for dy in (0, height) for dx in (0, width)] for kind in boxes}
    out["group x4"] = (montage.repeat(1, 2, 2, 1), shifted)
    return out


def score(found: det.Detections, marked: list[list[int]]) -> tuple[int, int, int]:
    """(found, false, missed): detections matched greedily, most confident first."""
    unmatched = list(marked)
    hits = 0
    for item in sorted(found.items, key=lambda d: -d.confidence):
        best = max(unmatched, key=lambda box: det._iou(item.box, box), default=None)
        if best is not None and det._iou(item.box, best) >= MATCH_IOU:
            unmatched.remove(best)
            hits += 1
    return hits, len(found.items) - hits, len(unmatched)


def accuracy() -> None:
    photos = truth()
    real = [boxes for name, (_, boxes) in photos.items() if name != "group x4"]
    faces = sum(len(boxes["face"]) for boxes in real)
    hands = sum(len(boxes["hand"] or []) for boxes in real)
    print(f"accuracy on {len(real)} photos of people ({faces} faces, {hands} hands marked by "
          f"eye) and on group x4 (16 faces, 16 hands); match at IoU >= {MATCH_IOU}, default "
          "settings")
    print("| detector | found / false / missed (photos) | recall | false share | group x4 | "
          "ms per photo (median) |")
    print("|---|---|---|---|---|---|")
    for kind, detectors in TRUTH_DETECTORS.items():
        for detector in detectors:
            total = np.zeros(3, int)
            group = (0, 0, 0)
            times = []
            for name, (image, boxes) in photos.items():
                if boxes[kind] is None:
                    continue
                start = time.perf_counter()
                found = det.detect(image, detector)
                times.append(time.perf_counter() - start)
                result = score(found, boxes[kind])
                if name == "group x4":
                    group = result
                else:
                    total += result
            hit, false, missed = (int(v) for v in total)
            print(f"| {detector} | {hit} / {false} / {missed} | {hit / (hit + missed):.2f} | "
                  f"{false / max(hit + false, 1):.2f} | {group[0]} / {group[1]} / {group[2]} | "
                  f"{statistics.median(times) * 1000:.0f} |")


def timed(function, repeats: int):
    function()  # warm-up: imports, model loading, caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times), min(times)


def boxes(found: det.Detections) -> str:
    if not found.items:
        return "none"
    return "; ".join(f"{d.label} {d.confidence:.2f} ({d.box[0]},{d.box[1]},"
                     f"{d.box[2] - d.box[0]},{d.box[3] - d.box[1]})" for d in found.items)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (default 5)")
    parser.add_argument("--detectors", default="",
                        help="comma-separated detector names (default: every offline one)")
    parser.add_argument("--truth-only", action="store_true",
                        help="only the accuracy against the marked photos of people")
    options = parser.parse_args(argv)
    accuracy()
    if options.truth_only:
        return 0
    detectors = ([det.Detector(name) for name in options.detectors.split(",")]
                 if options.detectors else
                 [d for d in det.Detector if d not in det.YOLO_DETECTORS])
    images = {name: load(name) for name in PHOTOS}
    print(f"detector benchmark: torch {torch.__version__}, {options.repeats} timed runs after 1 "
          "warm-up, default settings; boxes are (x, y, w, h) in pixels")
    print("| detector | photo | median ms | best ms | found (label confidence box) |")
    print("|---|---|---|---|---|")
    for detector in detectors:
        for name, image in images.items():
            try:
                found, median, best = timed(lambda: det.detect(image, detector), options.repeats)
            except det.MissingDependencyError as error:
                print(f"| {detector.value} | (all) | - | - | unavailable: "
                      f"{str(error).splitlines()[0]} |")
                break
            print(f"| {detector.value} | {name} {image.shape[2]}x{image.shape[1]} | "
                  f"{median * 1000:.1f} | {best * 1000:.1f} | {boxes(found)} |")

    import tiny_sam

    with tempfile.TemporaryDirectory() as folder:
        path = tiny_sam.write_tiny_sam(Path(folder) / "tiny_sam.pth")
        start = time.perf_counter()
        sam = sam_ops.load_sam(path)
        load_s = time.perf_counter() - start
        image = images["astronaut.png"]
        face = det.Detections("bench", 1, 512, 512, [
            det.Detection(0, (177, 82, 272, 177), 0.9, "face", torch.zeros(512, 512))])
        _, median, best = timed(lambda: sam_ops.refine(sam, image, face), options.repeats)
    print(f"\ntiny SAM (0.17 M parameters, img_size 256): load {load_s * 1000:.0f} ms; refine one "
          f"box on astronaut 512x512 (set_image + predict): median {median * 1000:.1f} ms, "
          f"best {best * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
