"""Benchmark (a measurement, not a test) of crop -> edit -> stitch against the anchors: `make bench`.

    .venv/bin/python bench/geometry.py [--device cpu] [--sizes 1024,2048,4096] [--repeats 5]

On the astronaut photo scaled to each square size, with an off-centre ellipse covering 2 % of
the image, every method crops around the mask, inverts the crop (the stand-in for a generator,
outside the timing) and stitches it back:

- the pack, `prepare_regions` + `stitch` with its defaults, once with the hard blend and once
  with the inward blend (alpha pastes, like the anchors), and once with the seamless default
  (a Poisson solve, reported on its own row);
- ComfyUI core: GrowMask (4 px) + ImageCompositeMasked of the inverted image (core has no crop);
- Impact Pack, when IMPACT_PACK_PATH names a copy: MaskToSEGS + its crop_image + SEGSPaste
  (feather 4), the node classes imported from that copy;
- ComfyUI-Inpaint-CropAndStitch, when CROPSTITCH_PATH names a copy: InpaintCropImproved +
  InpaintStitchImproved with settings matched to the pack's;
- the floor: one `image.clone()`, since the output must be written once;
- Guided Blend Inpaint's own overhead (`detail_repair.repair` with an inverting generator, whose
  time is left out), hard and seamless, and Quality Check on one exact blend: issue 16 holds
  them to the same goals.

Methods run interleaved, at 1 and at 2 threads (torch and OpenCV) in turn, in one run. Per
method it prints the median seconds, the median as a multiple of the clone floor, each anchor's
time over the pack's hard-blend time, and the pixels changed outside the user's mask (spill);
then each anchor's time over the pack's, GBI's and Quality Check's.
`--box-check` adds the goal that cost follows the mask's box: a 0.1 % mask on 8192² against a
10 % mask on 2048²; `--seamless-sizes` times the seamless stitch against the mask's size.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import inspect
import io
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from _common import PACK_ROOT, import_pack, timed, use_threads, with_comfyui  # noqa: E402

import_pack()
from region_repair.pipelines.repair.detail_repair import RepairSettings, repair
from region_repair.pipelines.review.quality import quality_check
from region_repair.pipelines.geometry.regions import (WindowSettings, blend_masked,  # noqa: E402
                                                      prepare_regions, stitch)

PHOTO = PACK_ROOT / "assets" / "photos" / "astronaut.png"
MASK_SHARE = 0.02
FEATHER = 4  # the anchors' blend width, matched to the pack's default blur
THREADS = (1, 2)


@dataclass
class Scene:
    image: torch.Tensor     # [1, H, W, 3]
    mask: torch.Tensor      # [1, H, W], 1 = edit
    inverted: torch.Tensor  # 1 - image: the whole-frame "edit" core composites (untimed)


def make_scene(size: int, share: float, device: torch.device) -> Scene:
    """The astronaut photo at size², and an ellipse (4:3, tilted 20°) centred right of and above
    the middle that covers `share` of the image."""
    astronaut = cv2.cvtColor(cv2.imread(str(PHOTO)), cv2.COLOR_BGR2RGB)
    photo = cv2.resize(astronaut.astype(np.float32) / 255, (size, size),
                       interpolation=cv2.INTER_CUBIC).clip(0, 1)
    image = torch.from_numpy(photo)[None].contiguous().to(device)
    ellipse = np.zeros((size, size), np.uint8)
    major = np.sqrt(share * size * size / (np.pi * 0.75))
    cv2.ellipse(ellipse, (round(size * 0.62), round(size * 0.4)), (round(major),
                round(major * 0.75)), 20, 0, 360, 1, -1)
    mask = torch.from_numpy(ellipse.astype(np.float32))[None].to(device)
    return Scene(image, mask, 1 - image)


def spill(scene: Scene, out: torch.Tensor) -> int:
    """Pixels changed outside the user's mask."""
    changed = (out[0].to(scene.image.device) != scene.image[0]).any(dim=-1)
    return int((changed & (scene.mask[0] == 0)).sum())


# --- the pack -------------------------------------------------------------------------------------

def run_pack(scene: Scene, blend: str, device: torch.device) -> tuple[torch.Tensor, float]:
    (regions, crops, _), t_prepare = timed(device, prepare_regions, scene.image, scene.mask,
                                           WindowSettings())
    edited = 1 - crops
    out, t_stitch = timed(device, stitch, scene.image, regions, edited, blend)
    return out, t_prepare + t_stitch


