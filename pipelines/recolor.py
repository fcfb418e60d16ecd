"""Garment recolour (PiktID Garment Recolor, done locally): one garment, one colour, one look
across a whole set of product images.

- **Target.** A swatch image (its dominant colour), a text (hex or a CSS4/XKCD colour name), or a
  free-form instruction ("a slightly darker navy"): colour plus modifiers, see `resolve_target`.
- **Recolour.** In CIELAB, as a change of dye under the photo's own light: every garment pixel
  keeps its shading (its lightness offset from the garment's mean, scaled by a gain chosen so
  the garment's spread of L* stays 0.72-1.25 times the original's, whatever the target's
  lightness) and takes the target's hue, with chroma following the shaded lightness as it does
  for a real dye. A solver then moves the mapping until the garment's *mean* colour, measured
  after the round trip through sRGB (gamut mapping included), lands on the target; where sRGB
  cannot hold both, the folds are kept and the report says how far the mean is.
- **Set.** `use_anchor` fits that mapping once, on the anchor image, and applies it to every image;
  `post_process` then pulls each image's garment mean onto the anchor's result (where a shot
  cannot keep its folds at that colour, the whole set gives way together to that shot's mean).
  Pixels outside the garment mask are copied, never converted.
- **Refinement (optional).** A diffusion `Generator` (pipelines/detail_repair.py) re-renders the
  recoloured garment's texture at low denoise in a context crop; the anchor correction then runs
  on the refined pixels, so the set stays on one colour (`refine_garment`).

Everything is batched torch on the images' device. A transfer reads only a pixel's L*, so the
solver works on the garment's L* histogram and the final mapping is a table over L*, interpolated
for every garment pixel.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import cv2
import kornia.color
import numpy as np
import torch
import torch.nn.functional as F

from . import masks as mask_ops
from . import regions as region_ops
from .choices import Choice
from .colour import ciede2000, lab_to_srgb, parse_hex, srgb_to_lab
from .info import record as info_record
from .detail_repair import Generator, size_multiple
from .watermark import add_ai_watermark

REPORT_SCHEMA = "region_repair.recolor_report/1"
NODE_NAME = "GarmentRecolorAnchor"
MAX_IMAGES = 10
MAX_VARIATIONS = 8
# A garment pixel counts towards the garment's colour when its mask weight is at least this:
# feathered edge pixels are partly the original and would bias the mean.
CORE_WEIGHT = 0.5


class ProcessingSize(Choice):
    NATIVE = "native"
    S1024 = "1024"
    S2048 = "2048"
    S4096 = "4096"


# --- colour names --------------------------------------------------------------------------------

def _name_key(name: str) -> str:
    return re.sub(r"[^a-z]", "", name.lower())


@functools.lru_cache(maxsize=1)
def colour_names() -> dict[str, str]:
    """Normalised colour name -> hex, from matplotlib's CSS4 (148 names, the web standard) and
    XKCD (949 names from the XKCD colour survey) tables. Where both know a name, CSS4 wins;
    `xkcd:` before a name asks for the survey's colour."""
    try:
        from matplotlib import colors
    except ImportError as error:  # matplotlib is in requirements.txt; say so if it is missing
        raise ImportError("colour names need matplotlib's CSS4/XKCD tables: "
                          "pip install matplotlib") from error
    table: dict[str, str] = {}
    for name, value in colors.XKCD_COLORS.items():
        table.setdefault(_name_key(name[len("xkcd:"):]), value)
        table["xkcd" + _name_key(name[len("xkcd:"):])] = value
    for name, value in colors.CSS4_COLORS.items():
        table[_name_key(name)] = value
    return table


# --- instructions: a colour and modifiers --------------------------------------------------------

@dataclass(frozen=True)
class Modifier:
    lightness: float = 0.0  # added to L*
    chroma: float = 1.0     # multiplies C*
    hue_towards: float | None = None  # degrees in Lab's a*b* plane, moved 12 degrees towards
    pastel: bool = False


