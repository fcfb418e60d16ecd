"""Automatic garment masks with no downloaded weights.

No offline garment-parsing model exists (see the reference offline-models.md), so the garment is
carved from what ships inside mediapipe 0.10.21 and OpenCV:

- **On-model photos.** mediapipe's selfie segmentation gives the person; pose (complexity 1, the
  only bundled one) gives shoulders, hips, knees and ankles, which bound the body band the label
  asks for (upper body, lower body, full body, head); face mesh and hands are carved out, and so
  are pixels close to the skin colour sampled on the face (bare arms, neck, legs). GrabCut then
  refines the band from the photo's own colours. Colours are compared after undoing the shot's
  exposure and white balance, so a dim or tinted shot of the garment gives the same mask.
- **Product-only photos on a plain background** (no person found): the background colour is read
  on the border, and the foreground is what differs from it, refined by GrabCut.
- **SAM.** `refine(image_uint8, mask_bool) -> mask_bool` may refine each mask afterwards (the
  pack's SAM node owns checkpoints; this module only calls what it is given).
- **Uncertain masks.** Notes starting with UNCERTAIN say what to check by eye: two candidate
  garments (layers in the torso, or a torso and thighs dressed alike), a band the pose cannot
  place, a hem placed from the pose or not checked.

mediapipe is optional: it is imported on first use, and a clear error says how to install it.
Detection runs at a working size (512 px long side), and the mask is scaled back up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..core.cancel import never_cancelled, run_cancellable
from ..core.choices import Choice
from ..core.color import kmeans
from ..core.tensors import resize_long_side, rgb, to_uint8
from ..geometry.masks import hull_mask

WORK_SIZE = 512
MEDIAPIPE_HELP = ("the automatic garment mask needs mediapipe 0.10.21 (the last release that "
                  "bundles its models): pip install --no-deps mediapipe==0.10.21, then "
                  "pip install -r requirements-mediapipe.txt; or connect garment masks")

Refiner = Callable[[np.ndarray, np.ndarray], np.ndarray]


class GarmentRegion(Choice):
    UPPER = "upper body"
    UPPER_LONG = "upper body to the knees"  # coats, parkas, trench coats
    LOWER = "lower body"
    FULL = "full body"
    HEAD = "head"
    PRODUCT = "product"


# garment_label words -> the body band they cover. Checked word by word, so "denim jacket" and
# "long-sleeve t-shirt" work.
LABELS: dict[str, GarmentRegion] = {
    **dict.fromkeys(("t-shirt", "tshirt", "tee", "shirt", "top", "blouse", "sweater", "jumper",
                     "hoodie", "sweatshirt", "jacket", "blazer", "vest", "cardigan", "polo",
                     "tank", "camisole", "upper", "torso", "bomber", "anorak", "pullover",
                     "sleeve", "sleeves", "bra"), GarmentRegion.UPPER),
    **dict.fromkeys(("coat", "parka", "overcoat", "trench", "raincoat", "mac", "duster"),
                    GarmentRegion.UPPER_LONG),
    **dict.fromkeys(("trousers", "pants", "jeans", "skirt", "shorts", "leggings", "chinos",
                     "joggers", "lower", "legs", "slacks"), GarmentRegion.LOWER),
    **dict.fromkeys(("dress", "jumpsuit", "overall", "overalls", "suit", "gown", "robe",
                     "romper", "onesie", "coverall", "coveralls", "full", "body", "outfit",
                     "spacesuit"), GarmentRegion.FULL),
    **dict.fromkeys(("hat", "cap", "beanie", "beret", "hood", "helmet", "head", "headband",
                     "bandana", "turban"), GarmentRegion.HEAD),
    **dict.fromkeys(("product", "object", "item", "bag", "shoe", "shoes", "sneaker",
                     "sneakers", "boot", "boots", "scarf", "flatlay", "flat-lay"),
                    GarmentRegion.PRODUCT),
}


def region_for_label(label: str | None) -> GarmentRegion | None:
    """The body band for a garment_label, None for "" / "auto"; a ValueError for unknown words."""
    text = (label or "").strip().lower()
    if text in ("", "auto"):
        return None
    try:
        return GarmentRegion(text)
    except ValueError:
        pass
    for word in text.replace("/", " ").replace(",", " ").split():
        for candidate in (word, word[:-1], word[:-2]):  # plurals: hats, dresses
            if candidate in LABELS:
                return LABELS[candidate]
    known = ", ".join(sorted({key for key in LABELS if "-" not in key}))
    raise ValueError(f"garment_label: {label!r} is not a garment this pack knows; use one of "
                     f"{known}, or a band ({', '.join(r.value for r in GarmentRegion)}), or "
                     "leave it empty to detect it")


def _mediapipe():
    try:
        import mediapipe as mp
        return mp.solutions
    except ImportError as error:
        raise ImportError(MEDIAPIPE_HELP) from error


class _Detectors:
    """mediapipe solutions, built once per call of `garment_masks` (building is ~10 ms each)."""

    def __init__(self) -> None:
        solutions = _mediapipe()
        self.segmenter = solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)
        # Complexity 1 is the only pose model bundled in 0.10.21 (0 and 2 are downloaded).
        self.pose = solutions.pose.Pose(static_image_mode=True, model_complexity=1)
        self.faces = solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=4)
        self.hands = solutions.hands.Hands(static_image_mode=True, max_num_hands=4,
                                           model_complexity=0)

    def close(self) -> None:
        for solution in (self.segmenter, self.pose, self.faces, self.hands):
            solution.close()


def _connected_to(mask: np.ndarray, seed: np.ndarray, max_hole: float = 0.002) -> np.ndarray:
    """The parts of `mask` that touch `seed`, with holes smaller than `max_hole` of the image
    filled (speckle); larger holes (a logo, a print, a name tag) stay out of the garment."""
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    keep = np.unique(labels[seed & mask])
    out = np.isin(labels, keep[keep > 0])
    count, holes, stats, _ = cv2.connectedComponentsWithStats((~out).astype(np.uint8), 4)
    small = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] < max_hole * out.size)
    touches_border = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
    return out | np.isin(holes, np.setdiff1d(small, touches_border))


def _lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB in its usual units (OpenCV's 8-bit Lab is scaled)."""
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
    return lab


