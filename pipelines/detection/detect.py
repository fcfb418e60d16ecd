"""Object detection for the detailer (OctoAI adetailer's `detector`), offline and deterministic.

Detectors, by option name (`Detector`):
- mediapipe 0.10.21 (optional; its `.tflite` models ship in the wheel): face short-range and
  full-range (box masks, as adetailer), face mesh (a face-shaped mask from the face-oval contour),
  eyes from the mesh with iris landmarks, hands (`model_complexity=0`), person (selfie
  segmentation, one detection per connected part). The full-range face, mesh, eyes and hand
  detectors also run on overlapping square tiles (`tiles`): mediapipe shrinks the whole image to
  its 192x192 input, where the faces and hands of full-body and group photos vanish;
- OpenCV 4.x Haar cascades (bundled with opencv-python-headless < 5): faces and eyes, the fallback
  when mediapipe is absent;
- YOLOv8 `.pt` files the user puts in ComfyUI's `ultralytics` model folder, through the optional
  `ultralytics` package. Nothing is ever downloaded.

mediapipe, cv2 and ultralytics are imported only when a detector needs them, so the pack imports
without them; a missing one raises `MissingDependencyError` with the install commands.

Every detection carries its image's batch index, a pixel box, a confidence, a label and a shape
mask at the image's size. `Detections.union_mask` and `object_mask` turn them into the `[B, H, W]`
masks that `pipelines.geometry.regions.prepare_regions` (DilateBlurPad) takes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..core.cancel import never_cancelled, run_cancellable
from ..core.choices import Choice
from ..core.errors import MissingDependencyError
from ..core.tensors import image_size, to_uint8_frames
from ..geometry.masks import hull_mask, support_box

MEDIAPIPE_INSTALL = ("pip install --no-deps mediapipe==0.10.21\n"
                     "pip install -r requirements-mediapipe.txt")
ULTRALYTICS_INSTALL = "pip install ultralytics"
# Upper bounds handed to mediapipe's multi-object solutions; max_num_detections trims after.
MAX_FACES = 20
MAX_HANDS = 20
# Two boxes overlapping this much (intersection over union) are one object found twice.
DUPLICATE_IOU = 0.5
# Tiles are squares of the image's short side, then half of it, and so on while they stay this
# large: twice the 192x192 input of mediapipe's face and palm detectors.
MIN_TILE = 384
# A detection lying this much inside a more confident one (intersection over its own area) is
# that object again, seen cut by a tile edge or whole in another tile.
TILE_DUPLICATE_SHARE = 0.5
# FaceMesh runs on a square crop this many face-box widths wide around each face found.
MESH_CROP = 2.0
# Selfie segmentation works at 256x256: foreground parts under this share of the image are
# upsampling specks, not people.
MIN_PERSON_PART = 0.001


class Detector(Choice):
    FACE_YOLOV8N = "face_yolov8n"
    HAND_YOLOV8N = "hand_yolov8n"
    FACE_FULL_MEDIAPIPE = "face_full_mediapipe"
    FACE_SHORT_MEDIAPIPE = "face_short_mediapipe"
    FACE_MESH_MEDIAPIPE = "face_mesh_mediapipe"
    EYES_MESH_MEDIAPIPE = "eyes_mesh_mediapipe"
    HANDS_MEDIAPIPE = "hands_mediapipe"
    PERSON_MEDIAPIPE = "person_mediapipe"
    FACE_HAAR = "face_haar"
    EYES_HAAR = "eyes_haar"
    YOLO_FILE = "yolo_file"  # the .pt file chosen in the node's yolo_model input


# The vendor's documented YOLO detector names, and the file each expects in the `ultralytics`
# model folder.
YOLO_FILES = {Detector.FACE_YOLOV8N: "face_yolov8n.pt", Detector.HAND_YOLOV8N: "hand_yolov8n.pt"}
YOLO_DETECTORS = (*YOLO_FILES, Detector.YOLO_FILE)


class SortOrder(Choice):
    CONFIDENCE = "confidence"        # most confident first
    AREA = "area"                    # largest box first
    LEFT_TO_RIGHT = "left_to_right"  # box left edge, then top edge


@dataclass(frozen=True)
class DetectSettings:
    confidence: float = 0.3          # adetailer default; lower finds more
    max_num_detections: int = 0      # per image, keeping the most confident; 0 = no limit
    sort_by: SortOrder = SortOrder.CONFIDENCE
    min_area_ratio: float = 0.0      # box area / image area
    max_area_ratio: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "sort_by", SortOrder(self.sort_by))
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence: {self.confidence} is outside 0..1")
        if self.max_num_detections < 0:
            raise ValueError(f"max_num_detections: {self.max_num_detections} is negative; "
                             "use 0 for no limit")
        if not 0.0 <= self.min_area_ratio <= self.max_area_ratio <= 1.0:
            raise ValueError(f"min_area_ratio, max_area_ratio: {self.min_area_ratio}, "
                             f"{self.max_area_ratio}; need 0 <= min <= max <= 1")


@dataclass(frozen=True)
class Detection:
    """One object: in image `batch_index`, box pixels [x0, x1) x [y0, y1), a confidence in 0..1,
    a label (`face`, `eye_left`, `hand_right`, `person`, a YOLO class name, ...; left and right
    are the subject's own), and its shape `mask` [H, W] (float 0..1, CPU) at the image's size."""
    batch_index: int
    box: tuple[int, int, int, int]
    confidence: float
    label: str
    mask: torch.Tensor

    @property
    def area(self) -> int:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])

    def describe(self) -> str:
        x0, y0, x1, y1 = self.box
        return (f"image {self.batch_index} {self.label} {self.confidence:.2f} "
                f"x{x0}-{x1} y{y0}-{y1}")


@dataclass
class Detections:
    """The RR_DETECTIONS value: every object found in a `[B, H, W, C]` image batch, grouped by
    image (ascending batch index) and, within an image, in the requested sort order. That order
    is the detailer's processing order."""
    detector: str
    batch_size: int
    height: int
    width: int
    items: list[Detection]
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def counts(self) -> list[int]:
        """Detections per image of the batch (adetailer's num_objects_detected, per image)."""
        return [sum(d.batch_index == b for d in self.items) for b in range(self.batch_size)]

    def object_mask(self, index: int) -> torch.Tensor:
        """Detection `index` alone as a `[B, H, W]` mask (zero in every other image): the mask
        input of `regions.prepare_regions` for one object."""
        out = torch.zeros(self.batch_size, self.height, self.width)
        item = self.items[index]
        out[item.batch_index] = item.mask
        return out

    def union_mask(self) -> torch.Tensor:
        """All detections of each image merged (pixel maximum), `[B, H, W]`."""
        out = torch.zeros(self.batch_size, self.height, self.width)
        for item in self.items:
            out[item.batch_index] = torch.maximum(out[item.batch_index], item.mask)
        return out

    def object_masks(self) -> torch.Tensor:
        """One `[H, W]` mask per detection, in order, as a MASK batch `[N, H, W]` (N may be 0)."""
        if not self.items:
            return torch.zeros(0, self.height, self.width)
        return torch.stack([item.mask for item in self.items])

    def with_masks(self, masks: list[torch.Tensor], notes: list[str] = ()) -> Detections:
        """The same detections with new shape masks (SAM refinement), one `[H, W]` each."""
        if len(masks) != len(self.items):
            raise ValueError(f"masks: {len(masks)} masks for {len(self.items)} detections")
        items = [replace(item, mask=mask.float().cpu()) for item, mask in zip(self.items, masks)]
        return replace(self, items=items, notes=[*self.notes, *notes])


@dataclass(frozen=True)
class _Found:
    """A raw detection: box (x0, y0, x1, y1) in pixels, confidence, label, bool mask [H, W]."""
    box: tuple[int, int, int, int]
    confidence: float
    label: str
    mask: np.ndarray


# --- image and shape helpers ----------------------------------------------------------------

def _clip_box(x0: float, y0: float, x1: float, y1: float, height: int, width: int
              ) -> tuple[int, int, int, int]:
    return (min(max(round(x0), 0), width), min(max(round(y0), 0), height),
            min(max(round(x1), 0), width), min(max(round(y1), 0), height))


def _box_mask(box: tuple[int, int, int, int], height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    mask[box[1]:box[3], box[0]:box[2]] = True
    return mask


def _intersection(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """The area two boxes (x0, y0, x1, y1) share."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0


def _iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    inter = _intersection(a, b)
    return inter / (_box_area(a) + _box_area(b) - inter) if inter else 0.0


def _inside_share(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """How much of box `a` lies inside box `b` (intersection over a's area)."""
    inter = _intersection(a, b)
    return inter / max(_box_area(a), 1) if inter else 0.0


def tiles(height: int, width: int) -> list[tuple[int, int, int, int]]:
    """The windows (x0, y0, x1, y1) a tiled detector searches: the whole image, then squares of
    the short side, half of it, a quarter, ... while at least MIN_TILE (or the short side, for a
    smaller image), each level overlapping by half a tile so every object lies whole in one."""
    windows = [(0, 0, width, height)]
    side = min(height, width)
    while True:
        step = max(side // 2, 1)
        ys = list(range(0, height - side + 1, step))
        xs = list(range(0, width - side + 1, step))
        ys += [height - side] if ys[-1] + side < height else []
        xs += [width - side] if xs[-1] + side < width else []
        windows += [(x, y, x + side, y + side) for y in ys for x in xs
                    if (x, y, x + side, y + side) not in windows]
        if side // 2 < MIN_TILE:
            return windows
        side //= 2


def _tiled(run: Callable[[np.ndarray], list[_Found]], check_cancel: Callable[[], None]
           ) -> Callable[[np.ndarray], list[_Found]]:
    """`run` on every window of `tiles`, found objects moved back into the whole frame; an object
    found again (mostly inside a more confident one) is kept once. `check_cancel` is called
    before each tile: one image has 88 tiles at 12 MP, seconds in all."""
    def run_tiles(frame: np.ndarray) -> list[_Found]:
        height, width = frame.shape[:2]
        found = []
        for x0, y0, x1, y1 in tiles(height, width):
            check_cancel()
            for f in run(np.ascontiguousarray(frame[y0:y1, x0:x1])):
                mask = np.zeros((height, width), bool)
                mask[y0:y1, x0:x1] = f.mask
                box = (f.box[0] + x0, f.box[1] + y0, f.box[2] + x0, f.box[3] + y0)
                found.append(replace(f, box=box, mask=mask))
        found.sort(key=lambda f: (-f.confidence, f.box))
        kept: list[_Found] = []
        for f in found:
            if all(_inside_share(f.box, k.box) < TILE_DUPLICATE_SHARE
                   and _inside_share(k.box, f.box) < TILE_DUPLICATE_SHARE for k in kept):
                kept.append(f)
        return kept
    return run_tiles


# --- mediapipe ----------------------------------------------------------------------------

def _mediapipe_solutions():
    try:
        import mediapipe  # optional: the bundled offline models
    except ImportError as error:
        raise MissingDependencyError(
            "mediapipe is not installed, so the *_mediapipe detectors are unavailable (the "
            "*_haar detectors work without it). Install the lean way, into ComfyUI's Python:\n"
            f"{MEDIAPIPE_INSTALL}\n(a plain `pip install mediapipe` pulls jax and downgrades "
            "numpy)") from error
    return mediapipe.solutions


def _landmark_points(landmarks, height: int, width: int) -> np.ndarray:
    return np.array([(p.x * width, p.y * height) for p in landmarks.landmark], np.float64)


def _indices(edges) -> list[int]:
    return sorted({i for edge in edges for i in edge})


def _face_boxes(detector, frame: np.ndarray) -> list[tuple[tuple[int, int, int, int], float]]:
    height, width = frame.shape[:2]
    found = []
    for detection in detector.process(frame).detections or []:
        rel = detection.location_data.relative_bounding_box
        box = _clip_box(rel.xmin * width, rel.ymin * height, (rel.xmin + rel.width) * width,
                        (rel.ymin + rel.height) * height, height, width)
        found.append((box, float(detection.score[0])))
    return found


@contextmanager
def _mediapipe_faces(model_selection: int, confidence: float,
                     check_cancel: Callable[[], None]) -> Iterator[Callable]:
    solutions = _mediapipe_solutions()
    with solutions.face_detection.FaceDetection(model_selection=model_selection,
                                                min_detection_confidence=confidence) as detector:
        def run(frame: np.ndarray) -> list[_Found]:
            height, width = frame.shape[:2]
            return [_Found(box, score, "face", _box_mask(box, height, width))
                    for box, score in _face_boxes(detector, frame)]
        # The full-range model is for small faces: search tiles too. The short-range one is for
        # close-ups, which tiles would cut.
        yield _tiled(run, check_cancel) if model_selection == 1 else run


@contextmanager
def _mediapipe_mesh(eyes: bool, confidence: float,
                    check_cancel: Callable[[], None]) -> Iterator[Callable]:
    solutions = _mediapipe_solutions()
    mesh_api = solutions.face_mesh
    # The subject's own left and right: the eye contour plus the iris ring (refine_landmarks).
    parts = ({"eye_left": _indices(mesh_api.FACEMESH_LEFT_EYE | mesh_api.FACEMESH_LEFT_IRIS),
              "eye_right": _indices(mesh_api.FACEMESH_RIGHT_EYE | mesh_api.FACEMESH_RIGHT_IRIS)}
             if eyes else {"face": _indices(mesh_api.FACEMESH_FACE_OVAL)})
    # FaceMesh finds faces with the short-range detector, which misses the small faces of
    # full-body and group photos: the tiled full-range detector finds them, and FaceMesh runs on
    # a crop around each, with that face's score (FaceMesh reports none).
    with _mediapipe_faces(1, confidence, check_cancel) as faces, \
            mesh_api.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                              min_detection_confidence=confidence) as mesh:
        def run(frame: np.ndarray) -> list[_Found]:
            height, width = frame.shape[:2]
            found = []
            for face_found in faces(frame):
                check_cancel()
                x0, y0, x1, y1 = face_found.box
                half = MESH_CROP * max(x1 - x0, y1 - y0) / 2
                cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
                cx0, cy0, cx1, cy1 = _clip_box(cx - half, cy - half, cx + half, cy + half,
                                               height, width)
                crop = np.ascontiguousarray(frame[cy0:cy1, cx0:cx1])
                for landmarks in mesh.process(crop).multi_face_landmarks or []:
                    points = _landmark_points(landmarks, cy1 - cy0, cx1 - cx0) + (cx0, cy0)
                    for label, index in parts.items():
                        shape = hull_mask(points[index], height, width)
                        box = support_box(shape)
                        if box is not None:
                            found.append(_Found(box, face_found.confidence, label, shape))
            return found
        yield run


@contextmanager
def _mediapipe_hands(confidence: float, check_cancel: Callable[[], None]) -> Iterator[Callable]:
    solutions = _mediapipe_solutions()
    # model_complexity=0 (lite) found more hands than 1 in trials on real photos.
    with solutions.hands.Hands(static_image_mode=True, max_num_hands=MAX_HANDS,
                               model_complexity=0, min_detection_confidence=confidence) as hands:
        def run(frame: np.ndarray) -> list[_Found]:
            height, width = frame.shape[:2]
            result = hands.process(frame)
            found = []
            for landmarks, handedness in zip(result.multi_hand_landmarks or [],
                                             result.multi_handedness or []):
                points = _landmark_points(landmarks, height, width)
                # Landmarks sit on the joints' centre lines: grow the hull by about half a
                # finger's width so the mask covers the skin.
                span = float(np.ptp(points, axis=0).max())
                mask = hull_mask(points, height, width, grow=max(1, round(0.08 * span)))
                box = support_box(mask)
                if box is None:
                    continue
                # mediapipe names handedness for a mirrored (selfie) image; photos are not.
                side = {"Left": "right", "Right": "left"}[handedness.classification[0].label]
                found.append(_Found(box, float(handedness.classification[0].score),
                                    f"hand_{side}", mask))
            return found
        yield _tiled(run, check_cancel)


@contextmanager
def _mediapipe_person() -> Iterator[Callable]:
    import cv2

    solutions = _mediapipe_solutions()
    with solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as segmenter:
        def run(frame: np.ndarray) -> list[_Found]:
            probability = segmenter.process(frame).segmentation_mask
            foreground = (probability > 0.5).astype(np.uint8)
            count, labels, stats, _ = cv2.connectedComponentsWithStats(foreground, connectivity=8)
            found = []
            for label in range(1, count):
                if stats[label, cv2.CC_STAT_AREA] < MIN_PERSON_PART * foreground.size:
                    continue
                x, y, w, h = (int(v) for v in stats[label, :4])
                part = labels == label
                # Confidence: the model's mean foreground probability over the part.
                found.append(_Found((x, y, x + w, y + h), float(probability[part].mean()),
                                    "person", part))
            return found
        yield run


# --- OpenCV Haar cascades -------------------------------------------------------------------

def _cascade(name: str):
    import cv2

    if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
        raise MissingDependencyError(
            "this OpenCV has no Haar cascades (OpenCV 5 ships none); install "
            "`pip install \"opencv-python-headless>=4.8,<5\"`")
    cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / name))
    if cascade.empty():
        raise MissingDependencyError(f"OpenCV could not load its bundled {name}; reinstall "
                                     "`pip install \"opencv-python-headless>=4.8,<5\"`")
    return cascade


def haar_confidence(neighbours: int) -> float:
    """A Haar hit's neighbour count as a score in 0..1 (monotone; not a probability): 5
    neighbours, OpenCV's customary `minNeighbors`, score 0.3, the adetailer default."""
    return 1.0 - 0.7 ** (neighbours / 5)


def _haar_hits(cascade, grey: np.ndarray, min_size: int, check_cancel: Callable[[], None]
               ) -> list[tuple[tuple[int, ...], float]]:
    # minNeighbors=1 keeps weak hits; the confidence threshold filters them uniformly. One call
    # takes seconds on a large photo (24 s on 12 MP of noise): it is waited for in slices, and
    # an abandoned one finishes in the background.
    rects, neighbours = run_cancellable(
        lambda: cascade.detectMultiScale2(grey, scaleFactor=1.1, minNeighbors=1,
                                          minSize=(min_size, min_size)), check_cancel)
    return [((int(x), int(y), int(x + w), int(y + h)), haar_confidence(int(n)))
            for (x, y, w, h), n in zip(rects, neighbours)]


@contextmanager
def _haar(eyes: bool, confidence: float, check_cancel: Callable[[], None]) -> Iterator[Callable]:
    import cv2

    faces = _cascade("haarcascade_frontalface_default.xml")
    eye_cascade = _cascade("haarcascade_eye.xml") if eyes else None

    def run(frame: np.ndarray) -> list[_Found]:
        height, width = frame.shape[:2]
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        found = []
        for box, score in _haar_hits(faces, grey, 24, check_cancel):
            if eye_cascade is None:
                found.append(_Found(box, score, "face", _box_mask(box, height, width)))
                continue
            if score < confidence:
                continue
            x0, y0, x1, y1 = box
            # Eyes lie in the face box's upper part; the two strongest hits there are the eyes.
            top = grey[y0:y0 + (y1 - y0) * 5 // 8, x0:x1]
            hits = sorted(_haar_hits(eye_cascade, top, max(8, (x1 - x0) // 10), check_cancel),
                          key=lambda hit: (-hit[1], hit[0]))[:2]
            for (ex0, ey0, ex1, ey1), eye_score in hits:
                eye_box = (x0 + ex0, y0 + ey0, x0 + ex1, y0 + ey1)
                # On the image's right half of the face: the subject's left eye.
                side = "left" if (eye_box[0] + eye_box[2]) > (x0 + x1) else "right"
                found.append(_Found(eye_box, eye_score, f"eye_{side}",
                                    _box_mask(eye_box, height, width)))
        return found
    yield run


# --- ultralytics YOLO -----------------------------------------------------------------------

def yolo_weights(detector: Detector | str, chosen: str | None, files: dict[str, Path],
                 folders: list[str]) -> Path:
    """The `.pt` file a YOLO detector uses: for face_yolov8n / hand_yolov8n the file of that name
    anywhere in the `ultralytics` model folder (`files`: listed name -> path), for yolo_file the
    `chosen` one. A clear error says where to put a missing file; nothing is downloaded."""
    detector = Detector(detector)
    where = "\n".join(f"  {folder}" for folder in folders) or "  (no folder registered)"
    if detector is Detector.YOLO_FILE:
        if chosen in files:
            return Path(files[chosen])
        raise ValueError(f"yolo_model: {chosen!r} is not a file in ComfyUI's ultralytics model "
                         f"folder; put YOLOv8 .pt files in one of:\n{where}")
    wanted = YOLO_FILES[detector]
    for name in sorted(files):
        if Path(name).name == wanted:
            return Path(files[name])
    raise ValueError(f"detector {detector.value}: {wanted} not found. Put your copy of it "
                     f"(for example in a bbox/ subfolder) into one of:\n{where}\nThe pack never "
                     "downloads models.")


@contextmanager
def _yolo(path: Path | None, confidence: float) -> Iterator[Callable]:
    import cv2

    if path is None:
        raise ValueError("model_path: a YOLO detector needs a .pt file (see yolo_weights)")
    try:
        from ultralytics import YOLO  # optional; the user's own models
    except ImportError as error:
        raise MissingDependencyError(
            f"the YOLO detectors need the optional `ultralytics` package: {ULTRALYTICS_INSTALL}"
            " (the *_mediapipe and *_haar detectors need no model file)") from error
    model = YOLO(str(path))

    def run(frame: np.ndarray) -> list[_Found]:
        height, width = frame.shape[:2]
        # ultralytics reads numpy arrays as BGR, like OpenCV.
        (result,) = model.predict(np.ascontiguousarray(frame[..., ::-1]), conf=confidence,
                                  verbose=False)
        boxes = result.boxes.xyxy.cpu().numpy()
        scores = result.boxes.conf.cpu().numpy()
        classes = result.boxes.cls.cpu().numpy().astype(int)
        polygons = result.masks.xy if result.masks is not None else None
        found = []
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            box = _clip_box(x0, y0, x1, y1, height, width)
            if polygons is not None and len(polygons[i]) >= 3:
                canvas = np.zeros((height, width), np.uint8)
                cv2.fillPoly(canvas, [np.round(polygons[i]).astype(np.int32)], 1)
                mask = canvas.astype(bool)
            else:
                mask = _box_mask(box, height, width)
            found.append(_Found(box, float(scores[i]), str(result.names[int(classes[i])]), mask))
        return found
    yield run


# --- selection and the entry point ----------------------------------------------------------

def select(found: list[_Found], height: int, width: int, settings: DetectSettings
           ) -> list[_Found]:
    """Confidence threshold and area ratios, duplicates dropped (box overlap >= DUPLICATE_IOU),
    then the `max_num_detections` most confident, then the sort order. Ties break on position
    and label, so the order is deterministic."""
    area = height * width
    kept = [f for f in found
            if f.confidence >= settings.confidence and f.box[2] > f.box[0] and f.box[3] > f.box[1]
            and settings.min_area_ratio <= _box_area(f.box) / area <= settings.max_area_ratio]

    def tie(f: _Found) -> tuple:
        return f.box[0], f.box[1], f.box[2], f.box[3], f.label

    kept.sort(key=lambda f: (-f.confidence, -_box_area(f.box), *tie(f)))
    # One object found twice (mediapipe's hands can return a hand twice): keep the more confident.
    unique: list[_Found] = []
    for f in kept:
        if all(_iou(f.box, other.box) < DUPLICATE_IOU for other in unique):
            unique.append(f)
    kept = unique
    if settings.max_num_detections:
        kept = kept[:settings.max_num_detections]
    order = {SortOrder.CONFIDENCE: lambda f: (-f.confidence, -_box_area(f.box), *tie(f)),
             SortOrder.AREA: lambda f: (-_box_area(f.box), -f.confidence, *tie(f)),
             SortOrder.LEFT_TO_RIGHT: lambda f: (*tie(f), -f.confidence)}[settings.sort_by]
    return sorted(kept, key=order)


def _box_area(box: tuple[int, int, int, int]) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])


def _backend(detector: Detector, settings: DetectSettings, model_path: Path | None,
             check_cancel: Callable[[], None]):
    confidence = settings.confidence
    if detector in YOLO_DETECTORS:
        return _yolo(model_path, confidence)
    return {
        Detector.FACE_SHORT_MEDIAPIPE: lambda: _mediapipe_faces(0, confidence, check_cancel),
        Detector.FACE_FULL_MEDIAPIPE: lambda: _mediapipe_faces(1, confidence, check_cancel),
        Detector.FACE_MESH_MEDIAPIPE: lambda: _mediapipe_mesh(False, confidence, check_cancel),
        Detector.EYES_MESH_MEDIAPIPE: lambda: _mediapipe_mesh(True, confidence, check_cancel),
        Detector.HANDS_MEDIAPIPE: lambda: _mediapipe_hands(confidence, check_cancel),
        Detector.PERSON_MEDIAPIPE: _mediapipe_person,
        Detector.FACE_HAAR: lambda: _haar(False, confidence, check_cancel),
        Detector.EYES_HAAR: lambda: _haar(True, confidence, check_cancel),
    }[detector]()


def detect(image: torch.Tensor, detector: Detector | str,
           settings: DetectSettings = DetectSettings(), model_path: Path | None = None,
           step: Callable[[], None] | None = None,
           check_cancel: Callable[[], None] = never_cancelled) -> Detections:
    """Run `detector` on every image of an IMAGE batch `[B, H, W, C]`.

    `model_path` is the `.pt` file for the YOLO detectors (see `yolo_weights`). `step` is called
    once per image (progress and interrupt); `check_cancel` (it raises to stop) within one image:
    per tile of the tiled detectors, per face of the mesh, and every 0.05 s of a Haar search.
    Deterministic: the same input gives the same detections in the same order.
    """
    detector = Detector(detector)
    batch, height, width = image_size(image)
    items: list[Detection] = []
    with _backend(detector, settings, model_path, check_cancel) as run:
        for index in range(batch):
            if step is not None:
                step()
            # One frame at a time: converting a batch of large photos at once takes seconds.
            frame = to_uint8_frames(image[index:index + 1])[0]
            for f in select(run(frame), height, width, settings):
                items.append(Detection(index, f.box, round(f.confidence, 4), f.label,
                                       torch.from_numpy(f.mask.astype(np.float32))))
    found = Detections(detector.value, batch, height, width, items)
    counts = found.counts()
    found.notes.append(f"{detector.value}: {len(items)} detected"
                       + (f" ({', '.join(map(str, counts))} per image)" if batch > 1 else ""))
    return found


def detection_summary(found: Detections, limit: int = 8) -> list[str]:
    """Short lines for the node's text: the first `limit` detections."""
    lines = [item.describe() for item in found.items[:limit]]
    if len(found.items) > limit:
        lines.append(f"... and {len(found.items) - limit} more")
    return lines
