"""Request checks that run before any work: image fields decoded from base64 (or fetched from an
allow-listed URL) and checked from their header (format, size) before anything decodes their
pixels, and the per-key job bound; and the answer's PNG stripped of ComfyUI's metadata.
Nothing here touches the filesystem; a request field never becomes a path."""

from __future__ import annotations

import io
import math
import re
import struct
import warnings
from collections import defaultdict
from dataclasses import dataclass

import aiohttp
from PIL import Image, UnidentifiedImageError

from ..pipelines.vendors import images
from ..pipelines.vendors.http import VendorError, origin
from .config import Limits

# Formats ComfyUI's LoadImage reads, by their magic bytes, and the extension a saved copy gets.
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FORMATS = {PNG_MAGIC: "png", b"\xff\xd8\xff": "jpg"}
TEXT_CHUNKS = {b"tEXt", b"iTXt", b"zTXt"}
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
    return isinstance(value, str) and re.match(r"\s*https?://", value, re.IGNORECASE) is not None


def allowed_url(value: str, field: str, hosts: tuple[str, ...]) -> str:
    """A URL input from an origin the owner allow-listed; anything else is refused (no request
    from this server to a place a caller chooses)."""
    target = origin(value.strip())
    if target is None or target not in {origin(host) for host in hosts}:
        raise RequestError(400, f"{field}: URL inputs are refused by this server unless their "
                           "host is allow-listed by its owner (image_url_hosts); send the image "
                           "as base64", field)
    return value.strip()


async def fetch_image(url: str, field: str, hosts: tuple[str, ...], limits: Limits
                      ) -> ImageUpload:
    """An allow-listed URL input, downloaded without following redirects (a redirect could
    lead anywhere), within the body limit and a 30 s timeout, then checked like base64."""
    url = allowed_url(url, field, hosts)
    timeout = aiohttp.ClientTimeout(total=30)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, \
                session.get(url, allow_redirects=False) as response:
            if response.status != 200:
                raise RequestError(400, f"{field}: the URL answered HTTP {response.status}",
                                   field)
            data = await response.content.read(limits.max_body_bytes + 1)
    except (aiohttp.ClientError, TimeoutError):
        raise RequestError(400, f"{field}: the URL could not be fetched", field) from None
    if len(data) > limits.max_body_bytes:
        raise RequestError(413, f"{field}: the image at the URL is over {limits.max_body_bytes} "
                           "bytes", field)
    return sniff(data, field, limits)


async def fetch_urls(body: dict, fields: tuple[str, ...], hosts: tuple[str, ...],
                     limits: Limits) -> dict[str, ImageUpload]:
    """The body's URL inputs among `fields`, fetched when their host is allow-listed (else the
    400 that names the field)."""
    return {name: await fetch_image(body[name], name, hosts, limits)
            for name in fields if is_url(body.get(name))}


def without_text_chunks(png: bytes) -> bytes:
    """A PNG without its tEXt/iTXt/zTXt chunks: ComfyUI writes the prompt into every saved
    image (server-side file and model names), which a vendor's answer does not carry. Other
    data passes through untouched; anything that is not a PNG is returned as is."""
    if not png.startswith(PNG_MAGIC):
        return png
    kept, position = [png[:8]], 8
    while position + 12 <= len(png):
        length = struct.unpack(">I", png[position:position + 4])[0]
        end = position + 12 + length
        if png[position + 4:position + 8] not in TEXT_CHUNKS:
            kept.append(png[position:end])
        position = end
    return b"".join(kept)


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