def _balanced_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB after undoing the shot's exposure and white balance, so the fixed colour
    tolerances below mean the same in a dim, warm shot as in a studio one.

    Exposure and white balance are per-channel gains on linear light (and, near enough, on the
    sRGB values): each channel is divided by its own bright level (99th percentile), the
    highlights a studio shot keeps near white. The white-balance part is held to 0.8..1.25 of
    the exposure gain, so a shot whose brightest pixels are a saturated colour is not bleached.
    """
    values = rgb.astype(np.float32) / 255
    linear = np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4)
    bright = np.percentile(linear.reshape(-1, 3), 99, axis=0).astype(np.float32)
    exposure = max(float(bright.max()), 1e-3)
    white = np.clip(bright, 0.8 * exposure, 1.25 * exposure)
    return cv2.cvtColor(np.clip(linear / white, 0, 1).astype(np.float32), cv2.COLOR_LRGB2LAB)


def _distance(lab: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Colour distance that half-ignores lightness: shading and folds change L*, not the dye."""
    diff = lab - centre
    return np.sqrt((0.5 * diff[..., 0]) ** 2 + diff[..., 1] ** 2 + diff[..., 2] ** 2)


def _dominant(samples: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre of the largest of 3 k-means clusters and its 80th-percentile radius."""
    labels, centres, step = kmeans(samples, 3)
    samples = samples[::step]
    main = np.bincount(labels, minlength=len(centres)).argmax()
    centre = centres[main]
    radius = float(np.percentile(_distance(samples[labels == main], centre), 80))
    return centre, radius


def _grabcut(rgb: np.ndarray, sure_fg: np.ndarray, maybe_fg: np.ndarray,
             sure_bg: np.ndarray) -> np.ndarray:
    labels = np.full(rgb.shape[:2], cv2.GC_PR_BGD, np.uint8)
    labels[maybe_fg] = cv2.GC_PR_FGD
    labels[sure_fg] = cv2.GC_FGD
    labels[sure_bg] = cv2.GC_BGD
    if not (labels == cv2.GC_FGD).any() and not (labels == cv2.GC_PR_FGD).any():
        return np.zeros(rgb.shape[:2], bool)
    if not ((labels == cv2.GC_BGD) | (labels == cv2.GC_PR_BGD)).any():
        return maybe_fg | sure_fg
    cv2.setRNGSeed(0)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), labels, None, bgd, fgd, 4,
                cv2.GC_INIT_WITH_MASK)
    return (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)


def product_mask(rgb: np.ndarray) -> np.ndarray | None:
    """Foreground of a product photo on a plain background, or None when the border is not
    plain (then it is not such a photo)."""
    lab = _lab(rgb)
    border = np.concatenate([lab[:4].reshape(-1, 3), lab[-4:].reshape(-1, 3),
                             lab[:, :4].reshape(-1, 3), lab[:, -4:].reshape(-1, 3)])
    background = np.median(border, axis=0)
    border_distance = np.linalg.norm(border - background, axis=1)
    if np.mean(border_distance < 10) < 0.8:
        return None
    distance = np.linalg.norm(lab - background, axis=-1)
    rough = distance > max(float(np.percentile(border_distance, 99)) * 1.5, 12.0)
    if rough.mean() < 0.01:
        return None
    rough = cv2.morphologyEx(rough.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    sure = cv2.erode(rough, np.ones((9, 9), np.uint8)).astype(bool)
    sure_bg = ~cv2.dilate(rough, np.ones((15, 15), np.uint8)).astype(bool)
    found = _grabcut(rgb, sure, rough.astype(bool), sure_bg)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(found.astype(np.uint8), 8)
    if count <= 1:
        return None
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return _connected_to(found, labels == largest, max_hole=0.01)


def _landmarks(result, width: int, height: int) -> np.ndarray | None:
    if result.pose_landmarks is None:
        return None
    return np.array([(p.x * width, p.y * height, p.visibility)
                     for p in result.pose_landmarks.landmark], np.float32)


def _polygon(shape: tuple[int, int], corners: np.ndarray, shrink: float) -> np.ndarray:
    """A filled quadrilateral, shrunk towards its centroid by `shrink` (0..1)."""
    centre = corners.mean(axis=0)
    return hull_mask(centre + (corners - centre) * (1 - shrink), *shape, grow=0)


# The note that flags a mask to check by eye: two candidate garments, a label the pose cannot
# place, a hem guessed from the pose. The benchmark and callers look for this text.
UNCERTAIN = "uncertain mask"
# Pose landmarks (mediapipe indices) a band starts from: shoulders 11/12, hips 23/24, eyes
# 2/5. Where it ends may lie outside the picture (a waist-up photo of a coat).
PLACED_BY: dict[GarmentRegion, tuple[int, ...]] = {
    GarmentRegion.UPPER: (11, 12), GarmentRegion.UPPER_LONG: (11, 12),
    GarmentRegion.LOWER: (23, 24), GarmentRegion.FULL: (11, 12), GarmentRegion.HEAD: (2, 5)}
# Colours further apart than this (`_distance`) are two garments; nearer, one (shading).
SAME_GARMENT = 15.0
# A lower garment this near a top in full CIELAB (ΔE76) cannot be told from it by colour.
ALIKE = 20.0
# A colour is a candidate garment when it covers this share of the torso's core.
CANDIDATE_SHARE = 0.25
# Outerwear words: with two candidate garments in the torso, these take the outer one (the
# colour at the torso's sides), other words the inner one (at its centre line).
OUTER_WORDS = frozenset(("coat", "parka", "overcoat", "trench", "raincoat", "mac", "duster",
                         "jacket", "blazer", "vest", "cardigan", "bomber", "anorak", "gilet"))


def prefers_outer(label: str | None) -> bool | None:
    """True for outerwear labels (coat, jacket…), False for other garment words, None for an
    empty label or a band name: which of two layered garments the label means."""
    text = (label or "").strip().lower()
    if text in ("", "auto") or text in {region.value for region in GarmentRegion}:
        return None
    words = text.replace("/", " ").replace(",", " ").split()
    return any(candidate in OUTER_WORDS for word in words for candidate in (word, word[:-1]))


def _lab_text(color: np.ndarray) -> str:
    return f"L*a*b* ({color[0]:.0f}, {color[1]:.0f}, {color[2]:.0f})"


def garment_color(samples: np.ndarray, offsets: np.ndarray, outer: bool | None
                   ) -> tuple[np.ndarray, float, np.ndarray, list[str]]:
    """The garment's colour among a core patch's Lab `samples`, whose `offsets` are their
    distances from the torso's centre line (any unit).

    Returns the garment's colours `[n, 3]` (its dominant colour and its shading: colours
    within SAME_GARMENT of it), their radius (80th-percentile distance of the garment's
    samples), a boolean per sample: belongs to another candidate garment, and notes. Two or
    more colours each covering CANDIDATE_SHARE of the core and further apart than SAME_GARMENT
    are candidate garments (an open coat over a dress, a jacket over a shirt): `outer` True
    takes the one furthest from the centre line, False the nearest, None the largest, with a
    note."""
    every = samples
    labels, centres, step = kmeans(samples, 3)
    samples, offsets = samples[::step], offsets[::step]
    shares = np.bincount(labels, minlength=len(centres)) / len(labels)
    # Clusters within SAME_GARMENT of a larger one are its shading: one garment.
    garments: list[list[int]] = []
    for index in np.argsort(-shares):
        for garment in garments:
            if _distance(centres[index], centres[garment[0]]) <= SAME_GARMENT:
                garment.append(int(index))
                break
        else:
            garments.append([int(index)])
    share = [float(shares[garment].sum()) for garment in garments]
    candidates = [n for n, garment in enumerate(garments) if share[n] >= CANDIDATE_SHARE]
    main = int(np.argmax(share))
    notes: list[str] = []
    if len(candidates) > 1:
        off_centre = {n: float(np.mean(offsets[np.isin(labels, garments[n])]))
                      for n in candidates}
        if outer is None:
            how = "the largest; a label such as 'coat' or 'dress' picks one"
        else:
            main = (max if outer else min)(candidates, key=off_centre.get)
            how = "the outer one (at the sides)" if outer else "the inner one (at the centre)"
        shown = ", ".join(f"{_lab_text(centres[garments[n][0]])} over {100 * share[n]:.0f} %"
                          for n in candidates)
        count = ("two", "three")[len(candidates) - 2]
        notes.append(f"{UNCERTAIN}: {count} candidate garments in the torso ({shown}); took "
                     f"{_lab_text(centres[garments[main][0]])}, {how}")
    colors = centres[garments[main]]
    radius = float(np.percentile(_nearest(samples[np.isin(labels, garments[main])], colors),
                                 80))
    other = np.zeros(len(every), bool)
    for n in candidates:  # nearer another candidate than the chosen garment
        if n != main:
            other |= _nearest(every, centres[garments[n]]) < _nearest(every, colors)
    return colors, radius, other, notes


def _nearest(lab: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """`_distance` to the nearest of `colours`."""
    return np.min([_distance(lab, color) for color in colors], axis=0)


def _placed(pose: np.ndarray, region: GarmentRegion, width: int, height: int) -> bool:
    """Whether the landmarks that place `region` are seen and inside the picture."""
    points = pose[list(PLACED_BY[region])]
    inside = ((points[:, 0] >= 0) & (points[:, 0] < width) & (points[:, 1] >= 0)
              & (points[:, 1] < height))
    return bool(inside.all() and (points[:, 2] >= 0.5).all())


def on_model_mask(rgb: np.ndarray, detectors: _Detectors, region: GarmentRegion | None,
                  outer: bool | None = None
                  ) -> tuple[np.ndarray | None, GarmentRegion | None, list[str]]:
    """The garment on a person, the band used and notes on what is uncertain; (None, None, [])
    when no person is found.

    The garment's colour is the dominant colour of a core patch the pose makes certain (the
    torso for tops, the thighs for trousers; `garment_colour` when it holds two garments); the
    body band the label asks for, inside the person, is then split by GrabCut, seeded with the
    core, and with the person's other regions (skin, another candidate garment) as background.
    A top over trousers of its colour ends just below the hips."""
    height, width = rgb.shape[:2]
    shape = (height, width)
    person = detectors.segmenter.process(rgb).segmentation_mask
    pose = _landmarks(detectors.pose.process(rgb), width, height)
    if pose is None or (person > 0.5).mean() < 0.02:
        return None, None, []
    person_fg = person > 0.5
    face = np.zeros(shape, bool)
    for face_landmarks in detectors.faces.process(rgb).multi_face_landmarks or []:
        points = np.array([(p.x * width, p.y * height) for p in face_landmarks.landmark])
        face |= hull_mask(points, *shape, grow=3)
    if not face.any() and (pose[:11, 2] >= 0.5).all():
        # A face too small for the face mesh: the pose's face points (nose, eyes, ears, mouth).
        face = hull_mask(pose[:11, :2], *shape, grow=2) & person_fg
    hands = np.zeros(shape, bool)
    for hand_landmarks in detectors.hands.process(rgb).multi_hand_landmarks or []:
        points = np.array([(p.x * width, p.y * height) for p in hand_landmarks.landmark])
        hands |= hull_mask(points, *shape, grow=max(shape) // 60)
    lab = _balanced_lab(rgb)
    notes: list[str] = []

    shoulders, hips, knees = pose[[11, 12], :2], pose[[23, 24], :2], pose[[25, 26], :2]
    shoulder_y = float(shoulders[:, 1].mean())
    shoulder_width = float(np.abs(shoulders[0, 0] - shoulders[1, 0])) or width / 4
    hip_y = float(hips[:, 1].mean())
    torso = max(hip_y - shoulder_y, shoulder_width)
    eye_y = float(pose[[2, 5], 1].mean())
    torso_quad = np.concatenate([shoulders, hips[::-1]])
    torso_core = _polygon(shape, torso_quad, shrink=0.3)
    thigh_core = _polygon(shape, np.concatenate([hips, knees[::-1]]), shrink=0.3)
    # Mid-thigh to the knees: below a long top's hem, so the lower garment (or a dress's skirt).
    # Only with the knees in the picture: above them, a long top's hem may still be.
    lower_thighs = _polygon(shape, np.concatenate([(hips + knees) / 2, knees[::-1]]),
                            shrink=0.3) & person_fg & ~hands
    thighs_seen = lower_thighs.sum() >= 50 and knees[:, 1].max() < height
    if region is None:
        region, auto_notes = _auto_region(lab, torso_core & person_fg,
                                          lower_thighs if thighs_seen else None)
        notes += auto_notes
    if not _placed(pose, region, width, height):
        notes.append(f"{UNCERTAIN}: the pose cannot place the {region.value} (its landmarks are "
                     "hidden or outside the picture); check the mask or connect one")
    rows = np.arange(height, dtype=np.float32)[:, None].repeat(width, 1)
    top = shoulder_y - 0.35 * shoulder_width
    if region is GarmentRegion.UPPER:  # to the hem: found by colour below the hips (see below)
        band, core = (rows >= top) & (rows <= hip_y + 0.45 * torso), torso_core
    elif region is GarmentRegion.UPPER_LONG:  # a coat may reach the knees, or below them
        knee_y = float(knees[:, 1].mean())
        band, core = (rows >= top) & (rows <= knee_y + 0.25 * torso), torso_core
    elif region is GarmentRegion.LOWER:
        band, core = rows >= hip_y - 0.15 * torso, thigh_core
    elif region is GarmentRegion.FULL:
        band, core = rows >= top, torso_core
    elif region is GarmentRegion.HEAD:
        band = rows <= eye_y - 0.25 * shoulder_width
        core = band
    else:
        raise ValueError(f"region {region.value} is not a body band")
    core = core & person_fg & band & ~face & ~hands
    if core.sum() < 30:
        notes.append(f"{UNCERTAIN}: no {region.value} in the picture, so the mask is empty")
        return np.zeros(shape, bool), region, notes
    centre_x = float(torso_quad[:, 0].mean())
    ys, xs = np.nonzero(core)
    colors, radius, other, color_notes = garment_color(lab[ys, xs], np.abs(xs - centre_x),
                                                          outer)
    notes += color_notes
    other_garment = np.zeros(shape, bool)
    other_garment[ys[other], xs[other]] = True
    garment_distance = _nearest(lab, colors)
    near = garment_distance < max(3.0 * radius, 16.0)
    carve = face | hands | other_garment
    if face.any():  # bare skin (arms, neck, legs): nearer the face's colour than the garment's
        inner = cv2.erode(face.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
        skin_color, skin_radius = _dominant(lab[inner] if inner.sum() > 100 else lab[face])
        skin_distance = _distance(lab, skin_color)
        skin = (skin_distance < max(2 * skin_radius, 8.0)) & (skin_distance < garment_distance)
        # Inside the torso, where the garment is all but certain, only what is clearly skin
        # (a beige coat or a grey shirt in warm light is near the face's colour).
        clearly = ((skin_distance < max(skin_radius, 6.0))
                   & (skin_distance < 0.5 * garment_distance))
        carve |= skin & (clearly | ~_polygon(shape, torso_quad, shrink=0.0))
    if region is GarmentRegion.UPPER and thighs_seen:
        thigh_color, _ = _dominant(lab[lower_thighs])
        if _alike(thigh_color, colors):  # the hem cannot be told by colour
            band &= rows <= hip_y + 0.05 * torso
            notes.append(f"{UNCERTAIN}: the thighs are dressed like the top, so the hem is "
                         "placed from the pose, just below the hips")
    inside = person_fg & band & ~carve
    sure = cv2.erode((core & near & ~carve).astype(np.uint8),
                     np.ones((5, 5), np.uint8)).astype(bool)
    sure_bg = (person < 0.1) | carve | ~band
    garment = _grabcut(rgb, sure, inside & near, sure_bg) & inside
    garment = cv2.morphologyEx(garment.astype(np.uint8), cv2.MORPH_OPEN,
                               np.ones((3, 3), np.uint8)).astype(bool)
    seeded = _connected_to(garment, sure | (core & garment))
    # A strap, a zip or a bag can cut the garment in two; the core only sees one side (the far
    # arm's sleeve, a half the pose's torso misses), so large parts of the garment's own colour
    # count as seeds too.
    min_area = max(0.1 * seeded.sum(), 0.01 * seeded.size)
    garment = _connected_to(garment, seeded | _large_parts(garment & ~seeded, near, min_area))
    if region is GarmentRegion.UPPER and not thighs_seen and _runs_to_band_end(
            garment, band, person_fg, np.sort(hips[:, 0])):
        notes.append(f"{UNCERTAIN}: the top runs to the end of its band and the thighs are not "
                     "in the picture, so its hem is not checked (trousers of its colour would "
                     "be taken too)")
    return garment, region, notes


def _runs_to_band_end(garment: np.ndarray, band: np.ndarray, person: np.ndarray,
                      hips_x: np.ndarray) -> bool:
    """Whether the garment covers most of the person on the band's last row (or the picture's)
    between the hips: no hem was found inside the band."""
    last = int(np.flatnonzero(band.any(axis=1)).max())
    x0, x1 = (int(np.clip(x, 0, garment.shape[1] - 1)) for x in hips_x)
    on_person = person[last, x0:x1 + 1]
    return bool(on_person.any() and garment[last, x0:x1 + 1][on_person].mean() > 0.5)


def _large_parts(mask: np.ndarray, near: np.ndarray, min_area: float) -> np.ndarray:
    """The connected parts of `mask` with at least `min_area` pixels, most of them `near`."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), 8)
    area = stats[:, cv2.CC_STAT_AREA]
    near_share = np.bincount(labels.ravel(), near.ravel(), count) / np.maximum(area, 1)
    keep = np.flatnonzero((area >= min_area) & (near_share >= 0.8))
    return np.isin(labels, keep[keep > 0])


