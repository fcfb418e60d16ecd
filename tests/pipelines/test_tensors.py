"""pipelines/tensors.py helpers not covered through their callers."""

from __future__ import annotations

import pytest
import torch

from region_repair.pipelines.tensors import zeros


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int32, torch.bfloat16,
                                   torch.uint8])
def test_zeros_are_zero_writable_and_of_the_asked_dtype(dtype):
    out = zeros((2, 5, 7), dtype, "cpu")
    assert out.shape == (2, 5, 7) and out.dtype == dtype and out.device.type == "cpu"
    assert not bool(out.any())
    out[1, 2:4, 3:6] = 1
    assert int(out.sum()) == 6
    # Each call gives its own memory.
    assert not bool(zeros((2, 5, 7), dtype, "cpu").any())
