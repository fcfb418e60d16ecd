"""pipelines/core/tensors.py helpers not covered through their callers."""

from __future__ import annotations

import cv2
import pytest
import torch

from region_repair.pipelines.core.tensors import one_cpu_thread, zeros


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


def test_one_cpu_thread_holds_one_thread_inside_and_restores_the_setting_after_the_last_block():
    before = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(2)
    cv2.setNumThreads(2)
    try:
        with one_cpu_thread():
            assert torch.get_num_threads() == 1 and cv2.getNumThreads() == 1
            with one_cpu_thread():
                assert torch.get_num_threads() == 1
            assert torch.get_num_threads() == 1, "an inner block restored the setting early"
        assert torch.get_num_threads() == 2 and cv2.getNumThreads() == 2
        with pytest.raises(RuntimeError):
            with one_cpu_thread():
                raise RuntimeError("restored on the way out too")
        assert torch.get_num_threads() == 2 and cv2.getNumThreads() == 2
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])
