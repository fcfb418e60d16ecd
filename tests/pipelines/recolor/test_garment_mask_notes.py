"""pipelines/recolor/garment_mask.py without mediapipe: the garment's colour among candidate
garments, the notes that flag an uncertain mask, the outer/inner reading of labels and the pose
check."""

from __future__ import annotations

import numpy as np
import pytest

from region_repair.pipelines.recolor import garment_mask
from region_repair.pipelines.recolor.garment_mask import GarmentRegion


def patch(lab: tuple[float, float, float], count: int, offsets: tuple[float, float],
          seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` Lab samples around `lab` (shading on L*, a little noise on a*, b*) at distances
    from the torso's centre line drawn in `offsets`."""
    rng = np.random.default_rng(seed)
    samples = np.array(lab, np.float32) + rng.normal(0, [6, 1.5, 1.5], (count, 3))
    return samples.astype(np.float32), rng.uniform(*offsets, count)


def open_coat_over_dress(coat_share: float = 0.4):
    """A torso core: a black coat at the sides (offsets 30..60 px) over a red dress at the
    centre (0..25 px)."""
    coat, coat_at = patch((20, 0, -2), int(4000 * coat_share), (30, 60), 1)
    dress, dress_at = patch((45, 55, 30), int(4000 * (1 - coat_share)), (0, 25), 2)
    return np.concatenate([coat, dress]), np.concatenate([coat_at, dress_at]), len(coat)


def test_one_garment_with_shading_is_certain():
    samples, offsets = patch((50, 10, 30), 3000, (0, 50), 0)
    samples[:1000, 0] -= 25  # a deep fold: darker, same dye
    colors, radius, other, notes = garment_mask.garment_color(samples, offsets, None)
    assert notes == [] and not other.any()
    # Every shade belongs to the garment: the lit and the shaded cloth are both near it.
    assert garment_mask._nearest(samples, colors).max() < max(2.5 * radius, 12.0) + 10
    assert radius > 0


@pytest.mark.parametrize(("outer", "wanted"), [(True, "coat"), (False, "dress")])
def test_the_label_picks_the_outer_or_the_inner_garment(outer, wanted):
    samples, offsets, coats = open_coat_over_dress()
    colors, _, other, notes = garment_mask.garment_color(samples, offsets, outer)
    picked = colors[0]
    assert (picked[1] < 20) == (wanted == "coat"), picked  # the coat has no red (a*)
    assert len(notes) == 1 and notes[0].startswith(garment_mask.UNCERTAIN)
    assert "two candidate garments" in notes[0]
    # The other garment's samples are marked, to be kept out of the mask.
    coat_marked, dress_marked = other[:coats].mean(), other[coats:].mean()
    assert (coat_marked, dress_marked) == ((0.0, 1.0) if wanted == "coat" else (1.0, 0.0))


def test_an_empty_label_takes_the_larger_candidate_and_says_so():
    samples, offsets, _ = open_coat_over_dress(coat_share=0.3)
    colors, _, _, notes = garment_mask.garment_color(samples, offsets, None)
    assert colors[0][1] > 40, "the dress (70 % of the core) is the larger candidate"
    assert "the largest" in notes[0] and "label" in notes[0]


def test_a_small_second_color_is_no_candidate():
    # A logo or a bag strap over 10 % of the core: one garment, no note.
    samples, offsets, _ = open_coat_over_dress(coat_share=0.1)
    _, _, other, notes = garment_mask.garment_color(samples, offsets, None)
    assert notes == [] and not other.any()


def test_labels_say_which_layer():
    assert garment_mask.prefers_outer("long wool coats") is True
    assert garment_mask.prefers_outer("Denim Jacket") is True
    assert garment_mask.prefers_outer("t-shirt") is False
    assert garment_mask.prefers_outer("summer dress") is False
    assert garment_mask.prefers_outer("") is None
    assert garment_mask.prefers_outer("upper body") is None


def test_a_band_is_placed_only_from_seen_landmarks_inside_the_picture():
    pose = np.zeros((33, 3), np.float32)
    pose[:, :2], pose[:, 2] = (50, 50), 0.9
    assert garment_mask._placed(pose, GarmentRegion.UPPER, 100, 100)
    hips_below = pose.copy()
    hips_below[[23, 24], 1] = 130  # a waist-up photo: no trousers to place
    assert garment_mask._placed(hips_below, GarmentRegion.UPPER, 100, 100)
    assert not garment_mask._placed(hips_below, GarmentRegion.LOWER, 100, 100)
    hidden = pose.copy()
    hidden[11, 2] = 0.1  # a shoulder the pose guesses
    assert not garment_mask._placed(hidden, GarmentRegion.UPPER_LONG, 100, 100)


def test_a_top_that_runs_to_the_end_of_its_band_is_caught():
    person = np.zeros((100, 60), bool)
    person[10:, 15:45] = True
    band = np.zeros_like(person)
    band[10:80] = True
    hips_x = np.array([20.0, 40.0])
    cut_by_the_band = person & band
    assert garment_mask._runs_to_band_end(cut_by_the_band, band, person, hips_x)
    hem_inside = cut_by_the_band.copy()
    hem_inside[65:] = False  # the hem found above the band's end
    assert not garment_mask._runs_to_band_end(hem_inside, band, person, hips_x)
