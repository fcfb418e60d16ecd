"""Context windows around masked regions: grow, blur, pad, crop at a processing size, stitch back.

The OctoAI adetailer semantics, in order: `mask_dilation` (negative erodes), `mask_blur`
(Gaussian, radius in pixels), then `mask_padding` of context around the processed mask. A window
that crosses the image border slides toward the centre; it is clamped only when it is larger than
the image. PiktID's `context_factor` form makes the window the mask's bounding box times a factor.

Stitching keeps every pixel outside the user's mask bit-identical by default: the new content
replaces the mask completely and is blended seamlessly against the untouched pixels around it
(pipelines/geometry/seamless.py), and pixels with weight 0 are copied, not blended.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
import torch

from ..core.cancel import never_cancelled
from ..core.choices import Choice
from ..core.tensors import one_cpu_thread, resize, zeros
from .seamless import seamless_blend_many
from . import masks as mask_ops

# The resolutions OctoAI's /adetailer accepts for `init_image` (as the vendor documents them),
# width x height.
SD15_BUCKETS = [(384, 704), (448, 576), (512, 512), (512, 704), (512, 768), (512, 832),
                (576, 448), (576, 768), (576, 1024), (640, 512), (640, 640), (640, 768),
                (704, 384), (704, 1216), (768, 512), (768, 576), (768, 1024), (832, 512),
                (896, 896), (1024, 576), (1024, 768), (1024, 1024), (1024, 1536), (1216, 704),
                (1536, 1024)]
SDXL_BUCKETS = [(640, 1536), (768, 1344), (832, 1216), (896, 1152), (1024, 1024), (1152, 896),
                (1216, 832), (1344, 768), (1536, 640), (1664, 2432), (2048, 2048), (2432, 1664)]


class WindowMode(Choice):
    PADDING = "padding"
    CONTEXT_FACTOR = "context_factor"


class RegionMode(Choice):
    UNION = "union"
    PER_OBJECT = "per_object"


class ResizeMode(Choice):
    KEEP = "keep"
    MULTIPLE_OF_8 = "multiple_of_8"    # SD1.5 and SDXL latents: 8 px each
    MULTIPLE_OF_16 = "multiple_of_16"  # Flux and SD3: 8 px latents in 2x2 patches
    MULTIPLE_OF_64 = "multiple_of_64"
    SD15_BUCKETS = "sd15_buckets"
    SDXL_BUCKETS = "sdxl_buckets"
    CUSTOM_BUCKETS = "custom_buckets"

    @property
    def step(self) -> int | None:
        """The multiple both crop sides snap to (multiple_of_N), else None."""
        prefix = "multiple_of_"
        return int(self.value[len(prefix):]) if self.value.startswith(prefix) else None

    @classmethod
    def multiple_of(cls, pixels: int) -> ResizeMode:
        """The smallest multiple_of_N mode whose N is a multiple of `pixels`."""
        for mode in cls:
            if mode.step is not None and mode.step % pixels == 0:
                return mode
        raise ValueError(f"size multiple: {pixels} px divides none of 8, 16 and 64")


class Blend(Choice):
    # Confined to the user's mask (every pixel outside it bit-identical):
    SEAMLESS = "seamless"  # replaced completely, gradient-domain blend at the edge (default)
    INWARD = "inward"      # alpha feather inside the mask: its outer pixels keep some old content
    HARD = "hard"          # the user's mask as it is, no blending
    # Not confined:
    OUTWARD = "outward"  # the dilated, blurred mask: changes reach past the user's mask
    WINDOW = "window"    # the whole window, feathered inward at its edge (regenerate freely)

    @property
    def confined(self) -> bool:
        return self in (Blend.SEAMLESS, Blend.INWARD, Blend.HARD)


def confined_blend(value: Blend | str, name: str = "blend") -> Blend:
    """`value` as a Blend that keeps every pixel outside the mask, or an error naming `name`."""
    blend = Blend(value)
    if not blend.confined:
        raise ValueError(f"{name}: {blend.value!r} is not confined to the mask; choose "
                         "seamless, inward or hard")
    return blend


# What each blend does, for the nodes' tooltips.
BLEND_HELP = ("seamless (default): the mask's content is replaced completely and blended in the "
              "gradient domain against the untouched pixels around it (no seam, nothing of the "
              "old content left). inward: an alpha feather inside the mask (soft, but its outer "
              "pixels keep part of the old content). hard: the mask as it is")


@dataclass(frozen=True)
class Window:
    """One crop: image `batch_index`, pixels [x0, x1) x [y0, y1), and the object `label`."""
    batch_index: int
    x0: int
    y0: int
    x1: int
    y1: int
    label: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


@dataclass
class Regions:
    """The REGION value passed between nodes: where each crop came from and how to put it back.

    `user_mask` is the cleaned user mask, `mask` the dilated and blurred one, `labels` the
    object id of each pixel (0 = none); all `[B, H, W]` at the image's size.
    """
    windows: list[Window]
    processing_size: tuple[int, int]  # (width, height) of every crop
    user_mask: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor
    blur: int
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class WindowSettings:
    dilation: int = 4
    blur: int = 4
    window_mode: WindowMode = WindowMode.PADDING
    padding: int = 32
    context_factor: float = 3.0
    region_mode: RegionMode = RegionMode.UNION
    merge_overlapping: bool = True
    resize_mode: ResizeMode = ResizeMode.KEEP
    processing_size: int = 512
    buckets: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        # Accept option strings (ComfyUI combos) and reject unknown ones with the allowed list.
        for name, kind in (("window_mode", WindowMode), ("region_mode", RegionMode),
                           ("resize_mode", ResizeMode)):
            object.__setattr__(self, name, kind(getattr(self, name)))


# The largest crop side, as processing_size's cap: bigger crops stall the next node for minutes.
MAX_BUCKET_SIDE = 8192


def parse_buckets(text: str, name: str = "buckets") -> tuple[tuple[int, int], ...]:
    """`512x512, 768x512` (width x height) to a tuple of sizes, each side 8..8192."""
    sizes = []
    for item in text.replace(";", ",").replace("\n", ",").split(","):
        if not item.strip():
            continue
        parts = item.lower().replace("×", "x").split("x")
        try:
            width, height = (int(part) for part in parts)
        except ValueError:
            raise ValueError(f"{name}: {item.strip()!r} is not WIDTHxHEIGHT, e.g. 768x512"
                             ) from None
        if width < 8 or height < 8:
            raise ValueError(f"{name}: {item.strip()!r} is too small; each side must be >= 8")
        if max(width, height) > MAX_BUCKET_SIDE:
            raise ValueError(f"{name}: {item.strip()!r} is too large; each side must be <= "
                             f"{MAX_BUCKET_SIDE}")
        sizes.append((width, height))
    if not sizes:
        raise ValueError(f"{name}: no size given; expected a list like 512x512, 768x512")
    return tuple(sizes)


def _slide(start: int, size: int, limit: int) -> tuple[int, int]:
    """Move [start, start + size) inside [0, limit) without shrinking it; clamp only when the
    window is larger than the image."""
    if size >= limit:
        return 0, limit
    start = min(max(start, 0), limit - size)
    return start, start + size


def _grow(start: int, end: int, size: int, limit: int) -> tuple[int, int]:
    """Grow [start, end) about its centre to `size` pixels, then slide it inside the image."""
    size = max(size, end - start)
    return _slide(start - (size - (end - start)) // 2, size, limit)


def _pad_box(box: tuple[int, int, int, int], settings: WindowSettings, height: int,
             width: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    if settings.window_mode is WindowMode.CONTEXT_FACTOR:
        grow_x = round((x1 - x0) * (settings.context_factor - 1) / 2)
        grow_y = round((y1 - y0) * (settings.context_factor - 1) / 2)
    else:
        grow_x = grow_y = settings.padding
    x0, x1 = _slide(x0 - grow_x, x1 - x0 + 2 * grow_x, width)
    y0, y1 = _slide(y0 - grow_y, y1 - y0 + 2 * grow_y, height)
    return x0, y0, x1, y1


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _merge_overlapping(boxes: list[tuple[int, int, int, int]],
                       labels: list[list[int]]) -> tuple[list, list]:
    """Merge overlapping windows (and their object labels) until none overlap."""
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                if _overlaps(boxes[i], boxes[j]):
                    a, b = boxes[i], boxes.pop(j)
                    boxes[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]),
                                max(a[3], b[3]))
                    labels[i] += labels.pop(j)
                    merged = True
                    break
            if merged:
                break
    return boxes, labels


def _target_size(boxes: list[tuple[int, int, int, int]], settings: WindowSettings
                 ) -> tuple[int, int]:
    """The common crop size (width, height): at native size, the widest by the tallest window;
    otherwise sized from the largest window's aspect ratio."""
    sizes = [(x1 - x0, y1 - y0) for x0, y0, x1, y1 in boxes]
    mode = settings.resize_mode
    if mode is ResizeMode.KEEP:
        return max(w for w, _ in sizes), max(h for _, h in sizes)
    width, height = max(sizes, key=lambda size: size[0] * size[1])
    if mode.step is not None:
        step = mode.step
        scale = settings.processing_size / math.sqrt(width * height)
        return (max(step, round(width * scale / step) * step),
                max(step, round(height * scale / step) * step))
    buckets = {ResizeMode.SD15_BUCKETS: SD15_BUCKETS, ResizeMode.SDXL_BUCKETS: SDXL_BUCKETS,
               ResizeMode.CUSTOM_BUCKETS: list(settings.buckets)}[mode]
    if not buckets:
        raise ValueError("buckets: resize_mode custom_buckets needs a list like 512x512, 768x512")
    aspect = math.log(width / height)
    # Nearest aspect ratio first; among equal ratios, the one closest in pixel count.
    return min(buckets, key=lambda b: (round(abs(math.log(b[0] / b[1]) - aspect), 6),
                                       abs(math.log(b[0] * b[1] / (width * height)))))


