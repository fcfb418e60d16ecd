"""`make demo`: the pack's main job, end to end.

Starts a real, headless ComfyUI server with the pack, runs every shipped workflow in `workflows/`
on the bundled real photos (assets/photos), and writes to `out/<workflow>/`: each result, a
before/after contact sheet (`contact_sheet.png`), and every JSON the workflow shows (Quality
Check's verdicts, the generators' info) as `<title>.json`. Workflows whose model files are
missing are skipped, and the demo says which files they need and where to put them. Exits
non-zero if a workflow fails or nothing was written.

    REGION_REPAIR_MODELS=/path/to/ComfyUI/models make demo   # also run the diffusion variants
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

from comfy_server import PACK_ROOT, ComfyServer
from workflow_api import combo_options, ui_to_api

WORKFLOWS = PACK_ROOT / "workflows"
PHOTOS = PACK_ROOT / "assets" / "photos"
OUT = PACK_ROOT / "out"
THUMB_HEIGHT = 256
# Model-file inputs of ComfyUI's loaders: (input name, models sub-folder).
MODEL_INPUTS = {"ckpt_name": "checkpoints", "lora_name": "loras", "vae_name": "vae",
                "model_name": "sams"}


def missing_models(prompt: dict, object_info: dict) -> list[str]:
    """The model files a prompt names that the server cannot list."""
    missing = []
    for node in prompt.values():
        spec = {**object_info[node["class_type"]]["input"].get("required", {}),
                **object_info[node["class_type"]]["input"].get("optional", {})}
        for name, folder in MODEL_INPUTS.items():
            value = node["inputs"].get(name)
            if isinstance(value, str) and value not in combo_options(spec[name]):
                missing.append(f"models/{folder}/{value}")
    return missing


def thumbnail(image: Image.Image, label: str) -> Image.Image:
    scaled = image.convert("RGB")
    scaled = scaled.resize((max(1, round(scaled.width * THUMB_HEIGHT / scaled.height)),
                            THUMB_HEIGHT))
    tile = Image.new("RGB", (scaled.width, THUMB_HEIGHT + 24), "white")
    tile.paste(scaled, (0, 24))
    ImageDraw.Draw(tile).text((6, 5), label, fill="black")
    return tile


def contact_sheet(before: list[tuple[str, Image.Image]], after: list[tuple[str, Image.Image]]
                  ) -> Image.Image:
    tiles = ([thumbnail(image, f"before: {name}") for name, image in before]
             + [thumbnail(image, f"after: {name}") for name, image in after])
    sheet = Image.new("RGB", (sum(t.width for t in tiles) + 8 * (len(tiles) + 1),
                              THUMB_HEIGHT + 40), "#ddd")
    x = 8
    for tile in tiles:
        sheet.paste(tile, (x, 8))
        x += tile.width + 8
    return sheet


def run_workflow(server: ComfyServer, path: Path, prompt: dict, base: Path) -> int:
    target = OUT / path.stem
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    history = server.run(prompt, timeout=900)
    before = [(node["inputs"]["image"], Image.open(base / "input" / node["inputs"]["image"]))
              for node in prompt.values() if node["class_type"] == "LoadImage"]
    for node in prompt.values():
        if node["class_type"] == "LoadImageDataSetFromFolder":
            folder = base / "input" / node["inputs"]["folder"]
            before += [(path.name, Image.open(path)) for path in sorted(folder.iterdir())]
    after, written = [], 0
    for node_id, output in history["outputs"].items():
        title = prompt[node_id]["_meta"]["title"]
        for info, data in zip(output.get("images", []), server.output_files(history, node_id)
                              if output.get("images") else []):
            (target / info["filename"]).write_bytes(data)
            after.append((title, Image.open(io.BytesIO(data))))
            written += 1
        for text in output.get("text", []):
            slug = re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")
            (target / f"{slug}.json").write_text(json.dumps(json.loads(text), indent=1) + "\n")
    if after:
        contact_sheet(before, after).save(target / "contact_sheet.png")
    return written


def main() -> int:
    OUT.mkdir(exist_ok=True)
    models = os.environ.get("REGION_REPAIR_MODELS")
    written, skipped = 0, []
    with tempfile.TemporaryDirectory(prefix="region-repair-demo-") as base_dir:
        base = Path(base_dir)
        shutil.copytree(PHOTOS, base / "input")
        if models:
            (base / "models").symlink_to(Path(models).resolve(), target_is_directory=True)
        with ComfyServer(base) as server:
            object_info = server.get_json("/object_info")
            for path in sorted(WORKFLOWS.glob("*.json")):
                prompt = ui_to_api(json.loads(path.read_text()), object_info)
                missing = missing_models(prompt, object_info)
                if any(n["class_type"] == "RegionRepair_RemoteVendorInpaint"
                       for n in prompt.values()):
                    missing.append("a vendor API key and network access (docs/vendors.md)")
                if missing:
                    skipped.append((path.name, missing))
                    continue
                started = time.monotonic()
                count = run_workflow(server, path, prompt, base)
                written += count
                print(f"ran   {path.name}: {count} image(s) and a contact sheet in "
                      f"out/{path.stem}/ ({time.monotonic() - started:.1f} s)")
    for name, missing in skipped:
        print(f"skip  {name}: needs {', '.join(missing)}")
    if skipped:
        print("      To run the diffusion variants too, put the files in a ComfyUI models "
              "folder and run REGION_REPAIR_MODELS=/path/to/models make demo (README: "
              "Workflows). Vendor workflows run in ComfyUI with your own keys.")
    if not written:
        print("demo: no workflow wrote an image", file=sys.stderr)
        return 1
    print(f"demo: {written} image(s) and {len(list(OUT.glob('*/contact_sheet.png')))} contact "
          f"sheet(s) in {OUT.relative_to(PACK_ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
