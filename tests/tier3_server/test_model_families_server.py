"""Every generating node with every model family through POST /prompt: SD1.5 and SD1.5 inpaint
(checkpoint files), SD3 (a diffusion-model file and a 16-channel TAESD, through UNETLoader and
VAELoader), SDXL, SDXL inpaint, Flux dev and Flux Fill (in process: tests/support/tiny_models.py
says why they cannot be tiny files). Per case: the output has the input's size, pixels outside
the mask are bit-identical where the node promises it, crops are at the family's size multiple,
and the server log has no channel-mismatch or unloaded-weight warning."""

from __future__ import annotations

import copy
import io
import json
import shutil
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import tiny_models
from comfy_server import PromptError
from pack_paths import PACK_ROOT

pytestmark = pytest.mark.server

PHOTOS = PACK_ROOT / "assets" / "photos"
SMALL = "astronaut_families.png"  # the astronaut at 128 px: tiny models, 2-core CI
CHECKPOINTS = {"sd15": "tiny_sd15_families.safetensors",
               "sd15_inpaint": "tiny_sd15_inpaint_families.safetensors"}
SD3_MODEL, SD3_VAE = "tiny_sd3.safetensors", "tiny_taesd3.safetensors"
LORA = "tiny_lora_{}.safetensors"  # per family: a LoRA on every linear weight
FAMILIES = ["sd15", "sd15_inpaint", "sd3", *tiny_models.IN_PROCESS_FAMILIES]
MULTIPLE = {"sd15": 8, "sd15_inpaint": 8, "sdxl": 8, "sdxl_inpaint": 8, "sd3": 16, "flux": 16,
            "flux_fill": 16}
INPAINT = {"sd15_inpaint", "sdxl_inpaint", "flux_fill"}
BOX = "0.44, 0.18, 0.12, 0.1"  # the helmet's visor and forehead
# What ComfyUI logs when a model and its inputs or weights disagree.
MISMATCH_WORDS = ("channel", "mismatch", "unet missing", "unet unexpected", "not loaded")


@pytest.fixture(scope="module")
def models(server):
    folder = server.base_dir / "models"
    for family, name in CHECKPOINTS.items():
        tiny_models.write_sd15_checkpoint(folder / "checkpoints" / name,
                                          inpaint=family.endswith("inpaint"))
    tiny_models.write_sd3_diffusion_model(folder / "diffusion_models" / SD3_MODEL)
    tiny_models.write_taesd_vae(folder / "vae" / SD3_VAE, latent_channels=16)
    for family in FAMILIES:
        tiny_models.write_lora(folder / "loras" / LORA.format(family), family)
    small = Image.open(PHOTOS / "astronaut.png").convert("RGB").resize((128, 128),
                                                                       Image.BICUBIC)
    small.save(server.base_dir / "input" / SMALL)
    for name in ("coffee.png", "chelsea.png", "astronaut.png"):
        shutil.copy(PHOTOS / name, server.base_dir / "input" / name)
    return np.asarray(small)


def loaders(family: str) -> tuple[dict, list, list, list]:
    """(nodes, model, vae, conditioning) that load `family` the way a user would."""
    if family in CHECKPOINTS:
        nodes = {"ckpt": {"class_type": "CheckpointLoaderSimple",
                          "inputs": {"ckpt_name": CHECKPOINTS[family]}},
                 "cond": {"class_type": "RegionRepairTest_ZeroConditioning",
                          "inputs": {"family": "sd15"}}}
        return nodes, ["ckpt", 0], ["ckpt", 2], ["cond", 0]
    if family == "sd3":
        nodes = {"unet": {"class_type": "UNETLoader",
                          "inputs": {"unet_name": SD3_MODEL, "weight_dtype": "default"}},
                 "vae_file": {"class_type": "VAELoader", "inputs": {"vae_name": SD3_VAE}},
                 "cond": {"class_type": "RegionRepairTest_ZeroConditioning",
                          "inputs": {"family": "sd3"}}}
        return nodes, ["unet", 0], ["vae_file", 0], ["cond", 0]
    nodes = {"tiny": {"class_type": "RegionRepairTest_TinyFamilyModel",
                      "inputs": {"family": family}}}
    return nodes, ["tiny", 0], ["tiny", 1], ["tiny", 2]


