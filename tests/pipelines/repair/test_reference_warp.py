"""pipelines/repair/reference_warp.py on a real photo: a reference shot made with a known homography
and another exposure, a corrupted detail, and the repair measured against the uncorrupted
original."""

from __future__ import annotations

import math
import time

import cv2
import numpy as np
import pytest
import torch
from skimage import data
from tight_references import homography_error, make_case

from region_repair.pipelines.repair.classical_fill import classical_fill
from region_repair.pipelines.repair.reference_warp import (
    MAX_REFERENCES,
    align_references,
    reference_fill,
)

# The astronaut's mission patch (a logo with small text), 60 x 60 pixels: x, y, width, height.
DETAIL = (140, 355, 60, 60)
# The reference camera: rotated 4 degrees and 8 % closer about the image centre, a slight
# perspective tilt, shifted; another exposure (contrast 0.85, brightness +0.06); 8-bit.
ANGLE, ZOOM, TILT, SHIFT = 4.0, 1.08, (3e-5, -2e-5), (14.0, -9.0)
GAIN, BIAS = 0.85, 0.06


def as_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def photo(name: str) -> torch.Tensor:
    return as_tensor(getattr(data, name)() / 255)


def target_to_reference(width: int, height: int) -> np.ndarray:
    """The known homography from target pixels to reference pixels."""
    centre = np.array([[1, 0, -width / 2], [0, 1, -height / 2], [0, 0, 1]])
    similarity = np.vstack([cv2.getRotationMatrix2D((0, 0), ANGLE, ZOOM), [0, 0, 1]])
    tilt = np.array([[1, 0, 0], [0, 1, 0], [TILT[0], TILT[1], 1]])
    shift = np.array([[1, 0, SHIFT[0]], [0, 1, SHIFT[1]], [0, 0, 1]])
    homography = shift @ np.linalg.inv(centre) @ similarity @ tilt @ centre
    return homography / homography[2, 2]


@pytest.fixture(scope="module")
def scene():
    original = getattr(data, "astronaut")().astype(np.float32) / 255
    height, width = original.shape[:2]
    to_reference = target_to_reference(width, height)
    # A reference of another size, as a real shot would be.
    reference = cv2.warpPerspective(original, to_reference, (width + 40, height + 30),
                                    flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    reference = np.round(np.clip(reference * GAIN + BIAS, 0, 1) * 255) / 255
    x, y, w, h = DETAIL
    mask = np.zeros((height, width), np.float32)
    mask[y:y + h, x:x + w] = 1
    corrupt = original.copy()
    corrupt[y:y + h, x:x + w] = np.random.default_rng(0).random((h, w, 3))
    return {"original": as_tensor(original), "corrupt": as_tensor(corrupt),
            "mask": as_tensor(mask), "reference": as_tensor(reference),
            "to_target": np.linalg.inv(to_reference)}


def psnr_inside(result: torch.Tensor, original: torch.Tensor, mask: torch.Tensor) -> float:
    inside = mask > 0
    mse = ((result[inside] - original[inside]) ** 2).mean().item()
    return 10 * math.log10(1 / mse)


def test_repair_from_a_reference_beats_30_db_and_the_classical_fill(scene):
    repaired, alignment, notes = reference_fill(scene["corrupt"], scene["mask"],
                                                [scene["reference"]])
    classical = classical_fill(scene["corrupt"][None], scene["mask"][None], "telea")[0]
    psnr_reference = psnr_inside(repaired, scene["original"], scene["mask"])
    psnr_classical = psnr_inside(classical, scene["original"], scene["mask"])
    print(f"\nPSNR inside the mask: reference warp {psnr_reference:.2f} dB, "
          f"classical fill (Telea) {psnr_classical:.2f} dB")
    assert alignment is not None and alignment.mask_coverage == 1.0, notes
    assert psnr_reference >= 30.0
    assert psnr_reference >= psnr_classical + 10.0
    outside = scene["mask"] == 0
    assert torch.equal(repaired[outside], scene["corrupt"][outside])


def test_estimated_homography_is_close_to_the_known_one(scene):
    alignment, notes = align_references(scene["corrupt"], scene["mask"], [scene["reference"]])
    assert alignment is not None, notes
    x, y, w, h = DETAIL
    # Where the detail's corners and centre come from in the reference, mapped by both.
    detail = np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h], [x + w / 2, y + h / 2]],
                      np.float64)[:, None]
    in_reference = cv2.perspectiveTransform(detail, np.linalg.inv(scene["to_target"]))
    estimated = cv2.perspectiveTransform(in_reference, np.array(alignment.homography))
    assert np.abs(estimated - detail).max() < 0.25  # pixels
    assert alignment.scale == pytest.approx(1 / ZOOM, abs=0.02)
    assert alignment.rotation_deg == pytest.approx(-ANGLE, abs=0.5)
    assert alignment.inliers >= 16 and alignment.inlier_ratio > 0.5
    assert alignment.reprojection_error < 1.0
    assert alignment.valid.shape == scene["mask"].shape
    assert alignment.warped.shape == scene["corrupt"].shape
    json_ready = alignment.to_json()
    assert len(json_ready["homography"]) == 3 and "warped" not in json_ready