def run_guided_blend(scene: Scene, blend: str, device: torch.device
                     ) -> tuple[torch.Tensor, float]:
    """Guided Blend Inpaint (`detail_repair.repair`, default settings but `blend`) with a
    generator that inverts its input: the seconds are the call's less the generator's own."""
    generator_seconds = []

    def invert(pixels, mask, hidden, seed, denoise):
        out, seconds = timed(device, torch.sub, 1, pixels)
        generator_seconds.append(seconds)
        return out

    result, seconds = timed(device, repair, scene.image, scene.mask,
                            RepairSettings(blend=blend), generator=invert)
    return result.images, seconds - sum(generator_seconds)


def run_quality_exact(scene: Scene, candidate: torch.Tensor, device: torch.device
                      ) -> tuple[torch.Tensor, float]:
    """Quality Check on one exact blend (identical outside the mask): the image it returns is
    the candidate, for the spill check."""
    return candidate, timed(device, quality_check, scene.image, candidate, scene.mask)[1]


def pack_window_factor(scene: Scene) -> tuple[float, int]:
    """The context factor (window width over the user's mask box width) that gives the pack's
    window, and that window's width: the anchors are calibrated to it."""
    regions = prepare_regions(scene.image, scene.mask, WindowSettings())[0]
    cols = torch.nonzero((scene.mask[0] > 0).any(dim=0)).flatten()
    width = regions.windows[0].width
    return width / (int(cols[-1]) - int(cols[0]) + 1), width


# --- ComfyUI core ---------------------------------------------------------------------------------

class Core:
    """GrowMask (expand 4, tapered corners) + ImageCompositeMasked of the inverted image at 0, 0."""

    def __init__(self, device: torch.device):
        with_comfyui(device.type == "cpu")
        from comfy_extras.nodes_mask import GrowMask, ImageCompositeMasked
        self.grow, self.composite, self.device = GrowMask(), ImageCompositeMasked(), device

    def run(self, scene: Scene) -> tuple[torch.Tensor, float]:
        (grown,), t_grow = timed(self.device, self.grow.expand_mask, scene.mask.cpu(), FEATHER,
                                 True)
        (out,), t_paste = timed(self.device, self.composite.composite, scene.image,
                                scene.inverted, 0, 0, False, grown)
        return out, t_grow + t_paste

    def calibrate(self, scene: Scene) -> None:
        """Nothing to match: core has no crop window."""


# --- Impact Pack ----------------------------------------------------------------------------------

class Impact:
    """MaskToSEGS (combined off, no bbox fill, drop size 10) + crop_image of each SEG's crop
    region + SEGSPaste (feather 4, alpha 255) with the inverted crops as the SEGs' images, from
    the copy at IMPACT_PACK_PATH. Its modules import ComfyUI's server, so a PromptServer is made
    first, as ComfyUI does at start-up; its own requirements (piexif, ...) must be installed."""

    def __init__(self, path: str, device: torch.device):
        modules = Path(path) / "modules"
        if not (modules / "impact" / "segs_nodes.py").is_file():
            raise FileNotFoundError(f"IMPACT_PACK_PATH: no modules/impact/segs_nodes.py at {path}")
        with_comfyui(device.type == "cpu")
        import utils.install_util  # noqa: F401  ComfyUI's utils package before comfy/utils.py
        import server
        if getattr(server.PromptServer, "instance", None) is None:
            server.PromptServer(asyncio.new_event_loop())
        sys.path.insert(0, str(modules))
        from impact import segs_nodes, utils
        self.to_segs, self.paste = segs_nodes.MaskToSEGS(), segs_nodes.SEGSPaste()
        self.crop_image, self.device = utils.crop_image, device
        self.crop_factor = 3.0

    def run(self, scene: Scene) -> tuple[torch.Tensor, float]:
        with contextlib.redirect_stdout(io.StringIO()):  # MaskToSEGS prints a count each call
            return self._run(scene)

    def _run(self, scene: Scene) -> tuple[torch.Tensor, float]:
        (segs,), t_segs = timed(self.device, self.to_segs.doit, scene.mask.cpu(), False,
                                self.crop_factor, False, 10)
        crops, t_crop = timed(self.device, lambda: [self.crop_image(scene.image, seg.crop_region)
                                                    for seg in segs[1]])
        edited = (segs[0], [seg._replace(cropped_image=1 - crop)
                            for seg, crop in zip(segs[1], crops)])
        (out,), t_paste = timed(self.device, self.paste.doit, scene.image, edited, FEATHER, 255)
        return out, t_segs + t_crop + t_paste

    def calibrate(self, scene: Scene) -> None:
        self.crop_factor, _ = pack_window_factor(scene)


# --- ComfyUI-Inpaint-CropAndStitch ----------------------------------------------------------------

