"""Build the shipped workflows: `workflows/*.json` (UI format, for the editor and its templates
browser) and their API-format twins `workflows_api/*.json`, from the descriptions below.

    .venv/bin/python scripts/build_workflows.py     # or: make workflows

A real headless server supplies `/object_info`, so widget order and defaults match the nodes.
The twins are the UI files converted by scripts/workflow_api.py; tests/tier3_server/
test_workflows.py checks that both agree, that every value is valid, and runs every twin.

The file names are the titles the editor's Templates list shows (WORKFLOW_BUILDERS). After writing
the workflows the builder runs `make demo`'s script, which draws each one's thumbnail
(`workflows/<name>.jpg`) from its own result, so thumbnails never lag behind the workflows.

Diffusion variants load a documented checkpoint kind with ComfyUI's standard loaders (names in
CHECKPOINTS; pick your own file in the loader). Embedded variants need no weights at all and are
what `make demo` runs.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import demo
from comfy_server import PACK_ROOT, ComfyServer, pack_module
from workflow_api import ui_to_api
from workflow_graph import Graph, Node

WORKFLOWS = PACK_ROOT / "workflows"
API_TWINS = PACK_ROOT / "workflows_api"

# The checkpoint kinds the diffusion variants expect (models/checkpoints) and LoRA (models/loras).
SD15_INPAINT = "sd-v1-5-inpainting.safetensors"
EXAMPLE_LORA = "your_style_lora.safetensors"

PATCH_BOX = "0.238, 0.652, 0.196, 0.196"    # the mission patch, with a margin over the damage
SPOON_BOX = "0.54, 0.6, 0.14, 0.22"         # the spoon on the coffee saucer
FACE_AND_TAG = "0.35, 0.13, 0.19, 0.19\n0.55, 0.66, 0.1, 0.05"
SAMPLES_FOLDER = pack_module("core/samples").SAMPLES_FOLDER

OWN_PHOTO_NOTE = (
    "**Your own photo.** The sample photos were copied to ComfyUI's `input/{folder}/` when "
    "the pack started. To use yours, click *choose file to upload* on a **Load Image** node (or "
    "drop a file on it), then move the mask or box to the region you want to change.")
OWN_SET_NOTE = (
    "**Your own photos.** The sample set was copied to ComfyUI's `input/{folder}/garment_set/` "
    "when the pack started. To use yours, put them in a folder under ComfyUI's `input/` folder, "
    "press R in the editor (refresh) and pick that folder in the loader's `folder`. The set "
    "loads in name order (shot2 before shot10): the first name is the anchor.")


def sample(name: str) -> str:
    """A photo the pack copies into ComfyUI's input folder at start (pipelines/core/samples.py)."""
    return f"{SAMPLES_FOLDER}/{name}"


def sd15_inpaint(g: Graph, positive: str, negative: str, lora: float | None = None
                 ) -> dict[str, Node]:
    """Checkpoint (+ optional LoRA) and text conditioning: the sockets a generator takes."""
    ckpt = g.node("CheckpointLoaderSimple", "SD1.5 inpaint checkpoint", "Model",
                  ckpt_name=SD15_INPAINT)
    model, clip = ckpt[0], ckpt[1]
    if lora is not None:
        lora_node = g.node("LoraLoader", "LoRA (PICPIK SubModelList)", "Model", model=model,
                           clip=clip, lora_name=EXAMPLE_LORA, strength_model=lora,
                           strength_clip=lora)
        model, clip = lora_node[0], lora_node[1]
    pos = g.node("CLIPTextEncode", "Positive prompt", "Model", clip=clip, text=positive)
    neg = g.node("CLIPTextEncode", "Negative prompt", "Model", clip=clip, text=negative)
    return {"model": model, "vae": ckpt[2], "positive": pos[0], "negative": neg[0]}


def repair(g: Graph, image, mask, title: str, engines: dict | None = None, **values) -> Node:
    settings = {"mode": "guided-blend", "category": "logo", "processing_size": 512,
                "num_candidates": 1, "seed": 7, "steps": 20, "cfg": 7.0,
                "sampler_name": "euler", "scheduler": "normal"} | values
    return g.node("RegionRepair_GuidedBlendInpaint", title, "Repair", image=image, mask=mask,
                  **(engines or {}), **settings)


