"""Served requests checked before any work (header checks, limits, fields named) and the prompts
built from the shipped workflows."""

from __future__ import annotations

import asyncio
import io

import pytest
from aiohttp import web
from PIL import Image, PngImagePlugin
from region_repair.serving import octoai, photio, picpik
from region_repair.serving.config import Limits, VendorConfig
from region_repair.serving.inputs import (
    JobLimiter,
    RequestError,
    base64_image,
    fetch_urls,
    sniff,
    without_text_chunks,
)
from serving_images import b64, png

LIMITS = Limits(max_image_side=256, max_image_pixels=256 * 200)
NO_MODEL = VendorConfig()


def refused(call, status, field=None):
    with pytest.raises(RequestError) as error:
        call()
    assert error.value.status == status
    if field:
        assert error.value.field == field and field in str(error.value)
    return error.value


# --- images -------------------------------------------------------------------------------
def test_sniff_reads_format_and_size_from_the_header():
    upload = sniff(png(40, 30), "base_image", LIMITS)
    assert (upload.extension, upload.width, upload.height) == ("png", 40, 30)


def test_an_oversized_image_is_413_from_its_header_alone():
    header_only = png(300, 10)[:64]   # IHDR is in the first 33 bytes; no pixel data
    refused(lambda: sniff(header_only, "base_image", LIMITS), 413, "base_image")
    refused(lambda: sniff(png(250, 250), "base_image", LIMITS), 413, "base_image")


@pytest.mark.parametrize("data", [b"GIF89a" + b"\0" * 40, b"<svg/>", b"\x89PNG\r\n\x1a\n" + b"x"])
def test_other_formats_and_broken_headers_are_400(data):
    refused(lambda: sniff(data, "mask_image", LIMITS), 400, "mask_image")


def test_base64_must_be_base64():
    refused(lambda: base64_image("not base64 !!", "init_image", LIMITS), 400, "init_image")
    assert base64_image("data:image/png;base64," + b64(png()), "x", LIMITS).width == 64


def test_job_limiter_bounds_each_key_separately():
    limiter = JobLimiter(2)
    limiter.acquire("a", "1", 3.2)
    limiter.acquire("a", "2", 3.2)
    limiter.acquire("b", "3", 3.2)
    error = refused(lambda: limiter.acquire("a", "4", 3.2), 429)
    assert error.retry_after == 4
    limiter.release("a", "1")
    limiter.acquire("a", "4", 3.2)
    assert limiter.active("a") == 2


# --- Photio -------------------------------------------------------------------------------
def regen_body(**changes):
    return {"prompt": "", "base_image": b64(png(64, 48)), "mask_image": b64(png(64, 48, 1, "L")),
            **changes}


@pytest.mark.parametrize("changes, field", [
    ({"mask_image": None}, "mask_image"), ({"base_image": ""}, "base_image"),
    ({"quality": "ULTRA"}, "quality"), ({"seed": 0}, "seed"), ({"seed": True}, "seed"),
    ({"cfg_scale": -1}, "cfg_scale"), ({"cfg_scale": float("nan")}, "cfg_scale"),
    ({"mask_image": b64(png(32, 48, 1, "L"))}, "mask_image"),
    ({"base_image": "https://example.com/a.png"}, "base_image"),
    ({"prompt": "a starfish"}, "prompt"),   # adding needs a configured model
])
def test_photio_bad_fields_are_400_naming_the_field(changes, field):
    refused(lambda: photio.parse(regen_body(**changes), LIMITS, NO_MODEL), 400, field)


def test_photio_defaults_and_random_seed():
    regen = photio.parse(regen_body(), LIMITS, NO_MODEL)
    assert regen.quality == "LOW" and regen.cfg_scale == 2.5
    assert regen.negative_prompt == photio.DEFAULT_NEGATIVE and 1 <= regen.seed <= 4294967296


