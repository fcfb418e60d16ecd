"""The shipped templates as a user meets them: ComfyUI's own frontend in headless Chromium, on the
real server. The Templates dialog lists every workflow with its thumbnail, every workflow opens with
known node types, its widget values as saved and no frontend error, and a weight-free one runs
from the Run button as opened (its photos come from the pack's sample copy, nothing else)."""

from __future__ import annotations

import json

import pytest

import browser
from pack_paths import PACK_ROOT

pytestmark = pytest.mark.server

WORKFLOWS = {path.stem: path for path in sorted((PACK_ROOT / "workflows").glob("*.json"))}
RUN_FROM_EDITOR = "PiktID Detail Repair - logo with reference (no weights)"
# A widget the frontend adds (Load Image's preview); Preview Any's text box comes after the
# saved values.
FRONTEND_ONLY_WIDGETS = ("$$canvas-image-preview",)

if browser.unavailable():
    pytest.skip(f"cannot drive the editor: {browser.unavailable()}", allow_module_level=True)


@pytest.fixture(scope="module")
def editor(server):
    with browser.Editor(server.url) as running:
        yield running


def test_templates_dialog_shows_every_workflow_with_its_thumbnail(server, editor):
    cards = editor.open_templates(browser.PACK_TEMPLATES)
    assert set(cards) == set(WORKFLOWS)
    for name, card in cards.items():
        url = f"{server.url}/api/workflow_templates/{browser.PACK_TEMPLATES}/{name}.jpg"
        assert editor.responses.get(url) == (200, "image/jpeg"), (name, editor.responses.get(url))
        assert card["loaded"] and card["width"] == 512, (name, card)


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_opens_with_known_nodes_and_its_saved_widget_values(editor, name):
    saved = {node["id"]: node for node in json.loads(WORKFLOWS[name].read_text())["nodes"]}
    editor.close_dialog()
    editor.mark()
    editor.load_template_file(browser.PACK_TEMPLATES, name)
    nodes = editor.graph_nodes()
    assert not [node["type"] for node in nodes if not node["registered"]]
    assert {node["id"] for node in nodes} == set(saved)
    for node in nodes:
        values = [value for widget, value in node["widgets"]
                  if widget not in FRONTEND_ONLY_WIDGETS]
        expected = saved[node["id"]].get("widgets_values", [])
        assert values[:len(expected)] == expected, (node["type"], values)
    assert editor.errors == []


def test_a_weight_free_template_opened_from_the_dialog_runs_from_the_run_button(editor):
    editor.mark()
    editor.load_template(browser.PACK_TEMPLATES, RUN_FROM_EDITOR)
    images = editor.run_and_wait_for_images(timeout=180)
    assert any("detail_repair_logo" in url for url in images), images
    assert editor.errors == []
