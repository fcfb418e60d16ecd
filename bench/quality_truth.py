"""Ground-truth quality (a measurement, not a test): removal and reference repair scored against
the clean photo they were made from.

    .venv/bin/python bench/quality_truth.py [--quick] [--sheet docs/images/quality_truth.jpg]

Cases, from scikit-image's bundled photos (offline):

- removal: a foreign object (the scikit-image logo, a horse silhouette cut from the coffee photo,
  the astronaut's mission patch, a striped sticker, a coin) pasted with its alpha onto clean
  backgrounds of varied texture (foliage, gravel, brick, sky, fur, wood), then removed with the
  exact mask of every pixel the object touched, and with that mask grown by GROWN_BY px;
- repair: a detail (a patch, a name tag, text drawn on a table, a pasted logo, ...) garbled
  (pixelated with its colour channels rotated, blurred, or overwritten by a patch from elsewhere)
  and repaired with its exact box as the mask from one reference shot: the clean photo around
  the detail, REFERENCE_CONTEXTS x the box, rotated, scaled, brightened and JPEG-compressed.

Methods run in the same process on the same cases: `detail_repair.repair` (no generator, so the
embedded engines: classical fill for removal, category `general`; the reference warp for repair,
category `logo`, which keeps the input when the reference does not align) with each blend in
BLENDS; cv2.inpaint Telea and NS on 16-bit channels (radius 3); raw PyPatchMatch (its default
patch size) on the 8-bit image; the pack's `classical_fill` patchmatch; and, for repair, the
garbled input left alone.

Metrics against the clean photo: mean ΔE2000 inside the mask, the same after blurring both by
LOW_PASS_SIGMA (colour and shape without the texture's phase), PSNR inside (dB, RGB 0..1), seam
(mean ΔE2000 on the SEAM_RING px just inside the mask's edge), detail (mean gradient magnitude
inside over the clean photo's: under 1 is a smear), residue (the share of results whose inner
ring keeps the old content: over RESIDUE_SHARE of its pixels are further than RESIDUE_DELTA_E
from the truth and nearer to the input), and Quality Check (`quality.quality_check` of each
result against its input): the share flagged, and the reasons it gave.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage import data

from _common import PACK_ROOT, add_threads_option, import_pack, use_threads

import_pack()

from region_repair.pipelines.repair import detail_repair  # noqa: E402
from region_repair.pipelines.repair.classical_fill import classical_fill  # noqa: E402
from region_repair.pipelines.core.color import ciede2000, srgb_to_lab  # noqa: E402
from region_repair.pipelines.review.quality import quality_check  # noqa: E402

BLENDS = ("seamless", "inward", "hard")
GROWN_BY = 6                 # px the grown removal mask adds
SEAM_RING = 2                # px just inside the mask's edge that the seam averages
REFERENCE_CONTEXTS = (3, 6)  # reference crop, in multiples of the detail's box
RESIDUE_DELTA_E = 5.0
RESIDUE_SHARE = 0.2
PATCHMATCH_RADII = (3, 7)    # the pack's patchmatch engine, per patch radius
SIZE = 256                   # removal backgrounds, square
LOW_PASS_SIGMA = 4.0         # px: colour and shape without the texture's phase
FLOOR_SIGMAS = (1.0, 2.0)    # px: the truth blurred by these, as floors for the removal rows


@dataclasses.dataclass
class Case:
    group: str
    name: str
    image: np.ndarray        # [H, W, 3] float32 0..1: what the method gets
    truth: np.ndarray        # the clean photo
    mask: np.ndarray         # [H, W] bool
    reference: np.ndarray | None = None


def as_float(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float32) / 255


def tint(gray: np.ndarray, color: tuple[float, float, float]) -> np.ndarray:
    return as_float(gray)[..., None] * np.float32(color)


# --- removal ------------------------------------------------------------------------------------

def backgrounds() -> dict[str, np.ndarray]:
    """Clean SIZE² backgrounds of varied texture."""
    return {
        "foliage": tint(data.grass()[:SIZE, :SIZE], (0.45, 0.8, 0.3)),
        "gravel": tint(data.gravel()[:SIZE, :SIZE], (0.95, 0.88, 0.78)),
        "brick": tint(data.brick()[:SIZE, :SIZE], (0.95, 0.55, 0.42)),
        "sky": as_float(data.rocket()[0:SIZE, 340:340 + SIZE]),
        "fur": as_float(data.chelsea()[40:40 + SIZE, 0:SIZE]),
        "wood": as_float(data.coffee()[144:144 + SIZE, 344:344 + SIZE]),
    }


def foreign_objects() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(rgb, alpha) of objects about 64 px across, cut from other photos or drawn."""
    def shaped(rgb: np.ndarray, alpha: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
        height, width = alpha.shape
        size = (side, round(side * height / width))
        alpha = cv2.resize(alpha, size, interpolation=cv2.INTER_AREA)
        return (cv2.resize(rgb, size, interpolation=cv2.INTER_AREA),
                np.where(alpha < 1 / 255, 0, alpha))

    logo = as_float(data.logo())
    logo_disc = np.zeros(logo.shape[:2], np.float32)
    cv2.circle(logo_disc, (250, 250), 246, 1.0, -1, cv2.LINE_AA)  # the round logo, no white
    horse = 1 - data.horse().astype(np.float32)  # the horse is False
    saucer = cv2.resize(as_float(data.coffee()[200:400, 150:420]), horse.shape[::-1])
    patch = as_float(data.astronaut()[342:426, 130:214])
    disc = np.zeros((84, 84), np.float32)
    cv2.circle(disc, (42, 42), 40, 1.0, -1, cv2.LINE_AA)
    sticker = np.zeros((90, 90, 3), np.float32)
    sticker[18:72, 3:87] = (0.95, 0.9, 0.2)
    sticker[18:72:10, 3:87] = sticker[19:72:10, 3:87] = (0.1, 0.2, 0.7)
    cv2.putText(sticker, "SALE", (12, 58), cv2.FONT_HERSHEY_DUPLEX, 1.0, (0.8, 0.1, 0.1), 2,
                cv2.LINE_AA)
    sticker_alpha = np.zeros((90, 90), np.float32)
    sticker_alpha[18:72, 3:87] = 1
    turn = cv2.getRotationMatrix2D((45, 45), 20, 1)
    sticker, sticker_alpha = (cv2.warpAffine(a, turn, (90, 90), flags=cv2.INTER_AREA)
                              for a in (sticker, sticker_alpha))
    coins = data.coins()
    coin = tint(coins[16:76, 18:78], (0.85, 0.75, 0.5))
    coin_alpha = np.zeros((60, 60), np.float32)
    cv2.circle(coin_alpha, (30, 30), 25, 1.0, -1, cv2.LINE_AA)
    return {"logo": shaped(logo[..., :3], logo[..., 3] * logo_disc, 64),
            "horse": shaped(saucer, horse, 72),
            "patch": shaped(patch, disc, 60),
            "sticker": shaped(sticker, sticker_alpha, 72),
            "coin": shaped(coin, coin_alpha, 60)}


def grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


def removal_cases(quick: bool) -> list[Case]:
    objects = list(foreign_objects().items())
    cases = []
    scenes = list(backgrounds().items())[:2 if quick else None]
    for index, (background_name, clean) in enumerate(scenes):
        object_name, (rgb, alpha) = objects[index % len(objects)]
        height, width = alpha.shape
        y0, x0 = (SIZE - height) // 2 + 9 * (index % 3 - 1), (SIZE - width) // 2 + 7 * (index % 2)
        image = clean.copy()
        a = alpha[..., None]
        image[y0:y0 + height, x0:x0 + width] = clean[y0:y0 + height, x0:x0 + width] * (1 - a) \
            + rgb * a
        exact = np.zeros((SIZE, SIZE), bool)
        exact[y0:y0 + height, x0:x0 + width] = alpha > 0  # every pixel it touched
        name = f"{object_name} on {background_name}"
        cases.append(Case("removal, exact mask", name, image, clean, exact))
        cases.append(Case(f"removal, mask +{GROWN_BY} px", name, image, clean,
                          grow(exact, GROWN_BY)))
    return cases


# --- reference repair ---------------------------------------------------------------------------

def drawn_text() -> np.ndarray:
    photo = data.coffee().copy()
    cv2.putText(photo, "ESPRESSO", (22, 372), cv2.FONT_HERSHEY_TRIPLEX, 1.1, (245, 230, 200), 2,
                cv2.LINE_AA)
    return photo


def pasted_logo() -> np.ndarray:
    photo = data.stereo_motorcycle()[0].copy()
    logo = cv2.resize(data.logo(), (72, 72), interpolation=cv2.INTER_AREA).astype(np.float32)
    alpha = logo[..., 3:] / 255
    window = photo[380:452, 560:632].astype(np.float32)
    photo[380:452, 560:632] = np.round(window * (1 - alpha) + logo[..., :3] * alpha)
    return photo


# (photo, detail box x, y, w, h, garble)
DETAILS = [
    ("astronaut", data.astronaut, (130, 342, 84, 84), "pixelate"),
    ("name tag", data.astronaut, (262, 318, 72, 40), "blur"),
    ("flag", data.astronaut, (4, 60, 56, 64), "patch"),
    ("espresso text", drawn_text, (18, 340, 190, 42), "pixelate"),
    ("cat's eye", data.chelsea, (140, 82, 60, 52), "blur"),
    ("spoon", data.coffee, (306, 216, 72, 88), "patch"),
    ("rocket", data.rocket, (284, 150, 40, 96), "pixelate"),
    ("motorcycle tank", lambda: data.stereo_motorcycle()[0], (398, 168, 84, 56), "blur"),
    ("logo on a floor", pasted_logo, (560, 380, 72, 72), "patch"),
    ("tissue", data.immunohistochemistry, (200, 200, 64, 64), "pixelate"),
]


def garble(photo: np.ndarray, box: tuple[int, int, int, int], how: str) -> np.ndarray:
    x, y, w, h = box
    out = photo.copy()
    detail = photo[y:y + h, x:x + w]
    if how == "pixelate":  # 8 px blocks, colour channels rotated
        small = cv2.resize(detail, (max(1, w // 8), max(1, h // 8)), interpolation=cv2.INTER_AREA)
        out[y:y + h, x:x + w] = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)[
            ..., [1, 2, 0]]
    elif how == "blur":
        out[y:y + h, x:x + w] = cv2.GaussianBlur(photo, (0, 0), 5)[y:y + h, x:x + w]
    else:  # a wrong patch: the same-sized area half the image away
        sy, sx = (y + photo.shape[0] // 2) % (photo.shape[0] - h), \
            (x + photo.shape[1] // 2) % (photo.shape[1] - w)
        out[y:y + h, x:x + w] = photo[sy:sy + h, sx:sx + w]
    return out


def reference_shot(photo: np.ndarray, box: tuple[int, int, int, int], context: int,
                   rng: np.random.Generator) -> np.ndarray:
    """The clean photo around the detail (`context` x its box), as another shot: rotated 3-15°
    either way, scaled 0.6-2x, gain 0.85-1.2 and an offset, JPEG quality 70."""
    x, y, w, h = box
    angle = rng.uniform(3, 15) * rng.choice([-1, 1])
    scale = rng.uniform(0.6, 2.0)
    size = (max(16, round(context * w * scale)), max(16, round(context * h * scale)))
    warp = cv2.getRotationMatrix2D((x + w / 2, y + h / 2), angle, scale)
    warp[:, 2] += np.array(size) / 2 - (x + w / 2, y + h / 2)
    shot = cv2.warpAffine(photo.astype(np.float32), warp, size, flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REFLECT)
    shot = np.clip(shot * rng.uniform(0.85, 1.2) + rng.uniform(-10, 10), 0, 255).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", shot[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 70])
    return as_float(cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1])


def repair_cases(quick: bool) -> list[Case]:
    rng = np.random.default_rng(13)
    cases = []
    for name, load, box, how in DETAILS[:3 if quick else None]:
        photo = np.ascontiguousarray(load()[..., :3])
        x, y, w, h = box
        mask = np.zeros(photo.shape[:2], bool)
        mask[y:y + h, x:x + w] = True
        image = as_float(garble(photo, box, how))
        for context in REFERENCE_CONTEXTS[:1 if quick else None]:
            cases.append(Case(f"repair, reference {context}x", f"{name} ({how})", image,
                              as_float(photo), mask, reference_shot(photo, box, context, rng)))
    return cases


# --- methods ------------------------------------------------------------------------------------

def tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def repair_with(blend: str):
    def run(case: Case) -> tuple[np.ndarray, dict]:
        references = [] if case.reference is None else [tensor(case.reference)]
        # Removal is `general`; a garbled detail is a logo to repair (kept when unaligned).
        category = "general" if case.reference is None else "logo"
        result = detail_repair.repair(tensor(case.image)[None], tensor(case.mask)[None],
                                      detail_repair.RepairSettings(blend=blend,
                                                                   category=category),
                                      references=references)
        return result.images[0].numpy(), result.info[0]
    return run


def cv2_inpaint(flag: int):
    def run(case: Case) -> tuple[np.ndarray, None]:
        levels = np.round(case.image * 65535).astype(np.uint16)
        hole = case.mask.astype(np.uint8)
        filled = np.stack([cv2.inpaint(np.ascontiguousarray(levels[..., c]), hole, 3, flag)
                           for c in range(3)], axis=-1)
        return filled.astype(np.float32) / 65535, None
    return run


def raw_patchmatch(case: Case) -> tuple[np.ndarray, None]:
    from patchmatch import patch_match
    image = np.round(case.image * 255).astype(np.uint8)
    filled = patch_match.inpaint(image, case.mask.astype(np.uint8))  # its default patch size
    return filled.astype(np.float32) / 255, None


def pack_patchmatch(radius: int):
    def run(case: Case) -> tuple[np.ndarray, None]:
        return classical_fill(tensor(case.image)[None], tensor(case.mask)[None], "patchmatch",
                              radius)[0].numpy(), None
    return run


def truth_blurred(sigma: float):
    """Not a method but a floor: the clean photo itself, blurred by `sigma` px, inside the mask.
    A fill that knew the truth's colours and shapes down to that scale (no fill does) would
    score this; the targets of the removal rows sit near the sigma-1 floor."""
    def run(case: Case) -> tuple[np.ndarray, None]:
        result = case.image.copy()
        result[case.mask] = cv2.GaussianBlur(case.truth, (0, 0), sigma)[case.mask]
        return result, None
    return run


def methods(kind: str) -> dict:
    table = {f"repair {blend}": repair_with(blend) for blend in BLENDS}
    if kind == "removal":
        table |= {"cv2 telea": cv2_inpaint(cv2.INPAINT_TELEA),
                  "cv2 ns": cv2_inpaint(cv2.INPAINT_NS),
                  "pypatchmatch": raw_patchmatch}
        table |= {f"fill patchmatch r{r}": pack_patchmatch(r) for r in PATCHMATCH_RADII}
        table |= {f"floor: truth blurred σ{s:g}": truth_blurred(s) for s in FLOOR_SIGMAS}
    else:
        table |= {"input (left alone)": lambda case: (case.image, None),
                  "cv2 telea": cv2_inpaint(cv2.INPAINT_TELEA)}
    return table


# --- metrics ------------------------------------------------------------------------------------

def inner_ring(mask: np.ndarray, width: int) -> np.ndarray:
    kernel = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    eroded = cv2.erode(mask.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT,
                       borderValue=1) > 0
    return mask & ~eroded


def gradient(image: np.ndarray) -> np.ndarray:
    gray = image.mean(-1)
    return np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1))


def score(case: Case, result: np.ndarray) -> dict:
    outside = ~case.mask
    changed_outside = int((result[outside] != case.image[outside]).any(-1).sum())
    blurred = [cv2.GaussianBlur(a, (0, 0), LOW_PASS_SIGMA) for a in (result, case.truth)]
    lab = srgb_to_lab(tensor(np.stack([result, case.truth, case.image, *blurred])))
    to_truth = ciede2000(lab[0], lab[1]).numpy()
    to_input = ciede2000(lab[0], lab[2]).numpy()
    low_pass = ciede2000(lab[3], lab[4]).numpy()
    ring = inner_ring(case.mask, SEAM_RING)
    squared = ((result - case.truth)[case.mask] ** 2).mean()
    old = (to_truth[ring] > RESIDUE_DELTA_E) & (to_input[ring] < to_truth[ring])
    return {"delta_e": float(to_truth[case.mask].mean()),
            "delta_e_low": float(low_pass[case.mask].mean()),
            "psnr": float(10 * np.log10(1 / max(squared, 1e-10))),
            "seam": float(to_truth[ring].mean()),
            "detail": float(gradient(result)[case.mask].mean()
                            / max(gradient(case.truth)[case.mask].mean(), 1e-6)),
            "residue": bool(old.mean() > RESIDUE_SHARE),
            "changed_outside": changed_outside}


def review(case: Case, result: np.ndarray, info: dict | None) -> list[str]:
    references = None if case.reference is None else tensor(case.reference)[None]
    report = quality_check(tensor(case.image)[None], tensor(result)[None],
                           tensor(case.mask)[None], None if info is None else json.dumps([info]),
                           references).report
    return report["candidates"][0]["reasons"]


# --- the run ------------------------------------------------------------------------------------

def run(cases: list[Case]) -> tuple[list[dict], dict]:
    rows, outputs = [], {}
    for case in cases:
        kind = "removal" if case.reference is None else "repair"
        for method, function in methods(kind).items():
            start = time.perf_counter()
            result, info = function(case)
            seconds = time.perf_counter() - start
            row = {"group": case.group, "case": case.name, "method": method,
                   "seconds": seconds, **score(case, result),
                   "reasons": review(case, result, info)}
            if info is not None and case.reference is not None:
                row["aligned"] = bool(info["references_used"])
            rows.append(row)
            outputs[case.group, case.name, method] = result
    return rows, outputs


def flags(row: dict) -> bool:
    """Quality Check wants a review for a reason other than `no_reference`, which every
    reference-free removal gets by design."""
    return any(reason != "no_reference" for reason in row["reasons"])


def table(rows: list[dict]) -> str:
    lines = ["| case | method | ΔE2000 inside | low-pass ΔE2000 | PSNR inside (dB) | seam ΔE2000 "
             "| detail | residue | QC flagged | QC reasons | s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    groups = defaultdict(list)
    for row in rows:
        groups[row["group"], row["method"]].append(row)
    for (group, method), members in groups.items():
        def mean(key):
            return sum(r[key] for r in members) / len(members)
        reasons = Counter(reason for r in members for reason in r["reasons"])
        flagged = sum(flags(r) for r in members)
        lines.append(f"| {group} | {method} | {mean('delta_e'):.2f} | {mean('delta_e_low'):.2f} | "
                     f"{mean('psnr'):.1f} | "
                     f"{mean('seam'):.2f} | {mean('detail'):.2f} | "
                     f"{sum(r['residue'] for r in members)}/{len(members)} | "
                     f"{flagged}/{len(members)} | "
                     f"{', '.join(f'{k} {v}' for k, v in reasons.most_common()) or '-'} | "
                     f"{mean('seconds'):.2f} |")
    return "\n".join(lines)


def agreement(rows: list[dict]) -> list[str]:
    """Quality Check against the truth's residue label, and references aligned per context."""
    lines = []
    rows = [r for r in rows if not r["method"].startswith("floor")]
    for label, members in (("with residue", [r for r in rows if r["residue"]]),
                           ("without residue", [r for r in rows if not r["residue"]])):
        flagged = sum(flags(r) for r in members)
        by_residue = sum("residue" in r["reasons"] for r in members)
        lines.append(f"Quality Check on the {len(members)} results {label}: {flagged} flagged "
                     f"(a reason other than no_reference), {by_residue} with the reason `residue`")
    for context in REFERENCE_CONTEXTS:
        aligned = [r["aligned"] for r in rows if r.get("aligned") is not None
                   and r["group"] == f"repair, reference {context}x"
                   and r["method"] == f"repair {BLENDS[0]}"]
        if aligned:
            lines.append(f"references aligned at {context}x: {sum(aligned)} of {len(aligned)}")
    moved = [r for r in rows if r["changed_outside"] and r["method"].startswith(("repair",
                                                                                  "fill"))]
    lines.append(f"pack results with pixels changed outside the mask: {len(moved)}")
    return lines


def contact_sheet(cases: list[Case], outputs: dict, path: Path, tile: int = 128) -> None:
    """Per case: input, mask, each method, truth; cropped to the mask's box x 2.5."""
    def label(image: np.ndarray, text: str) -> np.ndarray:
        image = np.ascontiguousarray(image)
        cv2.putText(image, text, (3, tile - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.36, (0, 0, 0), 3,
                    cv2.LINE_AA)
        cv2.putText(image, text, (3, tile - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.36, (255, 255, 255),
                    1, cv2.LINE_AA)
        return image

    rows = []
    for case in cases:
        ys, xs = np.nonzero(case.mask)
        side = int(max(np.ptp(ys), np.ptp(xs)) * 2.5)
        cy, cx = (ys.min() + ys.max()) // 2, (xs.min() + xs.max()) // 2
        y0 = int(np.clip(cy - side // 2, 0, max(0, case.mask.shape[0] - side)))
        x0 = int(np.clip(cx - side // 2, 0, max(0, case.mask.shape[1] - side)))

        def cut(image: np.ndarray) -> np.ndarray:
            crop = (np.clip(image[y0:y0 + side, x0:x0 + side], 0, 1) * 255).astype(np.uint8)
            return cv2.resize(crop, (tile, tile), interpolation=cv2.INTER_AREA)

        names = [m for g, n, m in outputs
                 if (g, n) == (case.group, case.name) and not m.startswith("floor")]
        tiles = [label(cut(case.image), "input"),
                 label(cut(np.repeat(case.mask[..., None].astype(np.float32), 3, -1)), "mask")]
        tiles += [label(cut(outputs[case.group, case.name, m]), m) for m in names]
        tiles.append(label(cut(case.truth), "truth"))
        rows.append(np.hstack(tiles))
    width = max(r.shape[1] for r in rows)
    sheet = np.vstack([np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0))) for r in rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), sheet[..., ::-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="2 removal backgrounds and 3 details at 3x only")
    parser.add_argument("--sheet", type=Path, default=None,
                        help="write a contact sheet PNG of a few cases here")
    parser.add_argument("--details", action="store_true", help="also print every case's row")
    add_threads_option(parser)
    args = parser.parse_args()
    use_threads(args.threads)
    start = time.perf_counter()
    cases = removal_cases(args.quick) + repair_cases(args.quick)
    rows, outputs = run(cases)
    print(table(rows))
    print()
    print("\n".join(agreement(rows)))
    if args.details:
        for row in rows:
            print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()})
    if args.sheet is not None:
        shown = [c for c in cases if c.group in ("removal, exact mask",
                                                 f"repair, reference {REFERENCE_CONTEXTS[0]}x")]
        contact_sheet(shown[::2][:6], outputs, PACK_ROOT / args.sheet
                      if not args.sheet.is_absolute() else args.sheet)
    print(f"\n{len(cases)} cases, {len(rows)} results in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