MODIFIERS: dict[str, Modifier] = {
    **dict.fromkeys(("darker", "dark", "deeper", "deep", "richer"), Modifier(lightness=-12)),
    **dict.fromkeys(("lighter", "light", "brighter"), Modifier(lightness=12)),
    **dict.fromkeys(("pale", "paler"), Modifier(lightness=12, chroma=0.7)),
    **dict.fromkeys(("pastel",), Modifier(pastel=True)),
    **dict.fromkeys(("muted", "dusty", "desaturated", "dull", "duller", "faded", "washed",
                     "greyish", "grayish", "softer", "soft"), Modifier(chroma=0.6)),
    **dict.fromkeys(("vivid", "vibrant", "saturated", "bold", "intense", "bright", "punchy"),
                    Modifier(chroma=1.3)),
    **dict.fromkeys(("warmer", "warm"), Modifier(hue_towards=50.0)),
    **dict.fromkeys(("cooler", "cool", "colder"), Modifier(hue_towards=250.0)),
}
# Scale the modifier that follows them.
INTENSITY = {"slightly": 0.5, "bit": 0.5, "little": 0.5, "touch": 0.5, "somewhat": 0.5,
             "tad": 0.5, "much": 2.0, "very": 2.0, "lot": 2.0, "way": 2.0, "extra": 2.0,
             "really": 2.0, "super": 2.0}
# Words that ask for a pattern, which a one-colour recolour cannot honour (a note says so).
PATTERN_WORDS = frozenset((
    "stripe", "stripes", "striped", "pinstripe", "pinstripes", "pinstriped", "plaid", "tartan",
    "gingham", "checkered", "chequered", "polka", "dots", "dotted", "spotted", "floral",
    "flowers", "paisley", "houndstooth", "herringbone", "camo", "camouflage", "leopard", "zebra",
    "chevron", "argyle", "pattern", "patterned", "print", "printed", "ombre", "gradient"))
HEX_IN_TEXT = re.compile(r"#([0-9a-fA-F]{6}|[0-9a-fA-F]{3})\b")


@dataclass(frozen=True)
class ParsedText:
    rgb: tuple[float, float, float] | None
    colour_text: str | None          # what named the colour ("#2e5a3b", "forest green")
    modifiers: tuple[tuple[str, Modifier, float], ...]  # (word, modifier, intensity)
    patterns: tuple[str, ...] = ()  # pattern words found, not honoured


def parse_colour_text(text: str, name: str = "instruction") -> ParsedText:
    """Find the colour and its modifiers in free text.

    The colour is a `#RRGGBB`/`#RGB` code or the longest run of up to four words that is a CSS4
    or XKCD name ("forest green", "robin's egg blue"); with several colours the last one counts
    ("change the red jacket to navy"). Modifier words (darker, lighter, deeper, pale, pastel,
    muted, vivid, warmer, cooler, ...) refine it, scaled by a preceding slightly/much/very.
    """
    names = colour_names()
    hexes = [(match.start(), match.group(0)) for match in HEX_IN_TEXT.finditer(text)]
    words = [(match.start(), match.group(0)) for match in
             re.finditer(r"[a-z]+(?:'[a-z]+)?", HEX_IN_TEXT.sub(" ", text.lower()))]
    found: list[tuple[int, str, str]] = [(pos, code, code) for pos, code in hexes]
    used: set[int] = set()
    i = 0
    while i < len(words):
        for span in range(min(4, len(words) - i), 0, -1):
            run = [word for _, word in words[i:i + span]]
            # Modifier words alone are never the colour (XKCD has "dark" and "pale").
            if all(word in MODIFIERS or word in INTENSITY for word in run):
                continue
            key = _name_key("".join(run))
            if key in names:
                found.append((words[i][0], " ".join(run), names[key]))
                used.update(range(i, i + span))
                i += span
                break
        else:
            i += 1
    modifiers, patterns = [], []
    scale = 1.0
    for index, (_, word) in enumerate(words):
        if index in used:
            continue
        if word in PATTERN_WORDS:
            patterns.append(word)
        elif word in INTENSITY:
            scale = INTENSITY[word]
        elif word in MODIFIERS:
            modifiers.append((word, MODIFIERS[word], scale))
            scale = 1.0
    if not found:
        return ParsedText(None, None, tuple(modifiers), tuple(patterns))
    _, said, code = max(found)
    return ParsedText(parse_hex(code, name), said, tuple(modifiers), tuple(patterns))


def _pattern_note(parsed: ParsedText, name: str) -> list[str]:
    if not parsed.patterns:
        return []
    return [f"{name}: pattern words {', '.join(repr(w) for w in parsed.patterns)} ignored; "
            "this node recolours to one colour and makes no patterns"]


