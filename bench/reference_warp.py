"""Benchmark (a measurement, not a test) of the embedded engines: `make bench`.

    .venv/bin/python bench/reference_warp.py [--sizes 512,2048] [--repeats 3] [--threads 0]

Per square image size, on the astronaut photo scaled to that size: a reference made with a known
homography (4 degrees, 8 % zoom, a perspective tilt, a shift) and another exposure, 8-bit; the
mission patch (60 x 60 px at 512², scaled with the image: about 1.4 % of it) corrupted with noise.
It times, after one untimed warm-up run:

- align 1: pipelines.reference_warp.align_references with the one matching reference;
- fill 1: reference_fill (align, warp, colour match, paste) with it;
- align 10: align_references with ten references, the matching one among nine other photos
  (skimage's, scaled to the same size), as many as the engine accepts;
- telea: pipelines.classical_fill.classical_fill (Telea, radius 3) of the same mask;
- harmonize: pipelines.harmonize.match_low_frequency alone, ring 8, on the full frame.

and prints medians in seconds, and the PSNR inside the mask against the uncorrupted photo of the
reference fill and of the Telea fill. Everything runs on the CPU (OpenCV; the colour match is
torch on the CPU).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import cv2
import numpy as np
import torch
from skimage import data

from _common import add_threads_option, import_pack, use_threads  # noqa: E402

import_pack()

from region_repair.pipelines.classical_fill import classical_fill  # noqa: E402
from region_repair.pipelines.harmonize import match_low_frequency  # noqa: E402
from region_repair.pipelines.reference_warp import align_references, reference_fill  # noqa: E402

DISTRACTORS = ["coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field",
               "retina", "cat", "coffee", "chelsea"]


def to_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def scene(size: int) -> dict:
    original = cv2.resize(data.astronaut().astype(np.float32) / 255, (size, size),
                          interpolation=cv2.INTER_CUBIC).clip(0, 1)
    half = size / 2
    centre = np.array([[1, 0, -half], [0, 1, -half], [0, 0, 1]])
    similarity = np.vstack([cv2.getRotationMatrix2D((0, 0), 4.0, 1.08), [0, 0, 1]])
    tilt = np.array([[1, 0, 0], [0, 1, 0], [3e-5 * 512 / size, -2e-5 * 512 / size, 1]])
    shift = np.array([[1, 0, 14 * size / 512], [0, 1, -9 * size / 512], [0, 0, 1]])
    homography = shift @ np.linalg.inv(centre) @ similarity @ tilt @ centre
    reference = cv2.warpPerspective(original, homography, (size + size // 12, size + size // 16),
                                    flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    reference = np.round(np.clip(reference * 0.85 + 0.06, 0, 1) * 255) / 255
    x, y, side = (round(value * size / 512) for value in (140, 355, 60))
    mask = np.zeros((size, size), np.float32)
    mask[y:y + side, x:x + side] = 1
    corrupt = original.copy()
    corrupt[mask > 0] = np.random.default_rng(0).random((side * side, 3))
    distractors = [to_tensor(cv2.resize(getattr(data, name)(), (size, size)) / 255)
                   for name in DISTRACTORS]
    return {"original": to_tensor(original), "corrupt": to_tensor(corrupt),
            "mask": to_tensor(mask), "reference": to_tensor(reference),
            "distractors": distractors, "area": side * side / size ** 2}


def psnr_inside(result: torch.Tensor, original: torch.Tensor, mask: torch.Tensor) -> float:
    inside = mask > 0
    return 10 * math.log10(1 / ((result[inside] - original[inside]) ** 2).mean().item())


def timed(function, /, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def run(s: dict) -> dict:
    image, mask, reference = s["corrupt"], s["mask"], s["reference"]
    (one, _), t_align = timed(align_references, image, mask, [reference])
    (filled, _, _), t_fill = timed(reference_fill, image, mask, [reference])
    references = s["distractors"][:4] + [reference] + s["distractors"][4:]
    (ten, _), t_ten = timed(align_references, image, mask, references)
    telea, t_telea = timed(classical_fill, image[None], mask[None], "telea")
    _, t_harmonize = timed(match_low_frequency, (image * 0.9)[None], image[None], mask[None], 8)
    assert one is not None and ten is not None and ten.reference_index == 4
    outside = mask == 0
    assert torch.equal(filled[outside], image[outside])
    return {"align 1": t_align, "fill 1": t_fill, "align 10": t_ten, "telea": t_telea,
            "harmonize": t_harmonize, "_filled": filled, "_telea": telea[0], "_alignment": one}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="512,2048",
                        help="square image sides, comma separated (default 512,2048)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per size (default 3)")
    add_threads_option(parser)
    options = parser.parse_args(argv)
    use_threads(options.threads)
    print(f"embedded engines benchmark: OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads), "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), CPU, "
          f"{options.repeats} timed runs after 1 warm-up; times are medians in seconds")
    keys = ["align 1", "fill 1", "align 10", "telea", "harmonize"]
    header = (f"{'size':>11} {'mask':>6} " + " ".join(f"{key:>9}" for key in keys)
              + f" {'PSNR ref':>9} {'PSNR telea':>10}  alignment")
    print(header)
    print("-" * len(header))
    for size in (int(value) for value in options.sizes.split(",")):
        s = scene(size)
        warm = run(s)
        runs = [run(s) for _ in range(options.repeats)]
        alignment = warm["_alignment"]
        print(f"{size:>5}x{size:<5} {s['area']:>5.1%} "
              + " ".join(f"{statistics.median(r[key] for r in runs):>9.3f}" for key in keys)
              + f" {psnr_inside(warm['_filled'], s['original'], s['mask']):>9.2f}"
              f" {psnr_inside(warm['_telea'], s['original'], s['mask']):>10.2f}"
              f"  {alignment.inliers} inliers, {alignment.reprojection_error:.2f} px, "
              f"scale {alignment.scale:.3f}, ECC {'yes' if alignment.refined else 'no'}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
