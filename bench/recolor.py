"""Benchmark (a measurement, not a test) of the garment recolour: `make bench`.

    .venv/bin/python bench/recolor.py [--device cpu] [--images 10] [--size 2048] [--repeats 3]

Times the embedded engine (pipelines.recolor.recolor_garments with its defaults: anchor and
post-process on, one variation) on a set of real photos (scikit-image's astronaut, coffee and
motorcycle, in turn) scaled to a long side of --size, with colour-key garment masks given, as a
node with connected masks runs. Prints the median seconds for the whole set and per image. Then
times the automatic garment mask (mediapipe + GrabCut) per image, once, when mediapipe is
installed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from _common import add_threads_option, import_pack, use_threads  # noqa: E402

import_pack()

from region_repair.pipelines import recolor  # noqa: E402
from region_repair.pipelines.colour import srgb_to_lab  # noqa: E402


def photos() -> list[torch.Tensor]:
    import skimage.data
    from PIL import Image

    motorcycle = next(Path(skimage.data.__file__).parent.glob("motorcycle_left.png"))
    arrays = [skimage.data.astronaut(), skimage.data.coffee(),
              np.asarray(Image.open(motorcycle).convert("RGB"))]
    return [torch.from_numpy(array.copy()).float() / 255 for array in arrays]


def colour_key(image: torch.Tensor) -> torch.Tensor:
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
    add_threads_option(parser)
    options = parser.parse_args(argv)
    use_threads(options.threads)
    device = torch.device(options.device)
    sources = photos()
    images = [scaled(sources[i % len(sources)], options.size).to(device)
              for i in range(options.images)]
    masks = [colour_key(image) for image in images]
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
        from region_repair.pipelines import garment_mask

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
