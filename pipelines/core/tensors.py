"""The pack's tensor conventions, in one place.

IMAGE is `[B, H, W, C]` float in 0..1 (C is 3, or 4 with alpha). MASK is `[B, H, W]` float in
0..1 where 1 means "edit". Functions here never write into their inputs.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import threading

import cv2
import numpy as np
import torch
import torch.nn.functional as F

_one_thread_lock = threading.Lock()
_one_thread_depth = 0
_saved_threads = (1, 1)


@contextlib.contextmanager
def one_cpu_thread():
    """Run torch's and OpenCV's CPU ops on one thread inside the block.

    For many small ops (a mask's box, a crop window): each parallel op hands work to a second
    thread and waits for it, and on a loaded machine that thread can wait for a whole scheduler
    slice, so two threads ran such a sequence several times slower than one. The setting is
    process-wide; nested and concurrent blocks restore it once the last one ends."""
    global _one_thread_depth, _saved_threads
    with _one_thread_lock:
        if _one_thread_depth == 0:
            _saved_threads = (torch.get_num_threads(), cv2.getNumThreads())
            torch.set_num_threads(1)
            cv2.setNumThreads(1)
        _one_thread_depth += 1
    try:
        yield
    finally:
        with _one_thread_lock:
            _one_thread_depth -= 1
            if _one_thread_depth == 0:
                torch.set_num_threads(_saved_threads[0])
                cv2.setNumThreads(_saved_threads[1])


# dtypes numpy can allocate for `zeros`.
_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64, torch.int32: np.int32}


# From this size up `zeros` maps fresh memory: calloc (numpy's zeros) takes blocks under glibc's
# mmap threshold, which rises to 32 MiB once such a block is freed, from the heap and then writes
# every byte (a 2048² mask: 1-2 ms each in bench/geometry.py's profile).
_MAPPED_ZEROS_BYTES = 4 << 20


def zeros(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """torch.zeros, but on the CPU from memory that the system zero-fills page by page when it
    is first touched (an anonymous map, or calloc for small sizes), so a full-size frame of
    which only a small box is ever written or read costs almost nothing, where torch.zeros
    writes every byte."""
    if torch.device(device).type != "cpu" or dtype not in _NUMPY_DTYPES:
        return torch.zeros(shape, dtype=dtype, device=device)
    count = math.prod(shape)
    size = count * np.dtype(_NUMPY_DTYPES[dtype]).itemsize
    if size < _MAPPED_ZEROS_BYTES:
        return torch.from_numpy(np.zeros(shape, _NUMPY_DTYPES[dtype]))
    # The tensor holds the map, which is unmapped when the last tensor on it is freed.
    return torch.frombuffer(mmap.mmap(-1, size), dtype=dtype, count=count).view(shape)


def image_size(image: torch.Tensor, name: str = "image") -> tuple[int, int, int]:
    """(batch, height, width) of an IMAGE, with a clear error for anything else."""
    if image.ndim != 4 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{name}: expected an IMAGE [B, H, W, C] with C in 1, 3, 4; "
                         f"got shape {tuple(image.shape)}")
    batch, height, width, _ = image.shape
    return batch, height, width


def resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """`[B, H, W, C]` to `[B, height, width, C]`: bilinear, antialiased, clamped to 0..1. An
    image already of that size is returned as it is."""
    if tuple(image.shape[1:3]) == (height, width):
        return image
    out = F.interpolate(image.movedim(-1, 1), size=(height, width), mode="bilinear",
                        align_corners=False, antialias=True)
    return out.movedim(1, -1).clamp(0, 1)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """Float 0..1 values (any shape) as a uint8 array of 0..255, rounded, on the CPU: what
    OpenCV, mediapipe and PNG encoders take."""
    return (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def rgb(image: torch.Tensor) -> torch.Tensor:
    """The colour channels of `[..., C]` with C in 1..4: grey repeated (a view), alpha dropped."""
    return image[..., :3] if image.shape[-1] >= 3 else image[..., :1].expand(*image.shape[:-1], 3)


def to_uint8_frames(image: torch.Tensor, name: str = "image") -> np.ndarray:
    """IMAGE `[B, H, W, C]` float 0..1 to RGB uint8 `[B, H, W, 3]` (grey repeated, alpha
    dropped): what detectors and encoders take."""
    image_size(image, name)
    return np.ascontiguousarray(to_uint8(rgb(image)))


def to_gray8(image: torch.Tensor) -> np.ndarray:
    """`[H, W, C]` float 0..1 to OpenCV's uint8 grey `[H, W]` (alpha dropped)."""
    return cv2.cvtColor(np.ascontiguousarray(to_uint8(rgb(image))), cv2.COLOR_RGB2GRAY)


def single_image(image: torch.Tensor, name: str) -> torch.Tensor:
    """`[H, W, C]` from `[H, W, C]` or `[1, H, W, C]` with C of 3 or 4, with a clear error."""
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 3 or image.shape[-1] < 3:
        raise ValueError(f"{name}: expected an image [H, W, 3] (or [1, H, W, 3]); got shape "
                         f"{tuple(image.shape)}")
    return image


def long_side_size(height: int, width: int, long_side: float, enlarge: bool = False
                   ) -> tuple[int, int, float]:
    """(height, width, factor) scaled so the long side is `long_side` (only shrunk unless
    `enlarge`), each side rounded and at least 1 px."""
    factor = long_side / max(height, width)
    if not enlarge:
        factor = min(1.0, factor)
    return max(1, round(height * factor)), max(1, round(width * factor)), factor


def resize_long_side(image: torch.Tensor, long_side: float, mode: str = "area",
                     enlarge: bool = False) -> torch.Tensor:
    """`[H, W, C]` float scaled so its long side is `long_side` (see `long_side_size`), with
    `mode` "area" or "bicubic" (antialiased when shrinking, clamped to 0..1)."""
    height, width = image.shape[:2]
    new_height, new_width, factor = long_side_size(height, width, long_side, enlarge)
    if factor == 1:
        return image
    chw = image.movedim(-1, 0)[None].float()
    if mode == "area":
        out = F.interpolate(chw, size=(new_height, new_width), mode="area")
    else:
        out = F.interpolate(chw, size=(new_height, new_width), mode=mode, antialias=factor < 1,
                            align_corners=False).clamp(0, 1)
    return out[0].movedim(0, -1)
