"""Every shipped workflow against the real server: the UI file validates against /object_info, its
API twin agrees with it, and the twin runs through POST /prompt (the tiny SD1.5 checkpoints stand
in for diffusion models) with its outputs checked. The photos are the ones the pack copied into
the server's input/region-repair-samples/ at start: nothing is copied here."""

from __future__ import annotations

import copy
import io
import json

import pytest
from PIL import Image
from safetensors.torch import save_file

import tiny_models
from pack_paths import PACK_ROOT
from workflow_api import VIRTUAL_NODES, combo_options, ui_to_api, widget_inputs

pytestmark = pytest.mark.server

WORKFLOWS = sorted((PACK_ROOT / "workflows").glob("*.json"))
API_TWINS = PACK_ROOT / "workflows_api"
# Load Image takes any file under the input folder (its own check); its list shows the top only.
FILE_INPUTS = {("LoadImage", "image")}


def model_files() -> dict[str, set[str]]:
    """Every model file the workflows name, by models sub-folder."""
    wanted: dict[str, set[str]] = {"checkpoints": set(), "loras": set()}
    for path in API_TWINS.glob("*.json"):
        for node in json.loads(path.read_text()).values():
            if "ckpt_name" in node["inputs"]:
                wanted["checkpoints"].add(node["inputs"]["ckpt_name"])
            if "lora_name" in node["inputs"]:
                wanted["loras"].add(node["inputs"]["lora_name"])
    return wanted


@pytest.fixture(scope="module")
def object_info(server):
    """The server's /object_info once the stand-in model files are in place, so file combos list
    them."""
    wanted = model_files()
    for name in wanted["checkpoints"]:
        tiny_models.write_sd15_checkpoint(server.base_dir / "models" / "checkpoints" / name,
                                          inpaint="inpaint" in name)
    loras = server.base_dir / "models" / "loras"
    loras.mkdir(parents=True, exist_ok=True)
    for name in wanted["loras"]:  # a LoRA that patches nothing: the loader path still runs
        save_file({}, loras / name)
    return server.get_json("/object_info")


def check_value(kind: str, name: str, spec: list, value) -> None:
    where = f"{kind}.{name} = {value!r}"
    allowed = combo_options(spec)
    if allowed is not None:
        assert value in allowed, f"{where} is not one of {allowed[:12]}"
        return
    settings = spec[1] if len(spec) > 1 else {}
    if spec[0] in ("INT", "FLOAT"):
        assert isinstance(value, (int, float)) and not isinstance(value, bool), where
        if spec[0] == "INT":
            assert float(value).is_integer(), where
        assert settings.get("min", value) <= value <= settings.get("max", value), where
    elif spec[0] == "BOOLEAN":
        assert isinstance(value, bool), where
    elif spec[0] == "STRING":
        assert isinstance(value, str), where


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_ui_workflow_validates_and_matches_its_api_twin(server, object_info, path):
    ui = json.loads(path.read_text())
    for node in ui["nodes"]:
        assert node["type"] in VIRTUAL_NODES or node["type"] in object_info, node["type"]
    prompt = ui_to_api(ui, object_info)
    for node in prompt.values():
        info = object_info[node["class_type"]]
        for name, spec in widget_inputs(info):
            if (node["class_type"], name) in FILE_INPUTS:
                assert (server.base_dir / "input" / node["inputs"][name]).is_file()
            elif name in node["inputs"] and not isinstance(node["inputs"][name], list):
                check_value(node["class_type"], name, spec, node["inputs"][name])
        required = info["input"].get("required", {})
        assert set(required) <= set(node["inputs"]), f"{node['class_type']}: missing inputs"
    twin = API_TWINS / path.name
    assert twin.exists(), f"no API twin for {path.name}: run scripts/build_workflows.py"
    assert json.loads(twin.read_text()) == prompt, f"{twin.name} disagrees with {path.name}"


