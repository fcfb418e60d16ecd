"""Benchmark: GuidedBlendInpaint's crop-to-context sampling against full-image inpainting.

    .venv/bin/python bench/detail_repair.py [--size 2048] [--steps 4]

The same tiny random-weight SD1.5 inpaint model (tests/support/tiny_models.py), sampler and steps
run twice in one process on a `size`² image with a centred square mask covering 2 % of it:
- context: pipelines.repair.detail_repair.repair, which samples only the mask's box x 3 context
  window at its native size;
- full image: the same generator on the whole image with the same mask.
Prints both times, their ratio, and the ratio of the areas sampled. A real model's cost grows
with the sampled area like the tiny model's, so the area ratio predicts the real saving.
"""

from __future__ import annotations

import argparse
import sys

import torch

from _common import import_pack, timed, with_comfyui

PACK_ROOT = import_pack()

with_comfyui()
sys.path.insert(0, str(PACK_ROOT / "tests" / "support"))

import tiny_models  # noqa: E402
from region_repair.nodes._sampling import diffusion_generator  # noqa: E402
from region_repair.pipelines.repair.detail_repair import RepairSettings, repair  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=4)
    options = parser.parse_args(argv)
    size = options.size
    device = torch.device("cpu")
    image = torch.rand(1, size, size, 3, generator=torch.Generator().manual_seed(0))
    side = int(round((0.02 * size * size) ** 0.5))
    mask = torch.zeros(1, size, size)
    start = (size - side) // 2
    mask[:, start:start + side, start:start + side] = 1

    model, vae, clip = tiny_models.tiny_model(inpaint=True), tiny_models.tiny_vae(), \
        tiny_models.tiny_clip()
    cond = clip.encode_from_tokens_scheduled(clip.tokenize(""))
    generate = diffusion_generator(model, vae, cond, cond, options.steps, 7.0, "euler", "normal",
                                   on_step=lambda: None)
    settings = RepairSettings(processing_size=0, seed=1)
    warm_up = torch.ones_like(mask[:, :256, :256])
    repair(image[:, :256, :256], warm_up, settings, generator=generate)

    print(f"tiny SD1.5 inpaint, {options.steps} euler steps, {size}x{size} image, mask "
          f"{side}x{side} ({side * side / size / size:.1%}), {torch.get_num_threads()} threads",
          flush=True)
    result, t_context = timed(device, repair, image, mask, settings, generator=generate)
    width, height = result.regions.processing_size
    print(f"context crop ({width}x{height}): {t_context:.2f} s", flush=True)
    try:
        _, t_full = timed(device, generate, image, mask, mask, 1, 1.0)
    except (RuntimeError, MemoryError) as error:  # a memory cap (ulimit -v) turns OOM into this
        print(f"full image ({size}x{size}): failed, {type(error).__name__}: "
              f"{str(error).splitlines()[0][:120]}")
        return 0
    area_ratio = size * size / (width * height)
    print(f"full image ({size}x{size}):      {t_full:.2f} s")
    print(f"full / context time: {t_full / t_context:.1f}x   area ratio: {area_ratio:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