def test_the_matching_reference_is_chosen_among_unrelated_ones(scene):
    references = [photo("coffee"), photo("chelsea"), scene["reference"], photo("rocket")]
    alignment, notes = align_references(scene["corrupt"], scene["mask"], references)
    assert alignment is not None and alignment.reference_index == 2
    assert notes[-1] == "chose reference 2" and len(notes) == len(references) + 1


def test_unrelated_references_give_no_alignment_and_a_reason(scene):
    references = [photo("coffee"), photo("chelsea")]
    alignment, notes = align_references(scene["corrupt"], scene["mask"], references)
    assert alignment is None
    assert all("does not seem to show the area around the mask" in note for note in notes[:2])
    assert notes[-1] == "no reference could be aligned to the area around the mask"
    # The fill then falls back to the classical fill, and says so.
    repaired, alignment, notes = reference_fill(scene["corrupt"], scene["mask"], references)
    classical = classical_fill(scene["corrupt"][None], scene["mask"][None], "telea")[0]
    assert alignment is None and "filled classically (telea)" in notes[-1]
    assert torch.equal(repaired, classical)


def test_masked_pixels_do_not_influence_the_alignment(scene):
    flat = scene["corrupt"].clone()
    flat[scene["mask"] > 0] = torch.tensor([0.1, 0.9, 0.2])
    noisy, _ = align_references(scene["corrupt"], scene["mask"], [scene["reference"]])
    painted, _ = align_references(flat, scene["mask"], [scene["reference"]])
    assert noisy.homography == painted.homography
    assert torch.equal(noisy.warped, painted.warped)


def test_alignment_is_deterministic(scene):
    first, _ = align_references(scene["corrupt"], scene["mask"], [scene["reference"]])
    second, _ = align_references(scene["corrupt"], scene["mask"], [scene["reference"]])
    assert first.homography == second.homography and torch.equal(first.warped, second.warped)


def test_masked_pixels_the_reference_lacks_get_the_classical_fill(scene):
    # The reference stops just right of the detail's left edge: part of the mask is not in it.
    x, y, w, h = DETAIL
    in_reference = cv2.perspectiveTransform(np.array([[[x + w / 3, y]]], np.float64),
                                            np.linalg.inv(scene["to_target"]))
    cut = int(in_reference[0, 0, 0])
    partial = scene["reference"][:, cut:]
    repaired, alignment, notes = reference_fill(scene["corrupt"], scene["mask"], [partial])
    assert alignment is not None and 0.5 < alignment.mask_coverage < 0.8, notes
    classical = classical_fill(scene["corrupt"][None], scene["mask"][None], "telea")[0]
    uncovered = (scene["mask"] > 0) & ~alignment.valid
    assert torch.equal(repaired[uncovered], classical[uncovered])
    assert "lie outside the reference" in notes[-1]
    outside = scene["mask"] == 0
    assert torch.equal(repaired[outside], scene["corrupt"][outside])


def test_without_fallback_uncovered_pixels_keep_the_input(scene):
    repaired, alignment, notes = reference_fill(scene["corrupt"], scene["mask"],
                                                [photo("coffee")], fallback=None)
    assert alignment is None and torch.equal(repaired, scene["corrupt"])
    assert notes[-1] == "masked area kept as it was"


