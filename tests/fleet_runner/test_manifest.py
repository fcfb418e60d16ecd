"""Manifest reading, with no server and no Ray: bad lines are reported with their line numbers
before anything runs, and a job's prompt and prompt id follow from its line."""

from __future__ import annotations

import json
import subprocess

import pytest
from fleet_testing import REMOVAL, fleet_command, fleet_env, write_manifest, write_photos
from pack_paths import PACK_ROOT

from fleet.manifest import UPLOAD_SUBFOLDER, ManifestError, read_manifest


def test_unreadable_lines_stop_the_run_with_their_line_numbers(tmp_path):
    photo, = write_photos(tmp_path, 1, seed=1)
    good = {"id": "a", "workflow": REMOVAL, "inputs": {"Photo": str(photo)}}
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join([
        json.dumps(good),
        "{not json",
        json.dumps({"id": "b"}),
        json.dumps({**good, "colour": "red"}),
        "",
        json.dumps({**good, "id": "../escape"}),
        json.dumps(good),
        json.dumps({**good, "id": "c", "params": {"Photo": "not an object"}}),
    ]) + "\n")
    with pytest.raises(ManifestError) as caught:
        read_manifest(manifest)
    problems = caught.value.problems
    assert [problem.split(":")[0] for problem in problems] == [
        "line 2", "line 3", "line 4", "line 6", "line 7", "line 8"]
    assert "'workflow' is required" in problems[1]
    assert "unknown keys ['colour']" in problems[2]
    assert "already used on line 1" in problems[4]

    out = tmp_path / "out"
    finished = subprocess.run(fleet_command(manifest, out), cwd=PACK_ROOT, env=fleet_env(),
                              capture_output=True, text=True, timeout=60, check=False)
    assert finished.returncode == 2, finished.stderr
    assert "6 bad line(s)" in finished.stderr and "line 8:" in finished.stderr
    assert not out.exists()  # nothing ran


def test_lines_that_cannot_run_become_jobs_with_errors(tmp_path):
    photo, = write_photos(tmp_path, 1, seed=2)
    manifest = write_manifest(tmp_path / "manifest.jsonl", [
        {"id": "unknown-workflow", "workflow": "No such workflow"},
        {"id": "missing-input", "workflow": REMOVAL, "inputs": {"Photo": "absent.png"}},
        {"id": "unknown-node", "workflow": REMOVAL, "params": {"Nope": {"seed": 1}}},
        {"id": "unknown-input", "workflow": REMOVAL, "params": {"Regen: remove": {"sed": 1}}},
        {"id": "wired-input", "workflow": REMOVAL, "params": {"Regen: remove": {"image": 1}}},
        {"id": "ok", "workflow": REMOVAL, "inputs": {"1": photo.as_uri()}},
    ])
    jobs = {job.id: job for job in read_manifest(manifest)}
    assert "neither a shipped workflow" in jobs["unknown-workflow"].error
    assert jobs["missing-input"].error.startswith("line 2: input 'Photo': file not found")
    assert "no node with id or title 'Nope'" in jobs["unknown-node"].error
    assert "has no input 'sed'" in jobs["unknown-input"].error
    assert "wired to another node" in jobs["wired-input"].error
    assert jobs["ok"].error == ""
    assert list(jobs["ok"].uploads.values()) == [str(photo)]


def test_prompt_follows_the_line_and_its_id_is_deterministic(tmp_path):
    first, second = write_photos(tmp_path, 2, seed=3)
    record = {"workflow": REMOVAL, "inputs": {"Photo": str(first)},
              "params": {"Regen: remove": {"seed": 11}}}
    manifest = write_manifest(tmp_path / "manifest.jsonl", [
        record,
        {**record, "params": {"3": {"seed": 12}}},
        {**record, "inputs": {"Photo": str(second)}},
        {**record, "id": "same-as-line-1"},
    ])
    jobs = read_manifest(manifest)
    again = read_manifest(manifest)
    assert [job.prompt_id for job in jobs] == [job.prompt_id for job in again]
    assert len({job.prompt_id for job in jobs}) == 4  # the id alone tells line 4 from line 1
    assert jobs[3].prompt["3"] == jobs[0].prompt["3"]
    assert jobs[0].id == jobs[0].prompt_id  # no id given: the prompt id names the job
    prompt = jobs[0].prompt
    assert prompt["3"]["inputs"]["seed"] == 11
    assert prompt["1"]["inputs"]["image"].startswith(f"{UPLOAD_SUBFOLDER}/")
    assert prompt["4"]["inputs"]["filename_prefix"] == f"fleet/{jobs[0].prompt_id}_4"
    # Quality Check's report is read back through a preview node the runner adds.
    assert prompt["fleet_quality_5"] == {"class_type": "PreviewAny",
                                         "inputs": {"source": ["5", 0]}}


def test_more_workers_than_servers_is_refused_before_anything_runs(tmp_path):
    photo, = write_photos(tmp_path, 1, seed=4)
    manifest = write_manifest(tmp_path / "manifest.jsonl", [
        {"workflow": REMOVAL, "inputs": {"Photo": str(photo)}}])
    refused = subprocess.run(fleet_command(manifest, tmp_path / "out", "--workers", "2",
                                           "--servers", "http://127.0.0.1:9"),
                             cwd=PACK_ROOT, env=fleet_env(), capture_output=True, text=True,
                             timeout=60, check=False)
    assert refused.returncode == 2
    assert "each server takes one prompt at a time" in refused.stderr