def with_stand_ins(prompt: dict, fakes: dict) -> dict:
    """The tiny checkpoints hold no text encoder: text prompts become zero conditioning and
    generators get no clip. Sampling is cut to 2 steps at about 128 px, for a 2-core CI. Vendors
    are the fake servers. The workflow is otherwise unchanged."""
    prompt = copy.deepcopy(prompt)
    for node in prompt.values():
        inputs = node["inputs"]
        if node["class_type"] == "RegionRepair_RemoteVendorInpaint":
            inputs["base_url"] = fakes[inputs["endpoint"].split("/")[0].split("-")[0]].url
        if "steps" in inputs:
            inputs["steps"] = min(inputs["steps"], 2)
        if isinstance(inputs.get("processing_size"), int) and inputs["processing_size"] > 128:
            inputs["processing_size"] = 128
        if node["class_type"] == "CLIPTextEncode":
            node["class_type"], node["inputs"] = "RegionRepairTest_ZeroConditioning", {}
        if node["class_type"].startswith("RegionRepair_"):
            node["inputs"].pop("clip", None)
    return prompt


def output_sizes(prompt: dict, input_dir) -> set[tuple[int, int]]:
    """The sizes a workflow's results may have: its first photo's (or every photo of a loaded
    folder), grown by any Outpaint Pad."""
    folders = [n for n in prompt.values() if n["class_type"] == "RegionRepair_LoadImageSet"]
    if folders:
        folder = input_dir / folders[0]["inputs"]["folder"]
        return {Image.open(path).size for path in folder.iterdir()}
    first = next(n for n in prompt.values() if n["class_type"] == "LoadImage")
    width, height = Image.open(input_dir / first["inputs"]["image"]).size
    for node in prompt.values():
        if node["class_type"] == "RegionRepair_OutpaintPad":
            pad = node["inputs"]
            width, height = (width + int(pad["left"] + pad["right"]),
                             height + int(pad["top"] + pad["bottom"]))
    return {(width, height)}


@pytest.mark.parametrize("path", sorted(API_TWINS.glob("*.json")), ids=lambda p: p.stem)
def test_api_workflow_runs(server, object_info, fake_vendors, path):
    prompt = with_stand_ins(json.loads(path.read_text()), fake_vendors)
    history = server.run(prompt, timeout=600)
    sizes = output_sizes(prompt, server.base_dir / "input")
    saved = [node_id for node_id, node in prompt.items() if node["class_type"] == "SaveImage"]
    assert saved
    for node_id in saved:
        pngs = server.output_files(history, node_id)
        assert pngs
        for png in pngs:
            assert Image.open(io.BytesIO(png)).size in sizes
    for node_id, output in history["outputs"].items():
        source = prompt[node_id]["inputs"].get("source")
        if not source or prompt[source[0]]["class_type"] != "RegionRepair_QualityCheck":
            continue
        with_info = "info" in prompt[source[0]]["inputs"]
        for candidate in json.loads(output["text"][0])["candidates"]:
            # The pack's own outputs never move the frame; a generator that promised an
            # untouched outside (info blend == "mask") must have kept it exactly.
            assert "framing_shift" not in candidate["reasons"], candidate
            assert "scale_drift" not in candidate["reasons"], candidate
            if with_info:
                assert "outside_mask_changed" not in candidate["reasons"], candidate


def test_a_workflow_saved_before_a_node_gained_an_optional_widget_still_runs(server, object_info,
                                                                            fake_vendors):
    """Guided Blend Inpaint's `blend` came last and optional, so a file saved without it (one
    widget value fewer) converts and runs with the new default, as the editor would load it."""
    path = PACK_ROOT / "workflows" / "Photio Regen - remove an object (no weights).json"
    ui = json.loads(path.read_text())
    (node,) = [n for n in ui["nodes"] if n["type"] == "RegionRepair_GuidedBlendInpaint"]
    assert node["widgets_values"][-1] == "seamless"
    node["widgets_values"] = node["widgets_values"][:-1]
    prompt = ui_to_api(ui, object_info)
    repair = prompt[str(node["id"])]["inputs"]
    assert "blend" not in repair
    history = server.run(with_stand_ins(prompt, fake_vendors), timeout=600)
    saved = [key for key, n in prompt.items() if n["class_type"] == "SaveImage"]
    assert server.output_files(history, saved[0])
    with pytest.raises(ValueError, match="no widget value for 'feather'"):
        node["widgets_values"] = node["widgets_values"][:8]  # a required widget missing: error
        ui_to_api(ui, object_info)
