"""Write UI-format workflows (what the ComfyUI editor opens) from a short Python description.

The shipped workflows in `workflows/` are built by `scripts/build_workflows.py` with this module,
so their widget order, sockets, titles, groups and notes always match the server's `/object_info`
and hand-edited JSON cannot drift. Layout: nodes go in columns by their depth in the graph, groups
frame their members, notes sit above the graph.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from workflow_api import combo_options, ui_only_value, widget_inputs

COLUMN_WIDTH, NODE_WIDTH, ROW_GAP = 400, 340, 40
GROUP_COLORS = ["#3f789e", "#8a6e3c", "#4f7a4f", "#7a4f7a", "#8a4f4f", "#4f6f8a"]
NOTE_HEIGHT = 220
PREVIEW_HEIGHT = 260
SHOWS_IMAGE = {"SaveImage", "PreviewImage"}


@dataclass(frozen=True)
class Out:
    """Output `slot` of node `node_id` (what an input is linked to)."""
    node_id: int
    slot: int


@dataclass
class Node:
    id: int
    type: str
    title: str | None
    group: str | None
    values: dict[str, Any]
    links: dict[str, Out]

    def __getitem__(self, slot: int) -> Out:
        return Out(self.id, slot)


@dataclass
class Graph:
    """A workflow under construction: add nodes with `node`, explanations with `note`."""
    notes: list[str] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)

    def node(self, kind: str, title: str | None = None, group: str | None = None,
             **inputs: Any) -> Node:
        links = {k: v for k, v in inputs.items() if isinstance(v, (Out, Node))}
        links = {k: v[0] if isinstance(v, Node) else v for k, v in links.items()}
        values = {k: v for k, v in inputs.items() if k not in links}
        node = Node(len(self.nodes) + 1, kind, title, group, values, links)
        self.nodes.append(node)
        return node

    def note(self, markdown: str) -> None:
        self.notes.append(markdown)

    def to_ui(self, object_info: dict[str, Any]) -> dict[str, Any]:
        return _to_ui(self, object_info)


def _widget_values(node: Node, info: dict[str, Any]) -> list[Any]:
    values = []
    for name, spec in widget_inputs(info):
        options = spec[1] if len(spec) > 1 else {}
        if name in node.values:
            value = node.values[name]
        elif "default" in options:
            value = options["default"]
        else:
            choices = combo_options(spec)
            if not choices:
                raise ValueError(f"{node.type}.{name}: no value given and no default")
            value = choices[0]
        values.append(value)
        if ui_only_value(spec):
            values.append(ui_only_value(spec))
    unknown = set(node.values) - {name for name, _ in widget_inputs(info)}
    if unknown:
        raise ValueError(f"{node.type}: no widget named {sorted(unknown)}")
    return values


def _depths(graph: Graph) -> dict[int, int]:
    depth: dict[int, int] = {}
    for node in graph.nodes:  # nodes only link to earlier nodes
        depth[node.id] = 1 + max((depth[o.node_id] for o in node.links.values()), default=-1)
    return depth


def _height(info: dict[str, Any], node: Node) -> int:
    rows = len(widget_inputs(info)) + max(len(info.get("output", [])), len(node.links))
    multiline = sum(1 for _, spec in widget_inputs(info)
                    if len(spec) > 1 and spec[1].get("multiline"))
    # Load Image and Save Image show a picture below the widgets; without room for it, it covers
    # the node below.
    preview = node.type in SHOWS_IMAGE or any(len(spec) > 1 and spec[1].get("image_upload")
                                              for _, spec in widget_inputs(info))
    return 46 + 26 * rows + 60 * multiline + PREVIEW_HEIGHT * preview


def _to_ui(graph: Graph, object_info: dict[str, Any]) -> dict[str, Any]:
    nodes_ui, links_ui = [], []
    depth = _depths(graph)
    column_y: dict[int, int] = {}
    top = 80 + (NOTE_HEIGHT + ROW_GAP if graph.notes else 0)
    boxes: dict[str, list[tuple[int, int, int, int]]] = {}
    outgoing: dict[tuple[int, int], list[int]] = {}
    link_id = 0
    for node in graph.nodes:
        info = object_info[node.type]
        inputs_ui = []
        specs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        for name, source in node.links.items():
            link_id += 1
            kind = object_info[graph.nodes[source.node_id - 1].type]["output"][source.slot]
            if name not in specs:
                raise ValueError(f"{node.type}: no input named {name!r}")
            inputs_ui.append({"name": name, "type": kind, "link": link_id})
            links_ui.append([link_id, source.node_id, source.slot, node.id, len(inputs_ui) - 1,
                             kind])
            outgoing.setdefault((source.node_id, source.slot), []).append(link_id)
        x = 60 + depth[node.id] * COLUMN_WIDTH
        y = column_y.get(depth[node.id], top)
        height = _height(info, node)
        column_y[depth[node.id]] = y + height + ROW_GAP
        if node.group:
            boxes.setdefault(node.group, []).append((x, y, NODE_WIDTH, height))
        entry = {"id": node.id, "type": node.type, "pos": [x, y], "size": [NODE_WIDTH, height],
                 "flags": {}, "order": node.id - 1, "mode": 0, "inputs": inputs_ui,
                 "outputs": [], "properties": {"Node name for S&R": node.type},
                 "widgets_values": _widget_values(node, info)}
        if node.title:
            entry["title"] = node.title
        nodes_ui.append(entry)
    for entry in nodes_ui:
        info = object_info[entry["type"]]
        entry["outputs"] = [{"name": name, "type": kind,
                             "links": outgoing.get((entry["id"], slot), []), "slot_index": slot}
                            for slot, (name, kind) in enumerate(zip(info["output_name"],
                                                                    info["output"]))]
    next_id = len(graph.nodes) + 1
    width = 60 + (max(depth.values(), default=0) + 1) * COLUMN_WIDTH
    for index, text in enumerate(graph.notes):
        note_width = max((width - 60) // len(graph.notes) - 20, NODE_WIDTH)
        nodes_ui.append({"id": next_id + index, "type": "MarkdownNote",
                         "pos": [60 + index * (note_width + 20), 60],
                         "size": [note_width, NOTE_HEIGHT], "flags": {}, "order": next_id + index,
                         "mode": 0, "inputs": [], "outputs": [], "properties": {},
                         "widgets_values": [text], "color": "#432", "bgcolor": "#653"})
    groups = []
    for index, (title, members) in enumerate(boxes.items()):
        x0 = min(x for x, _, _, _ in members) - 20
        y0 = min(y for _, y, _, _ in members) - 50
        x1 = max(x + w for x, _, w, _ in members) + 20
        y1 = max(y + h for _, y, _, h in members) + 20
        groups.append({"id": index + 1, "title": title, "bounding": [x0, y0, x1 - x0, y1 - y0],
                       "color": GROUP_COLORS[index % len(GROUP_COLORS)], "font_size": 24,
                       "flags": {}})
    return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, repr(graph.notes[:1]) + str(len(nodes_ui)))),
            "revision": 0, "last_node_id": next_id + len(graph.notes) - 1,
            "last_link_id": link_id, "nodes": nodes_ui, "links": links_ui, "groups": groups,
            "config": {}, "extra": {"ds": {"scale": 0.75, "offset": [0, 0]}}, "version": 0.4}
