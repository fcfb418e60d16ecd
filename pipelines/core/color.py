"""Perceptual colour: sRGB <-> CIELAB (D65) and the CIEDE2000 colour difference, in torch.

Images follow the pack's convention (`[B, H, W, C]`, sRGB in 0..1); Lab values are `[..., 3]`
with L in 0..100. kornia does the conversions; CIEDE2000 is written here because kornia has none,
and batched torch keeps it on ComfyUI's device. tests/pipelines/core/test_color.py checks it against
colour-science and the published Sharma et al. (2005) test pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import kornia.color
import numpy as np
import torch


def srgb_to_lab(image: torch.Tensor) -> torch.Tensor:
    """`[..., H, W, 3]` sRGB in 0..1 to Lab `[..., H, W, 3]` (float32 or wider)."""
    bchw = image[..., :3].reshape(-1, *image.shape[-3:-1], 3).movedim(-1, 1)
    lab = kornia.color.rgb_to_lab(bchw.float().clamp(0, 1))
    return lab.movedim(1, -1).reshape(*image.shape[:-1], 3)


def lab_to_srgb(lab: torch.Tensor) -> torch.Tensor:
    """Inverse of `srgb_to_lab`, clipped to 0..1."""
    bchw = lab.reshape(-1, *lab.shape[-3:-1], 3).movedim(-1, 1)
    rgb = kornia.color.lab_to_rgb(bchw.float(), clip=True)
    return rgb.movedim(1, -1).reshape(*lab.shape)


def ciede2000(lab1: torch.Tensor, lab2: torch.Tensor) -> torch.Tensor:
    """ΔE2000 between Lab colours `[..., 3]` (broadcasting), with kL = kC = kH = 1."""
    lab1, lab2 = torch.broadcast_tensors(lab1.double(), lab2.double())
    l1, a1, b1 = lab1.unbind(-1)
    l2, a2, b2 = lab2.unbind(-1)
    c_mean = (torch.hypot(a1, b1) + torch.hypot(a2, b2)) / 2
    g = 0.5 * (1 - torch.sqrt(c_mean ** 7 / (c_mean ** 7 + 25.0 ** 7)))
    a1p, a2p = a1 * (1 + g), a2 * (1 + g)
    c1p, c2p = torch.hypot(a1p, b1), torch.hypot(a2p, b2)
    h1p = torch.rad2deg(torch.atan2(b1, a1p)) % 360
    h2p = torch.rad2deg(torch.atan2(b2, a2p)) % 360
    chroma_zero = (c1p * c2p) == 0

    dl = l2 - l1
    dc = c2p - c1p
    dh = h2p - h1p
    dh = torch.where(dh > 180, dh - 360, torch.where(dh < -180, dh + 360, dh))
    dh = torch.where(chroma_zero, torch.zeros_like(dh), dh)
    dh_term = 2 * torch.sqrt(c1p * c2p) * torch.sin(torch.deg2rad(dh) / 2)

    l_mean = (l1 + l2) / 2
    cp_mean = (c1p + c2p) / 2
    h_sum = h1p + h2p
    h_mean = torch.where((h1p - h2p).abs() > 180,
                         torch.where(h_sum < 360, (h_sum + 360) / 2, (h_sum - 360) / 2), h_sum / 2)
    h_mean = torch.where(chroma_zero, h_sum, h_mean)
    def cos(degrees: torch.Tensor) -> torch.Tensor:
        return torch.cos(torch.deg2rad(degrees))

    t = (1 - 0.17 * cos(h_mean - 30) + 0.24 * cos(2 * h_mean) + 0.32 * cos(3 * h_mean + 6)
         - 0.20 * cos(4 * h_mean - 63))
    d_theta = 30 * torch.exp(-(((h_mean - 275) / 25) ** 2))
    r_c = 2 * torch.sqrt(cp_mean ** 7 / (cp_mean ** 7 + 25.0 ** 7))
    s_l = 1 + 0.015 * (l_mean - 50) ** 2 / torch.sqrt(20 + (l_mean - 50) ** 2)
    s_c = 1 + 0.045 * cp_mean
    s_h = 1 + 0.015 * cp_mean * t
    r_t = -torch.sin(torch.deg2rad(2 * d_theta)) * r_c
    return torch.sqrt((dl / s_l) ** 2 + (dc / s_c) ** 2 + (dh_term / s_h) ** 2
                      + r_t * (dc / s_c) * (dh_term / s_h))


def parse_hex(text: str, name: str = "colour") -> tuple[float, float, float]:
    """`#2E5A3B` or `2e5a3b` (or `#abc`) to sRGB in 0..1."""
    digits = text.strip().lstrip("#")
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    if len(digits) != 6 or any(d not in "0123456789abcdefABCDEF" for d in digits):
        raise ValueError(f"{name}: {text!r} is not a hex colour; expected #RRGGBB, e.g. #2E5A3B")
    return tuple(int(digits[i:i + 2], 16) / 255 for i in (0, 2, 4))



def kmeans(samples: np.ndarray, clusters: int, *, attempts: int = 2, iterations: int = 20,
           epsilon: float = 0.5, max_samples: int = 20000) -> tuple[np.ndarray, np.ndarray, int]:
    """Up to `clusters` k-means clusters of `samples[::step]` (`[N, D]`; the step keeps at most
    `max_samples`), seeded so the result repeats: the labels, the centres and the step. The
    best of `attempts` k-means++ starts, each stopping after `iterations` or when centres move
    less than `epsilon`."""
    step = max(1, len(samples) // max_samples)
    samples = samples[::step].astype(np.float32)
    cv2.setRNGSeed(0)  # k-means++ seeding is random
    _, labels, centres = cv2.kmeans(samples, min(clusters, len(samples)), None,
                                    (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER,
                                     iterations, epsilon), attempts, cv2.KMEANS_PP_CENTERS)
    return labels.ravel(), centres, step


# CIE Y of linear sRGB (D65), as kornia's rgb_to_xyz, so L* here equals srgb_to_lab's.
Y_OF_LINEAR_RGB = (0.212671, 0.715160, 0.072169)


def lab_hex(lab: torch.Tensor) -> str:
    rgb = lab_to_srgb(lab.float().reshape(1, 1, 3)).flatten()
    return "#" + "".join(f"{round(float(v) * 255):02X}" for v in rgb)


def rgb_lab(rgb: Sequence[float]) -> torch.Tensor:
    return srgb_to_lab(torch.tensor(rgb, dtype=torch.float32).reshape(1, 1, 3)).flatten().double()


def lab_to_srgb_in_gamut(lab: torch.Tensor) -> torch.Tensor:
    """Lab `[..., 3]` -> sRGB in 0..1. Colours outside sRGB move towards the grey of the *same
    luminance* in linear light (the largest fraction of their chroma that fits), instead of
    having each channel clipped: clipping flattens a garment's highlights and folds at the gamut
    edge (a pastel with R = 255, a saturated navy), this keeps their lightness exactly."""
    flat = lab.reshape(-1, 1, 1, 3).movedim(-1, 1).float()
    linear = kornia.color.rgb_to_linear_rgb(kornia.color.lab_to_rgb(flat, clip=False))
    linear = linear[:, :, 0, 0]
    weights = torch.tensor(Y_OF_LINEAR_RGB, device=linear.device, dtype=linear.dtype)
    luminance = (linear @ weights).clamp(0, 1)[:, None]
    excess = linear - luminance
    room = torch.where(excess > 0, (1 - luminance) / excess.clamp_min(1e-12),
                       torch.where(excess < 0, luminance / (-excess).clamp_min(1e-12),
                                   torch.ones_like(excess)))
    fraction = room.amin(dim=1, keepdim=True).clamp(0, 1)
    mapped = (luminance + fraction * excess).clamp(0, 1)
    srgb = kornia.color.linear_rgb_to_rgb(mapped[:, :, None, None])[:, :, 0, 0]
    return srgb.clamp(0, 1).reshape(lab.shape)


def in_gamut(lab: torch.Tensor) -> torch.Tensor:
    """A Lab colour `[3]` with its chroma reduced (same L*, same hue) until sRGB can show it."""
    rgb = kornia.color.lab_to_rgb(lab.float().reshape(1, 3, 1, 1), clip=False).flatten()
    if bool(((rgb >= -1e-4) & (rgb <= 1 + 1e-4)).all()):
        return lab.double()
    low, high = 0.0, 1.0
    for _ in range(30):
        middle = (low + high) / 2
        trial = torch.tensor([float(lab[0]), float(lab[1]) * middle, float(lab[2]) * middle])
        rgb = kornia.color.lab_to_rgb(trial.reshape(1, 3, 1, 1), clip=False).flatten()
        low, high = (middle, high) if bool(((rgb >= 0) & (rgb <= 1)).all()) else (low, middle)
    return torch.tensor([float(lab[0]), float(lab[1]) * low, float(lab[2]) * low],
                        dtype=torch.float64)


def lightness_of(rgb: torch.Tensor) -> torch.Tensor:
    """CIELAB L* of sRGB pixels `[N, 3]`, without computing a* and b*."""
    linear = kornia.color.rgb_to_linear_rgb(rgb.float().clamp(0, 1).T[:, :, None])[:, :, 0].T
    y = linear @ torch.tensor(Y_OF_LINEAR_RGB, device=rgb.device)
    return 116 * torch.where(y > 0.008856, y.clamp_min(1e-12).pow(1 / 3), 7.787 * y + 4 / 29) - 16
