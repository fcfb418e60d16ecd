"""pipelines/recolor/garment_mask.py: the automatic garment mask on real photos, labels, the product
path and the missing-mediapipe error."""

from __future__ import annotations

import builtins

import cv2
import numpy as np
import pytest
import skimage.color
import skimage.data
import torch
from cancelling import CancelLater, finish_abandoned_native_calls
from pack_paths import PACK_ROOT

from region_repair.pipelines.recolor import garment_mask



@pytest.fixture(scope="module")
def astronaut():
    return torch.from_numpy(skimage.data.astronaut()).float() / 255


def orange_suit(image: torch.Tensor) -> np.ndarray:
    lab = skimage.color.rgb2lab(image.numpy())
    hue = np.degrees(np.arctan2(lab[..., 2], lab[..., 1]))
    return (hue > 30) & (hue < 80) & (np.hypot(lab[..., 1], lab[..., 2]) > 35)


def test_the_suit_is_found_and_the_face_left_out(astronaut):
    (mask,), notes = garment_mask.garment_masks([astronaut])
    found = mask.numpy() > 0.5
    suit = orange_suit(astronaut)
    suit[:, :60] = False  # the flag's stripes are orange-red too
    assert (found & suit).sum() / suit.sum() > 0.8
    assert (found & suit).sum() / found.sum() > 0.8
    assert not found[90:180, 180:270].any(), "the face is in the garment mask"
    assert "upper body" in notes[0]


def test_a_head_label_keeps_to_the_top_of_the_head(astronaut):
    (mask,), _ = garment_mask.garment_masks([astronaut], garment_mask.GarmentRegion.HEAD)
    rows = np.flatnonzero(mask.numpy().any(axis=1))
    assert rows.size and rows.max() < 100


def test_a_product_on_a_plain_background_is_segmented():
    image = torch.full((120, 160, 3), 0.93)
    yy, xx = torch.meshgrid(torch.arange(120), torch.arange(160), indexing="ij")
    shirt = ((xx - 80) / 45) ** 2 + ((yy - 60) / 40) ** 2 < 1
    folds = 0.8 + 0.2 * torch.sin(xx[shirt] / 3.0)
    image[shirt] = torch.tensor([0.2, 0.35, 0.7]) * folds[:, None]
    (mask,), notes = garment_mask.garment_masks([image], garment_mask.GarmentRegion.PRODUCT)
    found = mask > 0.5
    assert (found == shirt).float().mean() > 0.98
    assert "plain background" in notes[0]


def test_no_person_and_no_plain_background_asks_for_masks():
    noise = torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="connect garment masks"):
        garment_mask.garment_masks([noise])


def test_a_coat_label_reaches_below_the_hips():
    # A knee-length puffer coat on a real photo, against its polygon marked by eye.
    import json

    from PIL import Image

    people = PACK_ROOT / "assets" / "photos" / "people"
    marked = json.loads((people / "garments.json").read_text())["garments"]["beige puffer coat"]
    rgb = np.asarray(Image.open(people / marked["photo"]).convert("RGB"))
    polygon = np.zeros(rgb.shape[:2], np.uint8)
    cv2.fillPoly(polygon, [np.array(marked["polygon"], np.int32)], 1)
    image = torch.from_numpy(rgb.copy()).float() / 255

    def iou(label):
        (mask,), _ = garment_mask.garment_masks([image], garment_mask.region_for_label(label))
        found, truth = mask.numpy() > 0.5, polygon > 0
        return (found & truth).sum() / (found | truth).sum()

    # Measured 0.83 with "coat" (to the knees) and 0.78 with "jacket" (a top's band, which ends
    # a little below the hips; the coat goes on to mid-thigh).
    coat, jacket = iou("coat"), iou("jacket")
    assert coat > 0.78 and coat > jacket, (coat, jacket)


