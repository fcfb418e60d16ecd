"""Benchmark (a measurement, not a test) of the embedded engines: `make bench`.

    .venv/bin/python bench/reference_warp.py [--sizes 512,2048] [--repeats 3] [--threads 0]
    .venv/bin/python bench/reference_warp.py --tight [--crops 3,6]

Per square image size, on the astronaut photo scaled to that size: a reference made with a known
homography (4 degrees, 8 % zoom, a perspective tilt, a shift) and another exposure, 8-bit; the
mission patch (60 x 60 px at 512², scaled with the image: about 1.4 % of it) corrupted with noise.
It times, after one untimed warm-up run:

- align 1: pipelines.repair.reference_warp.align_references with the one matching reference;
- fill 1: reference_fill (align, warp, colour match, paste) with it;
- align 10: align_references with ten references, the matching one among nine other photos
  (skimage's, scaled to the same size), as many as the engine accepts;
- telea: pipelines.classical_fill.classical_fill (Telea, radius 3) of the same mask;
- harmonize: pipelines.repair.harmonize.match_low_frequency alone, ring 8, on the full frame.

and prints medians in seconds, and the PSNR inside the mask against the uncorrupted photo of the
reference fill and of the Telea fill. Everything runs on the CPU (OpenCV; the colour match is
torch on the CPU).

`--tight` measures instead the ten held-out-style cases of tests/support/tight_references.py:
a logo-like detail in a plain or textured photo area, garbled (pixelation with a colour
rotation, blur, a wrong patch), and a reference that shows only 3x or 6x the detail's box,
rotated 3-15 degrees, scaled 0.6-2x, another gain, JPEG 70. Per case and crop it prints whether
features alone align it (`intensity=False`, the engine before the intensity fallback) and
whether the engine aligns it now (and how), the error of the recovered homography at the detail
against the known one, and the PSNR inside the mask against the clean truth of: the repair
now, the repair before (features, else Telea as the node did), Telea, and the garbled input
kept as it is; then how many wrong references (other cases' shots) the engine accepts.
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

from _common import PACK_ROOT, add_threads_option, import_pack, use_threads  # noqa: E402

import_pack()
sys.path.insert(0, str(PACK_ROOT / "tests" / "support"))

from tight_references import CASES, homography_error, make_case  # noqa: E402

from region_repair.pipelines.repair.classical_fill import classical_fill  # noqa: E402
from region_repair.pipelines.repair.harmonize import match_low_frequency  # noqa: E402
from region_repair.pipelines.repair.reference_warp import align_references, reference_fill  # noqa: E402

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


def tight(crops: list[float]) -> None:
    """The tight-reference table (see the module docstring)."""
    print(f"tight references: {len(CASES)} cases per crop; error = the largest distance (px) "
          "between the recovered and the true homography at the detail's corners and centre; "
          "PSNR inside the mask vs the clean truth")
    header = (f"{'crop':>4} {'case':<24} {'features':>9} {'now':>10} {'error':>8} {'s':>5} "
              f"{'PSNR now':>9} {'before':>7} {'telea':>6} {'kept':>6}")
    print(header)
    print("-" * len(header))
    for crop in crops:
        totals = {"before": 0, "now": 0, "1px": 0, "3px": 0}
        psnr = {key: [] for key in ("now", "before", "telea", "kept")}
        for index in range(len(CASES)):
            case = make_case(index, crop)
            start = time.perf_counter()
            filled, alignment, _ = reference_fill(case.garbled, case.mask, [case.reference])
            seconds = time.perf_counter() - start
            before, features, _ = reference_fill(case.garbled, case.mask, [case.reference],
                                                 intensity=False)
            telea = classical_fill(case.garbled[None], case.mask[None], "telea")[0]
            error = (homography_error(case, alignment.homography) if alignment is not None
                     else math.inf)
            totals["before"] += features is not None
            totals["now"] += alignment is not None
            totals["1px"] += error < 1
            totals["3px"] += error < 3
            row = {"now": filled, "before": before, "telea": telea, "kept": case.garbled}
            for key, image in row.items():
                psnr[key].append(psnr_inside(image, case.truth, case.mask))
            print(f"{crop:>4g} {case.name:<24} {'yes' if features else 'no':>9} "
                  f"{alignment.method if alignment else 'no':>10} {error:>8.3f} {seconds:>5.1f} "
                  + " ".join(f"{psnr[key][-1]:>{width}.2f}" for key, width in
                             (("now", 9), ("before", 7), ("telea", 6), ("kept", 6))),
                  flush=True)
        count = len(CASES)
        print(f"{crop:>4g} aligned: features alone {totals['before']}/{count}, now "
              f"{totals['now']}/{count} (within 1 px {totals['1px']}/{count}, within 3 px "
              f"{totals['3px']}/{count}); mean PSNR "
              + ", ".join(f"{key} {statistics.mean(values):.2f}" for key, values in psnr.items()),
              flush=True)
    # False alignments: each case with the 3x references of three other cases.
    cases = [make_case(index, 3) for index in range(len(CASES))]
    wrong = [align_references(case.garbled, case.mask,
                              [cases[(index + offset) % len(cases)].reference])[0]
             for index, case in enumerate(cases) for offset in (1, 4, 7)]
    print(f"wrong references accepted: {sum(a is not None for a in wrong)}/{len(wrong)} "
          "(each case with three other cases' 3x references)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="512,2048",
                        help="square image sides, comma separated (default 512,2048)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per size (default 3)")
    parser.add_argument("--tight", action="store_true",
                        help="measure the tight-reference cases instead of the speed")
    parser.add_argument("--crops", default="3,6",
                        help="with --tight: reference crops, times the detail's box")
    add_threads_option(parser)
    options = parser.parse_args(argv)
    use_threads(options.threads)
    if options.tight:
        tight([float(value) for value in options.crops.split(",")])
        return 0
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
