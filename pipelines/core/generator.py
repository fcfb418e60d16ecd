"""The diffusion seam between pipelines and ComfyUI: a `Generator` regenerates masked crops.

Pipelines take one as an argument (Detail Repair's modes, the Detailer, recolour's refinement);
the nodes build it from ComfyUI's model, VAE and conditioning (nodes/_sampling.py), and tests
pass tiny stand-ins. Nothing here imports ComfyUI.
"""

from __future__ import annotations

from typing import Protocol

import torch


class Generator(Protocol):
    def __call__(self, pixels: torch.Tensor, mask: torch.Tensor, hidden: torch.Tensor,
                 seed: int, denoise: float) -> torch.Tensor:
        """Regenerate `pixels` ([N, h, w, 3]) where `mask` ([N, h, w]) is above 0, seeded by
        `seed`, at strength `denoise`. `hidden` marks what an inpaint model's masked-image input
        must not show (the corrupt detail); elsewhere the generator sees the pixels as they
        are. A generator whose model needs crop sides in multiples of more than
        LATENT_PIXELS (Flux and SD3 patch their latents 2x2) says so in a `size_multiple`
        attribute (see `size_multiple`)."""


LATENT_PIXELS = 8  # pixels per latent side of the SD-family VAEs: the default crop multiple


def size_multiple(generator: Generator | None) -> int:
    """The multiple, in pixels, that both sides of `generator`'s crops must be."""
    return getattr(generator, "size_multiple", LATENT_PIXELS)
