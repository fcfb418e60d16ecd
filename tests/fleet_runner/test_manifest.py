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