class CropStitch:
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
        # Before the first import of comfy.model_management: a CUDA torch build otherwise
        # looks for an NVIDIA driver.
        with_comfyui(device.type == "cpu")
        spec = importlib.util.spec_from_file_location("cropstitch_anchor", source)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        self.crop_node = module.InpaintCropImproved()
        self.stitch_node = module.InpaintStitchImproved()
        self.defaults = self._defaults(module.InpaintCropImproved.INPUT_TYPES())
        self.device_mode = "cpu (compatible)" if device.type == "cpu" else "gpu (much faster)"
        self.device, self.factor = device, 3.0

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

    def crop_and_stitch(self, scene: Scene, factor: float) -> tuple[torch.Tensor, float, int]:
        """(output, seconds, crop window width)."""
        (stitcher, cropped, _), t_crop = timed(self.device, self.crop_node.inpaint_crop,
                                               image=scene.image, mask=scene.mask,
                                               **self.settings(factor))
        edited = 1 - cropped
        (out,), t_stitch = timed(self.device, self.stitch_node.inpaint_stitch, stitcher, edited)
        return out, t_crop + t_stitch, stitcher["cropped_to_canvas_w"][0]

    def run(self, scene: Scene) -> tuple[torch.Tensor, float]:
        return self.crop_and_stitch(scene, self.factor)[:2]

    def calibrate(self, scene: Scene) -> None:
        """Its context is its own mask's box x factor: start from the pack's factor, then scale
        it so that its window has the pack's width (its grown mask differs by a pixel or two)."""
        factor, width = pack_window_factor(scene)
        self.factor = factor * width / self.crop_and_stitch(scene, factor)[2]


# --- main -----------------------------------------------------------------------------------------

def load_anchors(device: torch.device) -> tuple[dict, list[str]]:
    """The anchors that load, by name, and a note for each that does not."""
    anchors, notes = {}, []
    # Impact first: it imports ComfyUI's server, whose `utils` package a later `import nodes`
    # shadows with comfy/utils.py.
    for name, variable, kind in (("Impact MaskToSEGS+SEGSPaste", "IMPACT_PACK_PATH", Impact),
                                 ("Crop&Stitch", "CROPSTITCH_PATH", CropStitch)):
        path = os.environ.get(variable)
        if not path:
            notes.append(f"{name} skipped: {variable} is not set")
            continue
        try:
            anchors[name] = kind(path, device)
        except Exception as error:  # a broken copy must not stop the pack's own numbers
            notes.append(f"{name} skipped: could not load it ({error!r})")
    try:
        anchors["core GrowMask+ImageCompositeMasked"] = Core(device)
    except Exception as error:
        notes.append(f"core skipped: {error!r}")
    return anchors, notes


def clone_floor(scene: Scene, device: torch.device) -> tuple[torch.Tensor, float]:
    return timed(device, scene.image.clone)


def compare(size: int, repeats: int, device: torch.device, anchors: dict) -> None:
    scene = make_scene(size, MASK_SHARE, device)
    methods = {"clone (floor)": lambda: clone_floor(scene, device),
               "pack hard": lambda: run_pack(scene, "hard", device),
               "pack inward": lambda: run_pack(scene, "inward", device),
               "pack seamless": lambda: run_pack(scene, "seamless", device),
               "GBI overhead hard": lambda: run_guided_blend(scene, "hard", device),
               "GBI overhead seamless": lambda: run_guided_blend(scene, "seamless", device)}
    exact = blend_masked(scene.image, scene.inverted, scene.mask, FEATHER)
    methods["Quality Check exact blend"] = lambda: run_quality_exact(scene, exact, device)
    for name, anchor in anchors.items():
        anchor.calibrate(scene)
        methods[name] = lambda anchor=anchor: anchor.run(scene)
    spills = {name: spill(scene, run()[0]) for name, run in methods.items()}  # also the warm-up
    times = {(name, threads): [] for name in methods for threads in THREADS}
    names = list(methods)
    for repeat in range(repeats):
        for threads in THREADS:
            use_threads(threads)
            # Rotate the order each repeat so no method always runs first or after the same one.
            shift = repeat % len(names)
            for name in names[shift:] + names[:shift]:
                times[name, threads].append(methods[name]()[1])
    median = {key: statistics.median(values) for key, values in times.items()}
    print(f"\n{size}x{size}, mask {MASK_SHARE:.0%} (ellipse), median of {repeats}")
    print(f"{'method':<36} " + " ".join(f"{f'{t} thr s':>9} {'x clone':>7} {'/pack':>6}"
                                        for t in THREADS) + f" {'2thr/1thr':>9} {'spill px':>9}")
    for name in names:
        cells = []
        for threads in THREADS:
            seconds = median[name, threads]
            cells.append(f"{seconds:>9.4f} {seconds / median['clone (floor)', threads]:>7.2f} "
                         f"{seconds / median['pack hard', threads]:>6.2f}")
        print(f"{name:<36} " + " ".join(cells)
              + f" {median[name, 2] / median[name, 1]:>9.2f} {spills[name]:>9}", flush=True)
    # The goals (issue 16): each anchor at least 2x (Impact) or 4x (core) the pack's times.
    for anchor in (name for name in names if name in anchors):
        print(f"{anchor} over: " + "; ".join(
            f"{name} " + "/".join(f"{median[anchor, t] / median[name, t]:.2f}" for t in THREADS)
            for name in ("pack hard", "GBI overhead hard", "GBI overhead seamless",
                         "Quality Check exact blend")) + f" (at {'/'.join(map(str, THREADS))} "
              "threads)")