def apply_modifiers(lab: torch.Tensor, modifiers: Sequence[tuple[str, Modifier, float]]
                    ) -> torch.Tensor:
    """Apply instruction modifiers to a Lab colour `[3]` (in LCh)."""
    lightness, a, b = (float(v) for v in lab)
    chroma, hue = float(np.hypot(a, b)), float(np.degrees(np.arctan2(b, a)))
    for _, modifier, scale in modifiers:
        if modifier.pastel:
            lightness, chroma = max(lightness, 84.0), min(chroma, 28.0)
            continue
        lightness += modifier.lightness * scale
        chroma *= modifier.chroma ** scale
        if modifier.hue_towards is not None:
            delta = (modifier.hue_towards - hue + 180) % 360 - 180
            hue += float(np.clip(delta, -12 * scale, 12 * scale))
    lightness = float(np.clip(lightness, 1.0, 99.0))
    rad = np.radians(hue)
    return torch.tensor([lightness, chroma * np.cos(rad), chroma * np.sin(rad)],
                        dtype=torch.float64)


# --- swatches ------------------------------------------------------------------------------------

def dominant_colour(swatch: torch.Tensor, clusters: int = 4) -> tuple[float, float, float]:
    """The dominant colour of a swatch `[H, W, C]` (or `[1, H, W, C]`) in 0..1: the mean Lab of
    the largest group of k-means clusters, so a patterned swatch gives its main colour and a
    photographed one its average shade. Transparent pixels (alpha < 0.5) are ignored."""
    if swatch.ndim == 4:
        swatch = swatch[0]
    image = swatch.detach().float().cpu()
    height, width = image.shape[:2]
    scale = min(1.0, 96 / max(height, width))
    if scale < 1:
        image = F.interpolate(image.movedim(-1, 0)[None], scale_factor=scale, mode="area"
                              )[0].movedim(0, -1)
    pixels = image.reshape(-1, image.shape[-1])
    if pixels.shape[-1] == 4:
        pixels = pixels[pixels[:, 3] >= 0.5] if bool((pixels[:, 3] >= 0.5).any()) else pixels
    rgb = pixels[:, :3] if pixels.shape[-1] >= 3 else pixels[:, :1].expand(-1, 3)
    lab = srgb_to_lab(rgb[None, :, None, :])[0, :, 0].numpy().astype(np.float32)
    k = min(clusters, len(lab))
    cv2.setRNGSeed(0)  # k-means++ seeding is random; a fixed seed keeps the target repeatable
    _, labels, centres = cv2.kmeans(lab, k, None, (cv2.TERM_CRITERIA_EPS
                                                   + cv2.TERM_CRITERIA_MAX_ITER, 30, 0.1),
                                    3, cv2.KMEANS_PP_CENTERS)
    # Noise or shading splits one colour into several clusters: a cluster's weight counts every
    # cluster within 15 ΔE*ab of it, and the winner's neighbourhood gives the colour.
    counts = np.bincount(labels.ravel(), minlength=k)
    close = np.linalg.norm(centres[:, None] - centres[None], axis=-1) < 15
    main = np.flatnonzero(close[(close * counts[None]).sum(1).argmax()])
    rgb_out = lab_to_srgb(torch.from_numpy(lab[np.isin(labels.ravel(), main)].mean(0))[None, None])
    return tuple(float(v) for v in rgb_out.flatten())


# --- the target ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    lab: torch.Tensor  # [3] float64
    notes: tuple[str, ...] = ()

    @property
    def hex(self) -> str:
        return lab_hex(self.lab)


def lab_hex(lab: torch.Tensor) -> str:
    rgb = lab_to_srgb(lab.float().reshape(1, 1, 3)).flatten()
    return "#" + "".join(f"{round(float(v) * 255):02X}" for v in rgb)


def rgb_lab(rgb: Sequence[float]) -> torch.Tensor:
    return srgb_to_lab(torch.tensor(rgb, dtype=torch.float32).reshape(1, 1, 3)).flatten().double()


NO_TARGET = ("no recolour target: give at least one of reference_image (a colour swatch), "
             "reference_text (a hex code such as #2E5A3B or a colour name such as "
             "'forest green') or instruction (such as 'make it forest green')")


