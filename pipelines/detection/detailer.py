"""OctoAI /adetailer, done locally: repair each detected object in turn through the pack's
crop, generation and exact blend.

For each object (or one union of them all, with `union_masks`), in the given order, each on the
result of the previous one:
1. its shape mask is grown by `mask_dilation`, blurred by `mask_blur`, and padded by
   `mask_padding` of context that slides toward the centre at the image border
   (pipelines.geometry.regions, the vendor's documented semantics);
2. the window is rescaled to the nearest SD1.5 or SDXL resolution of the vendor's documented lists;
3. a Generator (diffusion from the node, as GuidedBlendInpaint's) regenerates the mask at
   `strength`; without one, a strong Gaussian blur does (the offline variant: anonymising
   faces, hands or people);
4. the crop is stitched back through the processed mask: "the contextual area is not
   modified", so every pixel outside the grown, blurred mask is bit-identical. The exact mode
   (`blend` seamless) replaces only the detection's own shape, blended seamlessly against the
   pixels around it, so every pixel outside the shape is bit-identical.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..core.cancel import never_cancelled
from ..core.choices import Choice
from ..core.generator import Generator
from ..core.info import record as info_record
from ..geometry import regions as region_ops
from ..geometry.masks import gaussian_blur

PROMPT_SEPARATOR = "[SEP]"


class BaseModel(Choice):
    SD15 = "sd15"
    SDXL = "sdxl"


@dataclass(frozen=True)
class DetailerSettings:
    mask_dilation: int = 4
    mask_blur: int = 4
    mask_padding: int = 32
    base_model: BaseModel = BaseModel.SD15
    union_masks: bool = False
    strength: float = 0.9
    seed: int = 0
    blend: region_ops.Blend = region_ops.Blend.OUTWARD  # adetailer's; seamless is exact

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_model", BaseModel(self.base_model))
        object.__setattr__(self, "blend", region_ops.Blend(self.blend))
        if self.blend is region_ops.Blend.WINDOW:
            raise ValueError("blend: 'window' is not allowed here; choose outward, seamless, "
                             "inward or hard")
        for name in ("mask_dilation", "mask_blur", "mask_padding"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: {getattr(self, name)} is below 0; it must be >= 0")
        if not 0 < self.strength <= 1:
            raise ValueError(f"strength: {self.strength} is outside (0, 1]")

    def window(self) -> region_ops.WindowSettings:
        resize = (region_ops.ResizeMode.SD15_BUCKETS if self.base_model is BaseModel.SD15
                  else region_ops.ResizeMode.SDXL_BUCKETS)
        return region_ops.WindowSettings(self.mask_dilation, self.mask_blur,
                                         region_ops.WindowMode.PADDING, self.mask_padding,
                                         resize_mode=resize)


def split_prompts(text: str) -> list[str]:
    """Per-detection prompts: `face one [SEP] face two`. Detection i takes prompt i; when there
    are fewer prompts than detections, the last one serves the rest (ADetailer's convention)."""
    return [part.strip() for part in text.split(PROMPT_SEPARATOR)]


def prompt_for(prompts: Sequence[str], index: int) -> str:
    return prompts[min(index, len(prompts) - 1)]


def blur_out(crops: torch.Tensor) -> torch.Tensor:
    """A Gaussian blur of `[N, h, w, C]` crops strong enough to hide identity: its radius is an
    eighth of the crop's shorter side."""
    count, height, width, channels = crops.shape
    radius = max(4, min(height, width) // 8)
    planes = crops.movedim(-1, 1).reshape(count * channels, height, width)
    return gaussian_blur(planes, radius).reshape(count, channels, height, width).movedim(1, -1)


@dataclass
class DetailerResult:
    image: torch.Tensor
    num_objects_detected: int
    num_objects_inpainted: int
    windows: list[list[int]]
    num_removed_for_safety: int = 0  # no safety filter runs locally; documented


def info_records(result: DetailerResult, settings: DetailerSettings, batch: int, detector: str,
                 engine: str) -> list[dict]:
    """The info JSON's records, one per output image (the Detailer gives one candidate each):
    `blend` "mask" when the blend kept every pixel outside the detections' own shapes, else
    "window"; the Detailer's own fields (detector, windows of that image, counts) after them."""
    blend = "mask" if settings.blend.confined else "window"
    return [info_record("Detailer", index, 0, seed=settings.seed if engine == "diffusion" else None,
                        engine=engine, mode=None, blend=blend, references_used=False,
                        reference_count=0, notes=[], detector=detector,
                        windows=[w for w in result.windows if w[0] == index],
                        num_objects_detected=result.num_objects_detected,
                        num_objects_inpainted=result.num_objects_inpainted)
            for index in range(batch)]


def detail(image: torch.Tensor, objects: Sequence[tuple[int, torch.Tensor]],
           settings: DetailerSettings,
           generator_for: Callable[[int], Generator] | None = None,
           step: Callable[[], None] | None = None,
           check_cancel: Callable[[], None] = never_cancelled) -> DetailerResult:
    """Repair `objects` (batch index, `[H, W]` shape mask) of `image` ([B, H, W, C]) in order.
    `generator_for(i)` gives the generator for job i (its prompt); None blurs (blur_out).
    `step` is called once per job (progress and interrupt), `check_cancel` (it raises to stop)
    inside one job's mask growth and seamless stitch, seconds each for a large object."""
    batch, height, width = image.shape[:3]
    jobs: list[torch.Tensor] = []
    for index, shape in objects:
        if not 0 <= index < batch:
            raise ValueError(f"detections: batch index {index} is outside 0..{batch - 1}")
        if tuple(shape.shape) != (height, width):
            raise ValueError(f"detections: found on a {shape.shape[-1]}x{shape.shape[-2]} "
                             f"image; image is {width}x{height} (detect on this image)")
        mask = torch.zeros(batch, height, width, device=image.device)
        mask[index] = shape.to(mask.device, mask.dtype)
        jobs.append(mask)
    if settings.union_masks and jobs:
        jobs = [torch.stack(jobs).amax(dim=0)]
    current, windows, inpainted = image, [], 0
    for number, mask in enumerate(jobs):
        if step is not None:
            step()
        if not (mask > 0).any():
            continue
        regions, crops, crop_masks = region_ops.prepare_regions(current, mask, settings.window(),
                                                                check_cancel)
        if generator_for is None:
            new = blur_out(crops)
        else:
            new = generator_for(number)(crops, crop_masks, crop_masks, settings.seed,
                                        settings.strength)
        current = region_ops.stitch(current, regions, new, settings.blend,
                                    check_cancel=check_cancel)
        windows += [[w.batch_index, w.x0, w.y0, w.x1, w.y1] for w in regions.windows]
        inpainted += 1 if not settings.union_masks else len(objects)
    return DetailerResult(current, len(objects), inpainted, windows)