def _alike(color: np.ndarray, colors: np.ndarray) -> bool:
    """Whether `colour` may be the same cloth as `colours`: within ALIKE in full CIELAB
    (lightness counts here: grey trousers under a black top are another garment)."""
    return bool(np.linalg.norm(colors - color, axis=-1).min() <= ALIKE)


def _auto_region(lab: np.ndarray, torso: np.ndarray, lower_thighs: np.ndarray | None
                 ) -> tuple[GarmentRegion, list[str]]:
    """Upper body, the common case. When the thighs are in the picture and dressed like the
    torso (a dress, a suit, or a top over trousers of its colour) that is said in a note: the
    label decides."""
    if torso.sum() < 50 or lower_thighs is None:
        return GarmentRegion.UPPER, []
    top, _ = _dominant(lab[torso])
    bottom, _ = _dominant(lab[lower_thighs])
    if not _alike(bottom, top[None]):
        return GarmentRegion.UPPER, []
    note = (f"{UNCERTAIN}: two candidate garments, the torso and the thighs are dressed alike "
            "(a top over trousers of its colour, or one garment); took the upper body; label "
            "'dress' or 'suit' for the whole")
    return GarmentRegion.UPPER, [note]


def _to_work(image: torch.Tensor) -> np.ndarray:
    return to_uint8(resize_long_side(rgb(image).float(), WORK_SIZE))