def check_target_inputs(has_reference_image: bool, reference_text: str | None,
                        instruction: str | None) -> None:
    """The cheap, data-free checks (run when a prompt is queued): at least one target, and texts
    that parse. Raises ValueError naming the input."""
    text, instruction = (reference_text or "").strip(), (instruction or "").strip()
    if not (has_reference_image or text or instruction):
        raise ValueError(NO_TARGET)
    if text:
        parsed = parse_colour_text(text, "reference_text")
        if parsed.rgb is None:
            raise ValueError(f"reference_text: {text!r} is neither a hex code (#2E5A3B) nor a "
                             "known CSS4/XKCD colour name (e.g. 'forest green', 'navy')")
    if instruction and not has_reference_image and not text:
        parsed = parse_colour_text(instruction, "instruction")
        if parsed.rgb is None and not parsed.modifiers:
            raise ValueError(f"instruction: found no colour (a CSS4/XKCD name or #RRGGBB) and "
                             f"no modifier (darker, lighter, pastel, muted, ...) in "
                             f"{instruction!r}")


def resolve_target(reference_image: torch.Tensor | None, reference_text: str | None,
                   instruction: str | None,
                   current_colour: Callable[[], torch.Tensor] | None = None) -> Target:
    """The recolour target from the seed's three inputs, which may be combined.

    The base colour comes from the first of: the swatch's dominant colour, the reference text,
    the instruction's colour. The instruction's modifiers then refine it (the seed's "a
    reference image to set the colour and an instruction to refine it"); the reference text's
    own modifiers ("dark forest green" when that is not itself a name) apply first. An
    instruction with modifiers only ("make it darker") starts from the garment's current colour,
    `current_colour()`.
    """
    text, instruction = (reference_text or "").strip(), (instruction or "").strip()
    check_target_inputs(reference_image is not None, text, instruction)
    notes: list[str] = []
    base: torch.Tensor | None = None
    if reference_image is not None:
        rgb = dominant_colour(reference_image)
        base = rgb_lab(rgb)
        notes.append(f"colour from reference_image: dominant colour {lab_hex(base)}")
    if text:
        parsed = parse_colour_text(text, "reference_text")
        notes += _pattern_note(parsed, "reference_text")
        if base is None:
            base = apply_modifiers(rgb_lab(parsed.rgb), parsed.modifiers)
            notes.append(f"colour from reference_text {parsed.colour_text!r}: {lab_hex(base)}")
        else:
            notes.append(f"reference_text {text!r} ignored: reference_image sets the colour")
    if instruction:
        parsed = parse_colour_text(instruction, "instruction")
        notes += _pattern_note(parsed, "instruction")
        if base is None and parsed.rgb is not None:
            base = rgb_lab(parsed.rgb)
            notes.append(f"colour from instruction {parsed.colour_text!r}: {lab_hex(base)}")
        elif parsed.rgb is not None:
            notes.append(f"instruction colour {parsed.colour_text!r} ignored: the reference "
                         "sets the colour, the instruction's modifiers refine it")
        if base is None:
            if current_colour is None:
                raise ValueError(f"instruction: {instruction!r} has modifiers but no colour, "
                                 "and there is no garment to start from")
            base = current_colour().double()
            notes.append(f"instruction has no colour: starting from the garment's own "
                         f"{lab_hex(base)}")
        if parsed.modifiers:
            base = apply_modifiers(base, parsed.modifiers)
            words = ", ".join(word if scale == 1 else f"{word} x{scale:g}"
                              for word, _, scale in parsed.modifiers)
            notes.append(f"modifiers {words}: {lab_hex(base)}")
    assert base is not None
    shown = in_gamut(base)
    if float(ciede2000(shown, base)) > 0.01:
        notes.append(f"target outside sRGB: chroma reduced to {lab_hex(shown)} "
                     f"(ΔE00 {float(ciede2000(shown, base)):.2f})")
    return Target(shown, tuple(notes))


# --- the colour transfer ------------------------------------------------------------------------

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


# Rec. 709 / sRGB luminance weights of linear R, G, B.
LUMINANCE = (0.2126, 0.7152, 0.0722)


