"""Benchmark (a measurement, not a test) of the detectors on the pack's real photos: `make bench`.

    .venv/bin/python bench/detect.py [--repeats 5] [--detectors face_haar,hands_mediapipe]

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

from region_repair.pipelines import detect as det  # noqa: E402
from region_repair.pipelines import sam as sam_ops  # noqa: E402

PHOTOS = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "hand_call.jpg",
          "hand_four.jpg"]


def load(name: str) -> torch.Tensor:
    rgb = np.asarray(Image.open(PACK_ROOT / "assets" / "photos" / name).convert("RGB"))
    return torch.from_numpy(rgb.astype(np.float32) / 255)[None]


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
    options = parser.parse_args(argv)
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
