"""`make demo`: the pack's main job, end to end.

Starts a real, headless ComfyUI server with the pack, runs every shipped workflow in `workflows/`
that needs no model weights on the bundled real photos (assets/photos), and writes each result to
`out/<workflow>/`. Exits non-zero if any workflow fails or writes no image.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from comfy_server import PACK_ROOT, ComfyServer
from workflow_api import ui_to_api

WORKFLOWS = PACK_ROOT / "workflows"
PHOTOS = PACK_ROOT / "assets" / "photos"
OUT = PACK_ROOT / "out"


def needs_weights(prompt: dict) -> bool:
    """Model loaders (checkpoints, LoRAs, VAEs, ...) mean the user must bring weights."""
    return any(node["class_type"].endswith(("Loader", "LoaderSimple")) for node in prompt.values())


def main() -> int:
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="region-repair-demo-") as base:
        shutil.copytree(PHOTOS, Path(base) / "input")
        with ComfyServer(Path(base)) as server:
            object_info = server.get_json("/object_info")
            written = 0
            for path in sorted(WORKFLOWS.glob("*.json")):
                prompt = ui_to_api(json.loads(path.read_text()), object_info)
                if needs_weights(prompt):
                    print(f"skip  {path.name}: needs model weights")
                    continue
                started = time.monotonic()
                history = server.run(prompt)
                target = OUT / path.stem
                target.mkdir(exist_ok=True)
                for node_id, output in history["outputs"].items():
                    for info, data in zip(output.get("images", []),
                                          server.output_files(history, node_id)):
                        (target / info["filename"]).write_bytes(data)
                        written += 1
                        print(f"wrote {(target / info['filename']).relative_to(PACK_ROOT)}")
                print(f"ran   {path.name} in {time.monotonic() - started:.1f} s")
    if not written:
        print("demo: no workflow wrote an image", file=sys.stderr)
        return 1
    print(f"demo: {written} image(s) in {OUT.relative_to(PACK_ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
