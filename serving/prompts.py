"""API-format prompts for served requests, built from the pack's own shipped API workflows: the
workflow is loaded, its photo and mask loaders point at the request's saved inputs, the request's
values fill the widgets, and everything that does not lead to the wanted outputs is pruned.
Pure JSON work; nothing here runs a graph."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

PACK_ROOT = Path(__file__).resolve().parents[1]
# The API twins of workflows/ (scripts/build_workflows.py writes both).
API_WORKFLOWS = PACK_ROOT / "workflows_api"
Prompt = dict[str, dict[str, Any]]


def missing(names: Iterable[str]) -> list[str]:
    """Which of the workflows `names` are not shipped (a registry archive without them, or a
    renamed template)."""
    return sorted(name for name in names if not (API_WORKFLOWS / f"{name}.json").is_file())


@functools.cache
def _read(name: str) -> str:
    return (API_WORKFLOWS / f"{name}.json").read_text(encoding="utf-8")


def workflow(name: str) -> Prompt:
    """A fresh copy of the shipped API workflow `name`."""
    return json.loads(_read(name))


def node_of(prompt: Prompt, class_type: str) -> str:
    """The id of the one node of `class_type` (the shipped workflows have one of each that is
    rewritten; a second one is a change to the workflow this module must follow)."""
    found = [node_id for node_id, node in prompt.items() if node["class_type"] == class_type]
    if len(found) != 1:
        raise LookupError(f"expected one {class_type} node, found {len(found)}")
    return found[0]


def new_id(prompt: Prompt) -> str:
    return str(max(int(node_id) for node_id in prompt) + 1)


def add(prompt: Prompt, class_type: str, **inputs: Any) -> str:
    node_id = new_id(prompt)
    prompt[node_id] = {"class_type": class_type, "inputs": inputs,
                       "_meta": {"title": f"served: {class_type}"}}
    return node_id


def load_mask(prompt: Prompt, replaced: str, filename: str, image_node: str, *,
              black_is_edit: bool = False, invert: bool = False) -> str:
    """Replace node `replaced` (a mask source) by the saved mask file, made binary (the vendors'
    masks are black and white; a JPEG's soft edge is cut at 0.5) and fitted to the image."""
    loaded = add(prompt, "LoadImageMask", image=filename, channel="red")
    prompt[replaced] = {"class_type": "RegionRepair_CleanMask", "inputs": {
        "mask": [loaded, 0],
        "polarity": "black = edit (Photio)" if black_is_edit else "white = edit",
        "invert": invert, "threshold": 0.5, "stabilize": 0.02, "image": [image_node, 0]},
        "_meta": {"title": "served: the request's mask"}}
    return replaced


def preview(prompt: Prompt, source: list[Any]) -> str:
    """A PreviewAny output node: /history shows `source`'s value as text."""
    return add(prompt, "PreviewAny", source=source)


def save_to_temp(prompt: Prompt) -> str:
    """The workflow's SaveImage becomes a PreviewImage: results go to ComfyUI's temp folder."""
    node_id = node_of(prompt, "SaveImage")
    prompt[node_id] = {"class_type": "PreviewImage",
                       "inputs": {"images": prompt[node_id]["inputs"]["images"]},
                       "_meta": {"title": "served: result"}}
    return node_id


def prune(prompt: Prompt, outputs: Iterable[str]) -> Prompt:
    """Only the nodes the `outputs` depend on (Quality Check and previews a request does not ask
    for cost time)."""
    keep, todo = set(), list(outputs)
    while todo:
        node_id = todo.pop()
        if node_id in keep:
            continue
        keep.add(node_id)
        todo += [value[0] for value in prompt[node_id]["inputs"].values()
                 if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)]
    return {node_id: node for node_id, node in prompt.items() if node_id in keep}


def with_checkpoint(prompt: Prompt, checkpoint: str) -> None:
    prompt[node_of(prompt, "CheckpointLoaderSimple")]["inputs"]["ckpt_name"] = checkpoint


def with_model(prompt: Prompt, sampler: dict[str, Any], checkpoint: str, positive: str,
               negative: str, loras: Iterable[tuple[str, float]] = ()) -> None:
    """A shipped SD workflow run with the request's `checkpoint` and `loras`; `sampler` (a
    node's inputs) gets the request's positive and negative texts."""
    with_checkpoint(prompt, checkpoint)
    with_loras(prompt, loras)
    prompt[sampler["positive"][0]]["inputs"]["text"] = positive
    prompt[sampler["negative"][0]]["inputs"]["text"] = negative


def with_loras(prompt: Prompt, loras: Iterable[tuple[str, float]]) -> None:
    """The checkpoint's model and CLIP go through one LoraLoader per `(file, weight)`, in order;
    a LoraLoader the shipped workflow has is replaced (no LoRA: none)."""
    checkpoint = node_of(prompt, "CheckpointLoaderSimple")
    for node_id in [key for key, node in prompt.items() if node["class_type"] == "LoraLoader"]:
        _rewire(prompt.values(), node_id, checkpoint)
        del prompt[node_id]
    users = list(prompt.values())  # taken before the chain: its own links stay
    chain_end = checkpoint
    for file, weight in loras:
        chain_end = add(prompt, "LoraLoader", model=[chain_end, 0], clip=[chain_end, 1],
                        lora_name=file, strength_model=weight, strength_clip=weight)
    _rewire(users, checkpoint, chain_end, outputs=(0, 1))  # the VAE (output 2) is unchanged


def _rewire(nodes: Iterable[dict[str, Any]], old: str, new: str,
            outputs: tuple[int, ...] | None = None) -> None:
    """Every input of `nodes` linked to node `old` (to one of its `outputs`) links to `new`."""
    for node in nodes:
        for name, value in node["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and value[0] == old and \
                    (outputs is None or value[1] in outputs):
                node["inputs"][name] = [new, value[1]]
