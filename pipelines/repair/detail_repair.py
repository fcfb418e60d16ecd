"""PiktID Detail Repair, done locally: regenerate a masked detail in a context crop, guided by
reference shots, and blend only that region back.

The pieces, in order (`repair`):
1. Regions: a context window of the mask's box x `context_factor` (or a REGION from Dilate Blur
   Pad), crops rescaled to a processing size whose long side is at most 2048 px.
2. References: the best one is aligned to each image (`reference_warp.reference_fill`) and gives
   the guidance: the masked area pre-filled with the real detail, colour-matched.
3. Generation, per candidate (seed, seed+1, ...): a `Generator` (diffusion, built by the node
   from ComfyUI's model) sees what the mode defines (`Mode`); with no generator, the embedded
   engines answer: the aligned reference, or classical fill; when references are given but
   none aligns, a logo or text is kept as it was (`Engine.KEPT`, `reference_unaligned`).
4. Colour: the new content's low-frequency colour is matched to the original's ring around the
   mask (`harmonize.match_low_frequency`), the field's most common seam complaint.
5. Blend: `-blend` modes confine the change to the mask, every pixel outside it bit-identical:
   by default the mask's content is replaced completely and blended seamlessly against the
   pixels around it (pipelines/geometry/seamless.py); plain modes paste the whole window,
   feathered at its edge.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch

from ..core.cancel import never_cancelled
from ..core.choices import Choice
from ..core.generator import LATENT_PIXELS, Generator, size_multiple
from ..core.info import record as info_record
from ..core.tensors import image_size, one_cpu_thread
from ..geometry import masks as mask_ops
from ..geometry import regions as region_ops
from . import classical_fill, harmonize, reference_warp
from .watermark import add_ai_watermark

MAX_PROCESSING_SIDE = 2048  # PiktID: "processing is capped at 2K internally"
MAX_CANDIDATES = 16  # PiktID allows 1-4, PICPIK's BatchSize 1-16
CONTEXT_FACTOR_RANGE = (1.5, 10.0)
# Classical-fill candidates differ by method, all deterministic (PatchMatch is seeded). `texture`
# first: PatchMatch's texture inside, Telea's continuation at the edge (docs/engines.md, measured).
# Telea itself is no candidate: on masks thinner than texture's edge band it is `texture`.
# More candidates than variants repeat them (as the kept and reference-warp engines do).
FILL_VARIANTS = [("texture", 3), ("patchmatch", 3), ("ns", 3), ("patchmatch", 7)]
HIGHLIGHT = (1.0, 0.0, 1.0)  # magenta: rare in photos, so the marked region stands out


class Mode(Choice):
    """What the generator sees (see docs/detail_repair.md)."""
    GUIDED = "guided"
    GUIDED_BLEND = "guided-blend"
    ANNOTATED = "annotated"
    ANNOTATED_BLEND = "annotated-blend"
    MARKED = "marked"
    MARKED_BLEND = "marked-blend"

    @property
    def confined(self) -> bool:
        """-blend: the change stays inside the mask; otherwise the whole window is pasted."""
        return self.value.endswith("-blend")

    @property
    def technique(self) -> str:
        return self.value.removesuffix("-blend")


class Category(Choice):
    LOGO = "logo"
    TEXT = "text"
    ARTIFACT = "artifact"
    GENERAL = "general"


class Engine(Choice):
    DIFFUSION = "diffusion"
    REFERENCE_WARP = "reference_warp"
    CLASSICAL_FILL = "classical_fill"
    # References given, none aligned, and the category asks to repair a detail (logo, text):
    # the input is kept rather than the detail erased by a classical fill.
    KEPT = "kept"


# Categories whose detail must survive when no reference aligns: they ask for a repair, and a
# classical fill would erase the logo or name tag entirely. `general` (removal) and `artifact`
# want the masked content gone, so they still get the classical fill.
KEEP_WHEN_UNALIGNED = frozenset({Category.LOGO, Category.TEXT})
UNALIGNED_NOTES = {
    True: "reference_unaligned: no reference could be aligned; the detail was kept as it was",
    False: "reference_unaligned: no reference could be aligned; the masked area was filled "
           "classically",
}


# Prompt families per category: (positive template, negative). `{note}` takes the reviewer note
# and image notes; PiktID's free-form categories other than general share the logo family.
PROMPTS = {
    Category.LOGO: ("a crisp, accurate brand logo, sharp clean edges, exact shapes and colours, "
                    "consistent with the surrounding product photo{note}",
                    "blurry, distorted, garbled, misspelled, extra strokes, artifacts"),
    Category.TEXT: ("clean, legible printed text, correct letterforms and spelling, even "
                    "spacing, consistent with the surrounding photo{note}",
                    "garbled letters, misspelled, blurry, warped text, artifacts"),
    Category.ARTIFACT: ("a clean, natural continuation of the surrounding surface, no "
                        "artifacts{note}",
                        "artifact, smudge, noise, distortion, seam"),
    Category.GENERAL: ("{instruction}, photorealistic, coherent with the surroundings, same "
                       "lighting and perspective{note}",
                       "blurry, distorted, artifacts, seam, inconsistent lighting"),
}
# `general` with no instruction: regenerate cleanly, coherent with the surroundings (removal).
GENERAL_DEFAULT_INSTRUCTION = "the background continued cleanly, nothing added"


def compose_prompt(category: Category | str, reviewer_note: str = "",
                   image_notes: Sequence[str] = ()) -> tuple[str, str]:
    """The (positive, negative) text for a category and the user's notes."""
    category = Category(category)
    positive, negative = PROMPTS[category]
    notes = [n.strip() for n in image_notes if n.strip()]
    note = reviewer_note.strip()
    if category is Category.GENERAL:
        positive = positive.replace("{instruction}", note or GENERAL_DEFAULT_INSTRUCTION)
    elif note:
        notes.insert(0, note)
    return positive.format(note="".join(f"; {n}" for n in notes)), negative


