"""Held-out-style detail repair cases with tight reference shots, shared by
tests/pipelines/repair/test_reference_warp.py and bench/reference_warp.py.

Each case is a real photo (scikit-image's bundled ones) with a logo-like detail drawn into a
plain or textured area (text by cv2.putText, the clean truth), then garbled inside its box
(pixelation with a colour rotation, a blur, or a wrong patch pasted from elsewhere). The
reference is another shot of the truth that shows only `crop` times the detail's box (3x, 6x),
off-centre, rotated, scaled, with another exposure, and saved as JPEG quality 70. The known
homography (reference -> target) comes with it, to measure the recovered one.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from skimage import data

# name, photo, the detail's centre (x, y), text, font scale, colour (RGB 0..255), garbling,
# reference rotation (degrees, counter-clockwise on screen), reference scale (reference px per
# target px), gain. The details are 45-80 px wide, so a 6x reference mostly stays in the photo.
CASES = [
    ("rocket, plain sky", "rocket", (200, 120), "ACME", 0.9, (200, 30, 30), "pixelate", 6, 1.0,
     0.9),
    ("coffee, wood", "coffee", (430, 320), "Mia", 1.0, (20, 60, 160), "blur", -9, 0.7, 1.15),
    ("astronaut, hair", "astronaut", (215, 80), "NASA", 0.8, (40, 40, 120), "patch", 12,
     1.5, 0.85),
    ("chelsea, fur", "chelsea", (225, 75), "TAG 7", 0.7, (250, 220, 40), "pixelate", -4, 1.8,
     1.1),
    ("camera, plain sky", "camera", (330, 60), "FILM", 0.9, (30, 30, 30), "blur", 15, 0.6, 1.2),
    ("brick wall", "brick", (256, 256), "EXIT", 0.9, (20, 180, 40), "patch", -13, 1.2, 0.8),
    ("grass", "grass", (256, 256), "Park", 1.0, (255, 255, 255), "pixelate", 8, 0.8, 1.05),
    ("hubble, dark sky", "hubble_deep_field", (500, 436), "Zoe", 0.9, (200, 200, 255), "blur",
     -6, 2.0, 0.9),
    ("tissue", "immunohistochemistry", (300, 380), "LAB-3", 0.8, (10, 10, 90), "patch", 3, 1.3,
     1.1),
    ("gravel", "gravel", (256, 200), "No 12", 0.8, (250, 120, 0), "pixelate", -11, 0.65, 0.95),
]


@dataclass
class Case:
    name: str
    truth: torch.Tensor        # [H, W, 3] the photo with the clean detail
    garbled: torch.Tensor      # the same, the detail's box garbled
    mask: torch.Tensor         # [H, W] 1 on the detail's box
    reference: torch.Tensor    # [h, w, 3] the tight reference shot
    to_target: np.ndarray      # the true homography, reference pixels -> target pixels
    box: tuple[int, int, int, int]  # the detail: x0, y0, x1, y1


def _rgb(name: str) -> np.ndarray:
    image = getattr(data, name)()
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]


def _hue_rotated(rgb: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0].astype(np.int32) + 60) % 180
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def _garble(truth: np.ndarray, box: tuple[int, int, int, int], how: str) -> np.ndarray:
    x0, y0, x1, y1 = box
    out = truth.copy()
    detail = truth[y0:y1, x0:x1]
    if how == "pixelate":
        small = cv2.resize(detail, ((x1 - x0) // 8, (y1 - y0) // 8), interpolation=cv2.INTER_AREA)
        out[y0:y1, x0:x1] = _hue_rotated(cv2.resize(small, (x1 - x0, y1 - y0),
                                                    interpolation=cv2.INTER_NEAREST))
    elif how == "blur":
        out[y0:y1, x0:x1] = cv2.GaussianBlur(detail, (0, 0), 4)
    else:  # a wrong patch: the same size, from the point-mirrored place, upside down
        height, width = truth.shape[:2]
        out[y0:y1, x0:x1] = truth[height - y1:height - y0, width - x1:width - x0][::-1]
    return out


def make_case(index: int, crop: float) -> Case:
    """Case `index` of CASES with a reference showing `crop` times the detail's box."""
    name, photo, (cx, cy), text, font_scale, color, how, angle, scale, gain = CASES[index]
    truth = np.ascontiguousarray(_rgb(photo))
    thickness = 2
    (text_w, text_h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_DUPLEX, font_scale, thickness)
    x0, y0 = cx - (text_w + 8) // 2, cy - (text_h + base + 8) // 2
    cv2.putText(truth, text, (x0 + 4, y0 + 4 + text_h), cv2.FONT_HERSHEY_DUPLEX, font_scale,
                color, thickness, cv2.LINE_AA)
    box = (x0, y0, x0 + text_w + 8, y0 + text_h + base + 8)
    garbled = _garble(truth, box, how)
    # The reference camera: centred a quarter box off the detail, `crop` x the box in view.
    bx0, by0, bx1, by1 = box
    width, height = (bx1 - bx0) * crop, (by1 - by0) * crop
    centre = np.array([(bx0 + bx1) / 2 + 0.25 * (bx1 - bx0) * np.sign(angle),
                       (by0 + by1) / 2 - 0.25 * (by1 - by0)])
    size = (round(width * scale), round(height * scale))
    # Target -> reference: about `centre`, rotated by `angle` on screen and scaled.
    rotation = np.vstack([cv2.getRotationMatrix2D((0, 0), angle, scale), [0, 0, 1]])
    to_reference = (np.array([[1, 0, size[0] / 2], [0, 1, size[1] / 2], [0, 0, 1]]) @ rotation
                    @ np.array([[1, 0, -centre[0]], [0, 1, -centre[1]], [0, 0, 1]]))
    shot = cv2.warpPerspective(truth, to_reference, size, flags=cv2.INTER_AREA if scale < 1
                               else cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    shot = np.clip(shot.astype(np.float32) * gain + 255 * (1 - gain) / 3, 0, 255).astype(np.uint8)
    _, jpeg = cv2.imencode(".jpg", shot[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 70])
    shot = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[..., ::-1]
    mask = np.zeros(truth.shape[:2], np.float32)
    mask[by0:by1, bx0:bx1] = 1

    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32) / 255)

    return Case(name, tensor(truth), tensor(garbled), torch.from_numpy(mask), tensor(shot),
                np.linalg.inv(to_reference), box)


def homography_error(case: Case, homography: list[list[float]] | np.ndarray) -> float:
    """The largest distance (target px) between where the true and the recovered homography
    put the reference's view of the detail's corners and centre."""
    x0, y0, x1, y1 = case.box
    detail = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [(x0 + x1) / 2, (y0 + y1) / 2]],
                      np.float64)[:, None]
    in_reference = cv2.perspectiveTransform(detail, np.linalg.inv(case.to_target))
    recovered = cv2.perspectiveTransform(in_reference, np.asarray(homography, np.float64))
    return float(np.abs(recovered - detail).max())