def save(g: Graph, images, prefix: str, title: str = "Save") -> Node:
    return g.node("SaveImage", title, "Output", images=images,
                  filename_prefix=f"region_repair/{prefix}")


def quality_check(g: Graph, original, candidates: Node, mask, info=None) -> Node:
    """Quality Check on a generator's output, its report shown (and written by the demo)."""
    links = {"info": info} if info is not None else {}
    qc = g.node("RegionRepair_QualityCheck", "Quality Check", "Review", original=original,
                candidates=candidates[0], mask=mask, **links)
    g.node("PreviewAny", "Quality Check report", "Review", source=qc[0])
    return qc


def save_and_review(g: Graph, original, fixed: Node, prefix: str) -> None:
    """Save a Guided Blend Inpaint result and put Quality Check on it (mask and info)."""
    save(g, fixed, prefix)
    quality_check(g, original, fixed, fixed[1], fixed[3])


def mask_from_bbox() -> Graph:
    g = Graph()
    g.note("**Mask From BBox** turns a normalized rectangle `[x, y, w, h]` (origin top-left, "
           "fractions 0..1 of the image, as PiktID's `mask.bbox_norm`) into a MASK the size of "
           "the photo. Several boxes: one per line. `units = pixels` takes pixel values.\n\n"
           "Here the region is shown by inverting its colours; everything else is untouched.")
    photo = g.node("LoadImage", "Photo", "Input", image=sample("astronaut.png"))
    box = g.node("RegionRepair_MaskFromBBox", "Mask from bbox (PiktID bbox_norm)", "Mask",
                 image=photo, bbox="0.35, 0.13, 0.19, 0.19")
    inverted = g.node("ImageInvert", "Highlight (inverted colours)", "Mask", image=photo)
    shown = g.node("ImageCompositeMasked", "Show the region", "Output", destination=photo,
                   source=inverted, mask=box)
    save(g, shown, "mask_from_bbox")
    return g


def region_blur() -> Graph:
    g = Graph()
    g.note("**Crop, edit and stitch regions back, changing nothing else.**\n\n"
           "- **Mask From BBox**: one box per line, `[x, y, w, h]` as fractions of the image.\n"
           "- **Dilate Blur Pad**: OctoAI adetailer's `mask_dilation` 4, `mask_blur` 4, "
           "`mask_padding` 32; windows at the border slide inward; `per_object` gives each "
           "box its own crop.\n- **Image Blur** stands in for any sampler.\n"
           "- **Stitch Region** puts the crops back; its seamless blend replaces the boxes "
           "completely with no seam at their edges and keeps every pixel outside them "
           "bit-identical.")
    photo = g.node("LoadImage", "Photo", "Input", image=sample("astronaut.png"))
    boxes = g.node("RegionRepair_MaskFromBBox", "Regions: face and name tag", "Regions",
                   image=photo, bbox=FACE_AND_TAG)
    pad = g.node("RegionRepair_DilateBlurPad", "Dilate, blur, pad: one crop per object",
                 "Regions", image=photo, mask=boxes, region_mode="per_object",
                 resize_mode="multiple_of_64")
    blur = g.node("ImageBlur", "The edit: a strong blur (stand-in for any sampler)", "Edit",
                  image=pad[0], blur_radius=31, sigma=8.0)
    stitched = g.node("RegionRepair_StitchRegion", "Stitch back (seamless)", "Edit",
                      image=photo, region=pad[2], crops=blur)
    save(g, stitched, "region_blur")
    return g


DETAIL_REPAIR_NOTE = (
    "**PiktID Detail Repair, locally.** The mission patch in the photo is garbled; a close-up "
    "shot of the real patch (rotated, rescaled, brighter) is the reference. Guided Blend Inpaint "
    "aligns the reference by feature matching in the ring of context around the mask, warps it "
    "into place and matches its colour at the boundary.\n\n"
    "- `mode` guided-blend: only the masked pixels change.\n"
    "- `context_factor` 3: the context window is the mask's box x 3.\n"
    "- `num_candidates` 1-4, seeds seed, seed+1, ...\n"
    "- The **info** JSON says which reference aligned and how well.")