def test_labels_map_to_body_bands_and_unknown_ones_are_refused():
    assert garment_mask.region_for_label("T-shirt") is garment_mask.GarmentRegion.UPPER
    assert garment_mask.region_for_label("denim jeans") is garment_mask.GarmentRegion.LOWER
    assert garment_mask.region_for_label("Dresses") is garment_mask.GarmentRegion.FULL
    assert garment_mask.region_for_label("trench coats") is garment_mask.GarmentRegion.UPPER_LONG
    assert garment_mask.region_for_label("") is None
    with pytest.raises(ValueError, match="garment_label"):
        garment_mask.region_for_label("spaceship")


def test_refine_is_called_with_the_image_and_the_mask(astronaut):
    seen = []

    def refine(rgb, mask):
        seen.append((rgb.shape, mask.dtype))
        return mask

    (mask,), notes = garment_mask.garment_masks([astronaut], garment_mask.GarmentRegion.UPPER,
                                                refine=refine)
    assert seen == [((512, 512, 3), np.dtype(bool))] and "refined by SAM" in notes[0]


def test_without_mediapipe_the_error_says_what_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_mediapipe(name, *args, **kwargs):
        if name.startswith("mediapipe"):
            raise ImportError("No module named 'mediapipe'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mediapipe)
    with pytest.raises(ImportError, match=r"pip install --no-deps mediapipe==0\.10\.21"):
        garment_mask.garment_masks([torch.rand(32, 32, 3)])


# The demo set's two derived shots: (x0, y0, x1, y1) crop of the studio shot, (width, height)
# of the resize, and the exposure / white balance applied (see assets/photos/CREDITS.md).
DERIVED_SHOTS = {"suit_closeup": ((30, 40, 450, 512), (294, 330)),
                 "suit_dim_warm": ((0, 96, 512, 512), (614, 499))}


def _photo(name: str) -> torch.Tensor:
    path = PACK_ROOT / "assets" / "photos" / "garment_set" / f"{name}.png"
    rgb = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return torch.from_numpy(rgb).float() / 255


def set_agreement() -> dict[str, tuple[float, float]]:
    """For each derived shot: the share of the studio mask (mapped through the shot's known
    crop and resize) that the shot's own mask covers, and the share of the shot's mask outside
    it."""
    names = ["suit_studio", *DERIVED_SHOTS]
    masks, _ = garment_mask.garment_masks([_photo(name) for name in names],
                                          garment_mask.region_for_label("jacket"))
    studio = masks[0].numpy()
    figures = {}
    for (name, ((x0, y0, x1, y1), size)), mask in zip(DERIVED_SHOTS.items(), masks[1:]):
        expected = cv2.resize(studio[y0:y1, x0:x1], size, interpolation=cv2.INTER_LINEAR) >= 0.5
        found = mask.numpy() > 0.5
        figures[name] = (float((found & expected).sum() / expected.sum()),
                         float((found & ~expected).sum() / max(found.sum(), 1)))
    return figures


def test_the_mask_holds_across_crops_exposure_and_white_balance():
    figures = set_agreement()
    for name, (coverage, false_share) in figures.items():
        assert coverage >= 0.9, f"{name}: the mask covers {coverage:.3f} of the suit"
        assert false_share <= 0.1, f"{name}: {false_share:.3f} of the mask is off the suit"


def test_an_8192_image_stops_within_a_second_of_a_cancel():
    """Scaling an 8192² photo to the work size and its mask back takes seconds; a cancel
    (ComfyUI's interrupt, raised by the callback) 0.2 s in ends it."""
    image = torch.full((8192, 8192, 3), 0.95)
    image[2048:6144, 2730:5460] = torch.tensor([0.7, 0.2, 0.2])
    cancel = CancelLater(0.2)
    with pytest.raises(InterruptedError):
        garment_mask.garment_masks([image], garment_mask.GarmentRegion.PRODUCT,
                                   check_cancel=cancel)
    latency = cancel.latency()
    finish_abandoned_native_calls()
    assert latency < 1.0, f"cancel took {latency:.2f} s"