@dataclass(frozen=True)
class RepairSettings:
    mode: Mode = Mode.GUIDED_BLEND
    context_factor: float = 3.0
    num_candidates: int = 1
    seed: int = 0
    processing_size: int = 1024
    denoise: float = 1.0
    # With an aligned reference the crop starts from the real detail: partial denoise keeps it.
    reference_denoise: float = 0.6
    feather: int = 4  # the inward blend's ramp and the plain modes' window edge, in pixels
    add_ai_watermark: bool = False
    blend: region_ops.Blend = region_ops.Blend.SEAMLESS  # how -blend modes confine the change
    # What the user repairs: decides what happens when references are given but none aligns.
    category: Category = Category.LOGO

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", Mode(self.mode))
        object.__setattr__(self, "blend", region_ops.confined_blend(self.blend))
        object.__setattr__(self, "category", Category(self.category))
        low, high = CONTEXT_FACTOR_RANGE
        if not low <= self.context_factor <= high:
            raise ValueError(f"context_factor: {self.context_factor} is outside {low}-{high}")
        if not 1 <= self.num_candidates <= MAX_CANDIDATES:
            raise ValueError(f"num_candidates: {self.num_candidates} is outside "
                             f"1-{MAX_CANDIDATES}")
        if not 0 <= self.processing_size <= MAX_PROCESSING_SIDE:
            raise ValueError(f"processing_size: {self.processing_size} is outside "
                             f"0-{MAX_PROCESSING_SIDE} (0 = native)")


@dataclass
class RepairResult:
    images: torch.Tensor          # [k*B, H, W, C], candidate-major
    mask: torch.Tensor            # [B, H, W]: the mask actually used
    regions: region_ops.Regions
    info: list[dict]


