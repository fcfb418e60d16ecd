"""Image and mask encoding for the vendors: PNG bytes, base64, data URIs, and back to tensors."""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..core import tensors
from .http import VendorError


def png(image: torch.Tensor) -> bytes:
    """An RGB PNG of one image `[H, W, C]` (0..1; grey repeated, alpha dropped)."""
    array = tensors.to_uint8(tensors.rgb(image))
    buffer = io.BytesIO()
    Image.fromarray(array, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def mask_png(mask: torch.Tensor, edit_is_black: bool = False) -> bytes:
    """A black-and-white PNG of one mask `[H, W]` (1 = edit): white = edit, or black = edit for
    Photio. Soft values are cut at 0.5, as the vendors expect a binary mask."""
    edit = (mask > 0.5).cpu().numpy()
    array = np.where(edit ^ edit_is_black, 255, 0).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array, "L").save(buffer, format="PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{b64(data)}"


def b64decode(text: str, vendor: str, what: str) -> bytes:
    """Base64 with or without a `data:` prefix, whitespace or padding."""
    text = re.sub(r"^data:[^,]*,", "", text.strip())
    text = re.sub(r"\s+", "", text)
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise VendorError(vendor, "protocol", f"{what} is not valid base64") from None


# No vendor returns more than 4096 px a side; a bigger answer is refused from its header, before
# it is decoded (a 12000^2 result would take gigabytes).
MAX_RESULT_SIDE = 8192


def decode(data: bytes, vendor: str, what: str) -> torch.Tensor:
    """Image bytes (PNG, JPEG, WebP ...) to a float `[H, W, 3]` tensor; sizes beyond
    MAX_RESULT_SIDE are refused from the header, before decoding."""
    try:
        with warnings.catch_warnings():  # PIL warns on huge headers; the size is checked here
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
        with opened:
            width, height = opened.size
            if max(width, height) > MAX_RESULT_SIDE:
                raise VendorError(vendor, "protocol", f"{what} is {width}x{height}; results "
                                  f"larger than {MAX_RESULT_SIDE} px a side are refused "
                                  "before decoding")
            array = np.asarray(opened.convert("RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise VendorError(vendor, "protocol", f"{what} is not an image ({len(data)} bytes)"
                          ) from None
    return torch.from_numpy(array.copy())


def resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """`[H, W, C]` to `[height, width, C]` (pipelines.core.tensors.resize, for one image)."""
    return tensors.resize(image[None], height, width)[0]
