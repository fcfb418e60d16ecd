"""Perceptual colour: sRGB <-> CIELAB (D65) and the CIEDE2000 colour difference, in torch.

Images follow the pack's convention (`[B, H, W, C]`, sRGB in 0..1); Lab values are `[..., 3]`
with L in 0..100. kornia does the conversions; CIEDE2000 is written here because kornia has none,
and batched torch keeps it on ComfyUI's device. tests/pipelines/test_colour.py checks it against
colour-science and the published Sharma et al. (2005) test pairs.
"""

from __future__ import annotations

import kornia.color
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