def lab_to_srgb_in_gamut(lab: torch.Tensor) -> torch.Tensor:
    """Lab `[..., 3]` -> sRGB in 0..1. Colours outside sRGB move towards the grey of the *same
    luminance* in linear light (the largest fraction of their chroma that fits), instead of
    having each channel clipped: clipping flattens a garment's highlights and folds at the gamut
    edge (a pastel with R = 255, a saturated navy), this keeps their lightness exactly."""
    flat = lab.reshape(-1, 1, 1, 3).movedim(-1, 1).float()
    linear = kornia.color.rgb_to_linear_rgb(kornia.color.lab_to_rgb(flat, clip=False))
    linear = linear[:, :, 0, 0]
    weights = torch.tensor(LUMINANCE, device=linear.device, dtype=linear.dtype)
    luminance = (linear @ weights).clamp(0, 1)[:, None]
    excess = linear - luminance
    room = torch.where(excess > 0, (1 - luminance) / excess.clamp_min(1e-12),
                       torch.where(excess < 0, luminance / (-excess).clamp_min(1e-12),
                                   torch.ones_like(excess)))
    fraction = room.amin(dim=1, keepdim=True).clamp(0, 1)
    mapped = (luminance + fraction * excess).clamp(0, 1)
    srgb = kornia.color.linear_rgb_to_rgb(mapped[:, :, None, None])[:, :, 0, 0]
    return srgb.clamp(0, 1).reshape(lab.shape)


def in_gamut(lab: torch.Tensor) -> torch.Tensor:
    """A Lab colour `[3]` with its chroma reduced (same L*, same hue) until sRGB can show it."""
    rgb = kornia.color.lab_to_rgb(lab.float().reshape(1, 3, 1, 1), clip=False).flatten()
    if bool(((rgb >= -1e-4) & (rgb <= 1 + 1e-4)).all()):
        return lab.double()
    low, high = 0.0, 1.0
    for _ in range(30):
        middle = (low + high) / 2
        trial = torch.tensor([float(lab[0]), float(lab[1]) * middle, float(lab[2]) * middle])
        rgb = kornia.color.lab_to_rgb(trial.reshape(1, 3, 1, 1), clip=False).flatten()
        low, high = (middle, high) if bool(((rgb >= 0) & (rgb <= 1)).all()) else (low, middle)
    return torch.tensor([float(lab[0]), float(lab[1]) * low, float(lab[2]) * low],
                        dtype=torch.float64)


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
COLOUR_TOLERANCE = 0.5  # ΔE2000 of the mean a ratio may cost before a lower one is tried
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
        coloured = lightness_ceiling(goal)
        if float(coloured) < 100:
            yield coloured

    kept = []  # (ΔE, order, transfer, mean) of the fits that keep the floor
    for ceiling in ceilings():
        for order, ratio in enumerate(ratios):
            transfer, achieved, shown = _fit_ratio(garment, source_l, goal, ratio, ceiling)
            if shown >= min(ratio, SHADING_FLOOR) - RATIO_SLACK:
                error = float(ciede2000(achieved, goal).max())
                if error <= COLOUR_TOLERANCE:
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


# --- diffusion refinement -----------------------------------------------------------------------

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


@functools.lru_cache(maxsize=1)
def _named_labs() -> tuple[list[str], torch.Tensor]:
    """XKCD's survey names (spelled with spaces, as people say them) and their Lab colours."""
    from matplotlib import colors

    names = [name[len("xkcd:"):] for name in colors.XKCD_COLORS]
    rgb = torch.tensor([colors.to_rgb(value) for value in colors.XKCD_COLORS.values()])
    return names, srgb_to_lab(rgb[:, None]).reshape(-1, 3).double()


def colour_words(lab: torch.Tensor) -> str:
    """A colour as a text encoder reads it: the nearest XKCD name (ΔE2000) and the hex code."""
    names, labs = _named_labs()
    nearest = int(ciede2000(labs, lab.double().cpu()).argmin())
    return f"{names[nearest]} ({lab_hex(lab)})"


def refine_prompt(label: str, target: Target) -> tuple[str, str]:
    """(positive, negative) for the refinement, from the garment label and the target colour."""
    garment = label.strip() or "garment"
    return (f"a {garment} in {colour_words(target.lab)}, fabric texture, photo",
            "blotchy, stained, colour shift, blurry, smeared, text, watermark")


def refine_garment(image: torch.Tensor, mask: torch.Tensor, garment: Garment,
                   colours: torch.Tensor, generator: Generator, denoise: float, seed: int,
                   correct_to: torch.Tensor | None,
                   check_cancel: Callable[[], None] = mask_ops.never_cancelled) -> torch.Tensor:
    """Diffusion refinement of one image's recoloured garment, all variations in one batch.

    `colours` `[V, N, 3]` are the garment pixels' recoloured sRGB (in `garment.index` order);
    returns them refined, same shape. The garment is cropped with the pack's region geometry,
    regenerated at `denoise` under the mask (nothing hidden: the model sees the recoloured
    garment, and only its texture should change), and stitched back with the inward blend. The
    crop is usually smaller than the garment at full size, so what comes back is the
    generator's *change*, upsampled and added to the full-size pixels: native detail survives.
    With `correct_to` (`[V, 3]` Lab) a shading-preserving transfer (gain 1) then moves each
    refined garment's mean onto that colour, as post_process does for the unrefined set."""
    count = colours.shape[0]
    full = image[..., :3].repeat(count, 1, 1, 1)  # [V, H, W, 3]
    full.view(count, -1, 3)[:, garment.index] = colours.to(full.dtype)
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


