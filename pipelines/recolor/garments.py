"""Garment recolour (PiktID Garment Recolor, done locally): one garment, one colour, one look
across a whole set of product images.

- **Target.** A swatch image, a colour text or a free-form instruction (target.py).
- **Recolour.** In CIELAB, as a change of dye under the photo's own light, keeping the folds
  (transfer.py); where sRGB cannot hold the target with them, the report says how far
  the mean is.
- **Set.** `use_anchor` fits that mapping once, on the anchor image, and applies it to every image;
  `post_process` then pulls each image's garment mean onto the anchor's result (where a shot
  cannot keep its folds at that colour, the whole set gives way together to that shot's mean).
  Pixels outside the garment mask are copied, never converted.
- **Refinement (optional).** A diffusion `Generator` (pipelines/core/generator.py) re-renders the
  recoloured garment's texture at low denoise in a context crop; the anchor correction then runs
  on the refined pixels, so the set stays on one colour (`refine_garment`).

This module is the orchestration: the set, its variations, refinement, the report and info.
Everything is batched torch on the images' device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from ..core import tensors
from ..core.cancel import never_cancelled
from ..core.choices import Choice
from ..core.color import ciede2000, in_gamut, lab_hex, srgb_to_lab
from ..core.generator import Generator, size_multiple
from ..core.info import record as info_record
from ..geometry import masks as mask_ops
from ..geometry import regions as region_ops
from ..repair.watermark import add_ai_watermark
from .target import Target, check_target_inputs, color_words, resolve_target
from .transfer import (
    GAVE_WAY_REPORT,
    SET_TOLERANCE,
    Garment,
    Transfer,
    apply_transfer,
    fit_transfer,
    garment_pixels,
    lightness_std,
    pixel_chunks,
    solve,
)

REPORT_SCHEMA = "region_repair.recolor_report/1"


NODE_NAME = "GarmentRecolorAnchor"


MAX_IMAGES = 10


MAX_VARIATIONS = 8


class ProcessingSize(Choice):
    NATIVE = "native"
    S1024 = "1024"
    S2048 = "2048"
    S4096 = "4096"


@dataclass(frozen=True)
class RefineSettings:
    denoise: float = 0.3
    seed: int = 0        # image i is refined with seed + i
    label: str = ""      # the garment, for the prompt

    def __post_init__(self) -> None:
        if not 0.0 <= self.denoise <= 1.0:
            raise ValueError(f"denoise: {self.denoise} is outside 0..1")


# The generator's crop: area about 640^2 (SD1.5's 512-768 comfort zone) in multiples of the
# generator's size multiple (8, or 16 for Flux and SD3), with 32 px of context around the
# garment's box and a 4 px inward feather at the mask's edge.
REFINE_SIZE = 640


REFINE_PADDING = 32


REFINE_FEATHER = 4


def refine_prompt(label: str, target: Target) -> tuple[str, str]:
    """(positive, negative) for the refinement, from the garment label and the target colour."""
    garment = label.strip() or "garment"
    return (f"a {garment} in {color_words(target.lab)}, fabric texture, photo",
            "blotchy, stained, colour shift, blurry, smeared, text, watermark")


def refine_garment(image: torch.Tensor, mask: torch.Tensor, garment: Garment,
                   colors: torch.Tensor, generator: Generator, denoise: float, seed: int,
                   correct_to: torch.Tensor | None,
                   check_cancel: Callable[[], None] = never_cancelled) -> torch.Tensor:
    """Diffusion refinement of one image's recoloured garment, all variations in one batch.

    `colours` `[V, N, 3]` are the garment pixels' recoloured sRGB (in `garment.index` order);
    returns them refined, same shape. The garment is cropped with the pack's region geometry,
    regenerated at `denoise` under the mask (nothing hidden: the model sees the recoloured
    garment, and only its texture should change), and stitched back with the inward blend. The
    crop is usually smaller than the garment at full size, so what comes back is the
    generator's *change*, upsampled and added to the full-size pixels: native detail survives.
    With `correct_to` (`[V, 3]` Lab) a shading-preserving transfer (gain 1) then moves each
    refined garment's mean onto that colour, as post_process does for the unrefined set."""
    count = colors.shape[0]
    full = image[..., :3].repeat(count, 1, 1, 1)  # [V, H, W, 3]
    full.view(count, -1, 3)[:, garment.index] = colors.to(full.dtype)
    window = region_ops.WindowSettings(dilation=0, blur=REFINE_FEATHER, padding=REFINE_PADDING,
                                       resize_mode=region_ops.ResizeMode.multiple_of(
                                           size_multiple(generator)),
                                       processing_size=REFINE_SIZE)
    regions, crops, crop_masks = region_ops.prepare_regions(full, mask[None], window)
    new = generator(crops, crop_masks, torch.zeros_like(crop_masks), seed, denoise).detach()
    stitched = region_ops.stitch(full, regions, new[..., :3], region_ops.Blend.INWARD)
    round_trip = region_ops.stitch(full, regions, crops, region_ops.Blend.INWARD)
    refined = (full + (stitched - round_trip)).clamp(0, 1).view(count, -1, 3)[:, garment.index]
    if correct_to is None:
        return refined
    corrected = []
    for variation in range(count):
        shown = full[variation].clone()
        shown.view(-1, 3)[garment.index] = refined[variation]
        ref = garment_pixels(shown, mask, check_cancel)
        gain = torch.ones(1, 1, dtype=torch.float64, device=image.device)
        transfer, _ = solve(ref, float(ref.mean[0]), gain, correct_to[variation:variation + 1])
        corrected.append(apply_transfer(ref.lightness, transfer, check_cancel)[0])
    return torch.stack(corrected)


