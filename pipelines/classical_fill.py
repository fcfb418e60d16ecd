"""Classical fill: OpenCV's diffusion inpainting (Telea, Navier-Stokes) for removal when there is
neither a model nor a reference. No weights, CPU only.

It propagates the mask's surroundings inward, so it suits thin or small areas (scratches, specks,
small logos on plain backgrounds) and smears texture over larger ones.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from . import masks as mask_ops
from .choices import Choice
from .tensors import image_size


class FillMethod(Choice):
    TELEA = "telea"  # fast marching (Telea 2004)
    NS = "ns"        # Navier-Stokes (Bertalmio et al. 2001)


_FLAGS = {FillMethod.TELEA: cv2.INPAINT_TELEA, FillMethod.NS: cv2.INPAINT_NS}


def classical_fill(image: torch.Tensor, mask: torch.Tensor,
                   method: FillMethod | str = FillMethod.TELEA, radius: int = 3) -> torch.Tensor:
    """Fill every pixel where `mask` > 0 from its surroundings with `cv2.inpaint`.

    `image` is `[B, H, W, C]` in 0..1; `mask` is `[B, H, W]` (or one mask for the batch) at the
    image's size. `radius` (1..64) is the neighbourhood, in pixels, each filled pixel draws from.
    Pixels outside the mask are bit-identical to the input.
    """
    batch, height, width = image_size(image)
    method = FillMethod(method)
    if not 1 <= int(radius) <= 64:
        raise ValueError(f"radius: {radius} is outside 1..64")
    mask = mask_ops.as_bhw(mask)
    if mask.shape[0] not in (1, batch) or tuple(mask.shape[1:]) != (height, width):
        raise ValueError(f"mask: shape {tuple(mask.shape)} does not fit images of shape "
                         f"{tuple(image.shape)}")
    support = (mask > 0).expand(batch, height, width).cpu().numpy()
    out = image.clone()
    for index in range(batch):
        # Only the mask's bounding box plus the radius (and a margin for the fast-marching band)
        # is read, so a small mask on a large image costs little.
        box = mask_ops.support_box(support[index], int(radius) + 2)
        if box is None:
            continue
        x0, y0, x1, y1 = box
        hole = support[index, y0:y1, x0:x1]
        window = image[index, y0:y1, x0:x1].detach().float().clamp(0, 1).cpu().numpy()
        # 16-bit channels one at a time: 8-bit colour would quantise the fill, and OpenCV 4.14's
        # Telea on float32 input returns values far outside the input's range.
        levels = np.round(window * 65535).astype(np.uint16)
        filled = np.stack([cv2.inpaint(np.ascontiguousarray(levels[..., channel]),
                                       hole.astype(np.uint8), float(radius), _FLAGS[method])
                           for channel in range(window.shape[-1])], axis=-1)
        patch = torch.from_numpy(filled.astype(np.float32) / 65535).to(out.device, out.dtype)
        region = out[index, y0:y1, x0:x1]
        hole_t = torch.from_numpy(hole).to(out.device)[..., None]
        out[index, y0:y1, x0:x1] = torch.where(hole_t, patch, region)
    return out
