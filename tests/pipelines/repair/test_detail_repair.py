"""pipelines/repair/detail_repair.py with a recording stand-in generator: sizing, what each mode
shows the generator, candidates, prompts and the info records."""

from __future__ import annotations

import pytest
import torch

from region_repair.pipelines.core.tensors import resize
from region_repair.pipelines.repair import detail_repair as repair
from region_repair.pipelines.repair.detail_repair import Mode, RepairSettings


class Recorder:
    """A generator that remembers what it saw and paints a seed-dependent colour under the mask."""

    def __init__(self):
        self.calls = []

    def __call__(self, pixels, mask, hidden, seed, denoise):
        self.calls.append({"pixels": pixels.clone(), "mask": mask.clone(), "hidden": hidden,
                           "seed": seed, "denoise": denoise})
        color = torch.tensor([(seed % 7) / 7, 0.5, 1 - (seed % 5) / 5])
        return torch.where(mask[..., None] > 0, color.expand_as(pixels), pixels)


def scene(size=(96, 128), box=(40, 56, 50, 70)):
    image = torch.rand(1, *size, 3, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, *size)
    y0, y1, x0, x1 = box
    mask[:, y0:y1, x0:x1] = 1
    return image, mask


def test_a_4096_image_is_processed_at_2048_at_most_and_returned_at_4096():
    image = torch.rand(1, 4096, 4096, 3)
    mask = torch.zeros(1, 4096, 4096)
    mask[:, 1000:2600, 900:2400] = 1  # x3 context: the window is the whole image
    generator = Recorder()
    result = repair.repair(image, mask, RepairSettings(processing_size=2048, feather=2),
                           generator=generator)
    seen = generator.calls[0]["pixels"]
    assert max(seen.shape[1:3]) <= 2048
    assert result.images.shape == (1, 4096, 4096, 3)
    outside = mask[0] == 0
    assert torch.equal(result.images[0][outside], image[0][outside])


def test_native_processing_keeps_the_window_size():
    image, mask = scene()
    generator = Recorder()
    result = repair.repair(image, mask, RepairSettings(processing_size=0), generator=generator)
    (window,) = result.regions.windows
    width, height = result.regions.processing_size
    assert width % 8 == 0 and height % 8 == 0
    assert abs(width - window.width) < 8 and abs(height - window.height) < 8


@pytest.mark.parametrize("mode", list(Mode))
def test_what_each_mode_shows_the_generator(mode):
    image, mask = scene()
    generator = Recorder()
    result = repair.repair(image, mask, RepairSettings(mode=mode, processing_size=0, feather=2),
                           generator=generator)
    call = generator.calls[0]
    crop_width = result.regions.processing_size[0]
    if mode.technique == "annotated":  # a diptych: the right panel is never regenerated
        assert call["pixels"].shape[2] == 2 * crop_width
        assert call["mask"][..., crop_width:].max() == 0
    else:
        assert call["pixels"].shape[2] == crop_width
    if mode.technique == "marked":  # the whole window may change, nothing is hidden
        assert call["mask"].min() == 1 and call["hidden"].max() == 0
        assert (call["pixels"] == torch.tensor(repair.HIGHLIGHT)).all(-1).any()
    else:
        assert torch.equal(call["mask"], call["hidden"])
    outside = mask[0] == 0
    same_outside = torch.equal(result.images[0][outside], image[0][outside])
    assert same_outside == mode.confined
    (window,) = result.regions.windows
    beyond = torch.ones_like(outside)
    beyond[window.y0:window.y1, window.x0:window.x1] = False
    assert torch.equal(result.images[0][beyond], image[0][beyond])


def test_candidates_are_candidate_major_with_consecutive_seeds():
    image, mask = scene()
    image = torch.cat([image, image.flip(1)])
    mask = mask.repeat(2, 1, 1)
    generator = Recorder()
    result = repair.repair(image, mask, RepairSettings(num_candidates=3, seed=40,
                                                       processing_size=64), generator=generator)
    assert [c["seed"] for c in generator.calls] == [40, 41, 42]
    assert result.images.shape[0] == 6
    assert [(r["image_index"], r["candidate_index"], r["seed"]) for r in result.info] == [
        (0, 0, 40), (1, 0, 40), (0, 1, 41), (1, 1, 41), (0, 2, 42), (1, 2, 42)]
    assert all(r["blend"] == "mask" and not r["references_used"] for r in result.info)


def test_progress_is_called_once_per_candidate():
    image, mask = scene()
    calls = []
    repair.repair(image, mask, RepairSettings(num_candidates=4, processing_size=64),
                  generator=Recorder(), step=lambda: calls.append(1))
    assert len(calls) == 4


def test_classical_candidates_beyond_the_four_fills_repeat_them_without_refilling(monkeypatch):
    image, mask = scene()
    fills = []
    original = repair.classical_fill.classical_fill
    monkeypatch.setattr(repair.classical_fill, "classical_fill",
                        lambda *args, **kw: fills.append(args[2:]) or original(*args, **kw))
    result = repair.repair(image, mask, RepairSettings(category="general", num_candidates=6,
                                                       processing_size=64))
    assert fills == repair.FILL_VARIANTS
    images = result.images
    assert torch.equal(images[4], images[0]) and torch.equal(images[5], images[1])
    assert not torch.equal(images[1], images[0])


def test_watermark_withdraws_the_outside_promise():
    image, mask = scene()
    result = repair.repair(image, mask, RepairSettings(add_ai_watermark=True, processing_size=64),
                           generator=Recorder())
    assert result.info[0]["blend"] == "none" and result.info[0]["watermark"]
    assert not torch.equal(result.images[0, -5:, -5:], image[0, -5:, -5:])