@dataclass
class RecolorSettings:
    use_anchor: bool = True
    post_process: bool = True
    anchor_index: int = 0
    num_variations: int = 1
    variation_step: float = 8.0  # ΔL* between shade variations
    contrast: float = 1.0        # multiplies the shading ratio aimed at (shading_ratio)

    def __post_init__(self) -> None:
        if not 1 <= self.num_variations <= MAX_VARIATIONS:
            raise ValueError(f"num_variations: {self.num_variations} is outside 1..8")
        if not 0.0 <= self.variation_step <= 40.0:
            raise ValueError(f"variation_step: {self.variation_step} is outside 0..40")
        if not 0.1 <= self.contrast <= 3.0:
            raise ValueError(f"contrast: {self.contrast} is outside 0.1..3")


def variation_offsets(count: int, step: float) -> list[float]:
    """Lightness offsets: 0 (the target itself), then +step, -step, +2 step, -2 step, ..."""
    return [((index + 1) // 2) * step * (1 if index % 2 else -1) for index in range(count)]


def variation_goals(target: torch.Tensor, count: int, step: float) -> torch.Tensor:
    """`[V, 3]` Lab: the target at shifted lightness, same hue and chroma (less where sRGB
    cannot show that chroma at the new lightness)."""
    goals = target.double().repeat(count, 1)
    offsets = torch.tensor(variation_offsets(count, step), dtype=torch.float64)
    goals[:, 0] = (goals[:, 0] + offsets).clamp(2.0, 98.0)
    return torch.stack([goals[0]] + [in_gamut(goal) for goal in goals[1:]])


@dataclass
class RecolorResult:
    images: list[torch.Tensor]  # variation-major: output v * n + i is image i, variation v
    masks: list[torch.Tensor]   # per image [H, W]
    report: dict = field(default_factory=dict)
    info: list[dict] = field(default_factory=list)


def recolor_set(images: Sequence[torch.Tensor], masks: Sequence[torch.Tensor], target: Target,
                settings: RecolorSettings, step: Callable[[], None] | None = None,
                refine: Generator | None = None, refine_settings: RefineSettings | None = None,
                check_cancel: Callable[[], None] = never_cancelled
                ) -> tuple[list[torch.Tensor], list[dict], list[str]]:
    """Recolour every image's garment. `images`: `[H, W, C]` each (sizes may differ); `masks`:
    `[H, W]` in 0..1 each. Returns the outputs (variation-major), one record per output, notes.

    With `refine`, each image's recoloured garment is refined by the generator
    (`refine_garment`, seed + image index) before the post_process correction, which then pulls
    the refined garment onto the anchor's result.

    `step` is called once per image and pass (progress and interrupt), `check_cancel` (it
    raises to stop) within one image, every PIXEL_CHUNK pixels read or written."""
    step = step or never_cancelled
    garments = [garment_pixels(image, mask, check_cancel) for image, mask in zip(images, masks)]
    notes = [f"image {index}: empty garment mask, left unchanged"
             for index, garment in enumerate(garments) if garment.empty]
    anchor = _usable_anchor(garments, settings.anchor_index, notes)
    goals = variation_goals(target.lab, settings.num_variations, settings.variation_step)
    transfers, aim, followed = _fit_set(garments, anchor, goals, settings, step, notes)
    # Variation-major: output v * n + i is image i in variation v.
    outputs: list[torch.Tensor] = [torch.empty(0)] * (len(images) * settings.num_variations)
    records: list[dict] = [{}] * len(outputs)
    measured: dict[tuple[int, int], tuple[torch.Tensor, float]] = {}
    for index, (image, garment, transfer) in enumerate(zip(images, garments, transfers)):
        step()
        recolored = (None if transfer is None
                      else apply_transfer(garment.lightness, transfer, check_cancel))
        if recolored is not None and refine is not None:
            options = refine_settings or RefineSettings()
            recolored = refine_garment(image, masks[index], garment, recolored, refine,
                                        options.denoise, options.seed + index,
                                        aim if settings.post_process else None, check_cancel)
            step()
        for variation in range(settings.num_variations):
            check_cancel()
            out = image.clone()
            if recolored is not None:
                measured[index, variation] = _paint(out, garment, recolored[variation],
                                                    check_cancel)
            outputs[variation * len(images) + index] = out
            records[variation * len(images) + index] = {
                "image_index": index, "variation_index": variation,
                "target_lab": [round(float(v), 3) for v in goals[variation]],
                "target_hex": lab_hex(goals[variation]),
                "garment_pixels": int(garment.index.numel()),
            }
    _measure(records, measured, goals, anchor, followed, notes)
    return outputs, records, notes


def _usable_anchor(garments: list[Garment], anchor: int, notes: list[str]) -> int:
    """The anchor image: the one asked for, or the first with a garment when it has none."""
    if not 0 <= anchor < len(garments):
        raise ValueError(f"anchor_index: {anchor} is outside 0..{len(garments) - 1}")
    if not garments[anchor].empty:
        return anchor
    usable = [index for index, garment in enumerate(garments) if not garment.empty]
    if not usable:
        raise ValueError("every garment mask is empty: nothing to recolour (give masks, or "
                         "a garment_label that matches what the photos show)")
    notes.append(f"anchor image {anchor} has no garment; image {usable[0]} is the anchor")
    return usable[0]


def _fit_set(garments: list[Garment], anchor: int, goals: torch.Tensor,
             settings: RecolorSettings, step: Callable[[], None], notes: list[str]
             ) -> tuple[list[Transfer | None], torch.Tensor, list[int]]:
    """Each shot's transfer (None for an empty garment), the mean the set aims at `[V, 3]`
    (the anchor's result, or the shot the set gave way to) and, per variation, the shot whose
    folds the set follows (empty when it did not give way)."""
    anchor_transfer, aim = fit_transfer(garments[anchor], goals, settings.contrast)
    transfers: list[Transfer | None] = []
    reached: dict[int, torch.Tensor] = {anchor: aim}  # post_process: each shot's mean
    for index, garment in enumerate(garments):
        step()
        if garment.empty:
            transfers.append(None)
        elif index == anchor:
            transfers.append(anchor_transfer)
        elif settings.post_process:
            # The shot's own shading fit, landing on the anchor's result: a set's shots differ
            # in light, and the anchor's gain on a dimmer or brighter shot would crush or
            # amplify its folds.
            transfer, reached[index] = fit_transfer(garment, aim, settings.contrast)
            transfers.append(transfer)
        elif settings.use_anchor:  # the anchor's one curve: each shot keeps its own light
            transfers.append(anchor_transfer)
        else:
            transfers.append(fit_transfer(garment, goals, settings.contrast)[0])
    if not settings.post_process:
        return transfers, aim, []
    # A shot that cannot keep its folds at the anchor's result gives way by its own amount:
    # the whole set then gives way together, to the most constrained shot's mean.
    misses = torch.stack([ciede2000(mean, aim) for mean in reached.values()])
    if float(misses.max()) <= SET_TOLERANCE:
        return transfers, aim, []
    shots = list(reached)
    followed = [shots[int(w)] for w in misses.argmax(dim=0)]
    aim = torch.stack([reached[shot][v] for v, shot in enumerate(followed)])
    notes.append("the set gave way together: image(s) "
                 + ", ".join(str(shot) for shot in sorted(set(followed)))
                 + " cannot keep the folds at the anchor's colour, so every shot "
                 "aims at that image's mean")
    for index in shots:
        step()
        transfers[index], _ = fit_transfer(garments[index], aim, settings.contrast)
    return transfers, aim, followed


def _paint(out: torch.Tensor, garment: Garment, colors: torch.Tensor,
           check_cancel: Callable[[], None]) -> tuple[torch.Tensor, float]:
    """Blend the recoloured garment pixels `colours` `[N, 3]` into `out` in place (by the
    mask's weight), in chunks; return the garment's measured mean Lab and its shading ratio
    (std of L*, output / input)."""
    flat = out.view(-1, out.shape[-1])
    for chunk in pixel_chunks(garment.index.shape[0], check_cancel):
        index_chunk = garment.index[chunk]
        flat[index_chunk, :3] = torch.lerp(flat[index_chunk, :3], colors[chunk].to(out.dtype),
                                           garment.weight[chunk, None].to(out.dtype))
    shown_lab = srgb_to_lab(flat[garment.sample, :3][None, :, None])[0, :, 0].double()
    ratio = float(shown_lab[:, 0].std(correction=0)
                  / lightness_std(garment.levels, garment.counts).clamp_min(1e-6))
    return shown_lab.mean(0), ratio


def _measure(records: list[dict], measured: dict[tuple[int, int], tuple[torch.Tensor, float]],
             goals: torch.Tensor, anchor: int, followed: list[int], notes: list[str]) -> None:
    """Add each recoloured output's measured mean, distances and shading ratio to its record,
    and a note for each output whose mean stayed away from the target to keep the folds."""
    count = len(records) // len(goals)  # images in the set
    for (index, variation), (mean, ratio) in measured.items():
        record = records[variation * count + index]
        record["garment_mean_lab"] = [round(float(v), 3) for v in mean]
        record["delta_e_target"] = round(float(ciede2000(mean, goals[variation])), 4)
        record["delta_e_anchor"] = round(float(ciede2000(mean, measured[anchor, variation][0])),
                                         4)
        record["shading_ratio"] = round(ratio, 3)
        if record["delta_e_target"] > GAVE_WAY_REPORT:
            whose = ("this garment's folds" if not followed or followed[variation] == index
                     else f"image {followed[variation]}'s folds, which the set follows")
            notes.append(
                f"image {index}, variation {variation}: the garment's mean is ΔE00 "
                f"{record['delta_e_target']:.1f} from the target {record['target_hex']}: sRGB "
                f"cannot show that lightness with {whose}, so the folds were kept "
                f"(lightness spread {record['shading_ratio']:.2f}x the original's)")


def set_spread(records: Sequence[dict], variation: int) -> float:
    """The largest ΔE2000 between two images' garment means within one variation."""
    means = [torch.tensor(r["garment_mean_lab"]) for r in records
             if r["variation_index"] == variation and "garment_mean_lab" in r]
    if len(means) < 2:
        return 0.0
    stacked = torch.stack(means)
    return float(ciede2000(stacked[:, None], stacked[None]).max())


MaskFinder = Callable[[list[torch.Tensor]], tuple[list[torch.Tensor], list[str]]]


def recolor_garments(images: Sequence[torch.Tensor], masks: Sequence[torch.Tensor] | None,
                     reference_image: torch.Tensor | None, reference_text: str | None,
                     instruction: str | None, settings: RecolorSettings,
                     processing_size: ProcessingSize | str = ProcessingSize.NATIVE,
                     watermark: bool = False, find_masks: MaskFinder | None = None,
                     step: Callable[[], None] | None = None,
                     refine: Callable[[tuple[str, str]], Generator] | None = None,
                     refine_settings: RefineSettings | None = None,
                     check_cancel: Callable[[], None] = never_cancelled
                     ) -> RecolorResult:
    """The node's work: sizes, masks (given, or `find_masks` for the automatic garment mask),
    target, recolour of the set, optional diffusion refinement, watermark, report and info JSON.

    `refine`, when given, builds the generator from the (positive, negative) prompt that
    `refine_prompt` composes for the garment and target.

    `images` are `[H, W, C]` (sizes may differ); `masks` one `[H, W]` per image, or one for all,
    resized to each image when their size differs. `step` and `check_cancel`: see recolor_set.
    """
    notes: list[str] = []
    if not 1 <= len(images) <= MAX_IMAGES:
        raise ValueError(f"images: {len(images)} images given; give 1 to {MAX_IMAGES}")
    check_target_inputs(reference_image is not None, reference_text, instruction)
    size = ProcessingSize(processing_size)
    images = _at_processing_size(images, size, notes)
    if masks:
        masks = _fitted_masks(masks, images, size is ProcessingSize.NATIVE, notes)
    elif find_masks is None:
        raise ValueError("masks: none given and no automatic garment mask available")
    else:
        masks, mask_notes = find_masks(list(images))
        notes += mask_notes

    def current_color() -> torch.Tensor:
        anchor = min(settings.anchor_index, len(images) - 1)
        return garment_pixels(images[anchor], masks[anchor], check_cancel).mean

    target = resolve_target(reference_image, reference_text, instruction, current_color)
    notes += target.notes
    options = refine_settings or RefineSettings()
    generator = None
    if refine is not None:
        prompt = refine_prompt(options.label, target)
        generator = refine(prompt)
        notes.append(f"diffusion refinement inside the mask at denoise {options.denoise:g}, "
                     f"seed {options.seed} + image index, prompt {prompt[0]!r}; "
                     + ("then the anchor correction" if settings.post_process else
                        "post_process is off, so the refinement may move the colour"))
    outputs, records, set_notes = recolor_set(images, masks, target, settings, step,
                                              generator, options, check_cancel)
    notes += set_notes
    if watermark:
        outputs = [add_ai_watermark(out[None])[0] for out in outputs]
    exact_outside = size is ProcessingSize.NATIVE and not watermark
    seed = options.seed if refine is not None else None
    info = _info(records, notes, settings, seed, exact_outside, reference_image is not None)
    report = _report(records, notes, target, settings, len(images),
                     None if refine is None else options)
    return RecolorResult(outputs, list(masks), report, info)


def _at_processing_size(images: Sequence[torch.Tensor], size: ProcessingSize,
                        notes: list[str]) -> list[torch.Tensor]:
    images = [image.float() for image in images]
    if size is ProcessingSize.NATIVE:
        return images
    notes.append(f"images scaled to a long side of {size.value} px")
    return [tensors.resize_long_side(image, int(size.value), "bicubic", enlarge=True)
            for image in images]


def _fitted_masks(masks: Sequence[torch.Tensor], images: list[torch.Tensor], native: bool,
                  notes: list[str]) -> list[torch.Tensor]:
    """One `[H, W]` mask per image: one per image, or one for all, resized where its size
    differs (said in the notes at native size; a processing size resizes every image)."""
    if len(masks) not in (1, len(images)):
        raise ValueError(f"masks: {len(masks)} masks for {len(images)} images; give 1 "
                         f"mask or {len(images)}")
    fitted = []
    for index, image in enumerate(images):
        mask = masks[index if len(masks) > 1 else 0].float().clamp(0, 1)
        mask, resized = mask_ops.fit_to_image(mask, 1, *image.shape[:2], name=f"mask {index}")
        if native:
            notes += resized
        fitted.append(mask[0].to(image.device))
    return fitted


def _info(records: list[dict], notes: list[str], settings: RecolorSettings, seed: int | None,
          exact_outside: bool, has_reference: bool) -> list[dict]:
    """The info JSON: one record per output (the notes on the first); `seed` is the
    refinement's (None without one)."""
    return [info_record(
        NODE_NAME, record["image_index"], record["variation_index"],
        seed=None if seed is None else seed + record["image_index"],
        engine="embedded" if seed is None else "embedded+diffusion",
        mode="anchor" if settings.use_anchor else "independent",
        blend="mask" if exact_outside else "none",
        references_used=has_reference, reference_count=int(has_reference),
        notes=list(notes) if number == 0 else [],
        target_lab=record["target_lab"], target_hex=record["target_hex"],
        **{key: record[key] for key in ("garment_mean_lab", "delta_e_target",
                                        "delta_e_anchor", "shading_ratio") if key in record})
        for number, record in enumerate(records)]


def _report(records: list[dict], notes: list[str], target: Target, settings: RecolorSettings,
            count: int, refined: RefineSettings | None) -> dict:
    return {
        "schema": REPORT_SCHEMA,
        "target": {"lab": [round(float(v), 3) for v in target.lab], "hex": target.hex},
        "order": "variation-major: output v * images + i is image i in variation v",
        "images": count, "num_variations": settings.num_variations,
        "variation_lightness_offsets": variation_offsets(settings.num_variations,
                                                         settings.variation_step),
        "use_anchor": settings.use_anchor, "post_process": settings.post_process,
        "anchor_index": settings.anchor_index,
        "refine": None if refined is None else {"denoise": refined.denoise,
                                                "seed": refined.seed},
        "spread_delta_e": [round(set_spread(records, v), 4)
                           for v in range(settings.num_variations)],
        "outputs": records, "notes": notes,
    }
