"""A garment set through the fleet: a manifest's list of files reaches the shipped workflow's
Load Image Set as a folder of its own under input/fleet/, which ComfyUI 0.3.75's validation
accepts (its folder options are listed again, recursively, for every prompt), and the outputs
come in the list's order (docs/fleet.md)."""

from __future__ import annotations

import pytest
from fleet_testing import output_bytes, results, run_fleet, write_manifest
from pack_paths import PACK_ROOT
from PIL import Image

from fleet.comfy import ComfyClient
from fleet.manifest import read_manifest

pytestmark = pytest.mark.server

RECOLOR_SET = "PiktID Garment Recolor - a set of three (no weights)"
SHOTS = PACK_ROOT / "assets" / "photos" / "garment_set"
SIZES = {"suit_studio": (120, 160), "suit_dim_warm": (150, 110), "suit_closeup": (96, 96)}


def test_a_mixed_size_set_gives_the_outputs_of_the_same_prompt_posted_directly(servers, tmp_path):
    photos = []
    for name, size in SIZES.items():
        photos.append(tmp_path / f"{name}.png")
        Image.open(SHOTS / f"{name}.png").convert("RGB").resize(size).save(photos[-1])
    manifest = write_manifest(tmp_path / "manifest.jsonl", [
        {"id": "set", "workflow": RECOLOR_SET, "inputs": {"1": [str(p) for p in photos]},
         "params": {"Garment Recolor (anchor)": {"reference_text": "#2E5A3B"}}}])
    out = tmp_path / "out"
    finished = run_fleet(manifest, out, "--servers", servers[0].url)
    assert finished.returncode == 0, finished.stderr
    row = results(out)["set"]
    assert row["status"] == "done", row["error"]
    assert list(row["outputs"]) == ["set/3_00.png", "set/3_01.png", "set/3_02.png"]

    job, = read_manifest(manifest)
    client = ComfyClient(servers[1].url)
    ui = client.run(job.prompt, job.prompt_id, job.uploads, timeout=120)
    direct = {f"set/3_{index:02d}.png": client.fetch(info)
              for index, info in enumerate(ui["3"]["images"])}
    assert output_bytes(out) == direct
    # Each image was recoloured at its own size, in the manifest's order.
    assert [Image.open(out / name).size for name in direct] == list(SIZES.values())