def sampler(model: list, vae: list, cond: list, denoise: float = 1.0) -> dict:
    return {"model": model, "vae": vae, "positive": cond, "negative": cond, "seed": 5,
            "steps": 2, "cfg": 4.0, "sampler_name": "euler", "scheduler": "simple",
            "denoise": denoise}


def repair(image: list, mask: list, mode: str, model, vae, cond, **extra) -> dict:
    return {"class_type": "RegionRepair_GuidedBlendInpaint", "inputs": {
        "image": image, "mask": mask, "mode": mode, "category": "general",
        "reviewer_note": "", "image_notes": "", "context_factor": 3.0,
        "processing_size": 72, "num_candidates": 1, "reference_denoise": 0.6, "feather": 2,
        "add_ai_watermark": False, **sampler(model, vae, cond), **extra}}


def save(source: list) -> dict:
    return {"class_type": "SaveImage", "inputs": {"images": source,
                                                  "filename_prefix": uuid.uuid4().hex}}


def decode(png: bytes, mode: str = "RGB") -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert(mode))


def run_clean(server, prompt: dict) -> dict:
    """Run `prompt`; the log lines it adds hold no mismatch warning."""
    before = len(server.log())
    history = server.run(prompt)
    added = server.log()[before:].lower()
    assert not [word for word in MISMATCH_WORDS if word in added], added[-3000:]
    return history


@pytest.mark.parametrize("mode", ["guided", "guided-blend", "annotated", "annotated-blend",
                                  "marked", "marked-blend"])
@pytest.mark.parametrize("family", FAMILIES)
def test_guided_blend_inpaint(server, models, family, mode):
    nodes, model, vae, cond = loaders(family)
    prompt = nodes | {
        "load": {"class_type": "LoadImage", "inputs": {"image": SMALL}},
        "box": {"class_type": "RegionRepair_MaskFromBBox",
                "inputs": {"image": ["load", 0], "bbox": BOX, "units": "normalized"}},
        # A marked mode opens its whole window: a plain model must start from the old content.
        "repair": repair(["load", 0], ["box", 0], mode, model, vae, cond,
                         denoise=0.8 if mode.startswith("marked") and family not in INPAINT
                         else 1.0),
        "save": save(["repair", 0]), "mask_image": {"class_type": "MaskToImage",
                                                    "inputs": {"mask": ["box", 0]}},
        "save_mask": save(["mask_image", 0]),
        "info": {"class_type": "PreviewAny", "inputs": {"source": ["repair", 3]}},
    }
    history = run_clean(server, prompt)
    (result,) = [decode(png) for png in server.output_files(history, "save")]
    (mask,) = [decode(png, "L") > 0 for png in server.output_files(history, "save_mask")]
    (info,) = json.loads(history["outputs"]["info"]["text"][0])
    assert result.shape == models.shape
    width, height = info["processing_size"]
    assert width % MULTIPLE[family] == 0 and height % MULTIPLE[family] == 0
    (x0, y0, x1, y1), = info["windows"]
    allowed = np.zeros(mask.shape, bool)
    allowed[y0:y1, x0:x1] = True
    if mode.endswith("-blend"):
        allowed = mask
    assert np.array_equal(result[~allowed], models[~allowed])
    assert not np.array_equal(result[mask], models[mask])


