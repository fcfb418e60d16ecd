"""Seamless blend: new content inside a mask, the untouched surroundings as its boundary.

Gradient-domain (Poisson) image editing (Pérez, Gangnet and Blake 2003) with the pixels just
outside the mask as the fixed boundary. Inside the mask the result keeps the new content's
gradients and differs from it by the smoothest correction (a membrane, the solution of Laplace's
equation) that meets the original exactly across the edge. So:

- nothing of the old content survives inside the mask (unlike an alpha ramp, whose outer pixels
  keep part of it);
- the edge shows no step, whatever the generator's tone there;
- every pixel outside the mask is copied, so it is bit-identical, by construction.

The membrane is solved only on the mask's box (a sparse direct solve, SuperLU), so the cost
follows the mask, not the image. Large masks are solved on a coarser grid for the smooth
interior and corrected at full resolution near the edge, where the detail is.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import cv2
import numpy as np
import scipy.sparse as sparse
import scipy.sparse.linalg as sparse_linalg
import torch
import torch.nn.functional as F

from ..core.cancel import never_cancelled, run_cancellable
from .masks import support_box

# Above this many masked pixels the membrane is first solved at half resolution: the direct
# solve's fill-in grows faster than the pixel count, and the membrane is smooth away from the
# edge, so only a band along the edge needs the full grid.
MAX_DIRECT_UNKNOWNS = 60_000
# Width, in pixels, of the band along the edge solved at full resolution over a coarse start.
EDGE_BAND = 32
# Keeps a mask component that touches no untouched pixel (it fills the whole box, bordered only
# by the image's edge) solvable; its membrane is then zero, so the new content is used as is.
_ANCHOR = 1e-9
_STEPS = ((0, 1), (0, -1), (1, 0), (-1, 0))


def _membrane(boundary: np.ndarray, inside: np.ndarray, fixed: np.ndarray | None = None
              ) -> np.ndarray:
    """Solve Laplace's equation for `[h, w, C]` values on the `inside` pixels, with `boundary`'s
    values on the outside pixels around them as the fixed boundary (4-neighbours; beyond the
    array's edge nothing is fixed). `fixed`, where set, pins inside pixels to their `boundary`
    values as well. Returns `[h, w, C]`: the solution inside, zero elsewhere."""
    height, width, channels = boundary.shape
    free = inside if fixed is None else inside & ~fixed
    count = int(free.sum())
    out = np.zeros_like(boundary)
    if count == 0:
        return out
    index = np.full((height, width), -1, np.int64)
    index[free] = np.arange(count)
    rows, cols, values = [], [], []
    diagonal = np.full(count, _ANCHOR)
    rhs = np.zeros((count, channels))
    ys, xs = np.nonzero(free)
    own = index[ys, xs]
    for dy, dx in _STEPS:
        ny, nx = ys + dy, xs + dx
        valid = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
        ny, nx, me = ny[valid], nx[valid], own[valid]
        diagonal[me] += 1
        neighbour = index[ny, nx]
        unknown = neighbour >= 0
        rows.append(me[unknown])
        cols.append(neighbour[unknown])
        values.append(np.full(int(unknown.sum()), -1.0))
        given = ~unknown  # outside the mask, or pinned: a known value
        np.add.at(rhs, me[given], boundary[ny[given], nx[given]])
    rows.append(np.arange(count))
    cols.append(np.arange(count))
    values.append(diagonal)
    matrix = sparse.csc_matrix((np.concatenate(values), (np.concatenate(rows),
                                                        np.concatenate(cols))),
                               shape=(count, count))
    # The matrix is symmetric and diagonally dominant: no pivoting is needed, so SuperLU may
    # keep a symmetric fill-reducing order (minimum degree on A + A^T), which factors about a
    # fifth faster than its default column order here (bench/geometry.py --seamless-sizes).
    solution = sparse_linalg.splu(matrix, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0,
                                  options={"SymmetricMode": True}).solve(rhs)
    out[free] = solution.reshape(count, channels)
    if fixed is not None:
        out[inside & fixed] = boundary[inside & fixed]
    return out


def _correction(difference: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """The membrane for `difference` (old - new) given on the pixels around `inside`."""
    if not difference[~inside].any():
        # New content that agrees with the old outside the mask (the embedded engines, which
        # work on the image itself) needs no correction: the solve would give exactly zero.
        return np.zeros_like(difference)
    if int(inside.sum()) <= MAX_DIRECT_UNKNOWNS:
        return _membrane(difference, inside)
    # Coarse start: the half-resolution membrane (its boundary from the full one, pooled), then
    # the full grid near the edge with the coarse values pinned deeper inside.
    height, width, _ = difference.shape
    known = torch.from_numpy(np.where(inside[..., None], 0.0, difference)).permute(2, 0, 1)
    weight = torch.from_numpy((~inside).astype(np.float64))[None]
    pooled = F.avg_pool2d(known[None], 2, ceil_mode=True)[0]
    pooled_weight = F.avg_pool2d(weight[None], 2, ceil_mode=True)[0]
    coarse_inside = (pooled_weight == 0)[0].numpy()
    coarse_boundary = (pooled / pooled_weight.clamp_min(1e-12)).permute(1, 2, 0).numpy()
    coarse = _correction(coarse_boundary, coarse_inside)
    coarse = np.where(coarse_inside[..., None], coarse, coarse_boundary)
    up = F.interpolate(torch.from_numpy(coarse).permute(2, 0, 1)[None], scale_factor=2,
                       mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
    up = up[:height, :width]
    near_edge = cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, 3) <= EDGE_BAND
    return _membrane(np.where(inside[..., None], up, difference), inside,
                     fixed=inside & ~near_edge)


def seamless_blend(old: torch.Tensor, new: torch.Tensor, weight: torch.Tensor,
                   check_cancel: Callable[[], None] = never_cancelled) -> torch.Tensor:
    """`new` put into `old` where `weight` > 0, seamlessly. `old`, `new`: `[h, w, C]`; `weight`:
    `[h, w]` in 0..1 (1 = replace). Where `weight` is partial the seamless result is mixed with
    `old` by it (a soft mask edge stays soft); where it is 0 `old` is copied. `check_cancel`:
    see seamless_blend_many."""
    return seamless_blend_many(old[None], new[None], weight, check_cancel)[0]


def seamless_blend_many(old: torch.Tensor, new: torch.Tensor, weight: torch.Tensor,
                        check_cancel: Callable[[], None] = never_cancelled) -> torch.Tensor:
    """`seamless_blend` of k pairs, `old` and `new` `[k, h, w, C]`, under one `weight`: the
    system depends on the weight alone, so all k are solved with one factorisation (each pair's
    channels are columns of one right-hand side, solved independently).

    A large mask takes seconds (8 s for 2500² on the 2-core machine) in NumPy, SciPy's
    SuperLU and torch, which release the GIL for all but fractions of a second: the blend runs
    on a worker thread and `check_cancel` (it raises to stop) is called every 0.05 s meanwhile;
    an abandoned blend finishes in the background, its result dropped."""
    return run_cancellable(partial(_seamless_blend_many, old, new, weight), check_cancel)


def _seamless_blend_many(old: torch.Tensor, new: torch.Tensor, weight: torch.Tensor
                         ) -> torch.Tensor:
    inside_t = weight > 0
    box = support_box(inside_t, 1)
    if box is None:
        return old.clone()
    x0, y0, x1, y1 = box
    count, channels = old.shape[0], old.shape[-1]
    old_box = old[:, y0:y1, x0:x1].detach().cpu().double().numpy()
    new_box = new[:, y0:y1, x0:x1, :channels].detach().cpu().double().numpy()
    inside = inside_t[y0:y1, x0:x1].cpu().numpy()
    height, width = inside.shape
    # [k, h, w, C] as [h, w, k*C] and back.
    difference = (old_box - new_box).transpose(1, 2, 0, 3).reshape(height, width, -1)
    correction = _correction(difference, inside).reshape(height, width, count, channels)
    solved = new_box + correction.transpose(2, 0, 1, 3)
    patch = torch.from_numpy(solved).to(old.device, old.dtype).clamp(0, 1)
    out = old.clone()
    alpha = weight[y0:y1, x0:x1, None].to(old.dtype)
    region = out[:, y0:y1, x0:x1]
    out[:, y0:y1, x0:x1] = torch.where(alpha > 0, torch.lerp(region, patch, alpha), region)
    return out