def plan_regions(user_mask: torch.Tensor, settings: WindowSettings,
                 check_cancel: Callable[[], None] = never_cancelled,
                 within: tuple[int, int, int, int] | None = None) -> Regions:
    """Process the mask (dilate, blur), split it into objects and lay out one window per crop.

    `user_mask` is the cleaned `[B, H, W]` mask at the image's size; `within`, when given, a box
    that holds all of it (masks.clean_with_box's), so the frame is not scanned again. Raises
    ValueError when no image of the batch has any masked pixel. `check_cancel` is called
    between steps.
    """
    batch, height, width = user_mask.shape
    # Everything is computed on the box of the user's mask plus the reach of dilation and blur
    # (the reach box); the full-size mask and labels are zero fills with that box written in.
    mask = zeros(user_mask.shape, user_mask.dtype, user_mask.device)
    labels = zeros(user_mask.shape, torch.int32, user_mask.device)
    found = mask_ops.grown_and_blurred_box(user_mask, settings.dilation, settings.blur,
                                           check_cancel, within)
    if found is None:
        raise ValueError("mask: no masked pixel in any image of the batch; nothing to repair")
    grown, (rx0, ry0, rx1, ry1) = found
    mask[:, ry0:ry1, rx0:rx1] = grown
    support = (grown > 0).cpu().numpy().astype(np.uint8)
    box_labels = np.zeros(support.shape, np.int32)
    boxes: list[tuple[int, int, int, int]] = []
    owners: list[tuple[int, list[int]]] = []  # (batch index, labels) per box
    for b in range(batch):
        check_cancel()
        if settings.region_mode is RegionMode.PER_OBJECT:
            # OpenCV labels 2x2 blocks: on the image's block grid, objects are numbered (and
            # their windows ordered) as on the whole image.
            pad_y, pad_x = ry0 % 2, rx0 % 2
            _, object_labels, stats, _ = cv2.connectedComponentsWithStats(
                np.pad(support[b], ((pad_y, 0), (pad_x, 0))), connectivity=8)
            box_labels[b] = object_labels[pad_y:, pad_x:]
            object_boxes = [(rx0 - pad_x + x, ry0 - pad_y + y, rx0 - pad_x + x + w,
                             ry0 - pad_y + y + h) for x, y, w, h in stats[1:, :4].tolist()]
        else:
            box_labels[b] = support[b]
            box = mask_ops.support_box(support[b])
            object_boxes = [] if box is None else [
                (rx0 + box[0], ry0 + box[1], rx0 + box[2], ry0 + box[3])]
        image_boxes = [_pad_box(box, settings, height, width) for box in object_boxes]
        image_labels = [[label] for label in range(1, len(object_boxes) + 1)]
        if settings.merge_overlapping:
            image_boxes, image_labels = _merge_overlapping(image_boxes, image_labels)
        for group in image_labels:  # merged windows: their objects become one
            if len(group) > 1:
                box_labels[b][np.isin(box_labels[b], group)] = group[0]
        boxes += image_boxes
        owners += [(b, group) for group in image_labels]
    if not boxes:
        raise ValueError("mask: no masked pixel in any image of the batch; nothing to repair")
    labels[:, ry0:ry1, rx0:rx1] = torch.from_numpy(box_labels)

    target_w, target_h = _target_size(boxes, settings)
    windows = []
    for (b, group), (x0, y0, x1, y1) in zip(owners, boxes):
        # Grow every window to the common aspect ratio (and, at native size, the common size),
        # so all crops share one processing size without distortion where the image allows.
        box_w, box_h = x1 - x0, y1 - y0
        if settings.resize_mode is ResizeMode.KEEP:
            want_w, want_h = target_w, target_h
        elif box_w * target_h >= box_h * target_w:  # the width binds; integer maths, no float
            want_w, want_h = box_w, -(-box_w * target_h // target_w)
        else:
            want_w, want_h = -(-box_h * target_w // target_h), box_h
        x0, x1 = _grow(x0, x1, want_w, width)
        y0, y1 = _grow(y0, y1, want_h, height)
        windows.append(Window(b, x0, y0, x1, y1, group[0]))
    return Regions(windows, (target_w, target_h), user_mask, mask, labels, settings.blur)


def crop(image: torch.Tensor, regions: Regions) -> tuple[torch.Tensor, torch.Tensor]:
    """Each window of `image` ([B, H, W, C]) and of the processed mask, at the processing size.

    The crop masks hold only the window's own object, so a generator never sees a neighbour's
    area as something to regenerate.
    """
    width, height = regions.processing_size
    crops, crop_masks = [], []
    for w in regions.windows:
        window = image[w.batch_index:w.batch_index + 1, w.y0:w.y1, w.x0:w.x1]
        own = regions.labels[w.batch_index, w.y0:w.y1, w.x0:w.x1] == w.label
        window_mask = regions.mask[w.batch_index, w.y0:w.y1, w.x0:w.x1] * own
        crops.append(resize(window, height, width))
        crop_masks.append(resize(window_mask[None, ..., None], height, width)[..., 0])
    return torch.cat(crops), torch.cat(crop_masks)


def blend_weights(regions: Regions, window: Window, blend: Blend | str, radius: int
                  ) -> torch.Tensor:
    """The weight of the new content over one window, `[h, w]`: zero outside the window's own
    object. Inward and hard blends are never above the user's mask, so pixels outside it keep
    weight 0. The window blend covers the whole window, whatever the mask, and nothing outside
    it."""
    b, x0, y0, x1, y1 = window.batch_index, window.x0, window.y0, window.x1, window.y1
    own = regions.labels[b, y0:y1, x0:x1] == window.label
    blend = Blend(blend)
    if blend is Blend.OUTWARD:
        return regions.mask[b, y0:y1, x0:x1] * own
    # Work on the window plus a margin, so the window's edge erodes like the image's.
    height, width = regions.mask.shape[1:]
    m = radius + 2 if blend in (Blend.INWARD, Blend.WINDOW) else 0
    ey0, ey1, ex0, ex1 = max(y0 - m, 0), min(y1 + m, height), max(x0 - m, 0), min(x1 + m, width)
    if blend is Blend.WINDOW:
        # Feathered only where the window edge lies inside the image: the image border
        # neither grows nor erodes a mask.
        edit = torch.zeros_like(regions.mask[b:b + 1, ey0:ey1, ex0:ex1])
        edit[:, y0 - ey0:y1 - ey0, x0 - ex0:x1 - ex0] = 1
        return mask_ops.inward_feather(edit, radius)[0, y0 - ey0:y1 - ey0, x0 - ex0:x1 - ex0]
    edit = (regions.user_mask[b:b + 1, ey0:ey1, ex0:ex1]
            * (regions.mask[b:b + 1, ey0:ey1, ex0:ex1] > 0))
    if blend is Blend.INWARD:
        edit = mask_ops.inward_feather(edit, radius)
    return edit[0, y0 - ey0:y1 - ey0, x0 - ex0:x1 - ex0] * own


def _paste_into(target: torch.Tensor, new: torch.Tensor, alpha: torch.Tensor, blend: Blend,
                check_cancel: Callable[[], None]) -> None:
    """`new` over `target` (`[h, w, C]`, written in place) by the weight `alpha` (`[h, w]`).
    Only the box of the pixels with weight above 0 is read or written, so every other pixel
    keeps its bits and a small mask in a large frame costs little."""
    if blend is Blend.SEAMLESS:
        # It reads the untouched ring around the weight as its boundary: the whole target.
        target.copy_(seamless_blend_many(target[None], new[None], alpha,
                                          check_cancel)[0])
        return
    box = mask_ops.support_box(alpha)
    if box is None:
        return
    x0, y0, x1, y1 = box
    old, weight = target[y0:y1, x0:x1], alpha[y0:y1, x0:x1, None]
    old.copy_(torch.where(weight > 0, torch.lerp(old, new[y0:y1, x0:x1], weight), old))


def stitch(image: torch.Tensor, regions: Regions, crops: torch.Tensor,
           blend: Blend | str = Blend.SEAMLESS, feather: int | None = None,
           step: Callable[[], None] | None = None,
           check_cancel: Callable[[], None] = never_cancelled) -> torch.Tensor:
    """Put processed crops back into `image`.

    `crops` holds one crop per window, or k crops per window (k candidates, candidate-major:
    all windows of candidate 0, then candidate 1, ...); the result has k images per input image.
    A pixel whose blend weight is 0 is copied from `image`, so it is bit-identical. `feather`
    (default: the region's blur) is the inward and window blends' ramp. `step` is called once
    per window (progress and interrupt), `check_cancel` (it raises to stop) inside one window's
    seamless solve, which takes seconds for a large mask.
    """
    if tuple(image.shape[:3]) != tuple(regions.user_mask.shape):
        batch, height, width = regions.user_mask.shape
        raise ValueError(f"image: {image.shape[0]} image(s) of {image.shape[2]}x{image.shape[1]}"
                         f", but the region was made for {batch} of {width}x{height}; connect "
                         "the image given to Dilate Blur Pad")
    count = len(regions.windows)
    if crops.shape[0] % count:
        raise ValueError(f"crops: {crops.shape[0]} images for {count} regions; expected a "
                         f"multiple of {count} (one per region, per candidate)")
    candidates = crops.shape[0] // count
    radius = regions.blur if feather is None else feather
    blend = Blend(blend)
    batch = image.shape[0]
    # One thread throughout: the window-sized ops are small, and the one whole-frame op, the
    # copy, is bound by memory and page faults, which a second thread on a loaded machine only
    # delays (bench/geometry.py).
    with one_cpu_thread():
        # A plain copy: `repeat` took several times as long as `clone` for one candidate.
        out = image.clone() if candidates == 1 else torch.cat([image] * candidates)
        # Window by window, every candidate's crop at once: each candidate's image still gets
        # its windows in order, and the seamless blend factors a window's system once for all.
        for i, w in enumerate(regions.windows):
            if step is not None:
                step()
            alpha = blend_weights(regions, w, blend, radius)
            targets = [k * batch + w.batch_index for k in range(candidates)]
            new = resize(crops[i::count].to(image.dtype), w.height, w.width)[..., :image.shape[-1]]
            if blend is Blend.SEAMLESS:
                out[targets, w.y0:w.y1, w.x0:w.x1] = seamless_blend_many(
                    out[targets, w.y0:w.y1, w.x0:w.x1], new, alpha, check_cancel)
                continue
            for target, candidate in zip(targets, new):
                _paste_into(out[target, w.y0:w.y1, w.x0:w.x1], candidate, alpha, blend,
                            check_cancel)
    return out


def prepare_regions(image: torch.Tensor, mask: torch.Tensor, settings: WindowSettings,
                    check_cancel: Callable[[], None] = never_cancelled
                    ) -> tuple[Regions, torch.Tensor, torch.Tensor]:
    """DilateBlurPad: fit the mask to the image (resizing it when its size differs, as the
    vendors do; `regions.notes` says so), plan the windows, crop. Returns the regions, the crops
    and the crop masks."""
    if mask_ops.is_placeholder(mask):
        raise ValueError("mask: this is the empty 64x64 mask that LoadImage gives for an image "
                         "without alpha; paint a mask in the mask editor or connect one")
    batch, height, width = image.shape[:3]
    # Small ops on the mask's box and the windows, plus one scan of the mask: one thread.
    with one_cpu_thread():
        user_mask, notes = mask_ops.fit_to_image(mask.to(image.device), batch, height, width)
        # Near-binary values (0.98 from a brush or a JPEG) snap to 0 and 1 so no ghost is left.
        user_mask, within = mask_ops.clean_with_box(user_mask)
        regions = plan_regions(user_mask, settings, check_cancel, within)
        regions = replace(regions, notes=notes + regions.notes)
        crops, crop_masks = crop(image, regions)
    return regions, crops, crop_masks



def blend_masked(image: torch.Tensor, new: torch.Tensor, mask: torch.Tensor, feather: int,
                 blend: Blend | str = Blend.INWARD,
                 check_cancel: Callable[[], None] = never_cancelled) -> torch.Tensor:
    """Confine a full-frame result to the mask: `new` ([k*B, H, W, C], k results per image,
    candidate-major) over `image` ([B, H, W, C]) through `mask` ([B, H, W], already at the
    image's size) by a confined `blend` (`feather` is the inward blend's ramp; 0 pastes hard).
    Pixels outside the mask are copied, so they are bit-identical; a vendor's shifted or rescaled
    frame cannot leak past the mask. `check_cancel` (it raises to stop) runs during a seamless
    blend's solve."""
    if new.shape[1:3] != image.shape[1:3] or new.shape[0] % image.shape[0]:
        raise ValueError(f"new: shape {tuple(new.shape)} does not hold k results for images of "
                         f"shape {tuple(image.shape)}")
    blend = confined_blend(blend)
    batch = image.shape[0]
    weight = mask.to(image.dtype).expand(batch, *mask.shape[1:])
    if blend is Blend.INWARD:
        weight = mask_ops.inward_feather(weight, feather)
    new = new.to(image.dtype)[..., :image.shape[-1]]
    with one_cpu_thread():  # see stitch
        out = torch.cat([image] * (new.shape[0] // batch))
        for index in range(new.shape[0]):
            _paste_into(out[index], new[index], weight[index % batch], blend, check_cancel)
    return out