# --- one set ------------------------------------------------------------------------------------

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


# CIE Y of linear sRGB (D65), as kornia's rgb_to_xyz, so L* here equals srgb_to_lab's.
Y_OF_LINEAR_RGB = (0.212671, 0.715160, 0.072169)


def lightness_of(rgb: torch.Tensor) -> torch.Tensor:
    """CIELAB L* of sRGB pixels `[N, 3]`, without computing a* and b*."""
    linear = kornia.color.rgb_to_linear_rgb(rgb.float().clamp(0, 1).T[:, :, None])[:, :, 0].T
    y = linear @ torch.tensor(Y_OF_LINEAR_RGB, device=rgb.device)
    return 116 * torch.where(y > 0.008856, y.clamp_min(1e-12).pow(1 / 3), 7.787 * y + 4 / 29) - 16


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
                   check_cancel: Callable[[], None] = mask_ops.never_cancelled) -> Garment:
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
                   check_cancel: Callable[[], None] = mask_ops.never_cancelled) -> torch.Tensor:
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


@dataclass
class RecolorResult:
    images: list[torch.Tensor]  # variation-major: output v * n + i is image i, variation v
    masks: list[torch.Tensor]   # per image [H, W]
    report: dict = field(default_factory=dict)
    info: list[dict] = field(default_factory=list)


