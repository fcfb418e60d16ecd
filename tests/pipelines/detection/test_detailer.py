"""pipelines/detection/detailer.py: per-object and union repair, exactness outside the grown,
blurred masks, order, prompts and counts."""

from __future__ import annotations

import json

import pytest
import torch

from region_repair.pipelines.detection.detailer import (
    DetailerSettings,
    detail,
    info_records,
    prompt_for,
    split_prompts,
)
from region_repair.pipelines.geometry import masks as mask_ops
from region_repair.pipelines.review.quality import parse_info


def objects_scene():
    image = torch.rand(2, 120, 160, 3, generator=torch.Generator().manual_seed(2))
    first = torch.zeros(120, 160)
    first[20:40, 20:44] = 1
    second = torch.zeros(120, 160)
    second[70:100, 100:130] = 1
    return image, [(0, first), (0, second), (1, second)]


class Painter:
    """Generators that paint each job's mask with a job-specific grey, recording the order."""

    def __init__(self):
        self.jobs = []

    def __call__(self, number):
        def generate(pixels, mask, hidden, seed, denoise):
            self.jobs.append((number, tuple(pixels.shape), seed, denoise))
            return torch.where(mask[..., None] > 0, torch.full_like(pixels, number / 10), pixels)
        return generate


def allowed_region(objects, settings, batch=2, size=(120, 160)):
    grown = torch.zeros(batch, *size)
    for index, shape in objects:
        one = torch.zeros(batch, *size)
        one[index] = shape
        grown = torch.maximum(grown, mask_ops.grow_and_blur(one, settings.mask_dilation,
                                                            settings.mask_blur))
    return grown > 0


@pytest.mark.parametrize("union", [False, True])
def test_only_the_grown_blurred_masks_change(union):
    image, objects = objects_scene()
    settings = DetailerSettings(union_masks=union)
    painter = Painter()
    result = detail(image, objects, settings, painter)
    allowed = allowed_region(objects, settings)
    assert torch.equal(result.image[~allowed], image[~allowed])
    for index, shape in objects:
        assert not torch.equal(result.image[index][shape > 0], image[index][shape > 0])
    assert result.num_objects_detected == 3 and result.num_objects_inpainted == 3
    assert result.num_removed_for_safety == 0
    assert len(painter.jobs) == (1 if union else 3)
    assert [job[0] for job in painter.jobs] == list(range(len(painter.jobs)))
    for _, shape, seed, denoise in painter.jobs:  # crops at the seed's SD1.5 resolutions
        assert (shape[2], shape[1]) in {(384, 704), (448, 576), (512, 512), (512, 704),
                                        (512, 768), (512, 832), (576, 448), (576, 768),
                                        (576, 1024), (640, 512), (640, 640), (640, 768),
                                        (704, 384), (704, 1216), (768, 512), (768, 576),
                                        (768, 1024), (832, 512), (896, 896), (1024, 576),
                                        (1024, 768), (1024, 1024), (1024, 1536), (1216, 704),
                                        (1536, 1024)}
        assert seed == 0 and denoise == 0.9


@pytest.mark.parametrize("union", [False, True])
def test_the_exact_mode_changes_only_the_detections_own_shapes(union):
    image, objects = objects_scene()
    result = detail(image, objects, DetailerSettings(union_masks=union, blend="seamless"),
                    Painter())
    shapes = torch.zeros(2, 120, 160, dtype=torch.bool)
    for index, shape in objects:
        shapes[index] |= shape > 0
    assert torch.equal(result.image[~shapes], image[~shapes])
    for index, shape in objects:
        assert not torch.equal(result.image[index][shape > 0], image[index][shape > 0])


def test_each_object_is_repaired_on_the_previous_result():
    image, objects = objects_scene()
    overlapping = [(0, objects[0][1]), (0, objects[0][1])]
    result = detail(image, overlapping, DetailerSettings(), Painter())
    # The second job painted over the first: the centre holds job 1's grey.
    assert torch.allclose(result.image[0, 30, 30], torch.full((3,), 0.1), atol=0.02)


def test_without_a_generator_a_blur_hides_each_object():
    image, objects = objects_scene()
    settings = DetailerSettings()
    result = detail(image, objects, settings)
    allowed = allowed_region(objects, settings)
    assert torch.equal(result.image[~allowed], image[~allowed])
    assert not torch.equal(result.image[allowed], image[allowed])


def test_no_objects_leaves_the_image_alone():
    image, _ = objects_scene()
    result = detail(image, [], DetailerSettings(), Painter())
    assert torch.equal(result.image, image) and result.num_objects_inpainted == 0


def test_prompts_split_on_sep_and_the_last_serves_the_rest():
    prompts = split_prompts("a smiling face [SEP] a calm face")
    assert prompts == ["a smiling face", "a calm face"]
    assert [prompt_for(prompts, i) for i in range(3)] == ["a smiling face", "a calm face",
                                                          "a calm face"]
    assert split_prompts("") == [""]


@pytest.mark.parametrize("field, value, match", [("mask_dilation", -1, ">= 0"),
                                                 ("strength", 0.0, "strength"),
                                                 ("base_model", "sd3", "'sd15'"),
                                                 ("blend", "window", "'window' is not allowed")])
def test_bad_settings_name_the_field(field, value, match):
    with pytest.raises(ValueError, match=match):
        DetailerSettings(**{field: value})


def test_detections_from_another_image_size_are_an_error_naming_them():
    image, objects = objects_scene()
    height, width = image.shape[1:3]
    with pytest.raises(ValueError, match=rf"detections: found on a {width + 8}x{height} image; "
                                         rf"image is {width}x{height}"):
        detail(image, [(0, torch.zeros(height, width + 8))], DetailerSettings())


def test_a_bad_batch_index_is_an_error():
    image, objects = objects_scene()
    with pytest.raises(ValueError, match="batch index 5"):
        detail(image, [(5, objects[0][1])], DetailerSettings())


@pytest.mark.parametrize("blend, promise", [("outward", "window"), ("seamless", "mask")])
def test_info_has_one_record_per_image_that_quality_check_reads(blend, promise):
    image, objects = objects_scene()
    settings = DetailerSettings(blend=blend, seed=7)
    result = detail(image, objects, settings, Painter())
    records = info_records(result, settings, image.shape[0], "hands_mediapipe", "diffusion")
    assert parse_info(json.dumps(records), count=2, originals=2) == records
    assert [(r["image_index"], r["candidate_index"], r["blend"], r["seed"]) for r in records] \
        == [(0, 0, promise, 7), (1, 0, promise, 7)]
    assert [len(r["windows"]) for r in records] == [2, 1]  # two objects on image 0, one on 1
    assert all(r["detector"] == "hands_mediapipe" and r["num_objects_detected"] == 3
               for r in records)
    blurred = info_records(result, settings, 2, "face_haar", "blur")
    assert blurred[0]["seed"] is None and blurred[0]["engine"] == "blur"
