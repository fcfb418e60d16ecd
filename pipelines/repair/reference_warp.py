"""Reference warp: find the masked detail's surroundings in reference shots and warp the best
reference into place. No weights; OpenCV only.

The masked pixels of the target are corrupt (a garbled logo, a speck), so they are never looked
at: SIFT features are taken only from a band of context around the mask (its bounding box grown
by `context`, less the mask and a margin), and matched against features anywhere in each
reference. Lowe's ratio test, then a MAGSAC++ homography (reference -> target), sanity checks
(inlier count and share, orientation, scale, shear, the horizon), and an optional ECC refinement
on the band's intensities for sub-pixel accuracy. The reference with the best score (inliers
over 1 + reprojection error) is warped into the target's frame with a validity mask.

A reference with too few feature matches (a tight crop of the detail on plain surroundings) is
located by intensity instead: a rotation-scale-position search by masked normalised
cross-correlation on a small pyramid level, where the garbled detail still counts (it keeps its
coarse shape), then ECC level by level up to full resolution on the surroundings. Feature
alignments are preferred; `Alignment.method` says which one aligned.

`reference_fill` then matches the warp's colour to the original around the mask
(pipelines.repair.harmonize) and pastes it inside the mask; where the warp has no data it falls
back to the classical fill (or, with `keep_unaligned`, keeps the input when no reference aligns).
Work is per single image: the caller loops over a batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..core.cancel import never_cancelled
from ..core.tensors import long_side_size, single_image, to_gray8
from ..geometry.masks import require_fit, support_box
from ..geometry.regions import blend_masked
from .classical_fill import FillMethod, classical_fill
from .harmonize import match_low_frequency

MAX_REFERENCES = 10  # PiktID's documented limit, which every node and the client keep
# The context box is at least this many pixels on a side (within the image), so a small mask
# still has enough surroundings to match.
MIN_CONTEXT_SIDE = 128
RATIO_TEST = 0.8           # Lowe's ratio
MIN_MATCHES = 8            # tentative matches needed before RANSAC
MIN_CONTEXT_FEATURES = 100  # fewer in the surroundings: they are widened
MIN_INLIERS = 16           # RANSAC inliers a feature alignment needs, as a count
MIN_INLIER_RATIO = 0.2     # and as a share of the ratio-test matches
MAX_SCALE = 4.0            # the reference may show the detail this many times larger or smaller
FEATURE_SIDE = 1024        # features are found on images shrunk to this long side; ECC and the
                           # warp use full resolution
RANSAC_SEED = 0            # the sampler's seed: the same inputs give the same result
RING_WIDTH = 8             # px around the mask where the warped reference's colour is matched
SIFT_FEATURES = 8000       # per reference: bounds the matching cost for large references
RANSAC_CONFIDENCE = 0.9999
RANSAC_ITERATIONS = 10000
MAX_ANISOTROPY = 3.0       # ratio of the local map's singular values
ECC_ITERATIONS = 60
ECC_SIDE = 768             # the ECC refinement runs on a box shrunk to this long side
# Intensity alignment, for references too tight for features: the coarse search runs where the
# mask's box is this many pixels on its long side, over these rotations and scale steps.
COARSE_DETAIL_SIDE = 24
SEARCH_ANGLES = tuple(range(-21, 22, 3))  # degrees
SEARCH_SCALE_STEP = 1.1
SEARCH_KEEP = 8            # best grid positions polished by ECC at the coarse level
STEP_LIMIT = 1.5           # px at the previous level a finer ECC level may move the detail
SEARCH_REFINE = 3          # distinct places of those refined up to full resolution
MASK_WEIGHT = 0.5          # of the garbled pixels in the coarse search
MAX_FOOTPRINT = 8          # a reference showing more than 8x the mask's box is for features
MIN_OVERLAP = 0.6          # share of the reference that must lie in the target
COARSE_BLUR = 1.0          # sigma at the coarse level: the garbled detail keeps its coarse shape
MIN_TEMPLATE_SIDE = 8
MIN_COARSE_CORRELATION = 0.7  # ECC at the coarse level, the detail included
MIN_CORRELATION = 0.85     # an intensity alignment below this is not trusted
FLAT_STD = 2 / 255         # a reference flatter than this cannot be located by intensity


@dataclass
class Alignment:
    """The chosen reference, warped into the target's frame.

    `homography` maps reference pixel coordinates (x, y) to target pixel coordinates. `scale` is
    target pixels per reference pixel at the mask's centre (0.9: the reference shows the detail
    about 11 % larger), `rotation_deg` the rotation of the reference into the target there
    (counter-clockwise in the image as displayed), `reprojection_error` the RMS distance in
    target pixels of the inlier matches under the final homography. `method` says how the
    reference was located: "features" (SIFT matches, then the homography) or "intensity" (a
    tight or plain reference with too few matches: a rotation-scale search by normalised
    cross-correlation, then ECC level by level); an intensity alignment has no matches, so
    `matches`, `inliers` and `inlier_ratio` are 0 and `reprojection_error` is None, and
    `correlation` is ECC's correlation at the last level (None for features).
    """
    warped: torch.Tensor          # [H, W, 3] float 0..1 in the target frame, 0 where not valid
    valid: torch.Tensor           # [H, W] bool: the warp has reference data there
    reference_index: int
    method: str                   # "features" or "intensity"
    homography: list[list[float]]
    matches: int
    inliers: int
    inlier_ratio: float
    reprojection_error: float | None
    correlation: float | None
    scale: float
    rotation_deg: float
    refined: bool
    mask_coverage: float          # share of the mask's pixels that the warp covers
    context_box: list[int]        # [x0, y0, x1, y1] of the target region matched and warped

    def to_json(self) -> dict:
        """Everything but the tensors, for the node's info JSON."""
        return {"reference_index": self.reference_index, "method": self.method,
                "homography": self.homography, "matches": self.matches, "inliers": self.inliers,
                "inlier_ratio": round(self.inlier_ratio, 4),
                "reprojection_error": _rounded(self.reprojection_error),
                "correlation": _rounded(self.correlation),
                "scale": round(self.scale, 4), "rotation_deg": round(self.rotation_deg, 3),
                "refined": self.refined, "mask_coverage": round(self.mask_coverage, 4),
                "context_box": self.context_box}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


