"""Garment recolour's colour transfer: a change of dye under the photo's own light.

Every garment pixel keeps its shading (its lightness offset from the garment's mean, scaled by a
gain chosen so the garment's spread of L* stays 0.72-1.25 times the original's, whatever the
target's lightness) and takes the target's hue, with chroma following the shaded lightness as it
does for a real dye. `solve` moves the mapping until the garment's *mean* colour, measured after
the round trip through sRGB (gamut mapping included), lands on the goal; where sRGB cannot hold
both, the folds are kept. A transfer reads only a pixel's L*, so the solver works on the garment's
L* histogram (`Garment`), and `apply_transfer` is a table over L*, interpolated for every pixel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import kornia.color
import torch

from ..core.cancel import never_cancelled
from ..core.color import ciede2000, lab_to_srgb_in_gamut, lightness_of, srgb_to_lab

# A garment pixel counts towards the garment's colour when its mask weight is at least this:
# feathered edge pixels are partly the original and would bias the mean.
CORE_WEIGHT = 0.5


def soft_clip_lightness(lightness: torch.Tensor, ceiling: torch.Tensor | float = 100.0,
                        knee: float = 8.0) -> torch.Tensor:
    """Keep L* inside 0..`ceiling` with smooth shoulders (`knee` at the top, half of it at the
    bottom, where sRGB has fewer levels to spare), so highlights and deep shadows pushed past the
    range keep an ordering (texture) instead of flattening at a clip."""
    high, low = ceiling - knee, knee / 2
    over = high + knee * torch.tanh((lightness - high) / knee)
    under = low - low * torch.tanh((low - lightness) / low)
    return torch.where(lightness > high, over, torch.where(lightness < low, under, lightness))


@dataclass(frozen=True)
class Transfer:
    """One colour transfer, for V variations: L' = soft_clip(L_eff + gain (L - source_L)) below
    `ceiling`; a', b' = (a, b)_eff scaled by (L' + 16) / (L_eff + 16), which is how a*, b* of one
    reflectance scale with the light falling on it (exactly, where CIELAB's cube root applies)."""
    source_l: float
    gain: torch.Tensor       # [V, 1]
    effective: torch.Tensor  # [V, 3] Lab
    ceiling: torch.Tensor    # [V, 1] L*: the shoulder's top (`lightness_ceiling`)


def map_lab(lab: torch.Tensor, transfer: Transfer) -> torch.Tensor:
    """Garment pixels `[N, 3]` Lab -> `[V, N, 3]`."""
    eff = transfer.effective.to(lab.dtype)
    gain = transfer.gain.to(lab.dtype)
    lightness = soft_clip_lightness(eff[:, :1] + gain * (lab[None, :, 0] - transfer.source_l),
                                    transfer.ceiling.to(lab.dtype))
    # An effective L* below 0 (a near-black mean keeping its folds) would blow this up.
    scale = (lightness + 16) / (eff[:, :1] + 16).clamp_min(16)
    return torch.stack([lightness, eff[:, 1:2] * scale, eff[:, 2:3] * scale], dim=-1)


def lightness_ceiling(goal: torch.Tensor) -> torch.Tensor:
    """`[V, 3]` Lab -> `[V, 1]`: the highest L* at which sRGB still holds the goal's chroma and
    hue (100 for a grey), and at least CEILING_MARGIN above the goal. A light garment's lit
    folds pushed above it lose their chroma in the gamut mapping (cream highlights turn white),
    and the garment's mean colour with them: where the shoulder ending at white misses the
    colour, `_fit_one` ends it here instead."""
    low = goal[:, 0].clone()
    high = torch.full_like(low, 100.0)
    for _ in range(CEILING_STEPS):
        middle = (low + high) / 2
        trial = torch.stack([middle, goal[:, 1], goal[:, 2]], -1)
        rgb = kornia.color.lab_to_rgb(trial.float()[:, :, None, None], clip=False)[:, :, 0, 0]
        fits = ((rgb >= -1e-4) & (rgb <= 1 + 1e-4)).all(dim=1)
        low, high = torch.where(fits, middle, low), torch.where(fits, high, middle)
    return torch.maximum(low, goal[:, 0] + CEILING_MARGIN).clamp(max=100.0)[:, None]


def shown_levels(lab: torch.Tensor) -> torch.Tensor:
    """`[V, K, 3]` Lab levels -> the Lab the output image will hold, after the gamut mapping."""
    return srgb_to_lab(lab_to_srgb_in_gamut(lab)[:, :, None])[:, :, 0].double()


def weighted_mean(values: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Mean over the levels axis (-2) of `[V, K, C]` with pixel `counts` `[K]` -> `[V, C]`."""
    return (values * counts[None, :, None]).sum(1) / counts.sum()


def lightness_std(levels: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Standard deviation of L* over levels `[..., K]` with pixel `counts` `[K]`."""
    mean = (levels * counts).sum(-1, keepdim=True) / counts.sum()
    return (((levels - mean) ** 2 * counts).sum(-1) / counts.sum()).sqrt()


# The shading kept: the std of L* inside the garment, output / input. A dye change under the same
# light scales shading offsets by (L*_target + 16) / (L*_source + 16): up to 4x from black to
# cream, which reads as vinyl, down to 0.2 from white to black, which reads as a flat cut-out.
# The ratio aimed at is that physical one held within SHADING_RATIO (then times `contrast`);
# where the garment's mean cannot land within COLOUR_TOLERANCE of the target with it, lower
# ratios are tried down to SHADING_FLOOR, and below that the folds win: the mean gives way and
# the record reports the colour error.
SHADING_RATIO = (0.8, 1.25)


SHADING_FLOOR = 0.72


COLOR_TOLERANCE = 0.5  # ΔE2000 of the mean a ratio may cost before a lower one is tried


# Above this the garment's noise and JPEG blocks would be amplified into blotches (a black
# T-shirt's L* spread is mostly noise).
MAX_GAIN = 4.0


CHROMA_HEADROOM = 2.0  # the effective chroma's cap, relative to the target's


RATIO_SLACK = 0.02


# A garment mean further than this from the target is reported in the notes.
GAVE_WAY_REPORT = 1.0


# A post_process shot whose mean lands further than this from the anchor's result made the set
# give way together (`recolor_set`).
SET_TOLERANCE = 0.25


GIVE_WAY_PROBES = 6  # bisection steps of the aimed L* when the folds cannot be kept at the goal


CEILING_STEPS = 16   # bisection steps of `lightness_ceiling` (to 0.001 L*)


CEILING_MARGIN = 1.0  # L* the ceiling keeps above the goal, however saturated a light goal


# The effective (pre-clip) L* may leave 0..100: the soft clip brings the pixels back, which lets
# a near-white or near-black mean keep its folds as a soft shoulder instead of a flat clip.
EFFECTIVE_L = (-40.0, 140.0)


def shading_ratio(source_l: float, goal_l: torch.Tensor, contrast: float) -> torch.Tensor:
    """`[V]` std of L* ratio (output / input) to aim for, per variation."""
    physical = (goal_l + 16) / (source_l + 16)
    return physical.clamp(*SHADING_RATIO) * contrast


def solve(garment: Garment, source_l: float, gain: torch.Tensor, goal: torch.Tensor,
          start: torch.Tensor | None = None, iterations: int = 8, tolerance: float = 0.05,
          ceiling: torch.Tensor | None = None) -> tuple[Transfer, torch.Tensor]:
    """Find the effective Lab per variation whose mapped, gamut-mapped garment mean equals
    `goal` `[V, 3]` (fixed-point steps: each adds the remaining error). Works on the garment's
    L* histogram. `ceiling` `[V, 1]`: the shoulder's top (white when not given). Returns the
    transfer and the mean it achieves."""
    levels = garment.level_lab()
    effective = (goal if start is None else start).clone()
    if ceiling is None:
        ceiling = torch.full_like(goal[:, :1], 100.0)
    for _ in range(iterations):
        transfer = Transfer(source_l, gain, effective, ceiling)
        achieved = weighted_mean(shown_levels(map_lab(levels, transfer)), garment.counts)
        if float(ciede2000(achieved, goal).max()) < tolerance:
            break
        effective = effective + (goal - achieved)
        effective[:, 0].clamp_(*EFFECTIVE_L)
        # Highlights pushed to white lose their chroma in the gamut mapping; buying it back in
        # the shadows would tint the folds (yellow folds on a cream shirt): the chroma is capped,
        # and the record shows the mean's shortfall instead.
        chroma = effective[:, 1:].norm(dim=1, keepdim=True)
        goal_chroma = goal[:, 1:].norm(dim=1, keepdim=True)
        cap = torch.maximum(goal_chroma * CHROMA_HEADROOM, goal_chroma + 10)
        effective[:, 1:] *= (cap / chroma.clamp_min(1e-9)).clamp(max=1)
    else:
        transfer = Transfer(source_l, gain, effective, ceiling)
        achieved = weighted_mean(shown_levels(map_lab(levels, transfer)), garment.counts)
    return transfer, achieved


def shown_ratio(garment: Garment, transfer: Transfer) -> torch.Tensor:
    """`[V, 1]` std of the output's L* over the input's, on the garment's histogram."""
    shown = shown_levels(map_lab(garment.level_lab(), transfer))[..., 0]
    source = lightness_std(garment.levels, garment.counts).clamp_min(1e-6)
    return (lightness_std(shown, garment.counts) / source)[:, None]


def fit_transfer(garment: Garment, goal: torch.Tensor, contrast: float
                 ) -> tuple[Transfer, torch.Tensor]:
    """The transfer whose garment mean lands on `goal` `[V, 3]` while keeping the shading ratio
    of `shading_ratio`, per variation. Returns the transfer and the mean it achieves."""
    source_l = float(garment.mean[0])
    wanted = shading_ratio(source_l, goal[:, 0], contrast)
    fits = [_fit_one(garment, source_l, goal[v:v + 1], float(wanted[v]))
            for v in range(goal.shape[0])]
    transfer = Transfer(source_l, torch.cat([t.gain for t, _ in fits]),
                        torch.cat([t.effective for t, _ in fits]),
                        torch.cat([t.ceiling for t, _ in fits]))
    return transfer, torch.cat([achieved for _, achieved in fits])


def _fit_one(garment: Garment, source_l: float, goal: torch.Tensor, wanted: float
             ) -> tuple[Transfer, torch.Tensor]:
    """One variation. The wanted ratio, then 1, then SHADING_FLOOR (those below it), first with
    the shoulder ending at white, then (a light, coloured goal whose lit folds lose their chroma
    at white) at `lightness_ceiling`: the first whose mean lands within COLOUR_TOLERANCE wins,
    else the one whose mean is closest (the gamut, not the folds, is in the way: chroma lost at
    the edge). If even the floor is out of reach (a white top dyed near-black keeps its folds
    only in a crushed shoulder), the aimed L* moves towards mid-grey until the floor is kept
    (`GIVE_WAY_PROBES` bisection steps, to within about 1 L* of the closest such lightness):
    the folds win, the mean gives way."""
    ratios = [wanted] + [r for r in (1.0, SHADING_FLOOR) if r < wanted]

    def ceilings():  # white (None), then the coloured one, computed only if white misses
        yield None
        colored = lightness_ceiling(goal)
        if float(colored) < 100:
            yield colored

    kept = []  # (ΔE, order, transfer, mean) of the fits that keep the floor
    for ceiling in ceilings():
        for order, ratio in enumerate(ratios):
            transfer, achieved, shown = _fit_ratio(garment, source_l, goal, ratio, ceiling)
            if shown >= min(ratio, SHADING_FLOOR) - RATIO_SLACK:
                error = float(ciede2000(achieved, goal).max())
                if error <= COLOR_TOLERANCE:
                    return transfer, achieved
                kept.append((error, order, transfer, achieved))
    if kept:  # the mean is off at every ratio (the gamut, not the folds): the closest one
        _, _, transfer, achieved = min(kept, key=lambda fit: fit[:2])
        return transfer, achieved
    # Bisect the aimed L* between the goal's (folds lost) and mid-grey for the closest one that
    # keeps the floor.
    infeasible, feasible = float(goal[0, 0]), 50.0
    best = None
    for _ in range(GIVE_WAY_PROBES):
        aim = goal.clone()
        aim[0, 0] = feasible if best is None else (infeasible + feasible) / 2
        fit = _fit_ratio(garment, source_l, aim, ratio, None)
        if fit[2] >= ratio - RATIO_SLACK:
            feasible, best = float(aim[0, 0]), fit
        elif best is None:
            return fit[:2]  # not even at mid-grey: keep what mid-grey gives
        else:
            infeasible = float(aim[0, 0])
    return best[:2]


def _fit_ratio(garment: Garment, source_l: float, aim: torch.Tensor, ratio: float,
               ceiling: torch.Tensor | None, rounds: int = 8
               ) -> tuple[Transfer, torch.Tensor, float]:
    """The gain rescaled by wanted / shown ratio each round (the soft clip and the gamut
    compress the shading near black and white, so the gain must grow there), the mean re-solved
    onto `aim` each time. Returns the transfer, its mean and the ratio it shows."""
    gain = torch.full((1, 1), ratio, dtype=torch.float64, device=aim.device)
    transfer, achieved = solve(garment, source_l, gain, aim, iterations=16, ceiling=ceiling)
    shown = float(shown_ratio(garment, transfer))
    for _ in range(rounds):
        if abs(shown - ratio) < RATIO_SLACK or (shown < ratio and float(gain) >= MAX_GAIN):
            break
        gain = (gain * ratio / max(shown, 1e-3)).clamp(0.05, MAX_GAIN)
        transfer, achieved = solve(garment, source_l, gain, aim, start=transfer.effective,
                                   iterations=16, ceiling=ceiling)
        shown = float(shown_ratio(garment, transfer))
    return transfer, achieved, shown


@dataclass
class Garment:
    """One image's garment pixels, in the order of `index` (flat positions in H*W)."""
    index: torch.Tensor      # [N] long
    weight: torch.Tensor     # [N]
    lightness: torch.Tensor  # [N]: L*, all the transfer reads of a pixel
    levels: torch.Tensor     # [K]: mean L* of each occupied histogram bin of the core pixels
    counts: torch.Tensor     # [K]: core pixels per bin
    mean: torch.Tensor       # [3] Lab: the core's mean colour
    sample: torch.Tensor     # [<= MEAN_SAMPLE] long: flat positions of the core pixels measured

    @property
    def empty(self) -> bool:
        return self.levels.shape[0] == 0

    def level_lab(self) -> torch.Tensor:
        """The histogram's levels as neutral Lab `[K, 3]` (a transfer reads only L*)."""
        zeros = torch.zeros_like(self.levels)
        return torch.stack([self.levels, zeros, zeros], -1)


HISTOGRAM_BINS = 2048  # L* bins of ~0.05: the solver's view of a garment, whatever its size


MEAN_SAMPLE = 16384   # strided core pixels for mean a*, b* (and the report's measured mean)


# Pixels read or written between two interrupt checks: a few hundredths of a second on 2 cores,
# where one 8192² garment takes seconds.
PIXEL_CHUNK = 1 << 18


def pixel_chunks(count: int, check_cancel: Callable[[], None]) -> Iterator[slice]:
    """Slices of PIXEL_CHUNK over `count` pixels, `check_cancel` called before each."""
    for start in range(0, count, PIXEL_CHUNK):
        check_cancel()
        yield slice(start, start + PIXEL_CHUNK)


def _joined(parts: list[torch.Tensor], check_cancel: Callable[[], None]) -> torch.Tensor:
    """torch.cat, one part at a time with `check_cancel` between (one cat of a large garment's
    pixels takes most of a second on a loaded machine)."""
    out = parts[0].new_empty(sum(part.shape[0] for part in parts))
    start = 0
    for part in parts:
        check_cancel()
        out[start:start + part.shape[0]] = part
        start += part.shape[0]
    return out


def strided(count: int, limit: int, device: torch.device) -> torch.Tensor:
    # In integers: float32's linspace rounds count - 1 up to count past 2**24 pixels (a large
    # 8192² garment), an index out of range.
    steps = min(count, limit)
    return torch.arange(steps, device=device) * (count - 1) // max(steps - 1, 1)


def garment_pixels(image: torch.Tensor, mask: torch.Tensor,
                   check_cancel: Callable[[], None] = never_cancelled) -> Garment:
    """A transfer reads only L*, so the solver needs the core's L* histogram (not its pixels)
    and the core's mean colour. Read in chunks, `check_cancel` called before each."""
    pixels = image.reshape(-1, image.shape[-1])
    weights = mask.flatten()
    counts = torch.zeros(HISTOGRAM_BINS, dtype=torch.float64, device=image.device)
    sums = torch.zeros_like(counts)
    parts = []
    for chunk in pixel_chunks(weights.shape[0], check_cancel):
        weight = weights[chunk]
        local = torch.nonzero(weight > 0).flatten()
        rgb = pixels[chunk][local, :3]
        lightness = lightness_of(rgb) if len(local) else rgb[:, 0].float()
        core = weight[local] >= CORE_WEIGHT
        bins = (lightness[core].clamp(0, 100) * ((HISTOGRAM_BINS - 1) / 100)).long()
        counts += torch.bincount(bins, minlength=HISTOGRAM_BINS)
        sums += torch.bincount(bins, weights=lightness[core].double(), minlength=HISTOGRAM_BINS)
        index = local + chunk.start
        parts.append((index, weight[local], lightness, index[core]))
    index, weight, lightness, core_index = (_joined(list(column), check_cancel)
                                            for column in zip(*parts))
    occupied = counts > 0
    levels, counts = sums[occupied] / counts[occupied], counts[occupied]
    mean = torch.zeros(3, dtype=torch.float64, device=image.device)
    sample = core_index[strided(len(core_index), MEAN_SAMPLE, image.device)]
    if len(levels):
        mean = srgb_to_lab(pixels[sample, :3][None, :, None])[0, :, 0].mean(0).double()
        mean[0] = (levels * counts).sum() / counts.sum()
    return Garment(index, weight, lightness, levels, counts, mean, sample)


LUT_SIZE = 4097  # L* steps of 0.025: linear interpolation between them is exact to ~1e-5


def apply_transfer(lightness: torch.Tensor, transfer: Transfer,
                   check_cancel: Callable[[], None] = never_cancelled) -> torch.Tensor:
    """Garment pixels' L* `[N]` -> sRGB `[V, N, 3]`. A transfer reads only L*, so it is
    tabulated once over L* 0..100 (mapping and gamut mapping included) and interpolated, in
    chunks (`check_cancel` before each)."""
    grid = torch.linspace(0, 100, LUT_SIZE, device=lightness.device)
    table = lab_to_srgb_in_gamut(map_lab(torch.stack([grid, 0 * grid, 0 * grid], -1),
                                         transfer))
    out = table.new_empty(table.shape[0], lightness.shape[0], 3)
    for chunk in pixel_chunks(lightness.shape[0], check_cancel):
        position = lightness[chunk].clamp(0, 100) * ((LUT_SIZE - 1) / 100)
        low = position.floor().long().clamp(max=LUT_SIZE - 2)
        fraction = (position - low)[None, :, None]
        out[:, chunk] = torch.lerp(table[:, low], table[:, low + 1], fraction)
    return out
