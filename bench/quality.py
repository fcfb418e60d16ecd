"""Benchmark (a measurement, not a test) of QualityCheck: `make bench`.

    .venv/bin/python bench/quality.py [--device cpu] [--sizes 1024,2048] [--candidates 4]
                                      [--repeats 5] [--threads 0]

Per square image size, on a real photo (assets/photos/coffee.png, resized with cubic
interpolation) with a centred box mask a quarter of the image wide and high, it times
pipelines.review.quality.quality_check over `--candidates` candidates in three scenarios, in one
run:

- exact:    the pack's own output, the box regenerated and blended with blend_masked (every pixel
            outside the mask identical, so the geometry fit is skipped);
- vendor:   the same, then the whole frame moved by 2 px, rescaled by 1 %, JPEG-encoded (q 90)
            or left alone in turn: every candidate goes through the ORB + ECC fit;
- vendor+1 reference: the vendor set with one reference shot (the photo scaled by 0.8).

Then, on the ground-truth removal cases of tests/support/removal_cases.py (objects pasted onto
clean photos and removed with the mask on the object, specks on plain backgrounds), it prints
per repair the truth (ΔE2000 to the clean photo on the 2 px just inside the edge), the residue
and seam scores and the reasons, with Guided Blend Inpaint's info, and how many repairs with a
visible residue and how many clean ones `residue` flagged, with the info and without.

It prints the median and best wall seconds, seconds per candidate, the ratio to `exact`, the
median CPU seconds of the process (all threads; steadier than wall time on a shared machine),
and what the vendor scenario measured (shift and scale) against what was applied.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import cv2
import numpy as np
import torch

from _common import add_threads_option, import_pack, use_threads  # noqa: E402

PACK_ROOT = import_pack()

from region_repair.pipelines.review.quality import quality_check  # noqa: E402
from region_repair.pipelines.geometry.regions import blend_masked  # noqa: E402

sys.path.insert(0, str(PACK_ROOT / "tests" / "support"))
import removal_cases  # noqa: E402

PHOTO = PACK_ROOT / "assets" / "photos" / "coffee.png"


def photo(size: int) -> np.ndarray:
    image = cv2.cvtColor(cv2.imread(str(PHOTO)), cv2.COLOR_BGR2RGB)
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255


def warp(image: np.ndarray, scale: float = 1.0, dx: float = 0.0) -> np.ndarray:
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), 0, scale)
    matrix[0, 2] += dx
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)


def jpeg(image: np.ndarray) -> np.ndarray:
    _, data = cv2.imencode(".jpg", (image * 255).round().astype(np.uint8),
                           [cv2.IMWRITE_JPEG_QUALITY, 90])
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED).astype(np.float32) / 255


def scene(size: int, count: int, device: torch.device):
    array = photo(size)
    original = torch.from_numpy(array)[None].to(device)
    mask = torch.zeros(1, size, size, device=device)
    mask[:, 3 * size // 8:5 * size // 8, 3 * size // 8:5 * size // 8] = 1
    smooth = torch.from_numpy(cv2.GaussianBlur(array[:, ::-1], (0, 0), 2))[None].to(device)
    exact = blend_masked(original, smooth.repeat(count, 1, 1, 1), mask, 4)
    perturb = [("moved 2 px", lambda a: warp(a, dx=2.0), (2.0, 1.0)),
               ("scaled 1 %", lambda a: warp(a, 1.01), (0.0, 1.01)),
               ("JPEG q90", jpeg, (0.0, 1.0)), ("unchanged", lambda a: a, (0.0, 1.0))]
    applied = [perturb[j % len(perturb)] for j in range(count)]
    vendor = torch.stack([torch.from_numpy(f(exact[j].cpu().numpy()))
                          for j, (_, f, _) in enumerate(applied)]).to(device)
    reference = torch.from_numpy(cv2.resize(array, (size * 4 // 5, size * 4 // 5),
                                            interpolation=cv2.INTER_AREA))[None].to(device)
    return original, mask, exact, vendor, reference, applied


def timed(device: torch.device, *args, **kwargs):
    """(result, wall seconds, CPU seconds of this process, all threads)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start, cpu = time.perf_counter(), time.process_time()
    result = quality_check(*args, **kwargs)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - start, time.process_time() - cpu