def test_bad_inputs_are_named(scene):
    image, mask = scene["corrupt"], scene["mask"]
    with pytest.raises(ValueError, match="references: 11 given; at most 10"):
        align_references(image, mask, [scene["reference"]] * (MAX_REFERENCES + 1))
    with pytest.raises(ValueError, match="mask: shape"):
        align_references(image, mask[:100], [scene["reference"]])
    with pytest.raises(ValueError, match="context: 20"):
        align_references(image, mask, [scene["reference"]], context=20)
    with pytest.raises(ValueError, match=r"references\[0\]: expected an image"):
        align_references(image, mask, [scene["reference"][..., 0]])
    alignment, notes = align_references(image, torch.zeros_like(mask), [scene["reference"]])
    assert alignment is None and "mask is empty" in notes[0]


def test_a_flat_context_cannot_be_located():
    image = torch.full((128, 128, 3), 0.5)
    mask = torch.zeros(128, 128)
    mask[50:70, 50:70] = 1
    alignment, notes = align_references(image, mask, [photo("coffee")])
    assert alignment is None and "usable features" in notes[-3]
    assert "not located by intensity either" in notes[-2]


def test_a_plain_area_widens_the_matched_surroundings():
    """The rocket photo's sky: three times the mask's box holds too few features."""
    original = getattr(data, "rocket")().astype(np.float32) / 255
    height, width = original.shape[:2]
    reference = cv2.warpPerspective(original, target_to_reference(width, height),
                                    (width, height), flags=cv2.INTER_CUBIC)
    mask = torch.zeros(height, width)
    mask[150:210, 300:360] = 1
    corrupt = as_tensor(original).clone()
    corrupt[mask > 0] = 0.5
    repaired, alignment, notes = reference_fill(corrupt, mask, [as_tensor(reference)])
    assert alignment is not None and notes[0].startswith("context widened to"), notes
    assert psnr_inside(repaired, as_tensor(original), mask) >= 30


@pytest.mark.parametrize("case, crop, max_error", [
    (5, 3, 1.0),   # a brick wall, the detail replaced by a wrong patch: 13 of 60 matches agree
    (4, 3, 3.0),   # a plain, clipped sky, the detail blurred: 4 of 9 matches agree
])
def test_a_tight_reference_that_features_miss_is_aligned_by_intensity(case, crop, max_error):
    """References that show 3x the detail's box, rotated, rescaled, another exposure, JPEG 70
    (tests/support/tight_references.py): features find too few matches, the intensity
    alignment recovers the homography."""
    tight = make_case(case, crop)
    alignment, notes = align_references(tight.garbled, tight.mask, [tight.reference])
    assert alignment is not None, notes
    assert alignment.method == "intensity" and "too few feature matches" in notes[-2]
    assert homography_error(tight, alignment.homography) < max_error  # pixels
    facts = alignment.to_json()
    assert facts["method"] == "intensity" and facts["matches"] == 0
    assert facts["reprojection_error"] is None and facts["correlation"] >= 0.85
    repaired, _, _ = reference_fill(tight.garbled, tight.mask, [tight.reference])
    classical = classical_fill(tight.garbled[None], tight.mask[None], "telea")[0]
    assert (psnr_inside(repaired, tight.truth, tight.mask)
            > psnr_inside(classical, tight.truth, tight.mask) + 3)


def test_features_still_come_first_and_say_so(scene):
    alignment, _ = align_references(scene["corrupt"], scene["mask"], [scene["reference"]])
    facts = alignment.to_json()
    assert facts["method"] == "features" and facts["correlation"] is None
    assert facts["reprojection_error"] == pytest.approx(alignment.reprojection_error, abs=1e-4)


def test_keep_unaligned_keeps_the_input_when_nothing_aligns(scene):
    repaired, alignment, notes = reference_fill(scene["corrupt"], scene["mask"],
                                                [photo("coffee")], keep_unaligned=True)
    assert alignment is None and torch.equal(repaired, scene["corrupt"])
    assert notes[-1] == "masked area kept as it was"


def test_the_intensity_search_stops_within_a_second_of_a_cancel():
    """The intensity search takes seconds on a tight reference that features miss; a cancel
    (ComfyUI's interrupt, raised by the callback) ends it between search steps."""
    tight = make_case(5, 3)
    cancel_at = time.monotonic() + 0.5  # the user presses Cancel half a second in

    def check_cancel():
        if time.monotonic() > cancel_at:
            raise InterruptedError("cancelled")

    with pytest.raises(InterruptedError):
        align_references(tight.garbled, tight.mask, [tight.reference], check_cancel=check_cancel)
    assert time.monotonic() - cancel_at < 1.0