def detail_repair_logo(diffusion: bool) -> Graph:
    g = Graph()
    g.note(DETAIL_REPAIR_NOTE + ("\n\n**Diffusion variant:** the aligned reference is the "
                                 "init of an SD1.5 inpaint model at `reference_denoise` 0.6."
                                 if diffusion else "\n\n**Embedded variant:** no weights; the "
                                 "warped reference is the result."))
    photo = g.node("LoadImage", "Photo with a garbled logo", "Input",
                   image=sample("astronaut_garbled_patch.png"))
    reference = g.node("LoadImage", "Reference shot (any size)", "Input",
                       image=sample("astronaut_patch_reference.png"))
    mask = g.node("RegionRepair_MaskFromBBox", "Mask: the patch (bbox_norm)", "Input",
                  image=photo, bbox=PATCH_BOX)
    engines = sd15_inpaint(g, "a crisp embroidered mission patch", "blurry, garbled") \
        if diffusion else None
    fixed = repair(g, photo, mask, "Detail Repair: logo, with reference", engines,
                   references=reference[0], category="logo",
                   reviewer_note="match the reference patch exactly")
    save_and_review(g, photo, fixed, "detail_repair_logo")
    return g


def detail_repair_general(diffusion: bool) -> Graph:
    g = Graph()
    g.note("**PiktID Detail Repair, general mode.** `category` general makes `reviewer_note` the "
           "instruction for any masked edit; with an empty note the region is regenerated "
           "cleanly from its surroundings. Here: the name tag on the suit."
           + ("" if diffusion else "\n\n**Embedded variant:** classical fill (removal only)."))
    photo = g.node("LoadImage", "Photo", "Input", image=sample("astronaut.png"))
    mask = g.node("RegionRepair_MaskFromBBox", "Mask: the name tag", "Input", image=photo,
                  bbox="0.545, 0.66, 0.1, 0.068")
    engines = sd15_inpaint(g, "", "blurry, artifacts") if diffusion else None
    fixed = repair(g, photo, mask, "Detail Repair: general edit", engines, category="general",
                   reviewer_note="remove the name tag, plain orange fabric",
                   num_candidates=2 if diffusion else 1)
    save_and_review(g, photo, fixed, "detail_repair_general")
    return g


def photio_regen(diffusion: bool, prompt: str) -> Graph:
    g = Graph()
    adds = bool(prompt)
    g.note("**Photio Regen, locally.** An empty prompt removes what the mask covers; a prompt "
           "adds that object. Photio's masks are black = edit: **Clean Mask** with polarity "
           "`black = edit (Photio)` converts a Photio mask; here the mask comes from a box. "
           "Output keeps the input's size."
           + ("" if diffusion else "\n\n**Embedded variant:** classical fill (removal)."))
    photo = g.node("LoadImage", "Photo", "Input", image=sample("coffee.png"))
    mask = g.node("RegionRepair_MaskFromBBox", "Mask: the spoon", "Input", image=photo,
                  bbox=SPOON_BOX)
    engines = sd15_inpaint(g, prompt, "worst quality, low quality, illustration, 3d, 2d, "
                           "painting, cartoons, sketch") if diffusion else None
    fixed = repair(g, photo, mask, "Regen: add object" if adds else "Regen: remove", engines,
                   category="general", reviewer_note=prompt, cfg=2.5, steps=20)
    save_and_review(g, photo, fixed, "photio_regen_add" if adds else "photio_regen_remove")
    return g