def residue_table() -> None:
    """Quality Check against the truth on the removal cases (see the module docstring)."""
    info = {"schema": "region_repair.info/1", "node": "GuidedBlendInpaint", "image_index": 0,
            "seed": None, "engine": "classical_fill", "mode": "guided-blend", "blend": "mask",
            "references_used": True, "reference_count": 1, "notes": []}
    print(f"\n{'case':>46} {'repair':>9} {'visible':>7} {'truth dE':>8} {'residue':>7} "
          f"{'contrast':>8} {'seam dE':>7}  reasons")
    flagged = {(visible, with_info): [] for visible in (True, False) for with_info in (True, False)}
    for case in removal_cases.cases():
        labels = list(case.candidates)
        batch = torch.from_numpy(np.stack([case.candidates[label][0] for label in labels]))
        args = (torch.from_numpy(case.damaged)[None], batch.clamp(0, 1),
                torch.from_numpy(case.mask)[None])
        text = json.dumps([{**info, "candidate_index": j} for j in range(len(labels))])
        told = quality_check(*args, text).report["candidates"]
        alone = quality_check(*args).report["candidates"]
        for label, entry, bare in zip(labels, told, alone):
            candidate, visible = case.candidates[label]
            s = entry["scores"]
            truth = removal_cases.inner_delta_e(candidate, case.clean, case.mask)
            print(f"{case.name:>46} {label:>9} {str(visible):>7} {truth:>8.1f} "
                  f"{'-' if s['residue'] is None else format(s['residue'], '.2f'):>7} "
                  f"{s['residue_contrast']:>8.2f} "
                  f"{s['seam_delta_e']:>7.2f}  {', '.join(entry['reasons']) or '-'}")
            flagged[visible, True].append("residue" in entry["reasons"])
            flagged[visible, False].append("residue" in bare["reasons"])
    for with_info in (True, False):
        hits, alarms = flagged[True, with_info], flagged[False, with_info]
        print(f"residue {'with info' if with_info else 'image alone'}: flagged {sum(hits)} of "
              f"{len(hits)} repairs with a visible residue, {sum(alarms)} of {len(alarms)} "
              "clean ones")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--sizes", default="1024,2048", help="square sides (default 1024,2048)")
    parser.add_argument("--candidates", type=int, default=4, help="candidates (default 4)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (default 5)")
    add_threads_option(parser)
    options = parser.parse_args(argv)
    use_threads(options.threads)
    device = torch.device(options.device)
    print(f"QualityCheck benchmark: device {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch threads, OpenCV {cv2.__version__} "
          f"({cv2.getNumThreads()} threads), {options.candidates} candidates, "
          f"{options.repeats} timed runs after 1 warm-up")
    header = (f"{'size':>11} {'scenario':>20} {'median s':>9} {'best s':>8} "
              f"{'s/cand':>7} {'x exact':>8} {'cpu s':>7}")
    print(header)
    print("-" * len(header))
    for size in [int(s) for s in options.sizes.split(",")]:
        original, mask, exact, vendor, reference, applied = scene(size, options.candidates,
                                                                  device)
        runs = {"exact": (exact, None), "vendor": (vendor, None),
                "vendor+1 reference": (vendor, reference)}
        medians, results = {}, {}
        for name, (candidates, refs) in runs.items():
            timed(device, original, candidates, mask, references=refs)  # warm-up
            times, cpu = [], []
            for _ in range(options.repeats):
                results[name], seconds, cpu_seconds = timed(device, original, candidates, mask,
                                                            references=refs)
                times.append(seconds)
                cpu.append(cpu_seconds)
            medians[name] = statistics.median(times)
            print(f"{size:>5}x{size:<5} {name:>20} {medians[name]:>9.3f} {min(times):>8.3f} "
                  f"{medians[name] / options.candidates:>7.3f} "
                  f"{medians[name] / medians['exact']:>8.2f} {statistics.median(cpu):>7.3f}",
                  flush=True)
        for (label, _, (shift, scale)), entry in zip(applied,
                                                     results["vendor"].report["candidates"]):
            s = entry["scores"]
            print(f"{'':>11} {label:>20}: applied shift {shift:.2f} px, scale {scale:.4f}; "
                  f"measured shift {s['shift_px']:.3f} px, scale {s['scale']:.5f}; "
                  f"reasons {entry['reasons']}")
    residue_table()
    return 0


if __name__ == "__main__":
    sys.exit(main())
