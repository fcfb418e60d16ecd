"""Benchmark (a measurement, not a test) of the geometry pipeline: `make bench`.

    .venv/bin/python bench/geometry.py [--device cpu] [--sizes 1024,2048,4096] [--repeats 3]

Times, per image size, the pack's pure pipeline with its defaults: a MaskFromBBox-style mask
(pipelines.geometry.mask_from_bbox_text), DilateBlurPad (pipelines.regions.prepare_regions with
WindowSettings()), and the stitch of modified crops (pipelines.regions.stitch, inward blend).
Prints the median seconds per stage and megapixels of input image per second.

When the environment variable CROPSTITCH_PATH names an installed ComfyUI-Inpaint-CropAndStitch
(its folder, or its inpaint_cropandstitch.py), the same crop, blend and stitch also run through
its InpaintCropImproved and InpaintStitchImproved nodes in the same run, and the ratio is printed.
Without the variable that comparison is skipped, and ComfyUI is not imported at all.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import os
import statistics
import sys
from pathlib import Path

import torch

from _common import COMFYUI, add_threads_option, import_pack, timed, use_threads  # noqa: E402

import_pack()
from region_repair.pipelines.geometry import mask_from_bbox_text  # noqa: E402
from region_repair.pipelines.regions import WindowSettings, prepare_regions, stitch  # noqa: E402

# A centred box a quarter of the image wide and high, in PiktID's normalized [x, y, w, h].
BOX = "0.375, 0.375, 0.25, 0.25"


def make_image(size: int, device: torch.device) -> torch.Tensor:
    generator = torch.Generator().manual_seed(size)
    return torch.rand(1, size, size, 3, generator=generator).to(device)


# --- the pack -------------------------------------------------------------------------------------

def run_pack(image: torch.Tensor, device: torch.device) -> dict:
    _, height, width, _ = image.shape
    mask, t_mask = timed(device, mask_from_bbox_text, BOX, 1, height, width, device=device)
    (regions, crops, _), t_prepare = timed(device, prepare_regions, image, mask, WindowSettings())
    modified = 1 - crops  # stands in for the generator's output
    out, t_stitch = timed(device, stitch, image, regions, modified)
    return {"mask": t_mask, "prepare": t_prepare, "stitch": t_stitch,
            "total": t_mask + t_prepare + t_stitch, "_out": out, "_mask": mask,
            "_regions": regions}


def check_pack(image: torch.Tensor, result: dict) -> None:
    """Outside the timing: pixels outside the user's mask are bit-identical, inside changed."""
    out, outside = result["_out"], result["_mask"][0] == 0
    assert torch.equal(out[0][outside], image[0][outside]), "a pixel outside the mask changed"
    assert not torch.equal(out[0][~outside], image[0][~outside]), "nothing was stitched in"


# --- the anchor: ComfyUI-Inpaint-CropAndStitch ----------------------------------------------------

class Anchor:
    """InpaintCropImproved + InpaintStitchImproved (V1 nodes), loaded from CROPSTITCH_PATH.

    Settings mirror the pack's defaults: mask grown by 4 px (mask_dilation 4) and blended over
    4 px (mask_blur 4), no hole filling (the pack fills none), native size (no resize to a
    target), no output padding, and a context factor that gives the same window as the pack's
    32 px padding on this mask. Every other input takes the node's own default.
    """

    def __init__(self, path: str, device: torch.device):
        source = Path(path)
        if source.is_dir():
            source = source / "inpaint_cropandstitch.py"
        if not source.is_file():
            raise FileNotFoundError(f"CROPSTITCH_PATH: no inpaint_cropandstitch.py at {path}")
        if str(COMFYUI) not in sys.path:
            sys.path.insert(0, str(COMFYUI))
        from comfy.cli_args import args

        # Before the first import of comfy.model_management: a CUDA torch build otherwise
        # looks for an NVIDIA driver.
        args.cpu = device.type == "cpu"
        spec = importlib.util.spec_from_file_location("cropstitch_anchor", source)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        self.crop_node = module.InpaintCropImproved()
        self.stitch_node = module.InpaintStitchImproved()
        self.defaults = self._defaults(module.InpaintCropImproved.INPUT_TYPES())
        self.device_mode = "cpu (compatible)" if device.type == "cpu" else "gpu (much faster)"
        self.device = device

    @staticmethod
    def _defaults(input_types: dict) -> dict:
        defaults = {}
        for name, spec in input_types.get("required", {}).items():
            options = spec[1] if len(spec) > 1 else {}
            if "default" in options:
                defaults[name] = options["default"]
            elif isinstance(spec[0], list) and spec[0]:
                defaults[name] = spec[0][0]
        return defaults

    def settings(self, context_factor: float) -> dict:
        wanted = {**self.defaults, "mask_fill_holes": False, "mask_expand_pixels": 4,
                  "mask_blend_pixels": 4, "mask_invert": False, "preresize": False,
                  "extend_for_outpainting": False,
                  "context_from_mask_extend_factor": context_factor,
                  "output_resize_to_target_size": False, "output_padding": "0",
                  "device_mode": self.device_mode}
        accepted = inspect.signature(self.crop_node.inpaint_crop).parameters
        return {name: value for name, value in wanted.items() if name in accepted}

    def run(self, image: torch.Tensor, mask: torch.Tensor, context_factor: float) -> dict:
        kwargs = self.settings(context_factor)
        (stitcher, cropped, _), t_crop = timed(self.device, self.crop_node.inpaint_crop,
                                               image=image, mask=mask, **kwargs)
        modified = 1 - cropped
        (out,), t_stitch = timed(self.device, self.stitch_node.inpaint_stitch, stitcher, modified)
        return {"crop": t_crop, "stitch": t_stitch, "total": t_crop + t_stitch,
                "_window": (stitcher["cropped_to_canvas_w"][0],
                            stitcher["cropped_to_canvas_h"][0]), "_out": out}