def picpik_inpaint(diffusion: bool) -> Graph:
    g = Graph()
    g.note("**PICPIK ModifyMaskedPixels, inpaint.** `SubModelList` LoRA → LoraLoader (strength "
           "= LoraWeight). `Image2Image` reference → the `references` input; its `ReferStrength` "
           "s maps to `reference_denoise` = 1 - s (0.5 → 0.5). `Masked.MaskBlur` → `feather` "
           "with `blend` = inward (the default seamless blend needs no blur); "
           "`InvertMask` → Clean Mask `invert`; `Width`/`Height` → `processing_size`; "
           "`BatchSize` → `num_candidates` (1-4)."
           + ("" if diffusion else "\n\n**Embedded variant:** the reference warp, no LoRA."))
    photo = g.node("LoadImage", "Raw image (ImageAndMaskList[0])", "Input",
                   image=sample("astronaut_garbled_patch.png"))
    reference = g.node("LoadImage", "Image2Image reference", "Input",
                       image=sample("astronaut_patch_reference.png"))
    boxes = g.node("RegionRepair_MaskFromBBox", "Mask (ImageAndMaskList[1])", "Input",
                   image=photo, bbox=PATCH_BOX)
    mask = g.node("RegionRepair_CleanMask", "Masked.InvertMask", "Input", mask=boxes,
                  invert=False)
    engines = sd15_inpaint(g, "an embroidered mission patch", "", lora=0.8) if diffusion \
        else None
    fixed = repair(g, photo, mask, "ModifyMaskedPixels", engines, references=reference[0],
                   reference_denoise=0.5, category="general",
                   reviewer_note="an embroidered mission patch")
    save_and_review(g, photo, fixed, "picpik_inpaint")
    return g


def picpik_outpaint(diffusion: bool) -> Graph:
    g = Graph()
    g.note("**PICPIK ModifyMaskedPixels, outpaint.** **Outpaint Pad** grows the canvas and "
           "masks the new border; Guided Blend Inpaint fills it, keeping every original pixel."
           + ("" if diffusion else "\n\n**Embedded variant:** classical fill of the border."))
    photo = g.node("LoadImage", "Photo", "Input", image=sample("chelsea.png"))
    padded = g.node("RegionRepair_OutpaintPad", "Outpaint: 64 px left and right", "Canvas",
                    image=photo, left=64.0, top=0.0, right=64.0, bottom=0.0)
    engines = sd15_inpaint(g, "a cat on a wooden floor", "") if diffusion else None
    fixed = repair(g, padded[0], padded[1], "Fill the new border", engines, category="general",
                   reviewer_note="continue the scene", context_factor=1.5, processing_size=0)
    save_and_review(g, padded[0], fixed, "picpik_outpaint")
    return g


def garment_recolor_set(diffusion: bool = False) -> Graph:
    g = Graph()
    g.note("**PiktID Garment Recolor, locally: one garment, one colour, consistent across a "
           "set.** Three shots of the same suit (different crops, sizes and lighting) load as "
           "a list. With no masks connected, the garment is found automatically by the "
           "bundled mediapipe models (person, pose, face, hands) and GrabCut.\n\n"
           "- Target: `reference_text` (hex or colour name), `instruction` (\"a darker "
           "navy\"), or a swatch image.\n- `use_anchor`: one colour transfer from the anchor "
           "image for every image. `post_process`: pull each garment onto the anchor's "
           "result.\n- The **report** gives ΔE2000 to the target and to the anchor per image."
           + ("\n\n**Diffusion variant:** an SD1.5 inpaint model refines the fabric texture "
              "inside each garment mask at denoise 0.3; the anchor correction runs afterwards, "
              "so the set stays on target." if diffusion else ""))
    photos = g.node("RegionRepair_LoadImageSet", f"The set (input/{sample('garment_set')})",
                    "Input", folder=sample("garment_set"))
    engines = sd15_inpaint(g, "a jacket, fabric texture, photo", "blurry") if diffusion else {}
    recolored = g.node("RegionRepair_GarmentRecolorAnchor", "Garment Recolor (anchor)",
                       "Recolour", images=photos, reference_text="forest green",
                       garment_label="jacket", **engines)
    save(g, recolored, "garment_recolor_set_refined" if diffusion else "garment_recolor_set")
    g.node("PreviewAny", "Recolour report (ΔE2000)", "Review", source=recolored[2])
    return g


ADETAILER_TARGETS = {"face": ("face_mesh_mediapipe", "astronaut.png", "a detailed face"),
                     "hand": ("hands_mediapipe", "hand_call.jpg", "a detailed hand"),
                     "eyes": ("eyes_mesh_mediapipe", "astronaut.png", "detailed eyes")}