def test_photio_prompt_without_a_model_loads_the_request_and_inverts_the_mask():
    regen = photio.parse(regen_body(quality="HIGH", seed=11, cfg_scale=2.0), LIMITS, NO_MODEL)
    prompt, outputs = photio.build(regen, "region-repair-serving/a.png",
                                   "region-repair-serving/b.png", "")
    types = {node["class_type"]: node["inputs"] for node in prompt.values()}
    assert types["LoadImage"]["image"] == "region-repair-serving/a.png"
    assert types["LoadImageMask"]["image"] == "region-repair-serving/b.png"
    assert types["RegionRepair_CleanMask"]["polarity"] == "black = edit (Photio)"
    inpaint = types["RegionRepair_GuidedBlendInpaint"]
    assert (inpaint["seed"], inpaint["steps"], inpaint["cfg"]) == (11, 30, 2.0)
    assert inpaint["mask"][0] in prompt and prompt[inpaint["mask"][0]]["class_type"] == \
        "RegionRepair_CleanMask"
    assert prompt[outputs["result"]]["class_type"] == "PreviewImage"
    assert not {"SaveImage", "RegionRepair_QualityCheck", "PreviewAny",
                "RegionRepair_MaskFromBBox"} & set(types)


def test_photio_with_a_model_adds_with_the_prompt():
    config = VendorConfig(checkpoint="local-inpaint.safetensors")
    regen = photio.parse(regen_body(prompt="a starfish"), LIMITS, config)
    prompt, _ = photio.build(regen, "a.png", "b.png", config.checkpoint)
    texts = sorted(node["inputs"]["text"] for node in prompt.values()
                   if node["class_type"] == "CLIPTextEncode")
    assert texts == sorted(["a starfish", photio.DEFAULT_NEGATIVE])
    loader = [node for node in prompt.values() if node["class_type"] == "CheckpointLoaderSimple"]
    assert loader[0]["inputs"]["ckpt_name"] == "local-inpaint.safetensors"


# --- OctoAI -------------------------------------------------------------------------------
def adetailer_body(**changes):
    return {"init_image": b64(png(64, 48)), "detector": "face_yolov8n", **changes}


@pytest.mark.parametrize("changes, field", [
    ({"detector": None}, "detector"), ({"detector": "cats"}, "detector"),
    ({"init_image": None}, "init_image"), ({"init_image_url": "http://10.0.0.1/x.png"},
                                           "init_image_url"),
    ({"cfg_scale": 51}, "cfg_scale"), ({"cfg_scale": 0}, "cfg_scale"),
    ({"seed": 0}, "seed"), ({"seed": [1, 2 ** 32]}, "seed"), ({"sampler": "K_FAST"}, "sampler"),
    ({"inpainting_base_model": "sd3"}, "inpainting_base_model"),
    ({"checkpoint": "dreamshaper"}, "checkpoint"), ({"loras": {"a": 1}}, "loras"),
    ({"loras": {"ink": 1}}, "loras"),   # mapped, but there is no checkpoint to apply it to
    ({"mask_padding": -1}, "mask_padding"), ({"union_masks": "yes"}, "union_masks"),
    ({"image_encoding": "gif"}, "image_encoding"),
])
def test_octoai_bad_fields_are_422_naming_the_field(changes, field):
    config = VendorConfig(loras={"ink": "ink_style.safetensors"})
    error = refused(lambda: octoai.parse(adetailer_body(**changes), LIMITS, config), 422, field)
    assert octoai.error_body(422, str(error), field)["detail"][0]["loc"] == ["body", field]