@dataclass
class _Candidate:
    index: int
    method: str                   # "features" or "intensity"
    homography: np.ndarray
    matches: int
    inliers: int
    error: float | None           # features: RMS reprojection error of the inliers
    correlation: float | None     # intensity: ECC correlation of the surroundings
    scale: float
    rotation: float
    refined: bool
    coverage: float
    box: tuple[int, int, int, int] = (0, 0, 0, 0)

    @property
    def score(self) -> tuple[bool, float]:
        """Feature alignments first (their matches are checked geometry), then by quality."""
        if self.method == "features":
            return True, self.inliers / (1.0 + self.error)
        return False, self.correlation


# --- inputs -----------------------------------------------------------------------------------

def _resized(gray: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """`gray` shrunk so its long side is at most `side`, and the factor applied."""
    height, width, factor = long_side_size(*gray.shape, side)
    if factor < 1.0:
        gray = cv2.resize(gray, (width, height), interpolation=cv2.INTER_AREA)
    return gray, factor


def check_reference_count(count: int) -> None:
    if count > MAX_REFERENCES:
        raise ValueError(f"references: {count} given; at most {MAX_REFERENCES}")


def _context_box(support: np.ndarray, context: float) -> tuple[int, int, int, int]:
    """[x0, y0, x1) x [y0, y1): the mask's bounding box grown `context` times about its centre,
    at least MIN_CONTEXT_SIDE a side, clamped to the image."""
    height, width = support.shape
    x0, y0, x1, y1 = support_box(support)
    centre_x, centre_y = (x0 + x1) / 2, (y0 + y1) / 2
    half_w = max((x1 - x0) * context, MIN_CONTEXT_SIDE) / 2
    half_h = max((y1 - y0) * context, MIN_CONTEXT_SIDE) / 2
    return (max(int(centre_x - half_w), 0), max(int(centre_y - half_h), 0),
            min(int(math.ceil(centre_x + half_w)), width),
            min(int(math.ceil(centre_y + half_h)), height))


# --- geometry ---------------------------------------------------------------------------------

def _apply(homography: np.ndarray, points: np.ndarray) -> np.ndarray:
    return cv2.perspectiveTransform(points.reshape(-1, 1, 2).astype(np.float64),
                                    homography).reshape(-1, 2)


def _corners(box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)


def _local_map(homography: np.ndarray, point: np.ndarray) -> np.ndarray:
    """The 2x2 Jacobian of `homography` at `point` (x, y)."""
    x, y = point
    h = homography
    w = h[2, 0] * x + h[2, 1] * y + h[2, 2]
    u = (h[0, 0] * x + h[0, 1] * y + h[0, 2]) / w
    v = (h[1, 0] * x + h[1, 1] * y + h[1, 2]) / w
    return np.array([[h[0, 0] - u * h[2, 0], h[0, 1] - u * h[2, 1]],
                     [h[1, 0] - v * h[2, 0], h[1, 1] - v * h[2, 1]]]) / w


def _implausible(homography: np.ndarray, box: tuple[int, int, int, int], centre: np.ndarray,
                 max_scale: float) -> tuple[str | None, float, float]:
    """Why the reference -> target homography is not a plausible view of the same surface
    (None when it is), and its scale and rotation at the mask's centre."""
    if not np.all(np.isfinite(homography)):
        return "degenerate homography", 0.0, 0.0
    inverse = np.linalg.inv(homography)
    # The context box must lie on one side of the reference's horizon (no point at infinity).
    depth = np.append(_corners(box), np.ones((4, 1)), axis=1) @ inverse[2]
    if np.any(depth * (inverse[2, :2] @ centre + inverse[2, 2]) <= 0):
        return "the context would cross the reference's horizon", 0.0, 0.0
    source_centre = _apply(inverse, centre[None])[0]
    jacobian = _local_map(homography, source_centre)
    determinant = float(np.linalg.det(jacobian))
    if determinant <= 0:
        return "mirrored or degenerate mapping", 0.0, 0.0
    scale = math.sqrt(determinant)
    rotation = math.degrees(math.atan2(jacobian[1, 0] - jacobian[0, 1],
                                       jacobian[0, 0] + jacobian[1, 1]))
    # y points down in images: a positive angle in (x, y) is clockwise on screen.
    rotation = -rotation
    if not 1 / max_scale <= scale <= max_scale:
        return (f"implausible scale {scale:.2f} (allowed {1 / max_scale:.2f}..{max_scale:.2f})",
                scale, rotation)
    singular = np.linalg.svd(jacobian, compute_uv=False)
    if singular[0] / singular[1] > MAX_ANISOTROPY:
        return (f"implausible shear or foreshortening ({singular[0] / singular[1]:.1f}:1)",
                scale, rotation)
    return None, scale, rotation


def _refine_ecc(box_gray: np.ndarray, band: np.ndarray, box: tuple[int, int, int, int],
                reference_gray: np.ndarray, homography: np.ndarray) -> np.ndarray | None:
    """ECC (enhanced correlation coefficient, invariant to brightness and contrast) refinement
    of the homography on the context band's intensities, at full resolution up to a box of
    ECC_SIDE pixels. None when it does not converge or does not improve the correlation."""
    x0, y0, x1, y1 = box
    # ECC's warp maps template (box) coordinates to input (reference) coordinates; only the
    # part of the reference the box maps onto is passed, so a large reference costs little.
    footprint = _apply(np.linalg.inv(homography), _corners(box))
    margin = 16
    rx0 = int(max(np.floor(footprint[:, 0].min()) - margin, 0))
    ry0 = int(max(np.floor(footprint[:, 1].min()) - margin, 0))
    rx1 = int(min(np.ceil(footprint[:, 0].max()) + margin, reference_gray.shape[1]))
    ry1 = int(min(np.ceil(footprint[:, 1].max()) + margin, reference_gray.shape[0]))
    if rx1 - rx0 < 16 or ry1 - ry0 < 16:
        return None
    # Both sides shrink by the same factor for a large box: the cost grows with its area.
    factor = min(1.0, ECC_SIDE / max(box_gray.shape))
    to_small = np.diag([factor, factor, 1.0])
    template = cv2.resize(box_gray, None, fx=factor, fy=factor,
                          interpolation=cv2.INTER_AREA).astype(np.float32)
    template_mask = cv2.resize(band.astype(np.uint8), template.shape[::-1],
                               interpolation=cv2.INTER_NEAREST)
    source = cv2.resize(reference_gray[ry0:ry1, rx0:rx1], None, fx=factor, fy=factor,
                        interpolation=cv2.INTER_AREA).astype(np.float32)
    source_mask = np.full(source.shape, 255, np.uint8)
    to_box = to_small @ np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], np.float64)
    to_source = to_small @ np.array([[1, 0, -rx0], [0, 1, -ry0], [0, 0, 1]], np.float64)
    start = to_source @ np.linalg.inv(homography) @ np.linalg.inv(to_box)
    start = (start / start[2, 2]).astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ECC_ITERATIONS, 1e-6)
    try:
        before = cv2.computeECC(template, cv2.warpPerspective(
            source, start, template.shape[::-1], flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP),
            template_mask)
        after, warp = cv2.findTransformECCWithMask(template, source, template_mask, source_mask,
                                                   start.copy(), cv2.MOTION_HOMOGRAPHY, criteria,
                                                   1)
    except cv2.error:  # ECC raises when it diverges
        return None
    if not np.isfinite(after) or after <= before:
        return None
    refined = np.linalg.inv(to_box) @ np.linalg.inv(warp.astype(np.float64)) @ to_source
    return refined / refined[2, 2]