@pytest.mark.parametrize("family", FAMILIES)
def test_detailer(server, models, family):
    nodes, model, vae, cond = loaders(family)
    prompt = nodes | {
        "load": {"class_type": "LoadImage", "inputs": {"image": "astronaut.png"}},
        "detect": {"class_type": "RegionRepair_Detect", "inputs": {
            "image": ["load", 0], "detector": "face_full_mediapipe", "confidence": 0.3,
            "max_num_detections": 1, "sort_by": "left_to_right", "min_area_ratio": 0.0,
            "max_area_ratio": 1.0, "yolo_model": "(none)"}},
        "detail": {"class_type": "RegionRepair_Detailer", "inputs": {
            "image": ["load", 0], "detections": ["detect", 0], "prompt": "",
            "negative_prompt": "", "mask_dilation": 4, "mask_blur": 0, "mask_padding": 16,
            "inpainting_base_model": "sd15", "union_masks": False,
            **sampler(model, vae, cond, denoise=0.5), "blend": "seamless"}},
        "save": save(["detail", 0]),
        "masks_image": {"class_type": "MaskToImage", "inputs": {"mask": ["detect", 2]}},
        "masks": save(["masks_image", 0]),
    }
    history = run_clean(server, prompt)
    (result,) = [decode(png) for png in server.output_files(history, "save")]
    (face,) = [decode(png, "L") > 0 for png in server.output_files(history, "masks")]
    photo = np.asarray(Image.open(PHOTOS / "astronaut.png").convert("RGB"))
    assert result.shape == photo.shape
    # The seamless blend keeps everything outside the detection, grown by mask_dilation.
    grown = cv2.dilate(face.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    assert np.array_equal(result[~grown], photo[~grown])
    assert not np.array_equal(result[face], photo[face])


@pytest.mark.parametrize("family", FAMILIES)
def test_garment_recolor_refinement(server, models, family):
    nodes, model, vae, cond = loaders(family)
    prompt = nodes | {
        "load": {"class_type": "LoadImage", "inputs": {"image": SMALL}},
        "box": {"class_type": "RegionRepair_MaskFromBBox", "inputs": {
            "image": ["load", 0], "bbox": "0.05, 0.55, 0.6, 0.45", "units": "normalized"}},
        "recolor": {"class_type": "RegionRepair_GarmentRecolorAnchor", "inputs": {
            "images": ["load", 0], "masks": ["box", 0], "reference_text": "#2E5A3B",
            "instruction": "", "garment_label": "suit", "use_anchor": True,
            "post_process": True, "anchor_index": 0, "num_variations": 1,
            "variation_step": 8.0, "contrast": 1.0, "processing_size": "native",
            "add_ai_watermark": False, **sampler(model, vae, cond, denoise=0.3)}},
        "save": save(["recolor", 0]),
        "info": {"class_type": "PreviewAny", "inputs": {"source": ["recolor", 3]}},
    }
    history = run_clean(server, prompt)
    (result,) = [decode(png) for png in server.output_files(history, "save")]
    info = json.loads(history["outputs"]["info"]["text"][0])
    assert result.shape == models.shape and info[0]["engine"] == "embedded+diffusion"
    inside = np.zeros(models.shape[:2], bool)
    inside[round(0.55 * 128):, round(0.05 * 128):round(0.65 * 128)] = True
    assert np.array_equal(result[~inside], models[~inside])


def with_family(prompt: dict, family: str) -> dict:
    """A shipped API workflow with its checkpoint swapped for `family`'s loaders and LoRA, text
    prompts as zero conditioning, 2 steps at 64 px."""
    prompt = copy.deepcopy(prompt)
    (ckpt,) = [key for key, node in prompt.items()
               if node["class_type"] == "CheckpointLoaderSimple"]
    del prompt[ckpt]
    nodes, model, vae, cond = loaders(family)
    prompt |= nodes
    for key, node in list(prompt.items()):
        inputs = node["inputs"]
        if node["class_type"] == "CLIPTextEncode":
            prompt[key] = {"class_type": "RegionRepairTest_ZeroConditioning",
                           "inputs": {"family": "sd15" if family in CHECKPOINTS
                                      else family.split("_")[0]}}
            continue
        inputs.pop("clip", None)
        if node["class_type"] == "LoraLoader":  # no text encoder to patch in the tiny models
            node["class_type"] = "LoraLoaderModelOnly"
            inputs["lora_name"] = LORA.format(family)
            del inputs["strength_clip"]
        for name, value in list(inputs.items()):
            if isinstance(value, list) and value and value[0] == ckpt:
                inputs[name] = {0: model, 2: vae}[value[1]]
        if "steps" in inputs:
            inputs["steps"] = 2
        if isinstance(inputs.get("processing_size"), int):
            inputs["processing_size"] = 64
    return prompt


def loaded_photo(prompt: dict, node_id: str) -> np.ndarray:
    """The photo behind `node_id`'s image input, followed back to its Load Image."""
    node = prompt[node_id]
    while node["class_type"] != "LoadImage":
        node = prompt[node["inputs"]["image"][0]]
    # The shipped workflows load the pack's sample copies (input/region-repair-samples/).
    return np.asarray(Image.open(PHOTOS / Path(node["inputs"]["image"]).name).convert("RGB"))


@pytest.mark.parametrize("workflow", [
    "PICPIK ModifyMaskedPixels - inpaint with LoRA and reference (SD1.5 inpaint model)",
    "Photio Regen - add an object (SD1.5 inpaint model)",
    "Photio Regen - remove an object (SD1.5 inpaint model)",
    "PICPIK ModifyMaskedPixels - outpaint (SD1.5 inpaint model)"])
@pytest.mark.parametrize("family", FAMILIES)
def test_shipped_workflow(server, models, family, workflow):
    shipped = json.loads((PACK_ROOT / "workflows_api" / f"{workflow}.json").read_text())
    prompt = with_family(shipped, family)
    history = run_clean(server, prompt)
    (repair_id,) = [key for key, n in prompt.items()
                    if n["class_type"] == "RegionRepair_GuidedBlendInpaint"]
    original = loaded_photo(prompt, repair_id)
    (saved,) = [key for key, n in prompt.items() if n["class_type"] == "SaveImage"]
    (result,) = [decode(png) for png in server.output_files(history, saved)]
    if "outpaint" in workflow:  # 64 px more on the left and on the right
        assert result.shape == (original.shape[0], original.shape[1] + 128, 3)
        assert np.array_equal(result[:, 64:-64], original)
    else:
        assert result.shape == original.shape
    (report,) = [json.loads(o["text"][0]) for key, o in history["outputs"].items()
                 if prompt[key]["class_type"] == "PreviewAny"]
    assert all("outside_mask_changed" not in c["reasons"] for c in report["candidates"])


@pytest.mark.parametrize("family", FAMILIES)
def test_a_plain_model_refuses_a_large_outpaint_and_an_inpaint_model_does_it(server, models,
                                                                            family):
    nodes, model, vae, cond = loaders(family)
    prompt = nodes | {
        "load": {"class_type": "LoadImage", "inputs": {"image": SMALL}},
        "pad": {"class_type": "RegionRepair_OutpaintPad", "inputs": {
            "image": ["load", 0], "left": 96.0, "top": 0.0, "right": 96.0, "bottom": 0.0,
            "units": "pixels", "fill": "blur"}},
        "repair": repair(["pad", 0], ["pad", 1], "guided-blend", model, vae, cond,
                         context_factor=1.5),
        "save": save(["repair", 0]),
    }
    if family not in INPAINT:
        with pytest.raises(PromptError, match="model: an ordinary model .* would invent"):
            server.run(prompt)
        return
    history = run_clean(server, prompt)
    (result,) = [decode(png) for png in server.output_files(history, "save")]
    assert result.shape == (128, 128 + 192, 3)
    assert np.array_equal(result[:, 96:-96], models)
