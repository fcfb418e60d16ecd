"""The ComfyUI internals the nodes rely on, kept in one module (only `comfy_api` is versioned)."""

from __future__ import annotations

import functools
import inspect
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path

import comfy.model_management as model_management
import comfy.utils
import folder_paths
import torch
from comfy_api.latest import io

logger = logging.getLogger("region_repair")


def compute_device() -> torch.device:
    """Where ComfyUI wants work done (the GPU, or the CPU under --cpu)."""
    return model_management.get_torch_device()


def to_output(tensor: torch.Tensor) -> torch.Tensor:
    """Hand a result back on ComfyUI's intermediate device (the CPU unless --gpu-only)."""
    return tensor.to(model_management.intermediate_device())


def progress_and_cancel(total: int) -> Callable[[], None]:
    """A callback for a pipeline loop: each call first honours an interrupt from ComfyUI, then
    advances the node's progress bar by one of `total` steps."""
    bar = comfy.utils.ProgressBar(total)

    def step() -> None:
        model_management.throw_exception_if_processing_interrupted()
        bar.update(1)

    return step


def report(node_id: str | None, notes: list[str]) -> None:
    """Tell the user what was done to their input: in the log, and as text on the node."""
    if not notes:
        return
    text = "; ".join(notes)
    logger.info("%s", text)
    # The running server's module; importing it here would start its import chain in-process.
    server = sys.modules.get("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    if node_id is not None and instance is not None:
        instance.send_progress_text(text, node_id)


def register_model_folder(name: str, extensions: tuple[str, ...]) -> None:
    """Give ComfyUI a `models/<name>` folder unless another pack or extra_model_paths.yaml
    already registered one (theirs is kept)."""
    if name not in folder_paths.folder_names_and_paths:
        folder_paths.folder_names_and_paths[name] = (
            [str(Path(folder_paths.models_dir) / name)], set(extensions))


def model_files(name: str) -> dict[str, Path]:
    """The files of a model folder, as ComfyUI lists them (relative name -> full path)."""
    return {file: Path(folder_paths.get_full_path(name, file))
            for file in folder_paths.get_filename_list(name)}


def model_folders(name: str) -> list[str]:
    return folder_paths.get_folder_paths(name)


def check_interrupt() -> None:
    """Raise ComfyUI's interrupt exception if the user cancelled; advances no progress."""
    model_management.throw_exception_if_processing_interrupted()


# Per node (keyed by its define_schema function: ComfyUI runs each execution on a fresh clone
# of the class): its FLOAT and MASK input names.
_CHECKED_INPUTS: dict[Callable, tuple[tuple[str, ...], tuple[str, ...]]] = {}


def _checked_inputs(cls: type) -> tuple[tuple[str, ...], tuple[str, ...]]:
    key = cls.define_schema.__func__
    if key not in _CHECKED_INPUTS:
        inputs = cls.define_schema().inputs  # not GET_SCHEMA, which writes to the class
        _CHECKED_INPUTS[key] = (
            tuple(spec.id for spec in inputs if isinstance(spec, io.Float.Input)),
            tuple(spec.id for spec in inputs if isinstance(spec, io.Mask.Input)))
    return _CHECKED_INPUTS[key]


def finite_inputs(execute: Callable) -> Callable:
    """Wrap a node's `execute` (under @classmethod): every FLOAT input must be finite and every
    MASK input free of NaN and infinity, else a ValueError naming the input. JSON's NaN passes
    ComfyUI's min/max check, and would end as a silent wrong result or a raw error far from it."""
    signature = inspect.signature(execute)
    extra = [p.name for p in signature.parameters.values() if p.kind is p.VAR_KEYWORD]

    def check(cls, args: tuple, kwargs: dict) -> None:
        values = signature.bind_partial(cls, *args, **kwargs).arguments
        values.update(values.pop(extra[0], {}) if extra else {})  # inputs taken as **kwargs
        floats, masks = _checked_inputs(cls)
        for name in floats:
            value = values.get(name)
            bad = [item for item in (value if isinstance(value, list) else [value])
                   if item is not None and not math.isfinite(item)]
            if bad:
                raise ValueError(f"{name}: must be a finite number, got {bad[0]}")
        for name in masks:
            value = values.get(name)
            if any(item is not None and not torch.isfinite(item).all()
                   for item in (value if isinstance(value, list) else [value])):
                raise ValueError(f"{name}: the mask holds NaN or infinite values; "
                                 "masks must be finite, 0..1 (check the node that made it)")

    if inspect.iscoroutinefunction(execute):
        @functools.wraps(execute)
        async def checked_async(cls, *args, **kwargs):
            check(cls, args, kwargs)
            return await execute(cls, *args, **kwargs)
        return checked_async

    @functools.wraps(execute)
    def checked(cls, *args, **kwargs):
        check(cls, args, kwargs)
        return execute(cls, *args, **kwargs)
    return checked
