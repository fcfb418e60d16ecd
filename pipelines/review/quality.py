"""QualityCheck: the automatic review signal of PiktID Detail Repair, and candidate ranking.

Every candidate is compared with its original. Each check gives a number and, past its
threshold, a reason (the vendor's documented names kept verbatim: `framing_shift`, `scale_drift`,
`no_reference`; the others are the pack's):

- `framing_shift`, `scale_drift`: an affine fit of the candidate onto the original outside the
  mask (ORB features and RANSAC give a start, OpenCV's ECC refines it to a few hundredths of a
  pixel) at GEOMETRY_SIZE px; a candidate bit-identical outside the mask is the identity.
- `outside_mask_changed`: largest and mean change outside the mask (`mask == 0`), in 8-bit
  levels; a generator whose info says `blend == "mask"` promised exactly 0.
- `seam`: across the mask's edge (`mask >= 0.5`), the ΔE2000 between the local mean colours just
  inside and just outside, and the luminance gradient on the edge, beyond what the surroundings'
  own texture shows one band further out (the original's inside holds the old content, so it is
  no reference for the new).
- `residue`: old content surviving in the ring just inside the mask, where it stood out from
  its surroundings and the content was to be replaced (a left-over outline or frame).
- `no_reference`: the info says the job ran without references.
- `reference_unaligned`: the info says references were given but none aligned.
- `reference_mismatch`: band-pass correlation, inside the mask, between the candidate and each
  reference warped onto the original (SIFT + homography); the best reference counts.
- `color_target`: ΔE2000 of the mask's mean Lab to the info's `target_lab`, and to the mean of
  the set (the same variation of every image with that target).

Candidates are candidate-major (all originals' candidate 0, then candidate 1, ...) unless the
info JSON gives `image_index` / `candidate_index`. Within an original they rank by fewest
reasons, lowest penalty, then the edge's scores. docs/quality.md documents the report.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..core.cancel import never_cancelled, run_cancellable
from ..core.color import ciede2000, srgb_to_lab
from ..core.info import KEEPS_CONTENT_ENDPOINTS
from ..core.tensors import long_side_size, one_cpu_thread, resize, rgb
from ..geometry import masks as mask_ops

SCHEMA = "region_repair.quality/1"
# About the long side of the images the geometry is estimated on (pooled by an integer
# factor); ECC keeps a few hundredths of a pixel of accuracy there.
GEOMETRY_SIZE = 512
# Below this ECC correlation the candidate's outside is too unlike the original's to trust a fit
# (ECC ignores gain and offset, so a global colour change alone stays far above it).
MIN_CORRELATION = 0.6
# Agreeing ORB matches needed to trust a features-only fit (when ECC does not converge).
MIN_FEATURE_MATCHES = 30
# Long side for reference alignment (SIFT) and for the region compared with a reference.
REFERENCE_SIZE = 1024
REGION_SIZE = 256
# A ratio to its threshold counts at most this much in the penalty, so one wild number (an
# unalignable candidate) does not drown every other difference.
RATIO_CAP = 10.0
# The surroundings' texture (rms ΔE of the outer band from the band beyond it) is taken as at
# least this, so a flat synthetic background does not make any speck of old content "contrast".
TEXTURE_FLOOR = 1.0
# residue fires only where the input's inner ring stands out from what its surroundings predict
# by this many times their own texture: below it the old content looks like its surroundings
# (a speck's mask grown onto a plain wall) and nothing of it can show, whatever survives.
MIN_RESIDUE_CONTRAST = 1.5
# The generators (info `node`) that replace the masked content, so that old content surviving
# there is residue; recolour keeps the structure by design, as does a kept detail whose
# references did not align (`reference_unaligned`).
REPLACING_NODES = ("GuidedBlendInpaint", "RemoteVendorInpaint")
LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class Thresholds:
    """A reason fires when its number is past (strictly beyond) its threshold."""
    max_shift_px: float = 1.0             # framing_shift: centre displacement, original pixels
    max_scale_drift_percent: float = 0.5  # scale_drift: |scale - 1| in percent
    max_outside_mean: float = 1.0         # outside_mask_changed: mean |change|, 8-bit levels
    max_seam_delta_e: float = 3.0         # seam: excess ΔE2000 across the mask's edge
    max_seam_gradient: float = 3.0        # seam: excess luminance gradient on the edge, L*/px
    seam_width: int = 4                   # px each side of the edge that seam and residue compare
    min_reference_similarity: float = 0.5  # reference_mismatch: band-pass correlation, -1..1
    max_target_delta_e: float = 3.0       # color_target: ΔE2000 of the mean colour to target
    max_color_spread: float = 2.0         # color_target: ΔE2000 to the set's mean colour
    max_residue: float = 0.6              # residue: share of the old inner ring kept, 0..1

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not math.isfinite(value) or (value <= 0 and name != "min_reference_similarity"):
                raise ValueError(f"{name}: {value} must be a positive number")
        if not -1 <= self.min_reference_similarity < 1:
            raise ValueError(f"min_reference_similarity: {self.min_reference_similarity} must "
                             "be in -1..1 (1 excluded)")
        if self.max_residue >= 1:
            raise ValueError(f"max_residue: {self.max_residue} must be in 0..1 (both excluded)")


@dataclass
class QualityResult:
    report: dict
    order: list[int]         # input indices of the candidates, sorted (original by original)
    best: list[int]          # input index of the best candidate of each original
    image_index: list[int]   # the original of each input candidate
    notes: list[str] = field(default_factory=list)


# --- input layout -------------------------------------------------------------------------------

def parse_info(text: str | None, count: int, originals: int) -> list[dict] | None:
    """The generator's info JSON (one object per candidate), or None when there is none."""
    if text is None or not text.strip():
        return None
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"info: not valid JSON ({error}); connect a generator's info output "
                         "or leave it empty") from None
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError("info: expected a JSON list of objects, one per candidate")
    if len(entries) != count:
        raise ValueError(f"info: {len(entries)} entries for {count} candidates; expected one "
                         "entry per candidate image")
    for position, entry in enumerate(entries):
        for key, limit in (("image_index", originals), ("candidate_index", None)):
            value = entry.get(key)
            if not isinstance(value, int) or value < 0 or (limit is not None and value >= limit):
                allowed = f"0..{limit - 1}" if limit is not None else ">= 0"
                raise ValueError(f"info: entry {position} has {key} = {value!r}; expected an "
                                 f"integer in {allowed}")
    return entries