RECOLOR_SET = "PiktID Garment Recolor - a set of three (no weights)"
SET_NODE = "The set (input/region-repair-samples/garment_set)"


def test_a_set_is_uploaded_to_its_own_folder_in_the_manifests_order(tmp_path):
    first, second, third = write_photos(tmp_path, 3, seed=5)
    jpeg = tmp_path / "third.JPG"
    jpeg.write_bytes(third.read_bytes())  # the suffix is all the loader looks at
    record = {"workflow": RECOLOR_SET, "inputs": {SET_NODE: [str(first), second.name, str(jpeg)]}}
    manifest = write_manifest(tmp_path / "manifest.jsonl", [
        record,
        {**record, "inputs": {"1": [str(second), str(first), str(jpeg)]}},  # another order
        {**record, "inputs": {SET_NODE: [str(first), str(second), str(first)]}},  # other bytes
    ])
    in_order, reordered, changed = read_manifest(manifest)
    folder = in_order.prompt["1"]["inputs"]["folder"]
    assert folder.startswith(f"{UPLOAD_SUBFOLDER}/set-")
    assert in_order.uploads == {f"{folder}/0.png": str(first), f"{folder}/1.png": str(second),
                                f"{folder}/2.jpg": str(jpeg)}
    # The prompt id (through the folder's name) covers every file's bytes and their order.
    folders = {job.prompt["1"]["inputs"]["folder"] for job in (in_order, reordered, changed)}
    assert len(folders) == 3
    assert len({job.prompt_id for job in (in_order, reordered, changed)}) == 3
    assert read_manifest(manifest)[0].prompt_id == in_order.prompt_id


def test_bad_sets_are_reported_with_their_line_numbers(tmp_path):
    photo, = write_photos(tmp_path, 1, seed=6)
    (tmp_path / "notes.txt").write_text("not an image")
    manifest = write_manifest(tmp_path / "manifest.jsonl", [
        {"id": "missing", "workflow": RECOLOR_SET, "inputs": {SET_NODE: [str(photo), "gone.png"]}},
        {"id": "no-set-loader", "workflow": REMOVAL, "inputs": {"Photo": [str(photo)]}},
        {"id": "one-file", "workflow": RECOLOR_SET, "inputs": {SET_NODE: str(photo)}},
        {"id": "empty", "workflow": RECOLOR_SET, "inputs": {SET_NODE: []}},
        {"id": "suffix", "workflow": RECOLOR_SET, "inputs": {SET_NODE: ["notes.txt"]}},
    ])
    jobs = {job.id: job for job in read_manifest(manifest)}
    assert jobs["missing"].error.startswith(f"line 1: input {SET_NODE!r}: file not found")
    assert jobs["no-set-loader"].error.startswith("line 2: input 'Photo': a list of files needs "
                                                  "a set loader")
    assert jobs["one-file"].error.startswith("line 3:") and "give a list" in jobs["one-file"].error
    assert jobs["empty"].error.startswith("line 4:") and "empty" in jobs["empty"].error
    assert jobs["suffix"].error.startswith("line 5:") and ".webp" in jobs["suffix"].error

    not_strings = write_manifest(tmp_path / "bad.jsonl", [
        {"workflow": RECOLOR_SET, "inputs": {SET_NODE: [str(photo), 3]}}])
    with pytest.raises(ManifestError, match="line 1: 'inputs' must map"):
        read_manifest(not_strings)


def test_an_owned_server_removes_a_jobs_uploads_and_its_set_folder(tmp_path):
    """OwnedServer.remove on a base folder laid out as ComfyUI's (no server started)."""
    from fleet.comfy import OwnedServer

    uploads = ["fleet/abc.png", "fleet/set-123/0.png", "fleet/set-123/1.jpg"]
    kept = tmp_path / "input" / "fleet" / "other.png"
    for name in [*uploads, "output/fleet/p_4_00001_.png"]:
        target = tmp_path / ("input" if not name.startswith("output") else "") / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"x")
    kept.write_bytes(b"x")
    OwnedServer(tmp_path, gpus=(), threads=1).remove(
        [{"type": "output", "subfolder": "fleet", "filename": "p_4_00001_.png"}], uploads)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "input", "input/fleet", "input/fleet/other.png", "output", "output/fleet"]


def test_a_set_past_ten_files_is_named_to_sort_in_its_order(tmp_path):
    photos = write_photos(tmp_path, 11, seed=7, size=8)
    manifest = write_manifest(tmp_path / "manifest.jsonl", [
        {"workflow": RECOLOR_SET, "inputs": {SET_NODE: [str(p) for p in photos]}}])
    job, = read_manifest(manifest)
    names = [name.rsplit("/", 1)[1] for name in job.uploads]
    assert names == sorted(names) == [f"{index:02d}.png" for index in range(11)]
    assert list(job.uploads.values()) == [str(p) for p in photos]
