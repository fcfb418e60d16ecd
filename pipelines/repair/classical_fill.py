"""Classical fill: removal when there is neither a model nor a reference. No weights, CPU only.

- `telea`, `ns`: OpenCV's diffusion inpainting. It propagates the mask's surroundings inward, so
  it suits thin or small areas (scratches, specks, small logos on plain backgrounds) and smears
  texture over larger ones.
- `patchmatch`: PatchMatch texture synthesis (Barnes et al. 2009) from InvokeAI's PyPatchMatch
  (optional package `pypatchmatch`). It fills the hole with patches copied from around it, so
  foliage, gravel, brick or fur continue as texture instead of a smear.
- `texture` (Detail Repair's default for removal): PatchMatch inside, giving way to Telea within
  TEXTURE_EDGE_BAND px of the mask's edge. Next to the known pixels diffusion is the closer guess
  (PatchMatch's copied texture rarely lines up there, a visible seam); deeper inside, texture
  beats a smear. Measured in docs/engines.md.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import cv2
import numpy as np
import torch

from ..core.cancel import never_cancelled, run_cancellable
from ..core.choices import Choice
from ..core.errors import MissingDependencyError
from ..core.tensors import image_size, to_uint8
from ..geometry import masks as mask_ops


class FillMethod(Choice):
    TELEA = "telea"            # fast marching (Telea 2004)
    NS = "ns"                  # Navier-Stokes (Bertalmio et al. 2001)
    PATCHMATCH = "patchmatch"  # PatchMatch texture synthesis (Barnes et al. 2009)
    TEXTURE = "texture"        # PatchMatch inside, Telea along the mask's edge

    @property
    def copies_texture(self) -> bool:
        return self in (FillMethod.PATCHMATCH, FillMethod.TEXTURE)


_FLAGS = {FillMethod.TELEA: cv2.INPAINT_TELEA, FillMethod.NS: cv2.INPAINT_NS}
PATCHMATCH_INSTALL = "pip install pypatchmatch==2.2.0"
# PatchMatch's search is randomised; the library restarts every fill from a global seed, which we
# set before each call so that the same input gives the same fill whatever else set it.
PATCHMATCH_SEED = 0
# Px from the mask's edge over which `texture` goes from Telea (at the edge) to PatchMatch.
TEXTURE_EDGE_BAND = 8


def _patch_match():
    try:
        from patchmatch import patch_match  # optional: InvokeAI's prebuilt PyPatchMatch
    except ImportError as error:
        raise MissingDependencyError(
            "fill method 'patchmatch' needs PyPatchMatch; install it into ComfyUI's Python: "
            f"{PATCHMATCH_INSTALL} (or use 'telea' or 'ns')") from error
    if not patch_match.patchmatch_available:
        raise MissingDependencyError(
            "PyPatchMatch is installed but its native library did not load (see the log); "
            f"reinstall it: {PATCHMATCH_INSTALL}")
    return patch_match


def _diffusion_fill(window: np.ndarray, hole: np.ndarray, method: FillMethod, radius: int,
                    check_cancel: Callable[[], None]) -> np.ndarray:
    # 16-bit channels one at a time: 8-bit colour would quantise the fill, and OpenCV 4.14's
    # Telea on float32 input returns values far outside the input's range.
    levels = np.round(window * 65535).astype(np.uint16)
    hole = hole.astype(np.uint8)
    filled = np.stack([run_cancellable(partial(cv2.inpaint, np.ascontiguousarray(levels[..., c]),
                                               hole, float(radius), _FLAGS[method]), check_cancel)
                       for c in range(window.shape[-1])], axis=-1)
    return filled.astype(np.float32) / 65535


def _patchmatch_fill(window: np.ndarray, hole: np.ndarray, radius: int,
                     check_cancel: Callable[[], None]) -> np.ndarray:
    # PyPatchMatch takes 8-bit images only; the fill is copied from 8-bit patches (within half a
    # level of the source), and every pixel outside the hole is put back from the float input.
    patch_match = _patch_match()
    patch_match.set_random_seed(PATCHMATCH_SEED)
    channels = window.shape[-1]
    rgb = to_uint8(torch.from_numpy(np.repeat(window, 3, axis=-1) if channels == 1
                                    else window[..., :3]))
    hole = hole.astype(np.uint8)
    # One native call of seconds on a large hole: waited for in slices, so that an interrupt
    # ends the prompt at once (the abandoned fill finishes in the background, result dropped).
    # Each fill restarts its search from the seed, so one running on does not change the next.
    filled = run_cancellable(lambda: patch_match.inpaint(rgb, hole, patch_size=radius),
                             check_cancel).astype(np.float32) / 255
    if channels == 1:
        return filled[..., :1]
    # Alpha has no texture to continue: it is diffused instead.
    alpha = window[..., 3:]
    if alpha.shape[-1]:
        alpha = _diffusion_fill(np.ascontiguousarray(alpha), hole, FillMethod.TELEA, 3,
                                check_cancel)
    return np.concatenate([filled, alpha], axis=-1)


def _texture_fill(window: np.ndarray, hole: np.ndarray, radius: int,
                  check_cancel: Callable[[], None]) -> np.ndarray:
    texture = _patchmatch_fill(window, hole, radius, check_cancel)
    smooth = _diffusion_fill(window, hole, FillMethod.TELEA, 3, check_cancel)
    depth = cv2.distanceTransform(hole.astype(np.uint8), cv2.DIST_L2, 3)
    weight = np.clip(depth / TEXTURE_EDGE_BAND - 1, 0, 1)[..., None]
    return smooth + weight * (texture - smooth)


def classical_fill(image: torch.Tensor, mask: torch.Tensor,
                   method: FillMethod | str = FillMethod.TELEA, radius: int = 3,
                   check_cancel: Callable[[], None] = never_cancelled) -> torch.Tensor:
    """Fill every pixel where `mask` > 0 from its surroundings.

    `image` is `[B, H, W, C]` in 0..1; `mask` is `[B, H, W]` (or one mask for the batch) at the
    image's size. `radius` (1..64) is, for `telea` and `ns`, the neighbourhood in pixels each
    filled pixel draws from; for `patchmatch` and `texture`, the radius of the compared patches
    ((2 radius + 1)² pixels: larger follows larger structures, and is much slower). Pixels
    outside the mask are bit-identical to the input. `check_cancel` (ComfyUI's interrupt: it
    raises to stop) is called at least every 0.05 s, also inside one native fill.
    """
    batch, height, width = image_size(image)
    method = FillMethod(method)
    if not 1 <= int(radius) <= 64:
        raise ValueError(f"radius: {radius} is outside 1..64")
    mask = mask_ops.require_fit(mask, image)
    support = (mask > 0).expand(batch, height, width).cpu().numpy()
    out = image.clone()
    for index in range(batch):
        box = mask_ops.support_box(support[index])
        if box is None:
            continue
        # Only the mask's bounding box plus a margin is read, so a small mask on a large image
        # costs little: the radius (and the fast-marching band) for diffusion; for PatchMatch
        # also context to copy texture from, the box's own size on each side.
        margin = int(radius) + 2
        if method.copies_texture:
            margin += max(box[2] - box[0], box[3] - box[1])
        x0, y0, x1, y1 = mask_ops.support_box(support[index], margin)
        hole = support[index, y0:y1, x0:x1]
        window = image[index, y0:y1, x0:x1].detach().float().clamp(0, 1).cpu().numpy()
        fill = {FillMethod.PATCHMATCH: _patchmatch_fill,
                FillMethod.TEXTURE: _texture_fill}.get(method)
        filled = (fill(window, hole, int(radius), check_cancel) if fill is not None
                  else _diffusion_fill(window, hole, method, int(radius), check_cancel))
        patch = torch.from_numpy(filled).to(out.device, out.dtype)
        region = out[index, y0:y1, x0:x1]
        hole_t = torch.from_numpy(hole).to(out.device)[..., None]
        out[index, y0:y1, x0:x1] = torch.where(hole_t, patch, region)
    return out
