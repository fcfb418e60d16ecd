"""The sample photos reach ComfyUI's input folder once, and nothing already there is touched."""

from __future__ import annotations

import json

from pack_paths import PACK_ROOT

from region_repair.pipelines.core.samples import SAMPLES_FOLDER, install_samples, sample_paths

PHOTOS = PACK_ROOT / "assets" / "photos"
WORKFLOWS = PACK_ROOT / "workflows"


def workflow(tmp_path, *loaders):
    folder = tmp_path / "workflows"
    folder.mkdir()
    nodes = [{"type": kind, "widgets_values": [value, "image"]} for kind, value in loaders]
    (folder / "one.json").write_text(json.dumps({"nodes": nodes}))
    return folder


def test_every_photo_the_shipped_workflows_load_is_a_sample(tmp_path):
    names = sample_paths(WORKFLOWS)
    assert "astronaut.png" in names and "garment_set" in names
    assert all((PHOTOS / name).exists() for name in names)
    copied = install_samples(PHOTOS, WORKFLOWS, tmp_path)
    assert (tmp_path / SAMPLES_FOLDER / "CREDITS.md") in copied
    for name in names:
        assert (tmp_path / SAMPLES_FOLDER / name).exists()
    # Photos no workflow loads (test material) stay out of the user's input folder.
    assert not (tmp_path / SAMPLES_FOLDER / "people").exists()


def test_only_loaders_naming_the_samples_folder_count(tmp_path):
    workflows = workflow(tmp_path, ("LoadImage", f"{SAMPLES_FOLDER}/coffee.png"),
                         ("LoadImage", "my_own.png"), ("SaveImage", f"{SAMPLES_FOLDER}/x.png"),
                         ("RegionRepair_LoadImageSet", f"{SAMPLES_FOLDER}/garment_set"))
    assert sample_paths(workflows) == {"coffee.png", "garment_set"}


def test_nothing_present_is_overwritten_and_a_second_start_copies_nothing(tmp_path):
    workflows = workflow(tmp_path, ("LoadImage", f"{SAMPLES_FOLDER}/coffee.png"),
                         ("LoadImage", f"{SAMPLES_FOLDER}/chelsea.png"))
    input_dir = tmp_path / "input"
    users = input_dir / SAMPLES_FOLDER / "coffee.png"
    users.parent.mkdir(parents=True)
    users.write_bytes(b"the user's own file")
    copied = install_samples(PHOTOS, workflows, input_dir)
    assert sorted(p.name for p in copied) == ["CREDITS.md", "chelsea.png"]
    assert users.read_bytes() == b"the user's own file"
    assert (input_dir / SAMPLES_FOLDER / "chelsea.png").read_bytes() == \
        (PHOTOS / "chelsea.png").read_bytes()
    assert install_samples(PHOTOS, workflows, input_dir) == []