def _to_full(mask: np.ndarray, height: int, width: int, device: torch.device) -> torch.Tensor:
    soft = torch.from_numpy(mask.astype(np.float32))[None, None]
    if soft.shape[-2:] != (height, width):
        soft = F.interpolate(soft, size=(height, width), mode="bilinear", align_corners=False)
    # Threshold the upscaled soft edge: a clean, binary outline at the full resolution.
    return (soft[0, 0] >= 0.5).float().to(device)


def garment_masks(images: Sequence[torch.Tensor], region: GarmentRegion | None = None,
                  refine: Refiner | None = None, step: Callable[[], None] | None = None,
                  check_cancel: Callable[[], None] = never_cancelled,
                  outer: bool | None = None) -> tuple[list[torch.Tensor], list[str]]:
    """One `[H, W]` float mask (1 = garment) per `[H, W, C]` image, and notes saying how each
    was found, and, starting with UNCERTAIN, what to check by eye. `region` None detects the band
    (on-model) or takes the product (plain background); `outer` (`prefers_outer` of the label)
    picks between two layered garments. `step` is called once per image (progress and
    interrupt); `check_cancel` (it raises to stop) during the scaling to and from the work size,
    seconds at 8192²."""
    notes: list[str] = []
    masks: list[torch.Tensor] = []
    detectors = None if region is GarmentRegion.PRODUCT else _Detectors()
    try:
        for index, image in enumerate(images):
            if step is not None:
                step()
            rgb = run_cancellable(partial(_to_work, image), check_cancel)
            found, used, uncertain = ((None, None, []) if detectors is None else
                                      on_model_mask(rgb, detectors, region, outer))
            if found is not None:
                how = f"{used.value} of the person (pose, segmentation, GrabCut)"
            else:
                found = product_mask(rgb)
                how = "the product on its plain background"
                if found is None:
                    raise ValueError(
                        f"images: no person and no plain background in image {index}, so the "
                        "garment cannot be found automatically; connect garment masks")
            if refine is not None:
                found = np.asarray(refine(rgb, found), bool)
                how += ", refined by SAM"
            notes.append(f"image {index}: automatic mask, {how}, "
                         f"{100 * found.mean():.0f} % of the image")
            notes += [f"image {index}: {note}" for note in uncertain]
            masks.append(run_cancellable(partial(_to_full, found, image.shape[0], image.shape[1],
                                                 image.device), check_cancel))
    finally:
        if detectors is not None:
            detectors.close()
    return masks, notes