def test_octoai_prompt_carries_the_request():
    request = octoai.parse(adetailer_body(mask_dilation=6, mask_blur=2, mask_padding=16,
                                          confidence=0.5, max_num_detections=2, seed=[9, 10],
                                          sampler="DPM_PLUS_PLUS_2M_KARRAS", strength=0.5,
                                          union_masks=True, inpainting_base_model="sd15"),
                           LIMITS, NO_MODEL)
    prompt, outputs = octoai.build(request, "region-repair-serving/a.png")
    types = {node["class_type"]: node["inputs"] for node in prompt.values()}
    assert types["RegionRepair_Detect"]["detector"] == "face_short_mediapipe"
    assert (types["RegionRepair_Detect"]["confidence"],
            types["RegionRepair_Detect"]["max_num_detections"]) == (0.5, 2)
    detailer = types["RegionRepair_Detailer"]
    assert (detailer["mask_dilation"], detailer["mask_blur"], detailer["mask_padding"],
            detailer["seed"], detailer["sampler_name"], detailer["scheduler"],
            detailer["denoise"], detailer["union_masks"], detailer["inpainting_base_model"]
            ) == (6, 2, 16, 9, "dpmpp_2m", "karras", 0.5, True, "sd15")
    detailer_id = next(i for i, n in prompt.items() if n["class_type"] == "RegionRepair_Detailer")
    assert [prompt[outputs[name]]["inputs"]["source"] for name in octoai.COUNTS] == \
        [[detailer_id, 1], [detailer_id, 2], [detailer_id, 3]]
    assert "RegionRepair_QualityCheck" not in types


# --- PICPIK -------------------------------------------------------------------------------
def modify_body(**changes):
    listed = ["data:image/png;base64," + b64(png(64, 48)),
              "data:image/png;base64," + b64(png(64, 48, 1, "L")),
              "data:image/png;base64," + b64(png(32, 32, 2))]
    return {"Action": "ModifyMaskedPixels", "MainModel": {"ModelCode": "PICPIK General",
                                                          "InferenceParams": {"Steps": 12}},
            "PositivePrompts": ["a patch", "embroidered"], "Seed": 4, "Width": 512,
            "Height": 512, "BatchSize": 2, "Masked": {"ImageIndex": 0, "MaskIndex": 1,
                                                       "ReferStrength": 1, "InvertMask": True},
            "ImageAndMaskList": listed, **changes}


@pytest.mark.parametrize("changes, field", [
    ({"Masked": None}, "Masked"), ({"ImageAndMaskList": []}, "ImageAndMaskList"),
    ({"Masked": {"ImageIndex": 0, "MaskIndex": 5}}, "Masked.MaskIndex"),
    ({"Masked": {"ImageIndex": 0, "MaskIndex": 2}}, "Masked.MaskIndex"),   # another size
    ({"Width": 32}, "Width"), ({"BatchSize": 17}, "BatchSize"), ({"Seed": -2}, "Seed"),
    ({"MainModel": {"ModelCode": "Anime V3"}}, "MainModel.ModelCode"),
    ({"SubModelList": [{"ModelCode": "lora"}]}, "SubModelList[0].ModelCode"),
    ({"SubModelList": [{"ModelCode": "ink"}]}, "SubModelList[0]"),   # no checkpoint here
    ({"TranslatePrompts": "yes"}, "TranslatePrompts"),
    ({"Image2Image": {"ImageIndex": 2, "ReferStrength": 1.5}}, "Image2Image.ReferStrength"),
])
def test_picpik_bad_fields_are_named(changes, field):
    config = VendorConfig(loras={"ink": "ink_style.safetensors"})
    error = refused(lambda: picpik.parse(modify_body(**changes), LIMITS, config), 200)
    assert error.field == field and field in str(error)


def test_picpik_prompt_carries_the_request():
    request = picpik.parse(modify_body(Image2Image={"ImageIndex": 2, "ReferStrength": 0.75}),
                           LIMITS, NO_MODEL)
    prompt, outputs = picpik.build(request, ["a.png", "m.png", "r.png"])
    assert prompt[outputs["result"]]["class_type"] == "PreviewImage"
    by_type = {node["class_type"]: node["inputs"] for node in prompt.values()}
    assert sorted(n["inputs"]["image"] for n in prompt.values()
                  if n["class_type"] == "LoadImage") == ["a.png", "r.png"]
    assert by_type["LoadImageMask"]["image"] == "m.png"
    assert by_type["RegionRepair_CleanMask"]["invert"] is True
    inpaint = by_type["RegionRepair_GuidedBlendInpaint"]
    assert (inpaint["reviewer_note"], inpaint["seed"], inpaint["steps"],
            inpaint["processing_size"], inpaint["num_candidates"], inpaint["reference_denoise"]
            ) == ("a patch, embroidered", 4, 12, 512, 2, 0.25)
    without = picpik.build(picpik.parse(modify_body(), LIMITS, NO_MODEL), ["a.png", "m.png"])[0]
    assert "references" not in next(n for n in without.values() if n["class_type"] ==
                                    "RegionRepair_GuidedBlendInpaint")["inputs"]
    assert [n["class_type"] for n in without.values()].count("LoadImage") == 1