def context_factor_for(regions) -> float:
    """The anchor's context factor that gives the pack's window on this (square) mask."""
    window = regions.windows[0]
    support = regions.mask[window.batch_index] > 0
    cols = torch.nonzero(support.any(dim=0)).flatten()
    return window.width / (int(cols[-1]) - int(cols[0]) + 1)


# --- main -----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--sizes", default="1024,2048,4096",
                        help="square image sides, comma separated (default 1024,2048,4096)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per size (default 5)")
    add_threads_option(parser)
    options = parser.parse_args(argv)
    use_threads(options.threads)
    device = torch.device(options.device)
    sizes = [int(size) for size in options.sizes.split(",")]

    anchor, anchor_note = None, None
    path = os.environ.get("CROPSTITCH_PATH")
    if path:
        try:
            anchor = Anchor(path, device)
        except Exception as error:  # a broken install must not stop the pack's own numbers
            anchor_note = f"comparison skipped: could not load the anchor ({error!r})"
    else:
        anchor_note = ("comparison skipped: CROPSTITCH_PATH is not set (point it at an installed "
                       "ComfyUI-Inpaint-CropAndStitch to compare)")

    print(f"geometry pipeline benchmark: device {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {options.repeats} timed runs after 1 warm-up; "
          "stage columns are medians")
    defaults = WindowSettings()
    print(f"MaskFromBBox [{BOX}] -> DilateBlurPad defaults (dilation {defaults.dilation}, "
          f"blur {defaults.blur}, padding {defaults.padding}, {defaults.region_mode.value}, "
          f"{defaults.resize_mode.value}) -> stitch of 1 - crop, inward blend")
    header = (f"{'size':>11} {'mask s':>8} {'prepare s':>10} {'stitch s':>9} {'total s':>8} "
              f"{'best s':>8} {'MP/s':>7}")
    if anchor:
        header += f" | {'anchor s':>9} {'best s':>8} {'MP/s':>7} {'anchor/pack':>11}"
    print(header)
    print("-" * len(header))
    for size in sizes:
        image = make_image(size, device)
        megapixels = size * size / 1e6
        warm = run_pack(image, device)
        check_pack(image, warm)
        runs = [run_pack(image, device) for _ in range(options.repeats)]
        median = {key: statistics.median(run[key] for run in runs)
                  for key in ("mask", "prepare", "stitch", "total")}
        best = min(run["total"] for run in runs)
        line = (f"{size:>5}x{size:<5} {median['mask']:>8.4f} {median['prepare']:>10.4f} "
                f"{median['stitch']:>9.4f} {median['total']:>8.4f} {best:>8.4f} "
                f"{megapixels / median['total']:>7.1f}")
        if anchor:
            pack_window = warm["_regions"].windows[0]
            # The anchor's context is its own mask's box x factor: calibrate the factor once so
            # that its window matches the pack's (its grown mask differs by a pixel or two).
            factor = context_factor_for(warm["_regions"])
            anchor_warm = anchor.run(image, warm["_mask"], factor)
            factor *= pack_window.width / anchor_warm["_window"][0]
            anchor_warm = anchor.run(image, warm["_mask"], factor)
            anchor_runs = [anchor.run(image, warm["_mask"], factor)["total"]
                           for _ in range(options.repeats)]
            anchor_total = statistics.median(anchor_runs)
            line += (f" | {anchor_total:>9.4f} {min(anchor_runs):>8.4f} "
                     f"{megapixels / anchor_total:>7.1f} {anchor_total / median['total']:>10.1f}x"
                     f"   (windows: pack {pack_window.width}x{pack_window.height}, anchor "
                     f"{anchor_warm['_window'][0]}x{anchor_warm['_window'][1]})")
        print(line, flush=True)
        del image, warm, runs
    if anchor_note:
        print(anchor_note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
