"""PICPIK against its fake: the signature (with the published test vectors), ModifyMaskedPixels,
ListTasksDetails polling, and every injected fault."""

from __future__ import annotations

import json

import pytest
import torch
from fake_vendors import ENV, FakePICPIK, Fault, serve
from fake_vendors.picpik import PRIVATE_KEY, PUBLIC_KEY, signature
from vendor_testing import bounded, inside_changed, outside, run, scene, with_client

from region_repair.pipelines.vendors import picpik
from region_repair.pipelines.vendors.http import VendorError

EP = "picpik/ModifyMaskedPixels"
CALL = "POST /{tail}"
VECTOR_3 = {"Action": "ModifyMaskedPixels", "PublicKey": "abcdefg", "TranslatePrompts": True,
            "request_uuid": "5ae03609-451b-44d7-a351-c72904df881b",
            "MainModel": {"InferenceParams": {"Steps": 10}, "ModelCode": "PICPIK General"},
            "Masked": {"ImageIndex": 0, "MaskIndex": 1}, "NegativePrompts": [],
            "PositivePrompts": [],
            "ImageAndMaskList": ["data:image/jpeg;base64,img1", "data:image/jpeg;base64,img2"]}


@pytest.mark.parametrize("params, expected", [
    ({"Action": "ListModels", "PublicKey": "abcdefg"},
     "4a20bc1141494035f6aaaad13224c94c5a8bc3a5"),
    ({"Action": "StartPicpikApp", "PublicKey": "abcdefg", "AppId": "your_app_id"},
     "c5e65ad1936ff695436917bf807d2281db33e7a3"),
    (VECTOR_3, "ca28201c78057c2b63e11adc60012a534f57ec47"),
    ({**VECTOR_3, "Seed": -1, "Masked": {"ImageIndex": 0, "MaskIndex": 1, "ReferStrength": 1.0,
                                          "MaskBlur": 12, "InvertMask": False}},
     "feab55f04ac48a061ba2f55f20195691530ca073"),
])
def test_signature_matches_the_published_vectors(params, expected):
    assert picpik.sign(params, "123456") == expected
    assert picpik.sign({**params, "Signature": "ignored"}, "123456") == expected


def test_string_to_sign_of_the_first_vector_and_value_rules():
    assert picpik.string_to_sign({"Action": "ListModels", "PublicKey": "abcdefg"}, "123456") \
        == "ActionListModelsPublicKeyabcdefg123456"
    assert picpik.value_string(1e-05) == "0.00001"
    assert picpik.value_string(42.0) == "42" and picpik.value_string(0.5) == "0.5"
    assert picpik.value_string([True, None, "a"]) == "truea"
    assert picpik.value_string({"b": 1, "a": [2, 3]}) == "a23b1"


@pytest.fixture
def fake():
    with serve(FakePICPIK()) as server:
        yield server


def test_happy_path_batch_and_polling(fake):
    image, mask = scene(batch=2, height=64, width=96)
    result, _ = run(image, mask, EP, fake.url, candidates=3, seed=42, prompt="a red scarf",
                    negative_prompt="blurry", blend=False,
                    options={"mask_blur": 8, "inference_params": {"Steps": 20, "CFGScale": 6.5},
                             "sub_models": [{"ModelCode": "lora-x",
                                             "InferenceParams": {"LoraWeight": 0.8}}]})
    assert result.images.shape == (6, 64, 96, 3)
    got, want = outside(result.images, image, mask)
    # PICPIK answered at Width x Height (the image's size here) and white = redraw.
    assert torch.allclose(got, want, atol=1 / 255)
    assert inside_changed(result.images, image, mask) > 0.9
    calls = [json.loads(seen.body) for seen in fake.requests_to(CALL)]
    submits = [c for c in calls if c["Action"] == "ModifyMaskedPixels"]
    assert len(submits) == 2
    body = submits[0]
    assert body["PublicKey"] == PUBLIC_KEY and body["Signature"] == signature(body, PRIVATE_KEY)
    assert body["BatchSize"] == 3 and body["Seed"] == 42 and body["Width"] == 96
    assert body["PositivePrompts"] == ["a red scarf"] and body["NegativePrompts"] == ["blurry"]
    assert body["Masked"] == {"ImageIndex": 0, "MaskIndex": 1, "ReferStrength": 1.0,
                              "InvertMask": False, "MaskBlur": 8, "PromptsMoreImportant": False}
    assert body["ImageAndMaskList"][1].startswith("data:image/png;base64,")
    assert any(c["Action"] == "ListTasksDetails" for c in calls)
    assert {i["job_id"] for i in result.info} == {t for t in fake.tasks}
    assert all(i["seed"] == 42 for i in result.info)


def test_a_reference_becomes_image2image(fake):
    image, mask = scene()
    run(image, mask, EP, fake.url, references=torch.rand(1, 20, 20, 3),
        options={"image2image_strength": 0.3})
    body = json.loads(fake.requests_to(CALL)[0].body)
    assert len(body["ImageAndMaskList"]) == 3
    assert body["Image2Image"] == {"ImageIndex": 2, "ReferStrength": 0.3}