WITH_LORAS = VendorConfig(checkpoint="local-inpaint.safetensors",
                          models={"dreamshaper_8": "dreamshaper_8_inpaint.safetensors"},
                          loras={"ink": "ink_style.safetensors", "felt": "felt.safetensors"})


def lora_chain(prompt) -> tuple[str, list[tuple[str, float]]]:
    """The checkpoint loader's id and the LoraLoaders from it, in order (file, weight); each
    loader's model and CLIP come from the one before."""
    (checkpoint,) = [i for i, n in prompt.items() if n["class_type"] == "CheckpointLoaderSimple"]
    chain, source = [], checkpoint
    while True:
        following = [i for i, n in prompt.items() if n["class_type"] == "LoraLoader"
                     and n["inputs"]["model"] == [source, 0]]
        if not following:
            return checkpoint, chain
        (source,) = following
        inputs = prompt[source]["inputs"]
        assert inputs["clip"] == [prompt[source]["inputs"]["model"][0], 1]
        assert inputs["strength_model"] == inputs["strength_clip"]
        chain.append((inputs["lora_name"], inputs["strength_model"]))


def links_to(prompt, node_id: str) -> dict[str, set[int]]:
    """Which outputs of `node_id` each node's inputs use."""
    found = {}
    for key, node in prompt.items():
        for value in node["inputs"].values():
            if isinstance(value, list) and len(value) == 2 and value[0] == node_id:
                found.setdefault(node["class_type"], set()).add(value[1])
    return found


def test_picpik_with_a_model_runs_the_checkpoint_with_the_mapped_loras_and_trigger_words():
    body = modify_body(BatchSize=16, NegativePrompts=["blurry"], SubModelList=[
        {"ModelCode": "ink", "InferenceParams": {"LoraWeight": 0.6},
         "TriggerWordList": ["inkstyle"]},
        {"ModelCode": "felt", "TriggerWordList": ["felted", " "]}])
    prompt, _ = picpik.build(picpik.parse(body, LIMITS, WITH_LORAS), ["a.png", "m.png"])
    checkpoint, chain = lora_chain(prompt)
    assert prompt[checkpoint]["inputs"]["ckpt_name"] == "local-inpaint.safetensors"
    assert chain == [("ink_style.safetensors", 0.6), ("felt.safetensors", 1.0)]
    end = next(i for i, n in prompt.items() if n["class_type"] == "LoraLoader"
               and n["inputs"]["lora_name"] == "felt.safetensors")
    assert links_to(prompt, end) == {"CLIPTextEncode": {1}, "RegionRepair_GuidedBlendInpaint": {0}}
    assert links_to(prompt, checkpoint) == {"LoraLoader": {0, 1},
                                            "RegionRepair_GuidedBlendInpaint": {2}}
    inpaint = next(n["inputs"] for n in prompt.values()
                   if n["class_type"] == "RegionRepair_GuidedBlendInpaint")
    assert inpaint["num_candidates"] == 16
    assert prompt[inpaint["positive"][0]]["inputs"]["text"] == \
        "a patch, embroidered, inkstyle, felted"
    assert prompt[inpaint["negative"][0]]["inputs"]["text"] == "blurry"
    plain, _ = picpik.build(picpik.parse(modify_body(), LIMITS, WITH_LORAS), ["a.png", "m.png"])
    checkpoint, chain = lora_chain(plain)
    assert chain == [] and links_to(plain, checkpoint) == {
        "CLIPTextEncode": {1}, "RegionRepair_GuidedBlendInpaint": {0, 2}}
    weight = modify_body(SubModelList=[{"ModelCode": "ink", "InferenceParams": {"LoraWeight": 3}}])
    error = refused(lambda: picpik.parse(weight, LIMITS, WITH_LORAS), 200)
    assert error.field == "SubModelList[0].InferenceParams.LoraWeight" and "-1 to 2" in str(error)


