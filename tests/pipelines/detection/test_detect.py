"""Detectors on real photos (mediapipe, Haar), selection parameters, determinism, masks for the
geometry, and the optional-dependency errors."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
import torch
from cancelling import CancelLater, finish_abandoned_native_calls
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pack_paths import PACK_ROOT
from PIL import Image

from region_repair.pipelines.core.errors import MissingDependencyError
from region_repair.pipelines.detection import detect as det
from region_repair.pipelines.geometry import regions

PHOTOS = PACK_ROOT / "assets" / "photos"


def photo(name: str) -> torch.Tensor:
    rgb = np.asarray(Image.open(PHOTOS / name).convert("RGB"), np.float32) / 255
    return torch.from_numpy(rgb)[None]


@pytest.fixture(scope="module")
def astronaut():
    return photo("astronaut.png")


def boxes(found):
    return [(d.label, d.box) for d in found.items]


def near(box, expected, tol=3):
    return all(abs(a - b) <= tol for a, b in zip(box, expected))


# --- mediapipe on real photos --------------------------------------------------------------

def test_short_range_finds_the_astronauts_face(astronaut):
    found = det.detect(astronaut, "face_short_mediapipe")
    (face,) = found.items
    assert face.label == "face" and face.confidence > 0.85
    assert near(face.box, (177, 82, 177 + 95, 82 + 95))  # reference box (x, y, w, h) 177,82,95,95
    # A box mask, as adetailer's mediapipe face detectors give.
    assert face.mask.sum() == face.area and face.mask.shape == (512, 512)


def test_full_range_finds_the_small_distant_face_that_short_range_misses():
    image = photo("hand_four.jpg")
    assert len(det.detect(image, "face_short_mediapipe")) == 0
    (face,) = det.detect(image, "face_full_mediapipe").items
    # Marked by eye: (189, 402, 239, 452); a tile framing the face gives a tighter box.
    assert near(face.box, (189, 402, 239, 452), 8) and face.confidence > 0.7


def test_the_mesh_gives_a_face_shaped_mask_inside_its_box(astronaut):
    (face,) = det.detect(astronaut, "face_mesh_mediapipe").items
    x0, y0, x1, y1 = face.box
    assert near((x0, x1), (177, 272), 6)
    inside = face.mask[y0:y1, x0:x1]
    # An oval fills about pi/4 of its box; a rectangle would fill all of it.
    assert 0.65 < inside.mean() < 0.9
    assert face.mask.sum() == inside.sum()
    assert face.mask[y0, x0] == 0 and face.mask[(y0 + y1) // 2, (x0 + x1) // 2] == 1
    # Its confidence comes from the full-range detector of the same face (FaceMesh gives none).
    assert face.confidence == pytest.approx(det.detect(astronaut, "face_full_mediapipe")
                                            .items[0].confidence)


def test_eyes_from_the_mesh_with_iris(astronaut):
    found = det.detect(astronaut, "eyes_mesh_mediapipe",
                       det.DetectSettings(sort_by="left_to_right"))
    assert [d.label for d in found.items] == ["eye_right", "eye_left"]  # the subject's own
    right, left = (d.box for d in found.items)
    assert near((right[0], right[2]), (195, 213), 2) and near((left[0], left[2]), (237, 256), 2)
    for eye in found.items:
        assert 40 < eye.mask.sum() < eye.area + 1


def test_a_face_in_another_real_photo_and_none_on_the_cat():
    for detector in ("face_short_mediapipe", "face_full_mediapipe", "face_mesh_mediapipe"):
        (face,) = det.detect(photo("hand_call.jpg"), detector).items
        assert 170 < face.box[0] < 200 and 100 < face.box[1] < 115
        assert len(det.detect(photo("chelsea.png"), detector)) == 0


def test_hands_on_a_real_photo_of_hands():
    found = det.detect(photo("hand_call.jpg"), "hands_mediapipe",
                       det.DetectSettings(sort_by="left_to_right"))
    assert [d.label for d in found.items] == ["hand_right", "hand_left"]
    raised, hanging = (d.box for d in found.items)
    assert near(raised, (153, 160, 210, 208), 8) and near(hanging, (316, 406, 348, 464), 8)
    assert all(d.confidence > 0.9 for d in found.items)
    # One raised hand far away, found once (mediapipe reports it twice; duplicates are dropped).
    (far,) = det.detect(photo("hand_four.jpg"), "hands_mediapipe").items
    assert near(far.box, (125, 431, 158, 481), 8)
    assert len(det.detect(photo("astronaut.png"), "hands_mediapipe")) == 0  # gloves


def people(name):
    boxes = json.loads((PHOTOS / "people" / "boxes.json").read_text())["photos"][name]
    return photo(f"people/{name}"), boxes


def matches(found, marked):
    """Each marked box overlapped (IoU >= 0.3) by exactly one detection, and nothing else."""
    return (len(found.items) == len(marked)
            and all(sum(det._iou(d.box, box) >= 0.3 for d in found.items) == 1
                    for box in marked))


def test_tiles_find_every_face_and_hand_of_a_wide_group_photo():
    image, marked = people("group_montage4.jpg")  # 1536x512, four people side by side
    for detector in ("face_full_mediapipe", "face_mesh_mediapipe"):
        assert matches(det.detect(image, detector), marked["faces"]), detector
    assert matches(det.detect(image, "hands_mediapipe"), marked["hands"])
    # On the whole image alone (one window) mediapipe found 2 of the 4 faces and no hand.
    assert det.tiles(512, 1536)[0] == (0, 0, 1536, 512)


def test_a_small_face_and_hand_in_a_full_body_photo():
    image, marked = people("gesture_four_25bb4c45.jpg")  # the face is 27 px wide
    assert matches(det.detect(image, "face_full_mediapipe"), marked["faces"])
    assert len(det.detect(image, "face_short_mediapipe")) == 0


@hsettings(max_examples=40, deadline=None)
@given(st.integers(64, 5000), st.integers(64, 5000), st.floats(0, 1), st.floats(0, 1))
def test_tiles_are_squares_holding_every_small_object_whole(height, width, fx, fy):
    windows = det.tiles(height, width)
    assert windows[0] == (0, 0, width, height) and len(set(windows)) == len(windows)
    squares = [w for w in windows if w[2] - w[0] == w[3] - w[1]]  # the whole image, if square
    assert all(0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height and x1 - x0 == y1 - y0
               for x0, y0, x1, y1 in squares)
    sides = sorted({x1 - x0 for x0, _, x1, _ in squares})
    assert sides[-1] == min(height, width)
    assert all(side >= det.MIN_TILE for side in sides[:-1])
    # Any object up to half the smallest tile wide lies wholly inside some tile.
    size = sides[0] // 2
    x, y = round(fx * (width - size)), round(fy * (height - size))
    assert any(x0 <= x and y0 <= y and x + size <= x1 and y + size <= y1
               for x0, y0, x1, y1 in squares)


def test_person_segmentation_gives_one_shaped_person(astronaut):
    (person,) = det.detect(photo("hand_call.jpg"), "person_mediapipe").items
    assert person.label == "person" and person.confidence > 0.9
    share = float(person.mask.mean())
    assert 0.2 < share < 0.5 and person.mask.sum() < 0.8 * person.area


# --- Haar fallback -------------------------------------------------------------------------

def test_haar_finds_the_astronauts_face_and_eyes(astronaut):
    (face,) = det.detect(astronaut, "face_haar").items
    assert near(face.box, (177, 66, 272, 161), 4) and face.confidence > 0.9
    eyes = det.detect(astronaut, "eyes_haar", det.DetectSettings(sort_by="left_to_right")).items
    assert [e.label for e in eyes] == ["eye_right", "eye_left"]
    assert 190 < (eyes[0].box[0] + eyes[0].box[2]) / 2 < 215
    assert 235 < (eyes[1].box[0] + eyes[1].box[2]) / 2 < 258
    assert len(det.detect(photo("chelsea.png"), "face_haar")) == 0


def test_haar_confidence_maps_neighbours_monotonically():
    scores = [det.haar_confidence(n) for n in range(1, 60)]
    assert scores == sorted(scores) and scores[4] == pytest.approx(0.3) and scores[-1] < 1


# --- parameters ------------------------------------------------------------------------------

def fake(box, confidence, label="face"):
    return det._Found(box, confidence, label, np.zeros((100, 100), bool))


FOUND = [fake((10, 10, 20, 20), 0.9), fake((50, 0, 90, 40), 0.5), fake((0, 60, 30, 90), 0.7),
         fake((80, 80, 82, 82), 0.2)]


def test_confidence_threshold_and_max_keep_the_most_confident():
    picked = det.select(FOUND, 100, 100, det.DetectSettings(confidence=0.3))
    assert [f.confidence for f in picked] == [0.9, 0.7, 0.5]
    picked = det.select(FOUND, 100, 100, det.DetectSettings(confidence=0.0,
                                                             max_num_detections=2,
                                                             sort_by="left_to_right"))
    # the two most confident, then ordered left to right
    assert [f.confidence for f in picked] == [0.7, 0.9]


def test_sort_orders():
    def order(sort_by):
        return [f.confidence for f in det.select(FOUND, 100, 100,
                                                 det.DetectSettings(0.0, sort_by=sort_by))]
    assert order("confidence") == [0.9, 0.7, 0.5, 0.2]
    assert order("area") == [0.5, 0.7, 0.9, 0.2]
    assert order("left_to_right") == [0.7, 0.9, 0.5, 0.2]


def test_area_ratios():
    settings = det.DetectSettings(0.0, min_area_ratio=0.02, max_area_ratio=0.1)
    assert [f.confidence for f in det.select(FOUND, 100, 100, settings)] == [0.7]


def test_duplicates_keep_the_more_confident():
    twice = [fake((10, 10, 50, 50), 0.6), fake((12, 10, 50, 52), 0.8, "other")]
    (kept,) = det.select(twice, 100, 100, det.DetectSettings())
    assert kept.confidence == 0.8


@pytest.mark.parametrize("bad, named", [
    (dict(confidence=1.5), "confidence"), (dict(max_num_detections=-1), "max_num_detections"),
    (dict(min_area_ratio=0.5, max_area_ratio=0.2), "min_area_ratio"),
    (dict(sort_by="random"), "SortOrder.*'left_to_right'")])
def test_bad_settings_name_the_input(bad, named):
    with pytest.raises(ValueError, match=named):
        det.DetectSettings(**bad)


def test_max_and_threshold_on_a_real_photo():
    image = photo("hand_call.jpg")
    assert len(det.detect(image, "hands_mediapipe", det.DetectSettings(max_num_detections=1))) == 1
    assert len(det.detect(image, "face_full_mediapipe", det.DetectSettings(confidence=0.8))) == 1
    assert len(det.detect(image, "face_full_mediapipe", det.DetectSettings(confidence=0.9))) == 0


# --- determinism, batches and masks for the geometry ---------------------------------------

def test_detection_is_deterministic_and_batched(astronaut):
    batch = torch.cat([astronaut, photo("chelsea.png").new_zeros(1, 512, 512, 3), astronaut])
    for detector in ("face_short_mediapipe", "eyes_mesh_mediapipe", "face_haar"):
        first, second = det.detect(batch, detector), det.detect(batch, detector)
        assert boxes(first) == boxes(second)
        assert [d.confidence for d in first.items] == [d.confidence for d in second.items]
        assert all(torch.equal(a.mask, b.mask) for a, b in zip(first.items, second.items))
        per_image = len(det.detect(astronaut, detector))
        assert first.counts() == [per_image, 0, per_image]
        assert [d.batch_index for d in first.items] == [0] * per_image + [2] * per_image


def test_masks_for_the_geometry(astronaut):
    found = det.detect(torch.cat([astronaut, astronaut]), "eyes_mesh_mediapipe")
    union = found.union_mask()
    assert union.shape == (2, 512, 512)
    assert torch.equal(union[0], torch.maximum(found.items[0].mask, found.items[1].mask))
    assert found.object_masks().shape == (4, 512, 512)
    one = found.object_mask(2)
    assert one[0].sum() == 0 and torch.equal(one[1], found.items[2].mask)
    # Each object's mask feeds DilateBlurPad's geometry: one window around that eye only.
    plan, crops, _ = regions.prepare_regions(torch.cat([astronaut, astronaut]), one,
                                             regions.WindowSettings())
    (window,) = plan.windows
    x0, y0, x1, y1 = found.items[2].box
    assert window.batch_index == 1 and window.x0 < x0 and window.x1 > x1
    empty = det.detect(photo("chelsea.png"), "face_haar")
    assert empty.object_masks().shape == (0, 300, 451)


def test_grey_and_rgba_images_are_accepted(astronaut):
    assert len(det.detect(astronaut.mean(-1, keepdim=True), "face_haar")) == 1
    rgba = torch.cat([astronaut, torch.ones(1, 512, 512, 1)], -1)
    assert boxes(det.detect(rgba, "face_short_mediapipe")) == boxes(
        det.detect(astronaut, "face_short_mediapipe"))
    with pytest.raises(ValueError, match="image"):
        det.detect(astronaut[0], "face_haar")


# --- YOLO (optional ultralytics; user files) -------------------------------------------------

def test_yolo_files_are_found_by_name_or_the_error_says_where(tmp_path):
    files = {"bbox/face_yolov8n.pt": tmp_path / "bbox" / "face_yolov8n.pt"}
    assert det.yolo_weights("face_yolov8n", None, files, [str(tmp_path)]) == files[
        "bbox/face_yolov8n.pt"]
    with pytest.raises(ValueError, match=r"hand_yolov8n.pt not found(.|\n)*" + str(tmp_path)):
        det.yolo_weights("hand_yolov8n", None, files, [str(tmp_path)])
    with pytest.raises(ValueError, match="yolo_model"):
        det.yolo_weights("yolo_file", "(none)", files, [str(tmp_path)])


def test_yolo_without_ultralytics_says_how_to_install(astronaut, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ultralytics", None)
    with pytest.raises(MissingDependencyError, match="pip install ultralytics"):
        det.detect(astronaut, "face_yolov8n", model_path=tmp_path / "face_yolov8n.pt")


def test_yolo_results_become_detections(astronaut, tmp_path, monkeypatch):
    """The adapter against a stand-in for ultralytics' documented Results API."""
    calls = []

    class Tensor(np.ndarray):
        def cpu(self):
            return self

        def numpy(self):
            return np.asarray(self)

    def tensor(values):
        return np.asarray(values, np.float32).view(Tensor)

    class YOLO:
        def __init__(self, path):
            calls.append(path)

        def predict(self, frame, conf, verbose):
            calls.append((frame.shape, conf, frame[0, 0].tolist()))
            boxes = types.SimpleNamespace(xyxy=tensor([[170.2, 80.0, 280.0, 180.0],
                                                       [0, 0, 10, 10]]),
                                          conf=tensor([0.9, 0.4]), cls=tensor([0, 1]))
            masks = types.SimpleNamespace(xy=[np.array([[180, 90], [270, 90], [225, 175]]),
                                              np.zeros((0, 2))])
            return [types.SimpleNamespace(boxes=boxes, masks=masks,
                                          names={0: "face", 1: "hand"})]

    monkeypatch.setitem(sys.modules, "ultralytics", types.SimpleNamespace(YOLO=YOLO))
    found = det.detect(astronaut, "yolo_file", model_path=tmp_path / "m.pt")
    assert calls[0] == str(tmp_path / "m.pt")
    assert calls[1][0] == (512, 512, 3) and calls[1][1] == 0.3
    # BGR, as ultralytics reads numpy arrays
    assert calls[1][2] == (astronaut[0, 0, 0].flip(0) * 255).round().int().tolist()
    assert boxes(found) == [("face", (170, 80, 280, 180)), ("hand", (0, 0, 10, 10))]
    # the polygon, not the box
    assert found.items[0].mask[92:120, 212:238].all() and found.items[0].mask[178:].sum() == 0
    assert found.items[0].mask.sum() < 0.5 * found.items[0].area
    assert found.items[1].mask.sum() == 100  # no polygon: the box


