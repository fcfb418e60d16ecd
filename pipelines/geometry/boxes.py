"""Mask and region geometry: pure torch, no ComfyUI imports.

Boxes follow PiktID's `mask.bbox_norm`: `[x, y, w, h]`, origin top-left, as fractions of the
image in 0..1, or the same in pixels. A pixel belongs to a box when its centre lies inside it
(the usual rasterisation rule), so adjacent boxes tile without gaps or overlaps; a box narrower
than one pixel still covers the pixel holding its centre, so no valid box rasterises to
nothing.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence

import torch

Box = tuple[float, float, float, float]
# Float noise from upstream arithmetic (0.1 + 0.9) must not turn a valid box into an error.
_TOLERANCE = 1e-6


def parse_boxes(text: str, name: str = "bbox") -> list[Box]:
    """Parse one or several `[x, y, w, h]` boxes from widget text.

    Accepted forms: `0.1, 0.2, 0.3, 0.4`; a JSON list `[0.1, 0.2, 0.3, 0.4]`; a JSON list of
    lists; several boxes on separate lines or separated by `;`.
    """
    stripped = text.strip()
    if not stripped:
        raise ValueError(f"{name}: no box given; expected [x, y, w, h], e.g. 0.25, 0.25, 0.5, 0.5")
    if stripped.startswith("["):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as error:
            raise ValueError(f"{name}: not valid JSON ({error.msg}): {stripped!r}") from None
        rows = data if data and isinstance(data[0], list) else [data]
    else:
        rows = [re.split(r"[,\s]+", part.strip()) for part in re.split(r"[;\n]", stripped)
                if part.strip()]
    boxes = []
    for index, row in enumerate(rows):
        label = f"{name}[{index}]" if len(rows) > 1 else name
        if not isinstance(row, list):  # a JSON list mixing boxes and numbers
            raise ValueError(f"{label}: expected a box [x, y, w, h], got {row!r}; in a list of "
                             "boxes every item must be a box")
        if len(row) != 4:
            raise ValueError(f"{label}: expected 4 numbers [x, y, w, h], got {len(row)}: {row!r}")
        try:
            values = tuple(float(value) for value in row)
        except (TypeError, ValueError):
            raise ValueError(f"{label}: expected 4 numbers [x, y, w, h], got {row!r}") from None
        if not all(math.isfinite(value) for value in values):
            raise ValueError(f"{label}: every value must be a finite number, got {row!r}")
        boxes.append(values)
    return boxes


def validate_box(box: Box, height: int, width: int, units: str = "normalized",
                 name: str = "bbox") -> None:
    """Raise a ValueError naming the offending value and its allowed range.

    `units` is "normalized" (fractions 0..1) or "pixels" (of an image `width` x `height`).
    """
    x, y, w, h = box
    limit_x, limit_y = (1.0, 1.0) if units == "normalized" else (float(width), float(height))
    tolerance = _TOLERANCE * max(limit_x, limit_y)
    for field, value, limit in (("x", x, limit_x), ("y", y, limit_y)):
        if not -tolerance <= value <= limit + tolerance:
            raise ValueError(f"{name}.{field} = {value} is outside the allowed range "
                             f"0..{limit:g} ({units})")
    for field, value, limit in (("w", w, limit_x), ("h", h, limit_y)):
        if not 0 < value <= limit + tolerance:
            raise ValueError(f"{name}.{field} = {value} must be in (0, {limit:g}] ({units}): "
                             "a box needs a positive width and height")
    if x + w > limit_x + tolerance:
        raise ValueError(f"{name}: x + w = {x + w:g} exceeds {limit_x:g}; the box must lie "
                         f"inside the image ({units})")
    if y + h > limit_y + tolerance:
        raise ValueError(f"{name}: y + h = {y + h:g} exceeds {limit_y:g}; the box must lie "
                         f"inside the image ({units})")


def _pixel_span(start: float, length: float, size: int) -> tuple[int, int]:
    """Pixels [first, end) whose centres lie in [start, start + length), as fractions of size."""
    first = math.ceil(start * size - 0.5)
    end = math.ceil((start + length) * size - 0.5)
    if end <= first:  # thinner than a pixel: keep the pixel that holds the box's centre
        first = min(int((start + length / 2) * size), size - 1)
        end = first + 1
    return max(first, 0), min(end, size)


def boxes_to_spans(boxes: Sequence[Box], height: int, width: int, units: str = "normalized",
                   name: str = "bbox") -> list[tuple[int, int, int, int]]:
    """Validate boxes and rasterise each to pixel bounds (x0, y0, x1, y1), ends exclusive."""
    if units not in ("normalized", "pixels"):
        raise ValueError(f"units = {units!r}; allowed: 'normalized', 'pixels'")
    scale_x, scale_y = (1.0, 1.0) if units == "normalized" else (float(width), float(height))
    spans = []
    for index, box in enumerate(boxes):
        validate_box(box, height, width, units, f"{name}[{index}]" if len(boxes) > 1 else name)
        x, y, w, h = box
        x0, x1 = _pixel_span(x / scale_x, w / scale_x, width)
        y0, y1 = _pixel_span(y / scale_y, h / scale_y, height)
        spans.append((x0, y0, x1, y1))
    return spans


def boxes_mask(spans: Sequence[tuple[int, int, int, int]], batch: int, height: int, width: int,
               device: torch.device | str = "cpu") -> torch.Tensor:
    """The union of pixel boxes as a `[batch, height, width]` float mask, 1 inside."""
    bounds = torch.tensor(spans, dtype=torch.int64, device=device).reshape(-1, 4)
    cols = torch.arange(width, device=device)
    rows = torch.arange(height, device=device)
    inside_cols = (cols >= bounds[:, 0:1]) & (cols < bounds[:, 2:3])  # [N, W]
    inside_rows = (rows >= bounds[:, 1:2]) & (rows < bounds[:, 3:4])  # [N, H]
    union = (inside_rows[:, :, None] & inside_cols[:, None, :]).any(dim=0)
    return union.to(torch.float32).expand(batch, height, width).clone()


def mask_from_bbox_text(text: str, batch: int, height: int, width: int,
                        units: str = "normalized", device: torch.device | str = "cpu",
                        name: str = "bbox") -> torch.Tensor:
    """MaskFromBBox: parse, validate and rasterise boxes given as widget text into a mask."""
    spans = boxes_to_spans(parse_boxes(text, name), height, width, units, name)
    return boxes_mask(spans, batch, height, width, device)