def test_octoai_with_a_model_runs_the_named_checkpoint_with_the_mapped_loras():
    request = octoai.parse(adetailer_body(checkpoint="dreamshaper_8", loras={"felt": 0.5}),
                           LIMITS, WITH_LORAS)
    prompt, _ = octoai.build(request, "region-repair-serving/a.png")
    checkpoint, chain = lora_chain(prompt)
    assert prompt[checkpoint]["inputs"]["ckpt_name"] == "dreamshaper_8_inpaint.safetensors"
    assert chain == [("felt.safetensors", 0.5)]
    assert set(links_to(prompt, checkpoint)) == {"LoraLoader", "RegionRepair_Detailer"}
    default = octoai.parse(adetailer_body(), LIMITS, WITH_LORAS)
    assert default.checkpoint == "local-inpaint.safetensors" and default.loras == ()
    error = refused(lambda: octoai.parse(adetailer_body(loras={"felt": 11}), LIMITS, WITH_LORAS),
                    422, "loras")
    assert "-10 to 10" in str(error)


def test_octoai_yolo_detectors_run_as_yolo_only_where_their_weights_are():
    assert octoai.parse(adetailer_body(), LIMITS, NO_MODEL).detector == "face_short_mediapipe"
    kept = octoai.parse(adetailer_body(), LIMITS, NO_MODEL, yolo=frozenset({"face_yolov8n"}))
    assert kept.detector == "face_yolov8n"
    hands = octoai.parse(adetailer_body(detector="hand_yolov8n"), LIMITS, NO_MODEL,
                         yolo=frozenset({"face_yolov8n"}))
    assert hands.detector == "hands_mediapipe"


# --- URL inputs and the answer's metadata -----------------------------------------------
def test_url_inputs_only_from_allowed_hosts_without_redirects():


    async def scenario():
        app = web.Application()
        app.router.add_get("/a.png", lambda request: web.Response(body=png(40, 30)))
        app.router.add_get("/away", lambda request: web.HTTPFound("http://169.254.169.254/"))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        try:
            got = await fetch_urls({"base_image": host + "/a.png", "mask_image": "abc"},
                                   photio.IMAGE_FIELDS, (host,), LIMITS)
            assert list(got) == ["base_image"] and got["base_image"].width == 40
            for url, hosts in ((host + "/a.png", ()), (host + "/away", (host,)),
                               ("http://127.0.0.2:9/a.png", (host,))):
                try:
                    await fetch_urls({"base_image": url}, photio.IMAGE_FIELDS, hosts, LIMITS)
                except RequestError as error:
                    assert error.status == 400 and error.field == "base_image"
                else:
                    raise AssertionError(f"{url} was fetched")
        finally:
            await runner.cleanup()
    asyncio.run(scenario())


def test_answers_carry_no_comfyui_metadata():

    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", '{"1": {"inputs": {"ckpt_name": "private.safetensors"}}}')
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buffer, "PNG", pnginfo=info)
    stripped = without_text_chunks(buffer.getvalue())
    assert b"private" in buffer.getvalue() and b"private" not in stripped
    with Image.open(io.BytesIO(stripped)) as image:
        assert image.getpixel((3, 3)) == (10, 20, 30) and "prompt" not in image.info
    assert without_text_chunks(b"\xff\xd8\xffjpeg") == b"\xff\xd8\xffjpeg"