def test_a_wrong_private_key_is_rejected_as_a_signature_error(fake):
    image, mask = scene()
    env = {**ENV, "REGION_REPAIR_PICPIK_PRIVATE_KEY": "not-the-key"}
    with pytest.raises(VendorError, match=r"RetCode 172: Signature error.*PRIVATE_KEY") as caught:
        run(image, mask, EP, fake.url, env=env)
    assert caught.value.kind == "rejected" and "not-the-key" not in str(caught.value)


def test_the_fake_rejects_a_tampered_body(fake):
    async def scenario(http):
        body = {"Action": "ListRunningTasks", "PublicKey": PUBLIC_KEY, "request_uuid": "u"}
        body["Signature"] = picpik.sign(body, PRIVATE_KEY)
        good = (await http.request("POST", "/", json_body=body)).json()
        bad = (await http.request("POST", "/", json_body={**body, "request_uuid": "v"})).json()
        return good, bad

    good, bad = bounded(with_client("picpik", fake.url, scenario))
    assert good["RetCode"] == 0 and good["TaskUIDList"] == []
    assert bad["RetCode"] != 0 and "Signature" in bad["Message"]


def test_retcode_on_submit_is_an_error_with_picpiks_message(fake):
    fake.retcode_on_submit = 290
    image, mask = scene()
    with pytest.raises(VendorError, match="ModifyMaskedPixels rejected: RetCode 290: "
                                          "Insufficient API points"):
        run(image, mask, EP, fake.url)


def test_retcode_on_query_is_an_error(fake):
    fake.retcode_on_query = 500
    image, mask = scene()
    with pytest.raises(VendorError, match="ListTasksDetails rejected: RetCode 500"):
        run(image, mask, EP, fake.url)


def test_a_failed_task_names_error_code_and_message(fake):
    fake.fail_task = "NSFW content detected"
    image, mask = scene()
    with pytest.raises(VendorError, match=r"task \w+ failed: ErrorCode 1001: NSFW content"):
        run(image, mask, EP, fake.url)


def test_5xx_and_resets_are_retried_with_the_same_signed_body(fake):
    fake.fail(CALL, Fault.status_code(502))
    image, mask = scene()
    result, _ = run(image, mask, EP, fake.url)
    first, second = (json.loads(s.body) for s in fake.requests_to(CALL)[:2])
    assert first == second  # the same request_uuid and Signature
    assert inside_changed(result.images, image, mask) > 0.9


def test_429_with_retry_after(fake):
    fake.fail(CALL, Fault.status_code(429, retry_after="0.3"))
    image, mask = scene()
    _, seconds = run(image, mask, EP, fake.url)
    assert seconds >= 0.3


def test_slow_polling_answer_times_out_clearly(fake):
    fake.step_delay = 0.2
    image, mask = scene()
    # the submit is fine; every poll is slow
    for _ in range(3):
        fake.fail(CALL, Fault.slow(0.0))
    fake.fail(CALL, Fault.slow(5.0), times=10)
    with pytest.raises(VendorError, match="POST /: timed out"):
        run(image, mask, EP, fake.url)


def test_malformed_json_names_it(fake):
    fake.fail(CALL, Fault.malformed())
    image, mask = scene()
    with pytest.raises(VendorError, match="malformed JSON from POST /"):
        run(image, mask, EP, fake.url)


def test_expired_image_urls_are_a_clear_404(fake):
    fake.image_ttl = -1
    image, mask = scene()
    with pytest.raises(VendorError, match=r"HTTP 404 not found \(GET /img/"):
        run(image, mask, EP, fake.url)


def test_the_action_echo_is_not_checked_strictly(fake):
    fake.response_suffix = True
    image, mask = scene()
    result, _ = run(image, mask, EP, fake.url)
    assert inside_changed(result.images, image, mask) > 0.9


def test_a_result_at_another_size_comes_back_at_the_original_size(fake):
    image, mask = scene()  # 48 px high: PICPIK's minimum Height is 64
    result, _ = run(image, mask, EP, fake.url)
    assert json.loads(fake.requests_to(CALL)[0].body)["Height"] == 64
    assert result.images.shape == (1, 48, 64, 3)
    assert "returned 64x64; resized to the original 64x48" in result.info[0]["notes"][0]


def test_a_shifted_result_cannot_leak_outside_the_mask(fake):
    fake.shift = 2
    image, mask = scene()
    blended, _ = run(image, mask, EP, fake.url)
    got, want = outside(blended.images, image, mask)
    assert torch.equal(got, want)


def test_out_of_range_values_are_refused_before_sending(fake):
    image, mask = scene()
    with pytest.raises(ValueError, match="MaskBlur: 0-64"):
        run(image, mask, EP, fake.url, options={"mask_blur": 99})
    with pytest.raises(ValueError, match="options: InvertMask not accepted"):
        run(image, mask, EP, fake.url, options={"InvertMask": True})
    assert not fake.requests_to(CALL)
