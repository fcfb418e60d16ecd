"""Turn a UI-format workflow (what the editor saves, what `workflows/` ships) into the API format
that `POST /prompt` runs, using the server's `/object_info`.

ComfyUI 0.3.75 has no server-side conversion; the editor does it in JavaScript. This follows the
editor's rules for the nodes the pack's workflows use: widget values are positional over the
node's widget inputs in `input_order`; a seed with `control_after_generate` and an image combo with
`image_upload` carry one extra UI-only value; notes are dropped; muted nodes (mode 2) are left out.
"""

from __future__ import annotations

from typing import Any

VIRTUAL_NODES = {"Note", "MarkdownNote"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
MUTED, BYPASSED = 2, 4


def is_widget(spec: list[Any]) -> bool:
    """A value typed in the node, not a socket (`forceInput` turns a widget into a socket)."""
    options = spec[1] if len(spec) > 1 else {}
    return (isinstance(spec[0], list) or spec[0] in WIDGET_TYPES) and not options.get(
        "forceInput")


def combo_options(spec: list[Any]) -> list[Any] | None:
    """A combo input's allowed values (old and V3 spellings); None for any other input."""
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == "COMBO":
        return spec[1].get("options", [])
    return None


def ui_only_value(spec: list[Any]) -> str | None:
    """The extra value the editor saves after this widget's own (seed control, image upload)."""
    options = spec[1] if len(spec) > 1 else {}
    if options.get("control_after_generate"):
        return "fixed"
    if options.get("image_upload"):
        return "image"
    return None


def widget_inputs(info: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    specs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
    order = info["input_order"].get("required", []) + info["input_order"].get("optional", [])
    return [(name, specs[name]) for name in order if is_widget(specs[name])]


def ui_to_api(workflow: dict[str, Any], object_info: dict[str, Any]) -> dict[str, Any]:
    links = {link[0]: link for link in workflow.get("links", [])}
    prompt: dict[str, Any] = {}
    for node in workflow["nodes"]:
        kind = node["type"]
        if kind in VIRTUAL_NODES or node.get("mode", 0) == MUTED:
            continue
        if node.get("mode", 0) == BYPASSED:
            raise ValueError(f"node {node['id']} ({kind}) is bypassed; not supported here")
        if kind not in object_info:
            raise ValueError(f"node {node['id']}: type {kind!r} is unknown to the server")
        inputs: dict[str, Any] = {}
        for slot in node.get("inputs", []):
            if slot.get("link") is not None:
                _, source, source_slot, *_ = links[slot["link"]]
                inputs[slot["name"]] = [str(source), source_slot]
        values = list(node.get("widgets_values", []))
        position = 0
        optional = object_info[kind]["input"].get("optional", {})
        for name, spec in widget_inputs(object_info[kind]):
            if position >= len(values):
                if name in optional:  # a widget added later: its default applies, as in ComfyUI
                    continue
                raise ValueError(f"node {node['id']} ({kind}): no widget value for {name!r}")
            inputs.setdefault(name, values[position])
            position += 2 if ui_only_value(spec) else 1
        title = node.get("title") or object_info[kind]["display_name"]
        prompt[str(node["id"])] = {"class_type": kind, "inputs": inputs,
                                   "_meta": {"title": title}}
    return prompt


def fill_defaults(prompt: dict[str, Any], object_info: dict[str, Any]) -> dict[str, Any]:
    """An API prompt with every widget input it leaves out set to the node's default, as the
    editor would have saved it (POST /prompt requires every required input)."""
    for node in prompt.values():
        for name, spec in widget_inputs(object_info[node["class_type"]]):
            options = spec[1] if len(spec) > 1 else {}
            if name not in node["inputs"] and "default" in options:
                node["inputs"][name] = options["default"]
    return prompt
