"""`make demo`: the pack's main job, end to end.

Starts a real, headless ComfyUI server with the pack (which copies its sample photos into the
server's `input/region-repair-samples/`, as for any user), runs every shipped workflow in
`workflows/` on them, and writes to `out/<workflow>/`: each result, a before/after contact sheet
(`contact_sheet.png`), and every JSON the workflow shows (Quality Check's verdicts, the
generators' info) as `<title>.json`. Workflows whose model files are missing are skipped, and the
demo says which files they need and where to put them. Exits non-zero if a workflow fails or
nothing was written.

It also writes each workflow's Templates thumbnail, `workflows/<name>.jpg` (see
`template_thumbnail`), and, where Chromium and Playwright are installed, screenshots of the
editor's Templates dialog and of one opened template to docs/images/ (scripts/browser.py).

    REGION_REPAIR_MODELS=/path/to/ComfyUI/models make demo   # also run the diffusion variants
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

import browser
from comfy_server import PACK_ROOT, ComfyServer, pack_module
from workflow_api import combo_options, ui_to_api

set_files = pack_module("core/image_set").set_files

WORKFLOWS = PACK_ROOT / "workflows"
OUT = PACK_ROOT / "out"
SCREENSHOTS = PACK_ROOT / "docs" / "images"
THUMB_HEIGHT = 256
# Templates thumbnails: the editor shows them square; the size limit keeps the pack small.
TEMPLATE_SIZE = 512
TEMPLATE_MAX_BYTES = 60_000
# The opened template shown in the README.
SCREENSHOT_TEMPLATE = "PiktID Detail Repair - logo with reference (no weights)"
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


def workflow_digest(path: Path) -> str:
    """What a thumbnail records of the workflow it shows, so a test sees a stale one."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fit(image: Image.Image, width: int, height: int) -> Image.Image:
    scale = min(width / image.width, height / image.height)
    return image.convert("RGB").resize((max(1, round(image.width * scale)),
                                        max(1, round(image.height * scale))), Image.LANCZOS)