def recolor_set(images: Sequence[torch.Tensor], masks: Sequence[torch.Tensor], target: Target,
                settings: RecolorSettings, step: Callable[[], None] | None = None,
                refine: Generator | None = None, refine_settings: RefineSettings | None = None,
                check_cancel: Callable[[], None] = mask_ops.never_cancelled
                ) -> tuple[list[torch.Tensor], list[dict], list[str]]:
    """Recolour every image's garment. `images`: `[H, W, C]` each (sizes may differ); `masks`:
    `[H, W]` in 0..1 each. Returns the outputs (variation-major), one record per output, notes.

    With `refine`, each image's recoloured garment is refined by the generator
    (`refine_garment`, seed + image index) before the post_process correction, which then pulls
    the refined garment onto the anchor's result.

    `step` is called once per image and pass (progress and interrupt), `check_cancel` (it
    raises to stop) within one image, every PIXEL_CHUNK pixels read or written."""
    step = step or mask_ops.never_cancelled
    notes: list[str] = []
    garments = [garment_pixels(image, mask, check_cancel) for image, mask in zip(images, masks)]
    for index, garment in enumerate(garments):
        if garment.empty:
            notes.append(f"image {index}: empty garment mask, left unchanged")
    anchor = settings.anchor_index
    if not 0 <= anchor < len(images):
        raise ValueError(f"anchor_index: {anchor} is outside 0..{len(images) - 1}")
    if garments[anchor].empty:
        usable = [index for index, garment in enumerate(garments) if not garment.empty]
        if not usable:
            raise ValueError("every garment mask is empty: nothing to recolour (give masks, or "
                             "a garment_label that matches what the photos show)")
        notes.append(f"anchor image {anchor} has no garment; image {usable[0]} is the anchor")
        anchor = usable[0]
    goals = variation_goals(target.lab, settings.num_variations, settings.variation_step)

    def own_transfer(garment: Garment) -> tuple[Transfer, torch.Tensor]:
        return fit_transfer(garment, goals, settings.contrast)

    anchor_transfer, anchor_mean = own_transfer(garments[anchor])
    transfers: list[Transfer | None] = []
    reached: dict[int, torch.Tensor] = {anchor: anchor_mean}  # post_process: each shot's mean
    followed: list[int] = []  # per variation: the shot a set that gave way together follows
    for index, garment in enumerate(garments):
        step()
        if garment.empty:
            transfers.append(None)
            continue
        if index == anchor:
            transfer = anchor_transfer
        elif settings.post_process:
            # The shot's own shading fit, landing on the anchor's result: a set's shots differ
            # in light, and the anchor's gain on a dimmer or brighter shot would crush or
            # amplify its folds.
            transfer, reached[index] = fit_transfer(garment, anchor_mean, settings.contrast)
        elif settings.use_anchor:  # the anchor's one curve: each shot keeps its own light
            transfer = anchor_transfer
        else:
            transfer, _ = own_transfer(garment)
        transfers.append(transfer)
    if settings.post_process:
        # A shot that cannot keep its folds at the anchor's result gives way by its own amount:
        # the whole set then gives way together, to the most constrained shot's mean.
        misses = torch.stack([ciede2000(mean, anchor_mean) for mean in reached.values()])
        if float(misses.max()) > SET_TOLERANCE:
            shots = list(reached)
            followed = [shots[int(w)] for w in misses.argmax(dim=0)]
            anchor_mean = torch.stack([reached[shot][v] for v, shot in enumerate(followed)])
            notes.append("the set gave way together: image(s) "
                         + ", ".join(str(shot) for shot in sorted(set(followed)))
                         + " cannot keep the folds at the anchor's colour, so every shot "
                         "aims at that image's mean")
            for index in shots:
                step()
                transfers[index], _ = fit_transfer(garments[index], anchor_mean,
                                                   settings.contrast)

    outputs: list[torch.Tensor] = [torch.empty(0)] * (len(images) * settings.num_variations)
    records: list[dict] = [{}] * len(outputs)
    means: dict[tuple[int, int], torch.Tensor] = {}
    ratios: dict[tuple[int, int], float] = {}
    for index, (image, garment, transfer) in enumerate(zip(images, garments, transfers)):
        step()
        recoloured = (None if transfer is None
                      else apply_transfer(garment.lightness, transfer, check_cancel))
        if recoloured is not None and refine is not None:
            options = refine_settings or RefineSettings()
            recoloured = refine_garment(image, masks[index], garment, recoloured, refine,
                                        options.denoise, options.seed + index,
                                        anchor_mean if settings.post_process else None,
                                        check_cancel)
            step()
        for variation in range(settings.num_variations):
            check_cancel()
            out = image.clone()
            if recoloured is not None:
                flat = out.view(-1, out.shape[-1])
                for chunk in pixel_chunks(garment.index.shape[0], check_cancel):
                    index_chunk = garment.index[chunk]
                    flat[index_chunk, :3] = torch.lerp(
                        flat[index_chunk, :3], recoloured[variation, chunk].to(out.dtype),
                        garment.weight[chunk, None].to(out.dtype))
                shown = flat[garment.sample, :3]
                shown_lab = srgb_to_lab(shown[None, :, None])[0, :, 0].double()
                means[index, variation] = shown_lab.mean(0)
                ratios[index, variation] = float(shown_lab[:, 0].std(correction=0) / lightness_std(
                    garment.levels, garment.counts).clamp_min(1e-6))
            outputs[variation * len(images) + index] = out
            records[variation * len(images) + index] = {
                "image_index": index, "variation_index": variation,
                "target_lab": [round(float(v), 3) for v in goals[variation]],
                "target_hex": lab_hex(goals[variation]),
                "garment_pixels": int(garment.index.numel()),
            }
    for (index, variation), mean in means.items():
        record = records[variation * len(images) + index]
        record["garment_mean_lab"] = [round(float(v), 3) for v in mean]
        record["delta_e_target"] = round(float(ciede2000(mean, goals[variation])), 4)
        anchor_result = means[anchor, variation]
        record["delta_e_anchor"] = round(float(ciede2000(mean, anchor_result)), 4)
        record["shading_ratio"] = round(ratios[index, variation], 3)
        if record["delta_e_target"] > GAVE_WAY_REPORT:
            whose = ("this garment's folds" if not followed or followed[variation] == index
                     else f"image {followed[variation]}'s folds, which the set follows")
            notes.append(
                f"image {index}, variation {variation}: the garment's mean is ΔE00 "
                f"{record['delta_e_target']:.1f} from the target {record['target_hex']}: sRGB "
                f"cannot show that lightness with {whose}, so the folds were kept "
                f"(lightness spread {record['shading_ratio']:.2f}x the original's)")
    return outputs, records, notes


