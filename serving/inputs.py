"""Request checks that run before any work: image fields decoded from base64 and checked from
their header (format, size) before anything decodes their pixels, and the per-key job bound.
Nothing here touches the filesystem; a request field never becomes a path."""

from __future__ import annotations

import io
import math
import re
import struct
import warnings
from collections import defaultdict
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from ..pipelines.vendors import images
from ..pipelines.vendors.http import VendorError, origin
from .config import Limits

# Formats ComfyUI's LoadImage reads, by their magic bytes, and the extension a saved copy gets.
FORMATS = {b"\x89PNG\r\n\x1a\n": "png", b"\xff\xd8\xff": "jpg"}
WEBP = (b"RIFF", b"WEBP")


class RequestError(ValueError):
    """A request the server refuses: `status` (400, 401, 404, 413, 422, 429 ...), a message
    naming the field, and `field` itself."""

    def __init__(self, status: int, message: str, field: str | None = None,
                 retry_after: float | None = None):
        super().__init__(message)
        self.status, self.field, self.retry_after = status, field, retry_after


@dataclass(frozen=True)
class ImageUpload:
    data: bytes
    extension: str   # png, jpg or webp: from the magic bytes, never from the request
    width: int
    height: int


def sniff(data: bytes, field: str, limits: Limits) -> ImageUpload:
    """The image's format and size from its header alone; refused before decoding when it is
    not PNG, JPEG or WebP (400) or larger than the limits (413)."""
    extension = next((ext for magic, ext in FORMATS.items() if data.startswith(magic)), None)
    if extension is None and data[:4] == WEBP[0] and data[8:12] == WEBP[1]:
        extension = "webp"
    if extension is None:
        raise RequestError(400, f"{field}: not a PNG, JPEG or WebP image", field)
    try:
        with warnings.catch_warnings():  # the size is checked here, not by PIL's bomb warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as opened:  # reads the header only
                width, height = opened.size
    except (UnidentifiedImageError, OSError, ValueError, struct.error,
            Image.DecompressionBombError):
        raise RequestError(400, f"{field}: the image header cannot be read", field) from None
    if min(width, height) < 1:
        raise RequestError(400, f"{field}: the image is empty ({width}x{height})", field)
    if max(width, height) > limits.max_image_side or width * height > limits.max_image_pixels:
        raise RequestError(413, f"{field}: {width}x{height} is over this server's limit "
                           f"({limits.max_image_side} px a side, {limits.max_image_pixels} "
                           "pixels)", field)
    return ImageUpload(data, extension, width, height)


def base64_image(value: object, field: str, limits: Limits) -> ImageUpload:
    """A base64 image field (bare or as a data: URI)."""
    if not isinstance(value, str) or not value.strip():
        raise RequestError(400, f"{field}: required (a base64 image)", field)
    try:
        data = images.b64decode(value, "serve", field)
    except VendorError:
        raise RequestError(400, f"{field}: not valid base64", field) from None
    return sniff(data, field, limits)


def is_url(value: object) -> bool:
    return isinstance(value, str) and re.match(r"\s*https?://", value, re.I) is not None


def allowed_url(value: str, field: str, hosts: tuple[str, ...]) -> str:
    """A URL input from an origin the owner allow-listed; anything else is refused (no request
    from this server to a place a caller chooses)."""
    target = origin(value.strip())
    if target is None or target not in {origin(host) for host in hosts}:
        raise RequestError(400, f"{field}: URL inputs are refused by this server unless their "
                           "host is allow-listed by its owner (image_url_hosts); send the image "
                           "as base64", field)
    return value.strip()


class JobLimiter:
    """At most `limit` unfinished jobs per key; one more gets 429 with a Retry-After."""

    def __init__(self, limit: int):
        self.limit = limit
        self._active: dict[str, set[str]] = defaultdict(set)

    def acquire(self, key_id: str, job_id: str, retry_after: float) -> None:
        active = self._active[key_id]
        if len(active) >= self.limit:
            raise RequestError(429, f"this key already has {len(active)} jobs queued or "
                               f"running (limit {self.limit}); retry later",
                               retry_after=max(1, math.ceil(retry_after)))
        active.add(job_id)

    def release(self, key_id: str, job_id: str) -> None:
        self._active[key_id].discard(job_id)

    def active(self, key_id: str) -> int:
        return len(self._active[key_id])