def adetailer(target: str, diffusion: bool) -> Graph:
    detector, photo_name, prompt = ADETAILER_TARGETS[target]
    g = Graph()
    g.note(f"**OctoAI adetailer, locally: {target}.** Detect Objects finds every {target} "
           f"offline (`{detector}`, bundled mediapipe model); the Detailer grows each mask by "
           "`mask_dilation` 4, blurs it by `mask_blur` 4, pads it by `mask_padding` 32, snaps "
           "the crop to the SD1.5 resolutions, inpaints at strength 0.9 and stitches it back; "
           "nothing outside the grown masks changes. Per-detection prompts: `a [SEP] b`."
           + ("" if diffusion else "\n\n**Embedded variant:** no model; a strong blur "
              "hides each detection (offline anonymising)."))
    photo = g.node("LoadImage", "Photo", "Input", image=sample(photo_name))
    found = g.node("RegionRepair_Detect", f"Detect: {target}", "Detect", image=photo,
                   detector=detector)
    engines = sd15_inpaint(g, prompt, "blurry, deformed") if diffusion else {}
    detailed = g.node("RegionRepair_Detailer", "Detailer", "Repair", image=photo,
                      detections=found[0], prompt=prompt if diffusion else "", **engines)
    save(g, detailed, f"adetailer_{target}")
    quality_check(g, photo, detailed, found[1])
    g.node("PreviewAny", "Detailer counts", "Review", source=detailed[4])
    return g


VENDOR_NOTES = {
    "piktid/detail-repair": "PiktID v2 `POST /detail-repair`: uploads the image, mask and "
                            "references, follows the job over SSE, downloads the candidates.",
    "piktid/garment-recolor": "PiktID v2 `POST /garment-recolor` (options: target colour "
                              "fields as documented, e.g. `{\"reference_text\": \"#2E5A3B\"}`).",
    "picpik/ModifyMaskedPixels": "PICPIK `Action=ModifyMaskedPixels`, signed with your public "
                                 "and private key, polled through ListTasksDetails.",
    "photio/regen": "Photio `POST /v1/inference/regen` (black = edit: the node inverts the "
                    "pack's mask for you). Empty prompt removes, a prompt adds.",
    "octoai-compatible/adetailer": "An OctoAI-compatible `/adetailer` server. OctoAI shut "
                                   "down in 2024: set `base_url` to a compatible server, and "
                                   "allow it outside the graph "
                                   "(`REGION_REPAIR_OCTOAI_HOSTS=https://your.server` before "
                                   "starting ComfyUI), or the key is not sent.",
}


def vendor(endpoint: str) -> Graph:
    g = Graph()
    g.note(f"**{endpoint} through Remote Vendor Inpaint.** {VENDOR_NOTES[endpoint]}\n\n"
           "Keys never go in the workflow: set the environment variables or the keys file "
           "(docs/vendors.md) before starting ComfyUI; a key goes only to its vendor's own "
           "host unless you allow another one there. `blend` (on) confines the vendor's "
           "change to the mask, seamlessly by default; Quality Check flags a vendor that "
           "shifted or rescaled the frame.")
    photo = g.node("LoadImage", "Photo", "Input", image=sample("astronaut.png"))
    mask = g.node("RegionRepair_MaskFromBBox", "Mask", "Input", image=photo,
                  bbox="0.35, 0.13, 0.19, 0.19")
    remote = g.node("RegionRepair_RemoteVendorInpaint", f"Remote: {endpoint}", "Vendor",
                    image=photo, mask=mask, endpoint=endpoint,
                    prompt="" if endpoint.startswith("piktid/garment") else "a clean face",
                    options='{"reference_text": "#2E5A3B"}'
                    if endpoint == "piktid/garment-recolor" else "{}")
    save(g, remote, "vendor_" + endpoint.split("/")[0].replace("-compatible", ""))
    quality_check(g, photo, remote, remote[1], remote[2])
    return g