def test_unknown_detector_lists_the_options(astronaut):
    with pytest.raises(ValueError, match="face_short_mediapipe"):
        det.detect(astronaut, "face_yolov9")

# --- selection properties -------------------------------------------------------------------

found_boxes = st.lists(st.tuples(st.integers(0, 90), st.integers(0, 90), st.integers(1, 40),
                                 st.integers(1, 40), st.floats(0, 1)), max_size=8)


@hsettings(max_examples=60, deadline=None)
@given(found_boxes, st.floats(0, 1), st.integers(0, 4),
       st.sampled_from(list(det.SortOrder)))
def test_selection_properties(raw, confidence, max_count, sort_by):
    found = [fake((x, y, min(x + w, 100), min(y + h, 100)), c) for x, y, w, h, c in raw]
    settings = det.DetectSettings(confidence, max_count, sort_by)
    picked = det.select(found, 100, 100, settings)
    assert all(f.confidence >= confidence for f in picked)
    assert not max_count or len(picked) <= max_count
    # no two kept boxes are one object found twice
    assert all(det._iou(a.box, b.box) < det.DUPLICATE_IOU
               for i, a in enumerate(picked) for b in picked[i + 1:])
    # deterministic, and independent of the order the detector reported them in
    def key(items):
        return [(f.box, f.confidence, f.label) for f in items]
    assert key(det.select(list(reversed(found)), 100, 100, settings)) == key(picked)
    keys = {"confidence": lambda f: -f.confidence, "area": lambda f: -det._box_area(f.box),
            "left_to_right": lambda f: f.box[0]}[sort_by.value]
    assert [keys(f) for f in picked] == sorted(keys(f) for f in picked)


@pytest.mark.parametrize("detector, height, width", [
    ("face_full_mediapipe", 3000, 4000),  # 88 tiles of one 12 MP image, about 4 s
    ("hands_mediapipe", 3000, 4000),
    ("face_haar", 1050, 1400),  # one OpenCV call of seconds (24 s at 12 MP)
])
def test_one_large_image_s_detection_stops_within_a_second_of_a_cancel(detector, height, width):
    """The cancel (ComfyUI's interrupt, raised by the callback) 0.3 s into one image's
    detection ends it: checked per tile, and every 0.05 s of a Haar search."""
    image = torch.rand(1, height, width, 3, generator=torch.Generator().manual_seed(0))
    cancel = CancelLater(0.3)
    with pytest.raises(InterruptedError):
        det.detect(image, detector, check_cancel=cancel)
    latency = cancel.latency()
    finish_abandoned_native_calls()
    assert latency < 1.0, f"cancel took {latency:.2f} s"
