"""Every node refuses non-finite FLOAT inputs and masks holding NaN or infinity at its entry,
naming the input (JSON's NaN passes ComfyUI's min/max check)."""

from __future__ import annotations

import asyncio
import inspect
import math

import pytest
import torch
from comfy_api.latest import io


def inputs_of(kind):
    from region_repair.nodes import NODES

    return [pytest.param(node, spec.id, id=f"{node.__name__}.{spec.id}")
            for node in NODES for spec in node.GET_SCHEMA().inputs if isinstance(spec, kind)]


def call(node, **inputs):
    """Only the bad input is given: the check must come before anything else runs."""
    clone = node.PREPARE_CLASS_CLONE({"UNIQUE_ID": "5"})
    if inspect.iscoroutinefunction(clone.execute):
        return asyncio.run(clone.execute(**inputs))
    return clone.execute(**inputs)


@pytest.fixture(scope="module", autouse=True)
def loaded(pack):
    return pack


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("node, name", inputs_of(io.Float.Input))
def test_every_float_input_refuses_non_finite_values(node, name, value):
    with pytest.raises(ValueError, match=rf"^{name}: must be a finite number, got {value}$"):
        call(node, **{name: value})


@pytest.mark.parametrize("node, name", inputs_of(io.Mask.Input))
def test_every_mask_input_refuses_nan_and_infinity(node, name):
    for bad in (math.nan, math.inf):
        mask = torch.zeros(1, 8, 8)
        mask[0, 3, 3] = bad
        with pytest.raises(ValueError, match=rf"^{name}: the mask holds NaN or infinite values"):
            call(node, **{name: mask})


def test_every_node_with_float_or_mask_inputs_is_covered():
    # The parametrisations above found the inputs; make sure they are not empty by accident.
    assert len(inputs_of(io.Float.Input)) >= 15 and len(inputs_of(io.Mask.Input)) >= 6