# The file name is the template's title in the editor's Templates list: the endpoint first, so
# an alphabetical sort groups each vendor's variants; then the variant and what it needs.
SD15 = "(SD1.5 inpaint model)"
NO_WEIGHTS = "(no weights)"
VENDOR_TITLES = {"piktid/detail-repair": "PiktID Detail Repair",
                 "piktid/garment-recolor": "PiktID Garment Recolor",
                 "picpik/ModifyMaskedPixels": "PICPIK ModifyMaskedPixels",
                 "photio/regen": "Photio Regen",
                 "octoai-compatible/adetailer": "OctoAI adetailer"}
WORKFLOW_BUILDERS: dict[str, Callable[[], Graph]] = {
    f"Building block - Mask From BBox {NO_WEIGHTS}": mask_from_bbox,
    f"Building block - crop, edit and stitch back {NO_WEIGHTS}": region_blur,
    f"PiktID Detail Repair - logo with reference {SD15}": lambda: detail_repair_logo(True),
    f"PiktID Detail Repair - logo with reference {NO_WEIGHTS}": lambda: detail_repair_logo(False),
    f"PiktID Detail Repair - general edit {SD15}": lambda: detail_repair_general(True),
    f"PiktID Detail Repair - general edit {NO_WEIGHTS}": lambda: detail_repair_general(False),
    f"Photio Regen - remove an object {SD15}": lambda: photio_regen(True, ""),
    f"Photio Regen - remove an object {NO_WEIGHTS}": lambda: photio_regen(False, ""),
    f"Photio Regen - add an object {SD15}": lambda: photio_regen(True, "a small silver spoon"),
    f"PICPIK ModifyMaskedPixels - inpaint with LoRA and reference {SD15}":
        lambda: picpik_inpaint(True),
    f"PICPIK ModifyMaskedPixels - inpaint with reference {NO_WEIGHTS}":
        lambda: picpik_inpaint(False),
    f"PICPIK ModifyMaskedPixels - outpaint {SD15}": lambda: picpik_outpaint(True),
    f"PICPIK ModifyMaskedPixels - outpaint {NO_WEIGHTS}": lambda: picpik_outpaint(False),
    f"PiktID Garment Recolor - a set of three {NO_WEIGHTS}": garment_recolor_set,
    f"PiktID Garment Recolor - a set of three, texture refined {SD15}":
        lambda: garment_recolor_set(True),
    **{f"OctoAI adetailer - {target} {SD15}": (lambda t=target: adetailer(t, True))
       for target in ADETAILER_TARGETS},
    **{f"OctoAI adetailer - {target}, blurred out {NO_WEIGHTS}":
       (lambda t=target: adetailer(t, False)) for target in ADETAILER_TARGETS},
    **{f"{VENDOR_TITLES[e]} - vendor API (your key)": (lambda e=e: vendor(e))
       for e in VENDOR_NOTES},
}


def with_own_photo_note(g: Graph) -> Graph:
    """Every template says how to swap the sample photo for the user's own."""
    loaders = {node.type for node in g.nodes}
    note = OWN_SET_NOTE if "RegionRepair_LoadImageSet" in loaders else OWN_PHOTO_NOTE
    g.note(note.format(folder=SAMPLES_FOLDER))
    return g


def main() -> int:
    WORKFLOWS.mkdir(exist_ok=True)
    API_TWINS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="region-repair-build-") as base:
        with ComfyServer(Path(base)) as server:
            object_info = server.get_json("/object_info")
    for stale in [*WORKFLOWS.glob("*.json"), *API_TWINS.glob("*.json")]:
        if stale.stem not in WORKFLOW_BUILDERS:  # renamed or dropped
            stale.unlink()
            stale.with_suffix(".jpg").unlink(missing_ok=True)
    for name, build in WORKFLOW_BUILDERS.items():
        ui = with_own_photo_note(build()).to_ui(object_info)
        (WORKFLOWS / f"{name}.json").write_text(json.dumps(ui, indent=1) + "\n")
        twin = ui_to_api(ui, object_info)
        (API_TWINS / f"{name}.json").write_text(json.dumps(twin, indent=1) + "\n")
        print(f"wrote workflows/{name}.json and its API twin")
    # The Templates thumbnails are each workflow's own result: the demo runs them and draws them.
    return demo.main()


if __name__ == "__main__":
    sys.exit(main())
