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
