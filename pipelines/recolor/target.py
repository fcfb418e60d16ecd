"""Garment recolour's target: what colour the user asked for.

A swatch image (its dominant colour), a text (hex, or a CSS4 or XKCD colour name) or a free-form
instruction ("a slightly darker navy": a colour plus modifiers) becomes one CIELAB `Target`, with
notes where the words were ambiguous; see `resolve_target`. `colour_words` goes the other way, for
the refinement's prompt.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..core import tensors
from ..core.color import (
    ciede2000,
    in_gamut,
    kmeans,
    lab_hex,
    lab_to_srgb,
    parse_hex,
    rgb_lab,
    srgb_to_lab,
)


def _name_key(name: str) -> str:
    return re.sub(r"[^a-z]", "", name.lower())


@functools.lru_cache(maxsize=1)
def color_names() -> dict[str, str]:
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
    color_text: str | None          # what named the colour ("#2e5a3b", "forest green")
    modifiers: tuple[tuple[str, Modifier, float], ...]  # (word, modifier, intensity)
    patterns: tuple[str, ...] = ()  # pattern words found, not honoured


def parse_color_text(text: str, name: str = "instruction") -> ParsedText:
    """Find the colour and its modifiers in free text.

    The colour is a `#RRGGBB`/`#RGB` code or the longest run of up to four words that is a CSS4
    or XKCD name ("forest green", "robin's egg blue"); with several colours the last one counts
    ("change the red jacket to navy"). Modifier words (darker, lighter, deeper, pale, pastel,
    muted, vivid, warmer, cooler, ...) refine it, scaled by a preceding slightly/much/very.
    """
    names = color_names()
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


def dominant_color(swatch: torch.Tensor, clusters: int = 4) -> tuple[float, float, float]:
    """The dominant colour of a swatch `[H, W, C]` (or `[1, H, W, C]`) in 0..1: the mean Lab of
    the largest group of k-means clusters, so a patterned swatch gives its main colour and a
    photographed one its average shade. Transparent pixels (alpha < 0.5) are ignored."""
    if swatch.ndim == 4:
        swatch = swatch[0]
    image = tensors.resize_long_side(swatch.detach().float().cpu(), 96)
    pixels = image.reshape(-1, image.shape[-1])
    if pixels.shape[-1] == 4:
        pixels = pixels[pixels[:, 3] >= 0.5] if bool((pixels[:, 3] >= 0.5).any()) else pixels
    lab = srgb_to_lab(tensors.rgb(pixels)[None, :, None, :])[0, :, 0].numpy().astype(np.float32)
    # A swatch at 96 px has fewer than 20000 samples: all are clustered, finely.
    labels, centres, _ = kmeans(lab, clusters, attempts=3, iterations=30, epsilon=0.1)
    k = len(centres)
    # Noise or shading splits one colour into several clusters: a cluster's weight counts every
    # cluster within 15 ΔE*ab of it, and the winner's neighbourhood gives the colour.
    counts = np.bincount(labels.ravel(), minlength=k)
    close = np.linalg.norm(centres[:, None] - centres[None], axis=-1) < 15
    main = np.flatnonzero(close[(close * counts[None]).sum(1).argmax()])
    rgb_out = lab_to_srgb(torch.from_numpy(lab[np.isin(labels, main)].mean(0))[None, None])
    return tuple(float(v) for v in rgb_out.flatten())


@dataclass(frozen=True)
class Target:
    lab: torch.Tensor  # [3] float64
    notes: tuple[str, ...] = ()

    @property
    def hex(self) -> str:
        return lab_hex(self.lab)


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
        parsed = parse_color_text(text, "reference_text")
        if parsed.rgb is None:
            raise ValueError(f"reference_text: {text!r} is neither a hex code (#2E5A3B) nor a "
                             "known CSS4/XKCD colour name (e.g. 'forest green', 'navy')")
    if instruction and not has_reference_image and not text:
        parsed = parse_color_text(instruction, "instruction")
        if parsed.rgb is None and not parsed.modifiers:
            raise ValueError(f"instruction: found no colour (a CSS4/XKCD name or #RRGGBB) and "
                             f"no modifier (darker, lighter, pastel, muted, ...) in "
                             f"{instruction!r}")


def resolve_target(reference_image: torch.Tensor | None, reference_text: str | None,
                   instruction: str | None,
                   current_color: Callable[[], torch.Tensor] | None = None) -> Target:
    """The recolour target from the three inputs the vendor documents, which may be combined.

    The base colour comes from the first of: the swatch's dominant colour, the reference text,
    the instruction's colour. The instruction's modifiers then refine it (the vendor's
    documentation: "a reference image to set the colour and an instruction to refine it"); the
    reference text's own modifiers ("dark forest green" when that is not itself a name) apply
    first. An
    instruction with modifiers only ("make it darker") starts from the garment's current colour,
    `current_colour()`.
    """
    text, instruction = (reference_text or "").strip(), (instruction or "").strip()
    check_target_inputs(reference_image is not None, text, instruction)
    notes: list[str] = []
    base: torch.Tensor | None = None
    if reference_image is not None:
        rgb = dominant_color(reference_image)
        base = rgb_lab(rgb)
        notes.append(f"colour from reference_image: dominant colour {lab_hex(base)}")
    if text:
        parsed = parse_color_text(text, "reference_text")
        notes += _pattern_note(parsed, "reference_text")
        if base is None:
            base = apply_modifiers(rgb_lab(parsed.rgb), parsed.modifiers)
            notes.append(f"colour from reference_text {parsed.color_text!r}: {lab_hex(base)}")
        else:
            notes.append(f"reference_text {text!r} ignored: reference_image sets the colour")
    if instruction:
        parsed = parse_color_text(instruction, "instruction")
        notes += _pattern_note(parsed, "instruction")
        if base is None and parsed.rgb is not None:
            base = rgb_lab(parsed.rgb)
            notes.append(f"colour from instruction {parsed.color_text!r}: {lab_hex(base)}")
        elif parsed.rgb is not None:
            notes.append(f"instruction colour {parsed.color_text!r} ignored: the reference "
                         "sets the colour, the instruction's modifiers refine it")
        if base is None:
            if current_color is None:
                raise ValueError(f"instruction: {instruction!r} has modifiers but no colour, "
                                 "and there is no garment to start from")
            base = current_color().double()
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


@functools.lru_cache(maxsize=1)
def _named_labs() -> tuple[list[str], torch.Tensor]:
    """XKCD's survey names (spelled with spaces, as people say them) and their Lab colours."""
    from matplotlib import colors

    names = [name[len("xkcd:"):] for name in colors.XKCD_COLORS]
    rgb = torch.tensor([colors.to_rgb(value) for value in colors.XKCD_COLORS.values()])
    return names, srgb_to_lab(rgb[:, None]).reshape(-1, 3).double()


def color_words(lab: torch.Tensor) -> str:
    """A colour as a text encoder reads it: the nearest XKCD name (ΔE2000) and the hex code."""
    names, labs = _named_labs()
    nearest = int(ciede2000(labs, lab.double().cpu()).argmin())
    return f"{names[nearest]} ({lab_hex(lab)})"