def box_check(repeats: int, device: torch.device) -> None:
    """The goal that cost follows the mask's box: a small mask on a huge image against a large
    mask on a smaller one (pack, hard blend, 1 thread)."""
    use_threads(1)
    print("\ncost against the mask's box (pack hard, 1 thread, median of "
          f"{repeats}): prepare = crop, stitch = paste into a copy of the image")
    totals = {}
    for size, share in ((8192, 0.001), (2048, 0.10)):
        scene = make_scene(size, share, device)
        run_pack(scene, "hard", device)
        prepares, stitches, clones = [], [], []
        for _ in range(repeats):
            (regions, crops, _), t_prepare = timed(device, prepare_regions, scene.image,
                                                   scene.mask, WindowSettings())
            _, t_stitch = timed(device, stitch, scene.image, regions, 1 - crops, "hard")
            prepares.append(t_prepare)
            stitches.append(t_stitch)
            clones.append(clone_floor(scene, device)[1])
        prepare, paste = statistics.median(prepares), statistics.median(stitches)
        clone = statistics.median(clones)
        totals[size] = (prepare, paste, clone)
        print(f"  {size}x{size} mask {share:.1%}: prepare {prepare:.4f} s, stitch {paste:.4f} s,"
              f" total {prepare + paste:.4f} s; clone {clone:.4f} s; stitch less its clone "
              f"{paste - clone:.4f} s", flush=True)
        del scene
    (big_prepare, big_stitch, big_clone), (small_prepare, small_stitch, small_clone) = (
        totals[8192], totals[2048])
    big, small = big_prepare + big_stitch, small_prepare + small_stitch
    print(f"  0.1 % on 8192² over 10 % on 2048²: total {big / small:.2f}, prepare "
          f"{big_prepare / small_prepare:.2f}, beyond the output copy "
          f"{(big - big_clone) / (small - small_clone):.2f}")


def seamless_sizes(size: int, repeats: int, device: torch.device) -> None:
    """The seamless stitch alone (a Poisson solve on the mask's box) against the mask's size."""
    use_threads(1)
    print(f"\nseamless stitch against the mask's size ({size}x{size}, 1 thread, median of "
          f"{repeats}); inward stitch for scale")
    for share in (0.005, 0.02, 0.08):
        scene = make_scene(size, share, device)
        regions, crops, _ = prepare_regions(scene.image, scene.mask, WindowSettings())
        edited = 1 - crops
        row = {}
        for blend in ("seamless", "inward", "seamless", "inward") * repeats:
            row.setdefault(blend, []).append(timed(device, stitch, scene.image, regions, edited,
                                                   blend)[1])
        floor = statistics.median(clone_floor(scene, device)[1] for _ in range(repeats))
        seamless, inward = (statistics.median(row[blend]) for blend in ("seamless", "inward"))
        print(f"  mask {share:.1%} ({int(scene.mask.sum())} px): seamless {seamless:.4f} s "
              f"({seamless / floor:.1f}x clone), inward {inward:.4f} s ({inward / floor:.1f}x "
              f"clone)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--sizes", default="1024,2048,4096",
                        help="square image sides, comma separated (default 1024,2048,4096)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per size (default 5)")
    parser.add_argument("--box-check", action="store_true",
                        help="also time 0.1 %% of 8192² against 10 %% of 2048² (needs ~4 GB)")
    parser.add_argument("--seamless-sizes", type=int, default=0, metavar="SIZE",
                        help="also time the seamless stitch for 0.5, 2 and 8 %% masks on SIZE²")
    options = parser.parse_args(argv)
    device = torch.device(options.device)
    anchors, notes = load_anchors(device)
    print(f"crop -> inverted crop -> stitch: device {device}, torch {torch.__version__}, "
          f"threads {THREADS} interleaved, 1 warm-up run each; x clone = median over the "
          "median of image.clone() at the same thread count; /pack = over pack hard")
    for size in (int(size) for size in options.sizes.split(",")):
        compare(size, options.repeats, device, anchors)
    if options.box_check:
        box_check(options.repeats, device)
    if options.seamless_sizes:
        seamless_sizes(options.seamless_sizes, options.repeats, device)
    for note in notes:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