def _capped(regions: region_ops.Regions, target: int, multiple: int) -> region_ops.Regions:
    """The processing size: area about target^2 (0 = the windows' native size), long side at
    most MAX_PROCESSING_SIDE, both sides multiples of `multiple` as the generator needs."""
    width, height = regions.processing_size
    scale = target / (width * height) ** 0.5 if target else 1.0
    scale = min(scale, MAX_PROCESSING_SIDE / max(width, height))
    size = tuple(max(multiple, int(side * scale) // multiple * multiple)
                 for side in (width, height))
    return replace(regions, processing_size=size)


def plan(image: torch.Tensor, mask: torch.Tensor, settings: RepairSettings,
         regions: region_ops.Regions | None = None, native: bool = False,
         multiple: int = LATENT_PIXELS) -> region_ops.Regions:
    """The context windows: the given REGION, or the mask's box x context_factor. A generator
    samples them at the processing size, in multiples of `multiple` px; `native` keeps the
    windows' own size (the embedded engines work at the image's resolution, and a resample
    there and back only blurs)."""
    if regions is None:
        window = region_ops.WindowSettings(dilation=0, blur=settings.feather,
                                           window_mode=region_ops.WindowMode.CONTEXT_FACTOR,
                                           context_factor=settings.context_factor)
        regions, _, _ = region_ops.prepare_regions(image, mask, window)
    return regions if native else _capped(regions, settings.processing_size, multiple)


def _marked(pixels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The crop with the region outlined and tinted, so the generator knows where to work."""
    region = (mask > 0.5).float()
    outline = ((mask_ops.dilate(region, 2) - mask_ops.dilate(region, -1)) > 0)[..., None]
    color = pixels.new_tensor(HIGHLIGHT)
    tinted = torch.lerp(pixels, color.expand_as(pixels), 0.25 * region[..., None])
    return torch.where(outline, color.expand_as(pixels), tinted)


def generator_inputs(mode: Mode, crops: torch.Tensor, masks: torch.Tensor,
                     guidance: torch.Tensor | None, reference: torch.Tensor | None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pixels, mask, hidden) for the generator, per technique.

    guided: the context crop (its mask area pre-filled by the aligned reference when there is
    one) and the mask. annotated: the crop beside the aligned reference window on one canvas
    (in-context "diptych" inpainting), only the left panel masked. marked: the crop with the
    region highlighted, the whole window open to change, nothing hidden.
    """
    base = guidance if guidance is not None else crops
    if mode.technique == "guided":
        return base, masks, masks
    if mode.technique == "annotated":
        # With no reference, the right panel is the context with the detail greyed out.
        panel = reference if reference is not None else torch.where(
            masks[..., None] > 0, torch.full_like(crops, 0.5), crops)
        canvas_mask = torch.cat([masks, torch.zeros_like(masks)], dim=2)
        return torch.cat([base, panel], dim=2), canvas_mask, canvas_mask
    return _marked(base, masks), torch.ones_like(masks), torch.zeros_like(masks)


def _references_for(image: torch.Tensor, mask: torch.Tensor, references: Sequence[torch.Tensor],
                    keep_unaligned: bool, check_cancel: Callable[[], None]
                    ) -> tuple[torch.Tensor, torch.Tensor, list[dict | None], list[str]]:
    """Per image: the reference-filled image (where no reference aligned, the input when
    `keep_unaligned`, else the classical fill), the warped reference (the image itself where no
    reference aligned), the alignment facts for the info JSON, and notes."""
    filled, warped, facts, notes = image.clone(), image.clone(), [], []
    # The alignment keeps its own context (3x the mask's box, widened for plain areas), not the
    # window's context_factor: a smaller one loses matches, a larger one gains none
    # (docs/engines.md, tight references).
    for b in range(image.shape[0]):
        result, alignment, image_notes = reference_warp.reference_fill(
            image[b], mask[b], list(references), keep_unaligned=keep_unaligned,
            check_cancel=check_cancel)
        notes += [f"image {b}: {note}" for note in image_notes]
        facts.append(None if alignment is None else alignment.to_json())
        filled[b] = result
        if alignment is not None:
            warped[b] = torch.where(alignment.valid[..., None], alignment.warped, image[b])
    return filled, warped, facts, notes


def repair(image: torch.Tensor, mask: torch.Tensor, settings: RepairSettings,
           references: Sequence[torch.Tensor] = (), generator: Generator | None = None,
           regions: region_ops.Regions | None = None,
           step: Callable[[], None] | None = None,
           check_cancel: Callable[[], None] = never_cancelled) -> RepairResult:
    """Detail Repair on a batch; see the module docstring. `step` is called once per
    candidate (progress and interrupt); `check_cancel` inside the reference alignment, the
    classical fill and the seamless stitch, whose single steps can take seconds (it raises to
    stop)."""
    batch, height, width = image_size(image)
    reference_warp.check_reference_count(len(references))
    regions = plan(image, mask, settings, regions, native=generator is None,
                   multiple=size_multiple(generator))
    user_mask = regions.user_mask
    # The window-sized steps run on one thread, as in prepare_regions and stitch: a second
    # thread on a loaded machine only delays them (bench/geometry.py). The generator, the
    # reference alignment and the classical fill keep every thread.
    with one_cpu_thread():
        crops, crop_masks = region_ops.crop(image, regions)
    keep = settings.category in KEEP_WHEN_UNALIGNED
    filled, warped, alignments, notes = (
        _references_for(image, user_mask, references, keep, check_cancel)
        if references else (image, None, [None] * batch, []))
    aligned = any(a is not None for a in alignments)
    unaligned = [bool(references) and a is None for a in alignments]
    notes += [f"image {b}: {UNALIGNED_NOTES[keep]}" for b in range(batch) if unaligned[b]]
    guidance = region_ops.crop(filled, regions)[0] if aligned else None
    reference = region_ops.crop(warped, regions)[0] if aligned else None
    engine = (Engine.DIFFUSION if generator is not None
              else Engine.REFERENCE_WARP if aligned
              else Engine.KEPT if references and keep else Engine.CLASSICAL_FILL)
    if engine is Engine.CLASSICAL_FILL and any(bool((m > 0).all()) for m in crop_masks):
        regions = replace(regions, notes=[*regions.notes, "the mask covers its whole window, "
                                          "so the classical fill has no context to draw from "
                                          "(a flat result): connect a model, or mask less"])

    pixels, gen_mask, hidden = generator_inputs(settings.mode, crops, crop_masks, guidance,
                                                reference)
    candidates, fills = [], {}
    for k in range(settings.num_candidates):
        if engine is Engine.KEPT:
            if step is not None:
                step()
            continue
        if engine is Engine.DIFFUSION:
            strength = settings.reference_denoise if aligned else settings.denoise
            new = generator(pixels, gen_mask, hidden, settings.seed + k,
                            strength)[..., :crops.shape[2], :3]
        elif engine is Engine.REFERENCE_WARP:
            new = guidance
        else:
            # Filled at the image's own resolution, then cropped: PatchMatch copies texture at
            # its real scale, and the fill reads only the mask's box plus its context. The
            # user's own mask is filled, so the fill starts from the pixels right next to it.
            variant = FILL_VARIANTS[k % len(FILL_VARIANTS)]
            if variant not in fills:
                fills[variant] = region_ops.crop(classical_fill.classical_fill(
                    image, user_mask, *variant, check_cancel=check_cancel), regions)[0]
            new = fills[variant]
        with one_cpu_thread():
            candidates.append(harmonize.match_low_frequency(new, crops, crop_masks,
                                                            ring_width=max(settings.feather, 4)))
        if step is not None:
            step()
    blend = settings.blend if settings.mode.confined else region_ops.Blend.WINDOW
    out = (image.repeat(settings.num_candidates, 1, 1, 1) if engine is Engine.KEPT else
           region_ops.stitch(image, regions, torch.cat(candidates), blend, settings.feather,
                             check_cancel=check_cancel))
    if settings.add_ai_watermark:
        out = add_ai_watermark(out)
    # The watermark is a deliberate change outside the mask, so the output no longer promises
    # an untouched outside.
    promise = ("none" if settings.add_ai_watermark
               else "mask" if settings.mode.confined else "window")
    info = [info_record("GuidedBlendInpaint", b, k,
                        seed=settings.seed + k if engine is Engine.DIFFUSION else None,
                        engine=engine.value, mode=settings.mode.value, blend=promise,
                        references_used=alignments[b] is not None,
                        reference_count=len(references), notes=regions.notes + notes,
                        reference_unaligned=unaligned[b],
                        alignment=alignments[b], processing_size=list(regions.processing_size),
                        windows=[[w.x0, w.y0, w.x1, w.y1] for w in regions.windows
                                 if w.batch_index == b],
                        watermark=settings.add_ai_watermark, size=[width, height])
            for k in range(settings.num_candidates) for b in range(batch)]
    return RepairResult(out, user_mask, regions, info)