# --- intensity alignment (tight references) ---------------------------------------------------

def _similarity(angle: float, scale: float) -> np.ndarray:
    """3x3: rotation by `angle` degrees counter-clockwise on screen, then `scale`."""
    return np.vstack([cv2.getRotationMatrix2D((0, 0), angle, scale), [0, 0, 1]])


def _shift(x: float, y: float) -> np.ndarray:
    return np.array([[1, 0, x], [0, 1, y], [0, 0, 1]], np.float64)


def _masked_ncc(image: np.ndarray, image_weight: np.ndarray, template: np.ndarray,
                template_weight: np.ndarray) -> np.ndarray:
    """Normalised cross-correlation of `template` at every position inside `image`, each pixel
    pair weighted by the product of both weights (Padfield's masked NCC): padding, a reference's
    empty corners and the garbled detail count for nothing or less. Positions where the overlap
    holds under MIN_OVERLAP of the template's weight score -1."""
    def correlate(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return cv2.matchTemplate(a, b, cv2.TM_CCORR)

    weighted_image, weighted_template = image * image_weight, template * template_weight
    overlap = correlate(image_weight, template_weight)
    sum_image = correlate(weighted_image, template_weight)
    sum_template = correlate(image_weight, weighted_template)
    cross = correlate(weighted_image, weighted_template)
    square_image = correlate(weighted_image * image, template_weight)
    square_template = correlate(image_weight, weighted_template * template)
    safe = np.maximum(overlap, 1e-6)
    covariance = cross - sum_image * sum_template / safe
    variance = ((square_image - sum_image ** 2 / safe)
                * (square_template - sum_template ** 2 / safe))
    # The overlap's spread must be above the flat level on both sides.
    flat = (FLAT_STD ** 2) * safe
    scores = covariance / np.sqrt(np.maximum(variance, 1e-12))
    usable = ((overlap >= MIN_OVERLAP * template_weight.sum())
              & (square_image - sum_image ** 2 / safe > flat)
              & (square_template - sum_template ** 2 / safe > flat))
    return np.where(usable, scores, -1.0).astype(np.float32)


def _coarse_search(target: np.ndarray, box: tuple[int, int, int, int], reference: np.ndarray,
                   max_scale: float, check_cancel: Callable[[], None]
                   ) -> list[tuple[float, np.ndarray]]:
    """Rotation, scale and position of `reference` in `target` (both float32 grey, the target at
    the coarse level, `box` the mask's box there) by masked normalised cross-correlation over a
    grid of rotations and scales; the SEARCH_KEEP best (correlation, reference -> target
    homography at the coarse level), one per rotation and scale, best first. The masked pixels
    take part at MASK_WEIGHT: garbled, they still carry the detail's coarse shape, and on plain
    surroundings they are most of the signal. The reference may reach beyond the target's edge."""
    x0, y0, x1, y1 = box
    ref_corners = _corners((0, 0, reference.shape[1], reference.shape[0]))
    target_weight = np.ones_like(target)
    target_weight[y0:y1, x0:x1] = MASK_WEIGHT
    found = []
    scales = np.exp(np.arange(-math.log(max_scale), math.log(max_scale) + 1e-9,
                              math.log(SEARCH_SCALE_STEP)))
    for angle in SEARCH_ANGLES:
        check_cancel()
        for scale in scales:
            place = _similarity(angle, scale)
            corners = _apply(place, ref_corners)
            left, top = corners.min(axis=0)
            size = np.ceil(corners.max(axis=0) - (left, top)).astype(int)
            # The reference must show the whole detail, and not be much larger than the target.
            if ((size < (x1 - x0, y1 - y0)).any() or size.min() < MIN_TEMPLATE_SIDE
                    or size.max() > MAX_FOOTPRINT * max(x1 - x0, y1 - y0)):
                continue
            to_template = _shift(-left, -top) @ place
            template = cv2.warpAffine(reference, to_template[:2], tuple(size),
                                      flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
            valid = cv2.warpAffine(np.ones_like(reference), to_template[:2], tuple(size),
                                   flags=cv2.INTER_NEAREST)
            # Every placement that covers the mask's box, the target padded where it ends.
            pad = [max(size[1] - y1, 0), max(y0 + size[1] - target.shape[0], 0),
                   max(size[0] - x1, 0), max(x0 + size[0] - target.shape[1], 0)]
            wx0, wy0 = x1 - size[0] + pad[2], y1 - size[1] + pad[0]
            window = cv2.copyMakeBorder(target, *pad, cv2.BORDER_CONSTANT)
            weight = cv2.copyMakeBorder(target_weight, *pad, cv2.BORDER_CONSTANT)
            window_slice = (slice(wy0, y0 + size[1] + pad[0]), slice(wx0, x0 + size[0] + pad[2]))
            scores = _masked_ncc(window[window_slice], weight[window_slice], template, valid)
            _, best, _, (bx, by) = cv2.minMaxLoc(scores)
            found.append((best, _shift(x1 - size[0] + bx, y1 - size[1] + by) @ to_template))
    found.sort(key=lambda item: -item[0])
    return found[:SEARCH_KEEP]


def _ecc_level(target: np.ndarray, support: np.ndarray, reference: np.ndarray,
               homography: np.ndarray, factor: float, with_mask: bool
               ) -> tuple[np.ndarray, float] | None:
    """One ECC step of an affine reference -> target map with both images shrunk by `factor`
    (the reference to the target's pixel density): the target's part the reference shows is the
    template, the masked pixels in it only when `with_mask`. The refined map and its
    correlation, or None when ECC diverges."""
    footprint = _apply(homography, _corners((0, 0, reference.shape[1], reference.shape[0])))
    tx0, ty0 = np.maximum(np.floor(footprint.min(axis=0)).astype(int) - 8, 0)
    tx1, ty1 = np.minimum(np.ceil(footprint.max(axis=0)).astype(int) + 8, target.shape[::-1])
    if tx1 - tx0 < MIN_TEMPLATE_SIDE or ty1 - ty0 < MIN_TEMPLATE_SIDE:
        return None
    # A large footprint is matched shrunk to ECC_SIDE at most: its cost grows with the area.
    factor = min(factor, ECC_SIDE / max(tx1 - tx0, ty1 - ty0))
    size = (max(MIN_TEMPLATE_SIDE, round((tx1 - tx0) * factor)),
            max(MIN_TEMPLATE_SIDE, round((ty1 - ty0) * factor)))
    to_template = np.diag([size[0] / (tx1 - tx0), size[1] / (ty1 - ty0), 1.0]) @ _shift(-tx0,
                                                                                          -ty0)
    template = cv2.resize(target[ty0:ty1, tx0:tx1], size, interpolation=cv2.INTER_AREA)
    template_mask = np.full(size[::-1], 255, np.uint8)
    if not with_mask:
        hole = cv2.resize(support[ty0:ty1, tx0:tx1].astype(np.uint8), size,
                          interpolation=cv2.INTER_NEAREST)
        template_mask[cv2.dilate(hole, np.ones((5, 5), np.uint8)) > 0] = 0
    ref_factor = min(1.0, factor * math.sqrt(abs(np.linalg.det(homography[:2, :2]))))
    source = (cv2.resize(reference, None, fx=ref_factor, fy=ref_factor,
                         interpolation=cv2.INTER_AREA) if ref_factor < 1 else reference)
    to_source = np.diag([source.shape[1] / reference.shape[1],
                         source.shape[0] / reference.shape[0], 1.0])
    warp = to_source @ np.linalg.inv(homography) @ np.linalg.inv(to_template)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ECC_ITERATIONS, 1e-5)
    try:
        correlation, warp = cv2.findTransformECCWithMask(
            template, source, template_mask, np.full(source.shape, 255, np.uint8),
            (warp / warp[2, 2])[:2].astype(np.float32), cv2.MOTION_AFFINE, criteria, 3)
    except cv2.error:  # ECC raises when it diverges
        return None
    warp = np.vstack([warp.astype(np.float64), [0, 0, 1]])
    return np.linalg.inv(np.linalg.inv(to_source) @ warp @ to_template), float(correlation)


def _refine_levels(target: np.ndarray, support: np.ndarray, reference: np.ndarray,
                   homography: np.ndarray, start: float) -> tuple[np.ndarray, float]:
    """ECC level by level (factor 2) from `start` up to full resolution. Each level first fits
    the surroundings alone; where they hold too little (a plain sky, a clipped reference) and
    the fit moves the detail by STEP_LIMIT pixels of the level before or more, it fits with the
    garbled detail included, and when that moves it too, the coarser map stands. The map and
    the correlation of the last level kept (-1 when none was)."""
    x0, y0, x1, y1 = support_box(support)
    box = _corners((x0, y0, x1, y1))
    factor, correlation = start, -1.0
    while factor < 1.0:
        limit = STEP_LIMIT / factor
        factor = min(1.0, factor * 2)
        for with_mask in (False, True):
            step = _ecc_level(target, support, reference, homography, factor, with_mask)
            if step is not None and np.abs(_apply(step[0] @ np.linalg.inv(homography), box)
                                           - box).max() < limit:
                homography, correlation = step
                break
        else:
            break
    return homography, correlation


def _align_by_intensity(target: np.ndarray, support: np.ndarray, reference: np.ndarray,
                        max_scale: float, check_cancel: Callable[[], None]
                        ) -> tuple[np.ndarray, float] | None:
    """Reference -> target map by intensity alone, for references that show too little around
    the detail for features: a coarse rotation-scale-position search by masked normalised
    cross-correlation, ECC on the best positions at that level (the garbled detail included),
    then ECC level by level up to full resolution (`_refine_levels`). The map and the
    correlation of its last level, or None when no place correlates even coarsely."""
    x0, y0, x1, y1 = support_box(support)
    start = min(1.0, COARSE_DETAIL_SIDE / max(x1 - x0, y1 - y0))
    small_target, small_reference = (
        cv2.GaussianBlur(cv2.resize(gray, None, fx=start, fy=start, interpolation=cv2.INTER_AREA),
                         (0, 0), COARSE_BLUR) for gray in (target, reference))
    small_box = (int(x0 * start), int(y0 * start), math.ceil(x1 * start), math.ceil(y1 * start))
    # The search's maps work on both images shrunk: undo both shrinks.
    to_full = np.diag([1 / start, 1 / start, 1.0])
    coarse = []
    for _, homography in _coarse_search(small_target, small_box, small_reference, max_scale,
                                        check_cancel):
        check_cancel()
        polished = _ecc_level(target, support, reference,
                              to_full @ homography @ np.linalg.inv(to_full), start, True)
        if polished is not None:
            coarse.append(polished)
    # Grid neighbours converge to the same place: refine each place once, best first. A place
    # that correlates poorly even coarsely is not the detail (unrelated references end here).
    coarse = sorted((item for item in coarse if item[1] >= MIN_COARSE_CORRELATION),
                    key=lambda item: -item[1])
    corners = _corners((0, 0, reference.shape[1], reference.shape[0]))
    places, best = [], None
    for homography, _ in coarse:
        footprint = _apply(homography, corners)
        if any(np.abs(footprint - other).max() < 2 / start for other in places):
            continue
        places.append(footprint)
        check_cancel()
        refined = _refine_levels(target, support, reference, homography, start)
        if best is None or refined[1] > best[1]:
            best = refined
        if len(places) == SEARCH_REFINE:
            break
    return best


@dataclass
class _Features:
    box: tuple[int, int, int, int]
    gray: np.ndarray           # the box, 8-bit grey, masked pixels diffusion-filled
    band: np.ndarray           # box pixels more than 2 px from the mask
    factor: float              # detection scale (features found on the box shrunk by it)
    points: np.ndarray         # [N, 2] keypoints (x, y) in target pixels
    descriptors: np.ndarray    # [N, 128]


def _context_features(image: torch.Tensor, support: np.ndarray, context: float,
                      feature_side: int) -> _Features:
    """SIFT features of the target's surroundings of the mask, none from the mask itself."""
    box = _context_box(support, context)
    x0, y0, x1, y1 = box
    hole = support[y0:y1, x0:x1]
    # The corrupt pixels never reach the features: they are replaced by a diffusion fill of
    # their surroundings first (SIFT's scale space and descriptors blur across the mask), and
    # features whose neighbourhood reaches into the mask are dropped as well.
    gray = cv2.inpaint(to_gray8(image[y0:y1, x0:x1]),
                       hole.astype(np.uint8), 3, cv2.INPAINT_TELEA)
    distance = cv2.distanceTransform((~hole).astype(np.uint8), cv2.DIST_L2, 5)
    band = distance > 2
    small, factor = _resized(gray, feature_side)
    detection_mask = cv2.resize(band.astype(np.uint8) * 255, small.shape[::-1],
                                interpolation=cv2.INTER_NEAREST)
    keypoints, descriptors = cv2.SIFT_create().detectAndCompute(small, detection_mask)
    kept = [i for i, point in enumerate(keypoints)
            if distance[min(int(point.pt[1] / factor), y1 - y0 - 1),
                        min(int(point.pt[0] / factor), x1 - x0 - 1)]
            > max(3.0, point.size / factor)]
    points = np.array([keypoints[i].pt for i in kept], np.float64).reshape(-1, 2) / factor
    return _Features(box, gray, band, factor, points + (x0, y0),
                     descriptors[kept] if kept else np.zeros((0, 128), np.float32))


# --- the engine -------------------------------------------------------------------------------

def align_references(image: torch.Tensor, mask: torch.Tensor, references: list[torch.Tensor],
                     context: float = 3.0, *, intensity: bool = True,
                     check_cancel: Callable[[], None] = never_cancelled
                     ) -> tuple[Alignment | None, list[str]]:
    """Align the references to the target around the mask; warp the best one into place.

    - `image`: the target `[H, W, 3]` in 0..1; `mask`: `[H, W]` at its size, > 0 = corrupt.
    - `references`: up to MAX_REFERENCES images `[h, w, 3]` of any size.
    - `context`: the mask's bounding box is grown this many times about its centre (at least
      128 px a side) to give the surroundings that are matched.
    - `intensity`: a reference with too few feature matches (a tight crop, plain surroundings)
      is located by intensity instead (see `Alignment`); False: features only.
    - `check_cancel`: called between references and search steps (it raises to stop: the
      intensity search can take seconds).
    The same inputs give the same result (RANSAC's sampler is seeded).

    Returns the alignment (None when no reference passes) and one note per reference saying
    what was found, plus which one was chosen or why none was.
    """
    image = single_image(image, "image")
    # A wrong size is the caller's bug here (nodes fit the user's mask first).
    support = (require_fit(mask, image[None])[0] > 0).cpu().numpy()
    check_reference_count(len(references))
    if not 1.0 <= context <= 10.0:
        raise ValueError(f"context: {context} is outside 1..10")
    references = [single_image(reference, f"references[{index}]")
                  for index, reference in enumerate(references)]
    if not references:
        return None, ["no references given"]
    if not support.any():
        return None, ["the mask is empty: nothing to align"]
    notes: list[str] = []
    features = _widened_features(image, support, context, notes)
    matchable = len(features.points) >= MIN_MATCHES
    if not matchable:
        notes.append(f"the context around the mask has only {len(features.points)} usable "
                     "features: " + ("the references are located by intensity alone" if intensity
                                     else "a flat or tiny area cannot be located by them"))
    x0, y0, x1, y1 = support_box(support)
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    matching = _Matching(features, _usac(3.0 / features.factor), cv2.BFMatcher(cv2.NORM_L2),
                         cv2.SIFT_create(nfeatures=SIFT_FEATURES), centre)
    # The intensity fallback sees the garbled detail too: it still carries its coarse shape.
    target_gray = to_gray8(image).astype(np.float32) / 255
    candidates = []
    for index, reference in enumerate(references):
        check_cancel()
        gray = to_gray8(reference)
        found, note = (_by_features(index, gray, matching) if matchable else (None, None))
        if found is None and intensity:
            found, note = _by_intensity(index, gray, target_gray, support, context, note,
                                        check_cancel)
        if found is None:
            notes.append(note or f"reference {index}: not located (too few usable features)")
            continue
        reason = _check_view(found, support, centre, gray.shape)
        notes.append(f"reference {index}: rejected, {reason}" if reason else _aligned_note(found))
        if not reason:
            candidates.append(found)
    if not candidates:
        return None, notes + ["no reference could be aligned to the area around the mask"]
    best = max(candidates, key=lambda candidate: candidate.score)
    notes.append(f"chose reference {best.index}")
    warped, valid = _warp(references[best.index], best.homography, support.shape, best.box)
    alignment = Alignment(
        warped=warped.to(image.device), valid=valid.to(image.device),
        reference_index=best.index, method=best.method, homography=best.homography.tolist(),
        matches=best.matches, inliers=best.inliers,
        inlier_ratio=best.inliers / best.matches if best.matches else 0.0,
        reprojection_error=best.error, correlation=best.correlation, scale=best.scale,
        rotation_deg=best.rotation, refined=best.refined, mask_coverage=best.coverage,
        context_box=list(best.box))
    return alignment, notes


def _widened_features(image: torch.Tensor, support: np.ndarray, context: float,
                      notes: list[str]) -> _Features:
    """The context's features. A plain area (sky, a wall) has few: the matched surroundings
    are widened until there are enough, or the whole image is used."""
    features = _context_features(image, support, context, FEATURE_SIDE)
    widened = context
    while len(features.points) < MIN_CONTEXT_FEATURES and features.box != (
            0, 0, support.shape[1], support.shape[0]):
        widened *= 1.5
        features = _context_features(image, support, widened, FEATURE_SIDE)
    if widened != context:
        notes.append(f"context widened to {widened:.3g}x the mask's box for enough features "
                     f"({len(features.points)} found)")
    return features


def _usac(threshold: float) -> cv2.UsacParams:
    """MAGSAC++ (what the USAC_MAGSAC flag selects), with its sampler's seed set explicitly."""
    usac = cv2.UsacParams()
    usac.sampler, usac.score = cv2.SAMPLING_UNIFORM, cv2.SCORE_METHOD_MAGSAC
    usac.loMethod, usac.final_polisher = cv2.LOCAL_OPTIM_SIGMA, cv2.MAGSAC
    usac.threshold, usac.confidence = threshold, RANSAC_CONFIDENCE
    usac.maxIterations, usac.randomGeneratorState = RANSAC_ITERATIONS, RANSAC_SEED
    return usac


@dataclass
class _Matching:
    """What every reference is matched against: the context's features and the tools."""
    features: _Features
    usac: cv2.UsacParams
    matcher: cv2.BFMatcher
    sift: cv2.SIFT
    centre: np.ndarray  # the mask's box centre, target pixels


def _by_features(index: int, gray: np.ndarray, matching: _Matching
                 ) -> tuple[_Candidate | None, str | None]:
    """Locate a reference by its feature matches, ECC-refined; None and why when too few."""
    features = matching.features
    found, note = _match_features(index, gray, features.descriptors, features.points,
                                  matching.matcher, matching.sift, matching.usac)
    if found is None:
        return None, note
    homography, source, destination, chosen = found
    threshold = matching.usac.threshold
    refined = False
    better = _refine_ecc(features.gray, features.band, features.box, gray, homography)
    if better is not None and np.all(np.isfinite(better)):
        # ECC optimises intensities, not the matches: keep it only while it moves the context
        # box and the mask's centre by less than RANSAC's threshold (it polishes, it does not
        # relocate).
        checks = _apply(np.linalg.inv(homography),
                        np.vstack([_corners(features.box), matching.centre]))
        moved = np.linalg.norm(_apply(better, checks) - _apply(homography, checks), axis=1)
        if moved.max() < threshold:
            homography, refined = better, True
    error = float(np.sqrt(np.mean(np.sum(
        (_apply(homography, source[chosen]) - destination[chosen]) ** 2, axis=1))))
    return _Candidate(index, "features", homography, len(source), int(chosen.sum()), error,
                      None, 0.0, 0.0, refined, 0.0, features.box), None


def _by_intensity(index: int, gray: np.ndarray, target_gray: np.ndarray, support: np.ndarray,
                  context: float, feature_note: str | None, check_cancel: Callable[[], None]
                  ) -> tuple[_Candidate | None, str | None]:
    """Locate a tight or plain reference (too few matches) by intensity; None and why when its
    correlation is too low."""
    located = _align_by_intensity(target_gray, support, gray.astype(np.float32) / 255,
                                  MAX_SCALE, check_cancel)
    if located is None or located[1] < MIN_CORRELATION:
        return None, ((f"{feature_note}; not" if feature_note else f"reference {index}: not")
                      + " located by intensity either (correlation "
                      f"{-1.0 if located is None else located[1]:.3f}, need {MIN_CORRELATION})")
    homography, correlation = located
    return _Candidate(index, "intensity", homography, 0, 0, None, correlation, 0.0, 0.0, False,
                      0.0, _context_box(support, context)), None


def _check_view(found: _Candidate, support: np.ndarray, centre: np.ndarray,
                reference_shape: tuple[int, ...]) -> str | None:
    """Why a located reference is not used (None when it is); sets its scale, rotation and
    mask coverage."""
    reason, found.scale, found.rotation = _implausible(found.homography, found.box, centre,
                                                       MAX_SCALE)
    if reason:
        return reason
    x0, y0, x1, y1 = found.box
    found.coverage = float(_valid_map(found.homography, found.box, reference_shape)[
        support[y0:y1, x0:x1]].mean())
    return "it does not show the masked area itself" if found.coverage == 0 else None


def _aligned_note(found: _Candidate) -> str:
    return (f"reference {found.index}: aligned, " + (
        f"{found.inliers} inliers of {found.matches} matches, error {found.error:.2f} px"
        if found.method == "features" else
        f"by intensity (too few feature matches), correlation {found.correlation:.3f}")
        + f", scale {found.scale:.3f}, rotation {found.rotation:.1f} deg"
        + (", ECC-refined" if found.refined else "")
        + ("" if found.coverage == 1 else f", covers {found.coverage:.0%} of the mask"))


def _match_features(index: int, gray: np.ndarray, descriptors: np.ndarray,
                    target_points: np.ndarray, matcher: cv2.BFMatcher, sift: cv2.SIFT,
                    usac: cv2.UsacParams
                    ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None,
                               str | None]:
    """The feature path for one reference: (homography, reference points, target points,
    inlier flags) of the ratio-test matches, or None and the note saying why not."""
    small, ref_factor = _resized(gray, FEATURE_SIDE)
    ref_keypoints, ref_descriptors = sift.detectAndCompute(small, None)
    if ref_descriptors is None or len(ref_keypoints) < 2:
        return None, f"reference {index}: no features (flat or tiny image)"
    pairs = matcher.knnMatch(descriptors, ref_descriptors, k=2)
    good = [pair[0] for pair in pairs
            if len(pair) == 2 and pair[0].distance < RATIO_TEST * pair[1].distance]
    if len(good) < MIN_MATCHES:
        return None, (f"reference {index}: {len(good)} feature matches (need {MIN_MATCHES}): "
                      "it does not seem to show the area around the mask")
    source = np.array([ref_keypoints[m.trainIdx].pt for m in good], np.float64) / ref_factor
    destination = target_points[[m.queryIdx for m in good]]
    homography, inlier_mask = cv2.findHomography(source, destination, usac)
    inliers = int(inlier_mask.sum()) if homography is not None else 0
    if inliers < max(MIN_INLIERS, MIN_INLIER_RATIO * len(good)):
        return None, (f"reference {index}: {inliers} consistent matches of {len(good)} (need "
                      f"{max(MIN_INLIERS, math.ceil(MIN_INLIER_RATIO * len(good)))}): it does "
                      "not seem to show the area around the mask")
    return (homography, source, destination, inlier_mask.ravel().astype(bool)), None


def _valid_map(homography: np.ndarray, box: tuple[int, int, int, int],
               source_shape: tuple[int, ...]) -> np.ndarray:
    """`[box height, box width]` bool: box pixels whose source position lies inside the
    reference, one pixel clear of its border (where interpolation would read outside)."""
    x0, y0, x1, y1 = box
    xs, ys = np.meshgrid(np.arange(x0, x1, dtype=np.float64), np.arange(y0, y1, dtype=np.float64))
    source = _apply(np.linalg.inv(homography), np.stack([xs, ys], -1).reshape(-1, 2))
    height, width = source_shape[:2]
    inside = ((source[:, 0] >= 1) & (source[:, 0] <= width - 2)
              & (source[:, 1] >= 1) & (source[:, 1] <= height - 2))
    return inside.reshape(y1 - y0, x1 - x0)


def _warp(reference: torch.Tensor, homography: np.ndarray, shape: tuple[int, int],
          box: tuple[int, int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference warped into the target frame over the context box (zeros elsewhere)."""
    x0, y0, x1, y1 = box
    to_box = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], np.float64)
    source = reference[..., :3].detach().float().cpu().numpy()
    patch = cv2.warpPerspective(source, to_box @ homography, (x1 - x0, y1 - y0),
                                flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REPLICATE)
    valid_box = _valid_map(homography, box, source.shape)
    warped = np.zeros((*shape, 3), np.float32)
    valid = np.zeros(shape, bool)
    warped[y0:y1, x0:x1] = np.where(valid_box[..., None], np.clip(patch, 0, 1), 0)
    valid[y0:y1, x0:x1] = valid_box
    return torch.from_numpy(warped), torch.from_numpy(valid)


def reference_fill(image: torch.Tensor, mask: torch.Tensor, references: list[torch.Tensor],
                   *, fallback: FillMethod | str | None = FillMethod.TELEA,
                   keep_unaligned: bool = False, intensity: bool = True,
                   check_cancel: Callable[[], None] = never_cancelled
                   ) -> tuple[torch.Tensor, Alignment | None, list[str]]:
    """Repair the masked area of `image` from the best-aligned reference.

    The references are aligned by `align_references` (`intensity`, `check_cancel`: see there)
    with its default context. The warped reference's colour is matched to the original on a
    RING_WIDTH ring around the mask (pipelines.repair.harmonize.match_low_frequency) and pasted
    inside the mask (a soft mask blends by its value). Masked pixels the warp does not cover, or the
    whole mask when no reference aligns, get the classical `fallback` fill (None: they keep the
    original). `keep_unaligned`: when no reference aligns, the mask keeps the original whatever
    the fallback (a detail that must not be erased; the fallback still serves uncovered
    pixels). Pixels outside the mask are bit-identical to `image`. Returns the image
    `[H, W, C]`, the alignment (or None) and notes.
    """
    image = single_image(image, "image")
    alignment, notes = align_references(image, mask, references, intensity=intensity,
                                        check_cancel=check_cancel)
    mask = (mask[0] if mask.ndim == 3 else mask).to(image.device, image.dtype)
    method = None if fallback is None else FillMethod(fallback)
    if alignment is None:
        keep = method is None or keep_unaligned
        notes.append("masked area kept as it was" if keep else
                     f"masked area filled classically ({method.value})")
        kept = (image.clone() if keep else
                classical_fill(image[None], mask[None], method, check_cancel=check_cancel)[0])
        return kept, alignment, notes
    # Everything happens in the context box, grown to hold the colour ring and what the classical
    # fill reads: the rest of the frame is only copied.
    support = mask > 0
    margin = max(RING_WIDTH, 3 + 2)  # classical_fill reads radius (3) + 2 around the mask
    mx0, my0, mx1, my1 = support_box(support, margin)
    bx0, by0, bx1, by1 = alignment.context_box
    x0, y0, x1, y1 = min(bx0, mx0), min(by0, my0), max(bx1, mx1), max(by1, my1)
    window, window_mask = image[y0:y1, x0:x1], mask[y0:y1, x0:x1]
    valid = alignment.valid[y0:y1, x0:x1]
    base = window if method is None else classical_fill(window[None], window_mask[None], method,
                                                        check_cancel=check_cancel)[0]
    warped = window.clone()
    warped[..., :3] = alignment.warped[y0:y1, x0:x1].to(image.dtype)
    matched = match_low_frequency(warped[None], window[None], window_mask[None], RING_WIDTH,
                                  valid=valid[None])[0]
    new = torch.where((valid & support[y0:y1, x0:x1])[..., None], matched, base)
    uncovered = int((support & ~alignment.valid).sum())
    if uncovered:
        notes.append(f"{uncovered} masked pixels lie outside the reference: "
                     + ("kept as they were" if method is None else
                        f"filled classically ({method.value})"))
    out = image.clone()
    out[y0:y1, x0:x1] = blend_masked(window[None], new[None], window_mask[None], 0)[0]
    return out, alignment, notes
