"""PiktID's served requests checked before any work, the prompts built for them, Quality Check's
verdicts as results' needs_review, notification filters and the webhook signature."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

import pytest
from region_repair.serving import piktid
from region_repair.serving.config import VendorConfig
from region_repair.serving.inputs import ImageUpload, RequestError
from region_repair.serving.jobs import Job
from region_repair.serving.piktid_store import SERVER_RESTARTED, PiktidStore

NO_MODEL = VendorConfig()


def refused(call, field):
    with pytest.raises(RequestError) as error:
        call()
    assert error.value.status == 400 and error.value.field == field and field in str(error.value)


def detail_body(**changes):
    return {"project_id": "p", "image": "img_1", "mask_image": "img_2", **changes}


@pytest.mark.parametrize("changes, field", [
    ({"image": None}, "image"), ({"mask_image": None}, "mask_image"),
    ({"mask_image": None, "mask": {"bbox_norm": [0.1, 0.1, 0, 0.2]}}, "mask.bbox_norm"),
    ({"mask_image": None, "mask": {"bbox_norm": [0.1, 0.1, 1.2]}}, "mask.bbox_norm"),
    ({"references": ["r"] * 11}, "references"), ({"num_candidates": 5}, "num_candidates"),
    ({"num_candidates": 0}, "num_candidates"), ({"mode": "freestyle"}, "mode"),
    ({"model": "nano_banana_pro"}, "model"), ({"image_notes": "one string"}, "image_notes"),
    ({"add_ai_watermark": "yes"}, "add_ai_watermark"), ({"processing_size": 1001},
                                                         "processing_size"),
])
def test_detail_repair_bad_fields_are_400_naming_the_field(changes, field):
    refused(lambda: piktid.parse_detail_repair(detail_body(**changes), NO_MODEL), field)


def test_detail_repair_defaults_clamps_and_model_mapping():
    parsed = piktid.parse_detail_repair(detail_body(context_factor=40), NO_MODEL)
    assert (parsed.category, parsed.mode, parsed.context_factor, parsed.num_candidates,
            parsed.checkpoint) == ("logo", "guided-blend", 10.0, 1, "")
    mapped = VendorConfig(checkpoint="a.safetensors", models={"seedream": "b.safetensors"})
    assert piktid.parse_detail_repair(detail_body(model="seedream"), mapped).checkpoint == \
        "b.safetensors"
    assert piktid.parse_detail_repair(detail_body(model="auto"), mapped).checkpoint == \
        "a.safetensors"


@pytest.mark.parametrize("changes, field", [
    ({"images": []}, "images"), ({"images": ["i"] * 11}, "images"),
    ({"reference_text": None}, "reference_text"), ({"num_variations": 9}, "num_variations"),
    ({"processing_size": 3000}, "processing_size"), ({"model": "gpt_image"}, "model"),
])
def test_garment_recolor_bad_fields_are_400_naming_the_field(changes, field):
    body = {"project_id": "p", "images": ["img_1"], "reference_text": "#2E5A3B", **changes}
    refused(lambda: piktid.parse_garment_recolor(body, NO_MODEL), field)


def test_detail_repair_prompt_with_mask_references_and_quality_check():
    parsed = piktid.parse_detail_repair(detail_body(
        references=["r1", "r2"], num_candidates=3, category="general", reviewer_note="fix it",
        image_notes=["serif", "caps"], mode="annotated", context_factor=2.0), NO_MODEL)
    prompt, outputs = piktid.build_detail_repair(parsed, "i.png", "m.png", ["a.png", "b.png"])
    types = [node["class_type"] for node in prompt.values()]
    inpaint = next(n["inputs"] for n in prompt.values()
                   if n["class_type"] == "RegionRepair_GuidedBlendInpaint")
    assert (inpaint["num_candidates"], inpaint["category"], inpaint["reviewer_note"],
            inpaint["image_notes"], inpaint["mode"], inpaint["context_factor"]) == \
        (3, "general", "fix it", "serif\ncaps", "annotated", 2.0)
    assert prompt[inpaint["references"][0]]["class_type"] == "ImageBatch"
    assert sorted(n["inputs"]["image"] for n in prompt.values()
                  if n["class_type"] == "LoadImage") == ["a.png", "b.png", "i.png"]
    assert "RegionRepair_MaskFromBBox" not in types and "LoadImageMask" in types
    assert prompt[outputs["report"]]["inputs"]["source"][0] in prompt
    assert prompt[prompt[outputs["report"]]["inputs"]["source"][0]]["class_type"] == \
        "RegionRepair_QualityCheck"


def test_detail_repair_prompt_with_a_bbox_and_no_references():
    parsed = piktid.parse_detail_repair(detail_body(mask_image=None,
                                                    mask={"bbox_norm": [0.5, 0.25, 0.1, 0.2]}),
                                        NO_MODEL)
    prompt, _ = piktid.build_detail_repair(parsed, "i.png", None, [])
    box = next(n["inputs"] for n in prompt.values()
               if n["class_type"] == "RegionRepair_MaskFromBBox")
    assert [float(v) for v in box["bbox"].split(",")] == [0.5, 0.25, 0.1, 0.2]
    assert [n["class_type"] for n in prompt.values()].count("LoadImage") == 1


def test_garment_recolor_prompt_reads_the_set_from_its_folder():
    parsed = piktid.parse_garment_recolor({"images": ["a", "b"], "instruction": "forest green",
                                           "num_variations": 2, "use_anchor": False},
                                          NO_MODEL)
    prompt, _ = piktid.build_garment_recolor(parsed, "region-repair-serving/set_1", "s.png")
    recolor = next(n["inputs"] for n in prompt.values()
                   if n["class_type"] == "RegionRepair_GarmentRecolorAnchor")
    assert (recolor["instruction"], recolor["num_variations"], recolor["use_anchor"],
            recolor["processing_size"]) == ("forest green", 2, False, "2048")
    assert prompt[recolor["images"][0]] == {
        **prompt[recolor["images"][0]], "class_type": "RegionRepair_LoadImageSet",
        "inputs": {"folder": "region-repair-serving/set_1"}}
    assert prompt[recolor["reference_image"][0]]["inputs"]["image"] == "s.png"
    assert "ImageBatch" not in [n["class_type"] for n in prompt.values()]
    seeds = {piktid.build_garment_recolor(parsed, "f", None)[0][recolor_id(prompt)]["inputs"][
        "seed"] for _ in range(4)}
    assert len(seeds) > 1   # a new seed per prompt (a regenerated output differs)


def recolor_id(prompt):
    return next(i for i, n in prompt.items()
                if n["class_type"] == "RegionRepair_GarmentRecolorAnchor")


def test_recolor_outputs_are_variation_major_in_the_requests_order():
    laid_out = [piktid.layout("garment_recolor", p, 3) for p in range(6)]
    assert laid_out == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]
    for position, (image, group) in enumerate(laid_out):
        assert piktid.position_of("garment_recolor", image, group, 3) == position
    assert [piktid.layout("detail_repair", p, 1) for p in range(3)] == [(0, 0), (0, 1), (0, 2)]
    assert piktid.position_of("detail_repair", 0, 2, 1) == 2


def test_review_reads_quality_checks_report():
    report = json.dumps({"candidates": [
        {"needs_review": True, "reasons": ["no_reference"]},
        {"needs_review": False, "reasons": []}]})
    assert piktid.review(report, 2) == [{"needs_review": True, "reasons": ["no_reference"]},
                                        {"needs_review": False, "reasons": []}]
    assert piktid.review(None, 2) == [{}, {}]


def test_notification_filters():
    note = piktid.Notification(1, "batch_edit", {"id_task": "job_a", "status": "completed"})
    assert piktid.matches(note, {})
    assert piktid.matches(note, {"id_task": "job_b,job_a", "name_list": "batch_edit"})
    assert not piktid.matches(note, {"id_task": "job_b"})
    assert not piktid.matches(note, {"name_list": "image_result"})


def test_webhook_signature_is_the_seeds():
    body = b'{"id": 1, "name": "ping"}'
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert piktid.webhook_signature("s3cret", body) == expected


def test_notifications_are_kept_until_deleted_and_fan_out():
    notes = piktid.Notifications()
    queue = asyncio.Queue()
    notes.listeners["k"].add(queue)
    first = notes.publish("k", "batch_edit", {"id_task": "j"})
    notes.publish("other", "batch_edit", {"id_task": "j"})
    assert [n.id for n in notes.backlog("k")] == [first.id] and queue.qsize() == 1
    assert notes.delete("k", first.id) and notes.backlog("k") == []
    assert not notes.delete("k", first.id)


def test_job_status_from_history():
    job = Job("job_1", "piktid", "piktid:0")
    assert job.status == "pending"
    job.done.set()
    assert job.status == "failed"   # ended without a /history entry (a timeout)
    job.entry = {"status": {"status_str": "success", "messages": []}}
    assert job.status == "completed"
    job.entry = {"status": {"status_str": "error", "messages": [
        ["execution_start", {}], ["execution_interrupted", {"node_id": "4"}]]}}
    assert job.status == "aborted"
    job.entry = {"status": {"status_str": "error", "messages": [["execution_error", {}]]}}
    assert job.status == "failed"


def test_store_reads_back_only_its_own_names(tmp_path):
    store = PiktidStore(tmp_path)
    store.save_result("job_a1", "0_1_v2", b"png")
    assert store.result("job_a1", "0_1_v2") == b"png"
    for job_id, name in [("job_a1", "../job_a1/0_1_v2"), ("..", "0_1_v2"),
                         ("job_a1", "0_1_v2.png"), ("job_a1/..", "0_1_v2"), ("job_a1", "x")]:
        assert store.result(job_id, name) is None


def test_store_load_fails_unfinished_jobs_and_drops_expired_files(tmp_path):
    store = PiktidStore(tmp_path)
    for job_id, created, status in (("job_b", 2.0, "completed"), ("job_a", 1.0, "pending")):
        store.save_job({"id": job_id, "created": created, "status": status,
                        "error_message": None})
    upload = ImageUpload(b"bytes", "png", 4, 3)
    store.save_file("img_old", {"expires": 10.0}, upload)
    store.save_file("img_new", {"expires": 30.0}, upload)
    saved = store.load(now=20.0)
    assert [(j["id"], j["status"]) for j in saved.jobs] == [("job_a", "failed"),
                                                            ("job_b", "completed")]
    assert saved.jobs[0]["error_message"] == SERVER_RESTARTED
    assert store.load(now=20.0).jobs[0]["status"] == "failed"   # saved so
    assert list(saved.files) == ["img_new"] and saved.files["img_new"][1] == upload
    assert sorted(p.name for p in (tmp_path / "files").iterdir()) == ["img_new.json",
                                                                     "img_new.png"]