def set_spread(records: Sequence[dict], variation: int) -> float:
    """The largest ΔE2000 between two images' garment means within one variation."""
    means = [torch.tensor(r["garment_mean_lab"]) for r in records
             if r["variation_index"] == variation and "garment_mean_lab" in r]
    if len(means) < 2:
        return 0.0
    stacked = torch.stack(means)
    return float(ciede2000(stacked[:, None], stacked[None]).max())


# --- the whole node's work ----------------------------------------------------------------------

def resize_long_side(image: torch.Tensor, size: int) -> torch.Tensor:
    """`[H, W, C]` scaled (bicubic, antialiased when shrinking) so its long side is `size`."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    if scale == 1:
        return image
    new = (max(round(height * scale), 1), max(round(width * scale), 1))
    out = F.interpolate(image.movedim(-1, 0)[None].float(), size=new, mode="bicubic",
                        antialias=scale < 1, align_corners=False)
    return out[0].movedim(0, -1).clamp(0, 1)


MaskFinder = Callable[[list[torch.Tensor]], tuple[list[torch.Tensor], list[str]]]


def recolor_garments(images: Sequence[torch.Tensor], masks: Sequence[torch.Tensor] | None,
                     reference_image: torch.Tensor | None, reference_text: str | None,
                     instruction: str | None, settings: RecolorSettings,
                     processing_size: ProcessingSize | str = ProcessingSize.NATIVE,
                     watermark: bool = False, find_masks: MaskFinder | None = None,
                     step: Callable[[], None] | None = None,
                     refine: Callable[[tuple[str, str]], Generator] | None = None,
                     refine_settings: RefineSettings | None = None,
                     check_cancel: Callable[[], None] = mask_ops.never_cancelled
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
    images = [image.float() for image in images]
    if size is not ProcessingSize.NATIVE:
        images = [resize_long_side(image, int(size.value)) for image in images]
        notes.append(f"images scaled to a long side of {size.value} px")
    if masks:
        if len(masks) not in (1, len(images)):
            raise ValueError(f"masks: {len(masks)} masks for {len(images)} images; give 1 "
                             f"mask or {len(images)}")
        fitted = []
        for index, image in enumerate(images):
            mask = masks[index if len(masks) > 1 else 0].float().clamp(0, 1)
            mask, resized = mask_ops.fit_to_image(mask, 1, *image.shape[:2],
                                                  name=f"mask {index}")
            if size is ProcessingSize.NATIVE:
                notes += resized
            fitted.append(mask[0].to(image.device))
        masks = fitted
    else:
        if find_masks is None:
            raise ValueError("masks: none given and no automatic garment mask available")
        masks, mask_notes = find_masks(list(images))
        notes += mask_notes

    def current_colour() -> torch.Tensor:
        anchor = min(settings.anchor_index, len(images) - 1)
        return garment_pixels(images[anchor], masks[anchor], check_cancel).mean

    target = resolve_target(reference_image, reference_text, instruction, current_colour)
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
    mode = "anchor" if settings.use_anchor else "independent"
    info = []
    for number, record in enumerate(records):
        info.append(info_record(
            NODE_NAME, record["image_index"], record["variation_index"],
            seed=options.seed + record["image_index"] if refine is not None else None,
            engine="embedded+diffusion" if refine is not None else "embedded",
            mode=mode, blend="mask" if exact_outside else "none",
            references_used=reference_image is not None,
            reference_count=int(reference_image is not None),
            notes=list(notes) if number == 0 else [],
            target_lab=record["target_lab"], target_hex=record["target_hex"],
            **{key: record[key] for key in ("garment_mean_lab", "delta_e_target",
                                            "delta_e_anchor", "shading_ratio")
               if key in record}))
    report = {
        "schema": REPORT_SCHEMA,
        "target": {"lab": [round(float(v), 3) for v in target.lab], "hex": target.hex},
        "order": "variation-major: output v * images + i is image i in variation v",
        "images": len(images), "num_variations": settings.num_variations,
        "variation_lightness_offsets": variation_offsets(settings.num_variations,
                                                         settings.variation_step),
        "use_anchor": settings.use_anchor, "post_process": settings.post_process,
        "anchor_index": settings.anchor_index,
        "refine": None if refine is None else {"denoise": options.denoise, "seed": options.seed},
        "spread_delta_e": [round(set_spread(records, v), 4)
                           for v in range(settings.num_variations)],
        "outputs": records, "notes": notes,
    }
    return RecolorResult(outputs, list(masks), report, info)
