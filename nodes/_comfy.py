"""The ComfyUI internals the nodes rely on, kept in one module (only `comfy_api` is versioned)."""

from __future__ import annotations

import comfy.model_management as model_management
import torch


def compute_device() -> torch.device:
    """Where ComfyUI wants work done (the GPU, or the CPU under --cpu)."""
    return model_management.get_torch_device()


def to_output(tensor: torch.Tensor) -> torch.Tensor:
    """Hand a result back on ComfyUI's intermediate device (the CPU unless --gpu-only)."""
    return tensor.to(model_management.intermediate_device())