def template_thumbnail(before: Image.Image, after: Image.Image | None, caption: str
                       ) -> Image.Image:
    """A square tile: the input on the left and the result on the right, each labelled, with a
    caption below. With no result (the workflow needs models or keys the demo does not have), the
    right half is a card saying what it needs: a drawn card, never another workflow's result."""
    half, top, bottom = TEMPLATE_SIZE // 2, 56, 96
    tile = Image.new("RGB", (TEMPLATE_SIZE, TEMPLATE_SIZE), "#202428")
    draw = ImageDraw.Draw(tile)
    label, small = ImageFont.load_default(size=26), ImageFont.load_default(size=22)
    panels = [("before", before), ("after", after)]
    for index, (name, image) in enumerate(panels):
        x0 = index * half
        draw.text((x0 + half // 2, top // 2), name, font=label, fill="#e8e8e8", anchor="mm")
        if image is None:
            draw.rounded_rectangle((x0 + 10, top, x0 + half - 10, TEMPLATE_SIZE - bottom), 12,
                                   fill="#3a3f46")
            draw.multiline_text((x0 + half // 2, (TEMPLATE_SIZE + top - bottom) // 2),
                                "not run here;\nneeds\n" + "\n".join(
                                    textwrap.fill(item, 16) for item in caption.split(", ")),
                                font=small, fill="#ffd98a", anchor="mm", align="center",
                                spacing=6)
            continue
        panel = fit(image, half - 8, TEMPLATE_SIZE - top - bottom)
        tile.paste(panel, (x0 + (half - panel.width) // 2,
                           top + (TEMPLATE_SIZE - top - bottom - panel.height) // 2))
    draw.line((half, top, half, TEMPLATE_SIZE - bottom), fill="#e8e8e8", width=2)
    text = "runs as opened" if after is not None else "open it, add what it needs, run"
    draw.text((half, TEMPLATE_SIZE - bottom // 2), text, font=label, fill="#9fe09f" if after
              else "#ffd98a", anchor="mm")
    return tile


def write_template_thumbnail(path: Path, tile: Image.Image) -> Path:
    """`workflows/<name>.jpg`, served by ComfyUI as the template's thumbnail; its JPEG comment is
    the workflow's digest."""
    target = path.with_suffix(".jpg")
    for quality in (85, 75, 65, 55):
        data = io.BytesIO()
        tile.save(data, "JPEG", quality=quality, optimize=True,
                  comment=workflow_digest(path).encode())
        if data.tell() <= TEMPLATE_MAX_BYTES:
            break
    target.write_bytes(data.getvalue())
    return target


# What a thumbnail's card says a missing file is, by its models sub-folder.
MODEL_KINDS = {"checkpoints": "an SD1.5 inpaint checkpoint", "loras": "a LoRA",
               "vae": "a VAE", "sams": "a SAM checkpoint"}


def needs_caption(missing: list[str]) -> str:
    return ", ".join("your vendor key" if "key" in item else MODEL_KINDS[Path(item).parent.name]
                     for item in missing)


def run_workflow(server: ComfyServer, path: Path, prompt: dict, base: Path
                 ) -> tuple[int, Image.Image, Image.Image | None]:
    target = OUT / path.stem
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    history = server.run(prompt, timeout=900)
    before = [(node["inputs"]["image"], Image.open(base / "input" / node["inputs"]["image"]))
              for node in prompt.values() if node["class_type"] == "LoadImage"]
    for node in prompt.values():
        if node["class_type"] == "RegionRepair_LoadImageSet":
            folder = base / "input" / node["inputs"]["folder"]
            before += [(path.name, Image.open(path)) for path in set_files(folder)]
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
    if not after:
        return written, before[0][1], None
    # The photo the first result was made from: of the result's size, the first loaded.
    result = after[0][1]
    same_size = [image for _, image in before if image.size == result.size]
    return written, (same_size or [before[0][1]])[0], result


def first_input(prompt: dict, base: Path) -> Image.Image:
    """The photo a workflow opens with: its first Load Image, or its image set's first file."""
    for node in prompt.values():
        if node["class_type"] == "LoadImage":
            return Image.open(base / "input" / node["inputs"]["image"])
        if node["class_type"] == "RegionRepair_LoadImageSet":
            return Image.open(set_files(base / "input" / node["inputs"]["folder"])[0])
    raise ValueError("the workflow loads no photo")


def screenshots(server: ComfyServer) -> None:
    """The README's pictures of the editor: the Templates dialog and one opened template."""
    why_not = browser.unavailable()
    if why_not:
        print(f"skip  screenshots: {why_not}")
        return
    # Large enough that a whole template fits at a zoom where the editor still draws its text.
    with browser.Editor(server.url, viewport={"width": 2000, "height": 1250}) as editor:
        editor.open_templates(browser.PACK_TEMPLATES)  # every thumbnail loaded
        editor.sort_templates()
        editor.page.mouse.move(1, 1)  # no card hovered (a hovered thumbnail zooms)
        editor.page.screenshot(path=SCREENSHOTS / "templates_dialog.png")
        editor.load_template(browser.PACK_TEMPLATES, SCREENSHOT_TEMPLATE)
        editor.run_and_wait_for_images()  # the result shows on its Save node
        editor.fit_view()
        editor.page.screenshot(path=SCREENSHOTS / "template_opened.png")
    print("wrote docs/images/templates_dialog.png and docs/images/template_opened.png (opened "
          "from the dialog and run)")


def main() -> int:
    OUT.mkdir(exist_ok=True)
    models = os.environ.get("REGION_REPAIR_MODELS")
    written, skipped = 0, []
    with tempfile.TemporaryDirectory(prefix="region-repair-demo-") as base_dir:
        base = Path(base_dir)
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
                    write_template_thumbnail(path, template_thumbnail(
                        first_input(prompt, base), None, needs_caption(missing)))
                    continue
                started = time.monotonic()
                count, before, after = run_workflow(server, path, prompt, base)
                write_template_thumbnail(path, template_thumbnail(before, after, ""))
                written += count
                print(f"ran   {path.name}: {count} image(s) and a contact sheet in "
                      f"out/{path.stem}/ ({time.monotonic() - started:.1f} s)")
            print(f"wrote {len(list(WORKFLOWS.glob('*.jpg')))} template thumbnails in workflows/")
            screenshots(server)
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