def test_an_all_ones_mask_filled_without_context_says_so():
    image, _ = scene(size=(32, 40))
    result = repair.repair(image, torch.ones(1, 32, 40), RepairSettings(processing_size=64))
    assert any("no context" in note for note in result.regions.notes)
    assert any("no context" in note for note in result.info[0]["notes"])
    image, mask = scene()  # a mask with surroundings: no such note
    result = repair.repair(image, mask, RepairSettings(processing_size=64))
    assert not any("no context" in note for note in result.regions.notes)


def test_compose_prompt_per_category():
    positive, negative = repair.compose_prompt("logo", "fix the first letter", ["serif font"])
    assert "logo" in positive and "fix the first letter" in positive and "serif font" in positive
    assert negative
    removal, _ = repair.compose_prompt("general", "")
    assert repair.GENERAL_DEFAULT_INSTRUCTION in removal
    edit, _ = repair.compose_prompt("general", "make the jacket forest green")
    assert edit.startswith("make the jacket forest green")
    with pytest.raises(ValueError, match="'logo'"):
        repair.compose_prompt("logos")


@pytest.mark.parametrize("field, value, match", [
    ("context_factor", 1.4, "1.5-10"), ("context_factor", 10.5, "1.5-10"),
    ("num_candidates", 17, "1-16"), ("processing_size", 4096, "0-2048"),
    ("mode", "blend", "guided-blend"), ("blend", "window", "seamless, inward or hard"),
    ("blend", "outward", "not confined")])
def test_settings_out_of_range_name_the_field_and_range(field, value, match):
    with pytest.raises(ValueError, match=match) as error:
        RepairSettings(**{field: value})
    assert field in str(error.value) or field == "mode"


def removal_scene():
    """A smooth clean background, and the same with a dark object pasted exactly on the mask."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 96), torch.linspace(0, 1, 128), indexing="ij")
    clean = torch.stack([0.3 + 0.4 * xx, 0.5 + 0.2 * yy, 0.7 - 0.3 * xx], dim=-1)[None]
    _, mask = scene()
    damaged = torch.where(mask[..., None] > 0, torch.full_like(clean, 0.05), clean)
    return clean, damaged, mask


@pytest.mark.parametrize("engine", ["classical", "diffusion"])
def test_the_default_blend_leaves_nothing_of_the_removed_object(engine):
    """The inward ramp kept part of the old content on the mask's outer pixels (the outline of
    a removed object); the seamless default replaces it all and meets the surroundings."""
    clean, damaged, mask = removal_scene()
    generator = None
    if engine == "diffusion":  # a fill that is right but 0.08 too bright, as generators are
        def generator(pixels, gen_mask, hidden, seed, denoise):
            fill = resize(clean_crop, *pixels.shape[1:3]) + 0.08
            return torch.where(gen_mask[..., None] > 0, fill, pixels)
        settings = RepairSettings(processing_size=0, context_factor=1.5)
        regions = repair.plan(damaged, mask, settings)
        w = regions.windows[0]
        clean_crop = clean[:, w.y0:w.y1, w.x0:w.x1]
    results = {blend: repair.repair(damaged, mask, RepairSettings(
        blend=blend, processing_size=0, context_factor=1.5), generator=generator).images
        for blend in ("seamless", "inward")}
    inside = mask[0] > 0
    edge = inside & ~(torch.nn.functional.max_pool2d((~inside).float()[None], 5, 1, 2)[0] == 0)
    for blend, out in results.items():
        outside = mask[0] == 0
        assert torch.equal(out[0][outside], damaged[0][outside]), blend
    seamless_error = (results["seamless"][0][edge] - clean[0][edge]).abs().max()
    inward_error = (results["inward"][0][edge] - clean[0][edge]).abs().max()
    assert seamless_error < 0.03 < 0.2 < inward_error


def unrelated_reference():
    return torch.rand(80, 80, 3, generator=torch.Generator().manual_seed(7))


@pytest.mark.parametrize("category", ["logo", "text"])
def test_a_detail_whose_references_do_not_align_is_kept_as_it_was(category):
    image, mask = scene()
    result = repair.repair(image, mask, RepairSettings(category=category, num_candidates=2,
                                                       processing_size=64),
                           references=[unrelated_reference()])
    assert torch.equal(result.images, image.repeat(2, 1, 1, 1))
    for record in result.info:
        assert record["engine"] == "kept" and record["reference_unaligned"] is True
        assert not record["references_used"] and record["alignment"] is None
        assert ("image 0: reference_unaligned: no reference could be aligned; the detail was "
                "kept as it was") in record["notes"]


@pytest.mark.parametrize("category", ["general", "artifact"])
def test_removal_categories_still_fill_classically_and_say_the_reference_did_not_align(category):
    image, mask = scene()
    settings = RepairSettings(category=category, processing_size=64)
    result = repair.repair(image, mask, settings, references=[unrelated_reference()])
    without = repair.repair(image, mask, settings)
    assert torch.equal(result.images, without.images)
    assert not torch.equal(result.images[0][mask[0] > 0], image[0][mask[0] > 0])
    (record,) = result.info
    assert record["engine"] == "classical_fill" and record["reference_unaligned"] is True
    assert any("the masked area was filled classically" in note for note in record["notes"])
    assert without.info[0]["reference_unaligned"] is False


def test_category_must_be_one_of_the_four():
    with pytest.raises(ValueError, match="'logo'"):
        RepairSettings(category="logos")