def layout(count: int, originals: int, info: list[dict] | None) -> tuple[list[int], list[int]]:
    """(original index, candidate index) of every input candidate."""
    if info is not None:
        return [e["image_index"] for e in info], [e["candidate_index"] for e in info]
    if count % originals:
        raise ValueError(f"candidates: {count} images for {originals} originals; without info "
                         f"the batch must hold k candidates per original (a multiple of "
                         f"{originals}), candidate-major")
    return [j % originals for j in range(count)], [j // originals for j in range(count)]


# --- outside the mask -----------------------------------------------------------------------------

def outside_change(original: torch.Tensor, candidates: torch.Tensor, outside: torch.Tensor
                   ) -> list[tuple[float, float, float]]:
    """(max, mean, changed fraction) of |candidate - original| outside the mask: the largest
    channel change per pixel, in 8-bit levels; a pixel counts as changed beyond half a level."""
    count = outside.sum()
    if count == 0:
        return [(0.0, 0.0, 0.0)] * candidates.shape[0]
    results = []
    buffer = None  # reused: a fresh 50 MB tensor per candidate costs more
    # A candidate equal to the original beyond the mask's box (an exact blend) differs, if at
    # all, only inside the box: one comparison of the rest, which stops at the first change.
    box = mask_ops.support_box(~outside)
    for candidate in candidates:
        if box is not None and _equal_beyond(candidate, original, box):
            x0, y0, x1, y1 = box
            diff = (candidate[y0:y1, x0:x1] - original[y0:y1, x0:x1]).abs_().amax(-1)
            diff.mul_(outside[y0:y1, x0:x1])
        else:
            buffer = torch.empty_like(original) if buffer is None else buffer
            diff = torch.sub(candidate, original, out=buffer).abs_().amax(-1).mul_(outside)
        results.append((float(diff.max()) * 255, float(diff.sum() / count) * 255,
                        float((diff > 0.5 / 255).sum() / count)))
    return results


def _equal_beyond(a: torch.Tensor, b: torch.Tensor, box: tuple[int, int, int, int]) -> bool:
    """Whether `a` and `b` (`[H, W, C]`) are equal everywhere outside `box` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    return (torch.equal(a[:y0], b[:y0]) and torch.equal(a[y1:], b[y1:])
            and torch.equal(a[y0:y1, :x0], b[y0:y1, :x0])
            and torch.equal(a[y0:y1, x1:], b[y0:y1, x1:]))


# --- geometry -----------------------------------------------------------------------------------

def _small_gray(images: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Luminance (0..255, float32) at `size` (h, w), area-averaged."""
    gray = images @ torch.tensor(LUMA, device=images.device, dtype=images.dtype)
    small = F.interpolate(gray[:, None].float(), size=size, mode="area")[:, 0] * 255
    return small.cpu().numpy()


def _pooled_gray(images: torch.Tensor, factor: int) -> np.ndarray:
    """Luminance (0..255) averaged over factor x factor blocks: an integer factor keeps the
    sampling grid uniform (an area resize by 1.25 bends it by a tenth of a pixel)."""
    gray = images @ torch.tensor(LUMA, device=images.device, dtype=images.dtype)
    return (F.avg_pool2d(gray[:, None].float(), factor)[:, 0] * 255).cpu().numpy()


def _features(detector, gray: np.ndarray, keep: np.ndarray | None):
    return detector.detectAndCompute(np.clip(gray, 0, 255).astype(np.uint8), keep)


def _match(a, b, norm: int, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Matched point pairs (Lowe's ratio test) between two (keypoints, descriptors)."""
    (kp_a, des_a), (kp_b, des_b) = a, b
    if des_a is None or des_b is None or len(kp_a) < 2 or len(kp_b) < 2:
        return np.empty((0, 2), np.float32), np.empty((0, 2), np.float32)
    pairs = cv2.BFMatcher(norm).knnMatch(des_a, des_b, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < ratio * p[1].distance]
    return (np.float32([kp_a[g.queryIdx].pt for g in good]).reshape(-1, 2),
            np.float32([kp_b[g.trainIdx].pt for g in good]).reshape(-1, 2))


def _to_full(warp: np.ndarray, factor: int) -> np.ndarray:
    """A 2x3 map between images pooled by `factor`, expressed in full-resolution pixels."""
    to_small = np.array([[1 / factor, 0, 0.5 / factor - 0.5], [0, 1 / factor, 0.5 / factor - 0.5],
                         [0, 0, 1]])
    return (np.linalg.inv(to_small) @ np.vstack([warp, [0, 0, 1]]) @ to_small)[:2]


def geometry(original_gray: np.ndarray, candidate_grays: np.ndarray, keep: np.ndarray,
             full: tuple[int, int], factor: int) -> list[dict | None]:
    """Fit an affine map original -> candidate on the pixels `keep` (uint8, 255 = use) of
    images pooled by `factor`; return per candidate its centre shift (full-resolution px),
    scale, rotation and ECC correlation, or None when no fit was found."""
    orb = cv2.ORB_create(nfeatures=1500, fastThreshold=10)
    reference = _features(orb, original_gray, keep)
    centre = np.array([(full[1] - 1) / 2, (full[0] - 1) / 2])
    results = []
    for gray in candidate_grays:
        start, agreeing = None, 0
        src, dst = _match(reference, _features(orb, gray, None), cv2.NORM_HAMMING, 0.8)
        if len(src) >= 6:
            fit, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC,
                                                       ransacReprojThreshold=2.0)
            if fit is not None:
                start, agreeing = fit, int(inliers.sum())
        # Alone (when ECC fails), a features fit needs many agreeing matches to be trusted.
        warp, correlation = (start if agreeing >= MIN_FEATURE_MATCHES else None), None
        try:
            # ECC: original(x) ~ candidate(warp x), i.e. warp maps original to candidate pixels.
            correlation, warp = cv2.findTransformECC(
                original_gray, gray, (np.eye(2, 3) if start is None else start).astype(np.float32),
                cv2.MOTION_AFFINE, (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 60, 1e-5),
                keep, 5)
        except cv2.error:  # no convergence (flat image, unrelated content): keep ORB's fit
            pass
        if warp is None or (correlation is not None and correlation < MIN_CORRELATION):
            results.append(None)  # nothing found, or content too unlike the original to trust
            continue
        full_warp = _to_full(np.asarray(warp, np.float64), factor)
        linear = full_warp[:, :2]
        shift = linear @ centre + full_warp[:, 2] - centre
        results.append({
            "shift_px": float(np.hypot(*shift)),
            "shift_xy": [float(shift[0]), float(shift[1])],
            "scale": float(math.sqrt(abs(np.linalg.det(linear)))),
            "rotation_deg": float(math.degrees(math.atan2(linear[1, 0] - linear[0, 1],
                                                          linear[0, 0] + linear[1, 1]))),
            "alignment": "ecc" if correlation is not None else "features",
            "correlation": None if correlation is None else float(correlation)})
    return results


IDENTITY = {"shift_px": 0.0, "shift_xy": [0.0, 0.0], "scale": 1.0, "rotation_deg": 0.0,
            "alignment": "identical outside the mask", "correlation": 1.0}


def _geometry_scores(fit: dict | None) -> dict:
    if fit is None:  # reported as such, and framing_shift fires: the framing is unconfirmed
        return {"shift_px": None, "scale_drift_percent": None,
                "note": "could not align the candidate to the original outside the mask"}
    return {"shift_px": fit["shift_px"], "shift_xy": fit["shift_xy"], "scale": fit["scale"],
            "scale_drift_percent": abs(fit["scale"] - 1) * 100,
            "rotation_deg": fit["rotation_deg"], "alignment": fit["alignment"],
            "alignment_correlation": fit["correlation"]}


# --- the mask's edge: seam and residue ----------------------------------------------------------

def _box_means(values: torch.Tensor, where: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor,
               radius: int) -> torch.Tensor:
    """Mean of `values` ([n, H, W, c <= 3]) over the pixels `where` ([H, W] bool) in the box of
    2*radius+1 px around each point (ys, xs): [n, P, c], nan where the box holds none of them.
    OpenCV's box filter (running sums, zero beyond the crop) costs the same whatever the
    radius."""
    weight = where.to(values.dtype)
    stacked = torch.cat([values * weight[..., None],
                         weight.expand(values.shape[:-1])[..., None]], -1).cpu().numpy()
    size = (2 * radius + 1, 2 * radius + 1)
    sums = np.stack([cv2.boxFilter(image, -1, size, normalize=False,
                                   borderType=cv2.BORDER_CONSTANT) for image in stacked])
    sums = torch.from_numpy(sums[:, ys.cpu().numpy(), xs.cpu().numpy()]).to(values.device)
    count = torch.where(sums[..., -1:] > 0.5, sums[..., -1:], torch.nan)
    return sums[..., :-1] / count


def _sobel(luminance: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """Mean Sobel gradient magnitude of `luminance` ([n, H, W]) at the points: [n]."""
    steps = torch.arange(-1, 2, device=luminance.device)
    dy, dx = (t.flatten() for t in torch.meshgrid(steps, steps, indexing="ij"))
    rows = (ys[:, None] + dy).clamp(0, luminance.shape[1] - 1)
    cols = (xs[:, None] + dx).clamp(0, luminance.shape[2] - 1)
    around = luminance[:, rows, cols]  # [n, P, 9], row-major 3x3
    sobel = torch.tensor([-1.0, 0, 1, -2, 0, 2, -1, 0, 1], device=luminance.device) / 8
    return torch.hypot(around @ sobel, around @ sobel.view(3, 3).T.flatten()).mean(-1)


def _distances(support: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distance of every pixel inside `support` (bool) to the nearest pixel outside
    it, and of every pixel outside to the nearest inside (0 elsewhere); pixels beyond the
    image do not count, so the image's border neither grows nor erodes the mask."""
    inside = support.astype(np.uint8)
    return (cv2.distanceTransform(inside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE),
            cv2.distanceTransform(1 - inside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE))


def edge(original: torch.Tensor, candidates: torch.Tensor, inside: torch.Tensor, width: int
         ) -> list[dict]:
    """Seam and residue of each candidate ([k, H, W, 3]) at the edge of `inside` ([H, W] bool,
    neither empty nor full), judged against the untouched surroundings of the original
    ([H, W, 3]), on the mask's box. Bands by distance to the edge: `inner`, the `width` px
    just inside; `outer`, the `width` px just outside; `beyond`, the next `width` px out.

    - residue: how much of the input's own inner band survives in the candidate. Each inner
      pixel's prediction from the outside is the mean of the outer band around it (a box of
      2*width px); with `old` the input's deviation from it and `new` the candidate's, the
      kept share is the regression slope sum(new . old) / sum(|old|^2) (Lab) per 1-px layer
      of depth, and the most kept layer counts (so a thin outline counts in full): 1 for the
      input unchanged, 0 for content that does not follow it. `contrast` says whether there
      is anything to survive: the rms of `old` over the rms deviation of the outer band from
      the band beyond it (the surroundings' own texture at the same distance).
    - seam: on the lines either side of the edge, the ΔE2000 between the candidate's mean
      colours of the inner and outer bands around each line pixel (box of 2*width+1 px), and
      the Sobel gradient of L*, minus an allowance: the same measured one band further out,
      between the outer band and the band beyond (the texture's own variation).
    """
    x0, y0, x1, y1 = mask_ops.support_box(inside, 2 * width + 3)
    depth, distance = (torch.from_numpy(d).to(inside.device)
                       for d in _distances(inside[y0:y1, x0:x1].cpu().numpy()))
    inner, outer = (depth > 0) & (depth <= width), (distance > 0) & (distance <= width)
    beyond = (distance > width) & (distance <= 2 * width)
    edge_line = ((depth > 0) & (depth < 1.5)) | ((distance > 0) & (distance < 1.5))
    texture_line = (distance > width - 1) & (distance <= width + 1)
    crop = torch.cat([original[None, y0:y1, x0:x1], candidates[:, y0:y1, x0:x1]])
    looked_at = (depth > 0) & (depth <= width + 1) | (distance > 0) & (distance <= 2 * width + 2)
    lab = torch.zeros(crop.shape, dtype=torch.float32, device=crop.device)
    lab[:, looked_at] = srgb_to_lab(crop[:, looked_at][:, :, None])[:, :, 0]
    old_lab = lab[:1]

    # residue
    ys, xs = torch.nonzero(outer, as_tuple=True)
    texture = old_lab[0, ys, xs] - _box_means(old_lab, beyond, ys, xs, 2 * width)[0]
    texture_rms = float(texture.square().sum(-1).nanmean().sqrt().nan_to_num(0.0))
    texture_rms = max(texture_rms, TEXTURE_FLOOR)  # nan: no band beyond (the image's border)
    ys, xs = torch.nonzero(inner, as_tuple=True)
    predicted = _box_means(old_lab, outer, ys, xs, 2 * width)[0]
    old = old_lab[0, ys, xs] - predicted
    new = lab[1:, ys, xs] - predicted
    energy = (old * old).sum(-1)
    contrast = float(energy.mean().sqrt()) / texture_rms
    # The slope per 1-px layer of depth, the most kept layer counting, among the layers where
    # the old content stands out; where none does, nothing old can survive visibly and a slope
    # would be noise (None).
    layer = F.one_hot((depth[ys, xs].ceil().long() - 1).clamp(0, width - 1), width).float()
    layer_energy = energy @ layer
    stands_out = layer_energy > (MIN_RESIDUE_CONTRAST * texture_rms) ** 2 * layer.sum(0)
    fraction = ((((new * old).sum(-1) @ layer)[:, stands_out] / layer_energy[stands_out]
                 ).amax(-1).clamp(0, 1) if stands_out.any() else None)

    # seam
    def steps(images: torch.Tensor, near: torch.Tensor, far: torch.Tensor, line: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """ΔE2000 between the mean colours of two bands around each pixel of `line`: the mean
        of these local steps, and the step between their averages along the whole line (a
        colour offset all along the edge, which the texture's own steps average out of)."""
        ys, xs = torch.nonzero(line, as_tuple=True)
        a, b = _box_means(images, near, ys, xs, width), _box_means(images, far, ys, xs, width)
        seen = ~(a.isnan() | b.isnan()).any(-1).any(0)  # both bands in reach (image border)
        a, b = a[:, seen], b[:, seen]
        return ciede2000(a, b).mean(-1).float(), ciede2000(a.mean(1), b.mean(1)).float()

    local, offset = steps(lab, inner, outer, edge_line)
    texture_local, texture_offset = steps(old_lab, outer, beyond, texture_line)
    gradient = _sobel(lab[..., 0], *torch.nonzero(edge_line, as_tuple=True))
    texture_gradient = _sobel(old_lab[..., 0], *torch.nonzero(texture_line, as_tuple=True))
    # The allowance: the surroundings' own variation (or the input's own, where it is lower:
    # the two agree where the old content continues its surroundings), and, where the old
    # content stands out, the share of the input's edge that the candidate kept: that is
    # residue's to judge, not the seam's.
    kept = (fraction if fraction is not None and contrast > MIN_RESIDUE_CONTRAST
            else torch.zeros(candidates.shape[0], device=lab.device))

    def excess(measured: torch.Tensor, texture: torch.Tensor) -> torch.Tensor:
        # fmin: a texture number is nan where no band beyond is in reach (the image's border)
        return measured[1:] - torch.fmin(texture, measured[:1]) - kept * measured[0]

    seam_delta_e = torch.maximum(excess(local, texture_local), excess(offset, texture_offset))
    seam_gradient = excess(gradient, texture_gradient)
    return [{"seam_delta_e": float(seam_delta_e[k]), "seam_gradient": float(seam_gradient[k]),
             "residue": None if fraction is None else float(fraction[k]),
             "residue_contrast": contrast}
            for k in range(candidates.shape[0])]


EMPTY_EDGE = {"seam_delta_e": None, "seam_gradient": None, "residue": None,
              "residue_contrast": None}


# --- references ---------------------------------------------------------------------------------

def _scaled(shape: tuple[int, int], limit: int) -> tuple[int, int]:
    return long_side_size(*shape, limit)[:2]


def align_reference(original: torch.Tensor, keep_full: torch.Tensor, reference: torch.Tensor
                    ) -> np.ndarray | None:
    """Homography from reference pixels to original pixels (full resolution), found with SIFT
    on the original outside the mask; None when fewer than 12 matches agree. Independent of
    reference_warp's aligner on purpose: the check must not share the generator's mistakes
    (docs/quality.md)."""
    sift = cv2.SIFT_create(nfeatures=3000)
    size_o, size_r = _scaled(original.shape[:2], REFERENCE_SIZE), _scaled(reference.shape[:2],
                                                                        REFERENCE_SIZE)
    keep = F.interpolate(keep_full[None, None].float(), size=size_o, mode="area")[0, 0]
    keep = ((keep > 0.999).cpu().numpy() * 255).astype(np.uint8)
    src, dst = _match(_features(sift, _small_gray(rgb(reference)[None], size_r)[0], None),
                      _features(sift, _small_gray(original[None], size_o)[0], keep),
                      cv2.NORM_L2, 0.75)
    if len(src) < 12:
        return None
    homography, inliers = cv2.findHomography(src, dst, cv2.RANSAC, 3.0)
    if homography is None or int(inliers.sum()) < 12:
        return None
    from_r = np.diag([reference.shape[1] / size_r[1], reference.shape[0] / size_r[0], 1.0])
    to_o = np.diag([size_o[1] / original.shape[1], size_o[0] / original.shape[0], 1.0])
    return np.linalg.inv(to_o) @ homography @ np.linalg.inv(from_r)


def _band_pass(gray: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(gray, (0, 0), 0.7) - cv2.GaussianBlur(gray, (0, 0), 2.0)


def reference_similarity(images: torch.Tensor, inside: torch.Tensor, reference: torch.Tensor,
                         homography: np.ndarray) -> list[float] | None:
    """SSIM's contrast-structure term, 2 cov / (var + var), of band-passed luminance inside the
    mask (at most REGION_SIZE px a side) between each of `images` and the reference warped onto
    them: 1 for the same detail, lower for other or missing detail (a smeared patch loses
    variance, so unlike a plain correlation it scores low). None when the warped reference
    covers too little of the mask."""
    x0, y0, x1, y1 = mask_ops.support_box(inside, 4)
    size = _scaled((y1 - y0, x1 - x0), REGION_SIZE)
    g = size[1] / (x1 - x0), size[0] / (y1 - y0)
    # original pixel -> region pixel (pixel centres, area scaling)
    to_region = np.array([[g[0], 0, (0.5 - x0) * g[0] - 0.5], [0, g[1], (0.5 - y0) * g[1] - 0.5],
                          [0, 0, 1]])
    ref_gray = _small_gray(rgb(reference)[None], reference.shape[:2])[0]
    warp = to_region @ homography
    # Pre-shrink a reference much finer than the region, so the warp does not alias.
    zoom = math.sqrt(abs(np.linalg.det(warp[:2, :2] / warp[2, 2])))
    if zoom < 1:
        shrunk = _scaled(ref_gray.shape, max(ref_gray.shape) * zoom)
        scale = np.diag([shrunk[1] / ref_gray.shape[1], shrunk[0] / ref_gray.shape[0], 1.0])
        ref_gray = cv2.resize(ref_gray, shrunk[::-1], interpolation=cv2.INTER_AREA)
        warp = warp @ np.linalg.inv(scale)
    warped = cv2.warpPerspective(ref_gray, warp, size[::-1], flags=cv2.INTER_LINEAR)
    covered = cv2.warpPerspective(np.ones_like(ref_gray), warp, size[::-1],
                                  flags=cv2.INTER_NEAREST) > 0
    region_mask = F.interpolate(inside[y0:y1, x0:x1][None, None].float(), size=size,
                                mode="area")[0, 0].cpu().numpy() > 0.5
    valid = region_mask & covered
    if valid.sum() < 64 or valid.sum() < 0.5 * region_mask.sum():
        return None
    crops = _small_gray(images[:, y0:y1, x0:x1], size)
    target = _band_pass(warped)[valid]
    target = target - target.mean()
    scores = []
    for crop in crops:
        values = _band_pass(crop)[valid]
        values = values - values.mean()
        energy = float(values @ values + target @ target)
        scores.append(2 * float(values @ target) / energy if energy > 0 else 0.0)
    return scores


# --- colour -------------------------------------------------------------------------------------

def mean_lab(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mask-weighted mean Lab `[n, 3]` of `images` ([n, H, W, 3]), measured at <= 512 px."""
    size = _scaled(images.shape[1:3], 512)
    small = F.interpolate(images.movedim(-1, 1).float(), size=size, mode="area").movedim(1, -1)
    weight = F.interpolate(mask[None, None].float(), size=size, mode="area")[0, 0]
    lab = srgb_to_lab(small)
    return (lab * weight[..., None]).sum((1, 2)) / weight.sum().clamp_min(1e-6)


# --- verdict ------------------------------------------------------------------------------------

def replaces_content(entry: dict | None) -> bool | None:
    """Whether the generator's info says it replaced the masked content (None without info)."""
    if entry is None:
        return None
    return bool(entry.get("node") in REPLACING_NODES
                and entry.get("endpoint") not in KEEPS_CONTENT_ENDPOINTS
                and not entry.get("reference_unaligned"))


def _verdict(scores: dict, entry: dict | None, t: Thresholds, half_diagonal: float
             ) -> tuple[list[str], float, float]:
    """Reasons (in the order of the module docstring), the penalty: the sum of each measured
    number's ratio to its threshold (capped at RATIO_CAP), and the tie-break for equal
    penalties: how far the edge's step and gradient are from the surroundings' own, either way,
    over their thresholds, plus the residue ratio. A rotation counts as a framing shift by how
    far it moves the frame's corners."""
    ratios: dict[str, float] = {}
    forced: set[str] = set()
    if "shift_px" in scores:
        if scores["shift_px"] is None:  # the fit failed: the framing cannot be confirmed
            ratios["framing_shift"] = RATIO_CAP
        else:
            corner = math.radians(abs(scores["rotation_deg"])) * half_diagonal
            ratios["framing_shift"] = max(scores["shift_px"], corner) / t.max_shift_px
            ratios["scale_drift"] = scores["scale_drift_percent"] / t.max_scale_drift_percent
    ratios["outside_mask_changed"] = scores["outside_mean"] / t.max_outside_mean
    if entry is not None and entry.get("blend") == "mask" and scores["outside_max"] > 0:
        forced.add("outside_mask_changed")  # the generator promised exactly 0 there
    tie_break = 0.0
    if scores.get("seam_delta_e") is not None:
        step, gradient = (scores["seam_delta_e"] / t.max_seam_delta_e,
                          scores["seam_gradient"] / t.max_seam_gradient)
        ratios["seam"] = max(step, gradient, 0.0)
        tie_break = abs(step) + abs(gradient)  # an edge smoother than its surroundings is a smear
        # Without info the image alone decides (see docs/quality.md).
        if (scores["content_replaced"] is not False and scores["residue"] is not None
                and scores["residue_contrast"] > MIN_RESIDUE_CONTRAST):
            ratios["residue"] = scores["residue"] / t.max_residue
            tie_break += ratios["residue"]
    if scores.get("references_used") is False:
        forced.add("no_reference")
        ratios["no_reference"] = 1.0
    if scores.get("reference_unaligned"):
        forced.add("reference_unaligned")
        ratios["reference_unaligned"] = 1.0
    if "reference_similarity" in scores:
        similarity = scores["reference_similarity"]
        ratios["reference_mismatch"] = RATIO_CAP if similarity is None else (
            (1 - similarity) / (1 - t.min_reference_similarity))
    if scores.get("target_delta_e") is not None:
        ratios["color_target"] = max(scores["target_delta_e"] / t.max_target_delta_e,
                                     scores["color_spread_delta_e"] / t.max_color_spread)
    reasons = [name for name, ratio in ratios.items() if ratio > 1 or name in forced]
    return reasons, sum(min(ratio, RATIO_CAP) for ratio in ratios.values()), tie_break


def _round(value):
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


# --- the check ----------------------------------------------------------------------------------

def quality_check(originals: torch.Tensor, candidates: torch.Tensor, mask: torch.Tensor,
                  info: str | None = None, references: torch.Tensor | None = None,
                  thresholds: Thresholds = Thresholds(),
                  step: Callable[[], None] | None = None,
                  check_cancel: Callable[[], None] = never_cancelled) -> QualityResult:
    """Check every candidate against its original; see the module docstring.

    `originals` [B, H, W, C]; `candidates` [N, h, w, C] (resized to H x W when their size
    differs); `mask` [1 or B, H', W'] (1 = edited; resized when its size differs); `info` the
    generator's JSON; `references` [R, h, w, C]. `step` is called once per candidate.

    Each check of one original takes seconds on a large image (16 s in all for two 4096²
    candidates on the loaded 2-core machine) in torch, NumPy and OpenCV, which release the GIL:
    each runs on a worker thread while `check_cancel` (it raises to stop) is called every
    0.05 s; an abandoned check finishes in the background, its result dropped.
    """
    def run(check: Callable, *args):
        return run_cancellable(lambda: check(*args), check_cancel)

    batch, height, width = originals.shape[:3]
    count = candidates.shape[0]
    if mask_ops.is_placeholder(mask) and (height, width) != mask_ops.LOADIMAGE_PLACEHOLDER_SIZE:
        raise ValueError("mask: this is the empty 64x64 mask that LoadImage gives for an image "
                         "without alpha; connect the mask the candidates were made with")
    entries = parse_info(info, count, batch)
    image_index, candidate_index = layout(count, batch, entries)
    device = originals.device
    mask, notes = mask_ops.fit_to_image(mask.to(device), batch, height, width)
    originals = rgb(originals).float()
    cands = rgb(candidates).float().to(device)
    if cands.shape[1:3] != (height, width):
        notes.append(f"candidates resized from {cands.shape[2]}x{cands.shape[1]} to the "
                     f"original's {width}x{height} for the checks")
        cands = run(resize, cands, height, width)
    refs = [] if references is None else list(rgb(references).float().cpu())
    scores: list[dict] = [{} for _ in range(count)]
    lab_means: dict[int, torch.Tensor] = {}
    for b in range(batch):
        members = [j for j in range(count) if image_index[j] == b]
        if not members:
            raise ValueError(f"candidates: original {b} has no candidate (info image_index "
                             f"values are {sorted(set(image_index))})")
        # Candidate-major members are a strided view: no copy of the candidates.
        group = (cands[b::batch] if members == list(range(b, count, batch))
                 else cands[members])
        _check_original(b, originals[b], cands, group, members, mask[b], entries, refs,
                        thresholds, scores, lab_means, notes, run)
        for _ in members:
            if step is not None:
                step()
    set_report = _color_sets(lab_means, entries, candidate_index, scores)
    entries_out, order, best = _ranked(scores, entries, image_index, candidate_index,
                                       thresholds, math.hypot(width, height) / 2)
    report = {"schema": SCHEMA, "thresholds": asdict(thresholds),
              "candidates": entries_out, "order": order, "best": best,
              "needs_review": sum(e["needs_review"] for e in entries_out),
              "color_sets": set_report, "notes": notes}
    return QualityResult(report, order, best, image_index, notes)


def _check_original(b: int, original: torch.Tensor, cands: torch.Tensor, group: torch.Tensor,
                    members: list[int], mask: torch.Tensor, entries: list[dict] | None,
                    refs: list[torch.Tensor], thresholds: Thresholds, scores: list[dict],
                    lab_means: dict[int, torch.Tensor], notes: list[str], run: Callable
                    ) -> None:
    """Every check of original `b`'s candidates `group` (`cands[members]`): fills their
    `scores` and, for recolours, `lab_means`."""
    height, width = original.shape[:2]
    outside, edited = mask == 0, mask >= 0.5
    with one_cpu_thread():  # a scan of the frame and box-sized ops (see regions.stitch)
        changes = run(outside_change, original, group, outside)
    checked = outside.float().mean() >= 0.02
    if not checked:
        notes.append(f"original {b}: under 2 % of the image lies outside the mask; "
                     "framing and scale not checked")
    moved = [j for j, change in zip(members, changes) if change[0] > 0]
    fits = {}
    if checked and moved:
        factor = max(1, round(max(height, width) / GEOMETRY_SIZE))
        touched = F.max_pool2d((~outside)[None, None].float(), factor)[0]
        keep = (mask_ops.dilate(touched, 4)[0] == 0).cpu().numpy().astype(np.uint8) * 255
        movers = group if len(moved) == len(members) else cands[moved]
        fits = dict(zip(moved, run(lambda: geometry(
            _pooled_gray(original[None], factor)[0], _pooled_gray(movers, factor), keep,
            (height, width), factor))))
    with one_cpu_thread():
        edges = (run(edge, original, group, edited, thresholds.seam_width)
                 if edited.any() and not edited.all() else None)
    compare = refs if edited.any() else []  # an empty mask has no region to compare
    aligned = [(r, h) for r, h in ((r, run(align_reference, original, outside, r))
                                   for r in compare) if h is not None]
    if compare and not aligned:
        notes.append(f"original {b}: no reference could be aligned to it outside the mask")
    similarities = [s for s in (run(reference_similarity, group, edited, r, h)
                                for r, h in aligned) if s is not None]
    if aligned and not similarities:
        notes.append(f"original {b}: no aligned reference covers half of the mask")
    targets = [j for j in members if entries and entries[j].get("target_lab") is not None]
    if targets and edited.any():
        lab_means.update(zip(targets, run(mean_lab, cands[targets], mask)))
    for position, j in enumerate(members):
        s = scores[j]
        if checked:
            s.update(_geometry_scores(fits[j] if j in fits else IDENTITY))
        s["outside_max"], s["outside_mean"], s["outside_changed_fraction"] = changes[position]
        entry = entries[j] if entries else None
        s.update(EMPTY_EDGE if edges is None else edges[position])
        s["content_replaced"] = replaces_content(entry)
        s["references_used"] = None if entry is None else entry.get("references_used")
        s["reference_unaligned"] = (None if entry is None
                                    else bool(entry.get("reference_unaligned")))
        if compare:
            s["reference_similarity"] = max((sim[position] for sim in similarities),
                                            default=None)


def _color_sets(lab_means: dict[int, torch.Tensor], entries: list[dict] | None,
                 candidate_index: list[int], scores: list[dict]) -> list[dict]:
    """Colour: each recolour candidate against its target and against its set (the same
    variation of every original that shares the target); one report entry per set."""
    sets: dict[tuple, list[int]] = {}
    for j in lab_means:
        target = tuple(round(float(v), 1) for v in entries[j]["target_lab"])
        sets.setdefault((candidate_index[j], target), []).append(j)
    set_report = []
    for (variation, target), group in sets.items():
        labs = torch.stack([lab_means[j] for j in group])
        centre = labs.mean(0)
        spread = ciede2000(labs[:, None], labs[None]).max()  # 0 for a set of one
        for j, lab in zip(group, labs):
            scores[j]["mean_lab"] = [float(v) for v in lab]
            scores[j]["target_delta_e"] = float(ciede2000(lab, torch.tensor(target).to(lab)))
            scores[j]["color_spread_delta_e"] = float(ciede2000(lab, centre))
        set_report.append({"candidate_index": variation, "target_lab": list(target),
                           "members": group, "spread_max_delta_e": round(float(spread), 4)})
    return set_report


def _ranked(scores: list[dict], entries: list[dict] | None, image_index: list[int],
            candidate_index: list[int], thresholds: Thresholds, half_diagonal: float
            ) -> tuple[list[dict], list[int], list[int]]:
    """Each candidate's verdict and rank among its original's candidates: the report entries,
    the order (best first per original) and the best candidate of each original."""
    entries_out, ranking = [], []
    for j in range(len(scores)):
        entry = entries[j] if entries else None
        reasons, penalty, tie_break = _verdict(scores[j], entry, thresholds, half_diagonal)
        note = scores[j].pop("note", None)
        entries_out.append({"input_index": j, "image_index": image_index[j],
                            "candidate_index": candidate_index[j],
                            "needs_review": bool(reasons), "reasons": reasons,
                            "penalty": round(penalty, 4), "rank": None,
                            "scores": {k: _round(v) for k, v in scores[j].items()},
                            "notes": [note] if note else []})
        ranking.append((image_index[j], len(reasons), penalty, tie_break, j))
    order = [j for *_, j in sorted(ranking)]
    best = []
    for j in order:
        entry = entries_out[j]
        entry["rank"] = sum(1 for k in order[:order.index(j)]
                            if image_index[k] == image_index[j])
        if entry["rank"] == 0:
            best.append(j)
    return entries_out, order, best
