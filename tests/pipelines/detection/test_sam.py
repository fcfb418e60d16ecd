"""SAM refinement with a tiny random-weight SAM: loading from a checkpoint file, boxes and points
to masks, and the missing-checkpoint error."""

from __future__ import annotations

import numpy as np
import pytest
import tiny_sam
import torch
from pack_paths import PACK_ROOT
from PIL import Image

from region_repair.pipelines.detection import detect as det
from region_repair.pipelines.detection import sam as sam_ops


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_sam.write_tiny_sam(tmp_path_factory.mktemp("sams") / "tiny_sam.pth")


@pytest.fixture(scope="module")
def sam(checkpoint):
    return sam_ops.load_sam(checkpoint)


@pytest.fixture(scope="module")
def astronaut():
    rgb = np.asarray(Image.open(PACK_ROOT / "assets" / "photos" / "astronaut.png"), np.float32)
    return torch.from_numpy(rgb / 255)[None]


def test_the_checkpoint_loads_into_the_same_model(sam):
    reference = tiny_sam.build_tiny_sam()
    assert sam.state_dict().keys() == reference.state_dict().keys()
    assert all(torch.equal(value, reference.state_dict()[key])
               for key, value in sam.state_dict().items())
    assert not sam.training
    config = sam_ops.sam_config(sam.state_dict())
    assert (config.img_size, config.embed_dim, config.depth, config.num_heads,
            config.window_size, config.global_attn_indexes) == (256, 64, 2, 2, 4, (1,))


@pytest.mark.parametrize("kind, heads, globals_", [("vit_b", 12, (2, 5, 8, 11)),
                                                   ("vit_l", 16, (5, 11, 17, 23)),
                                                   ("vit_h", 16, (7, 15, 23, 31))])
def test_official_layouts_are_recognised_from_shapes(kind, heads, globals_):
    from segment_anything import sam_model_registry

    with torch.device("meta"):  # shapes only: no memory, no weights
        official = sam_model_registry[kind](checkpoint=None)
        config = sam_ops.sam_config(official.state_dict())
        rebuilt = sam_ops.build_sam(config)
    assert (config.img_size, config.num_heads, config.window_size, config.global_attn_indexes
            ) == (1024, heads, 14, globals_)
    shapes = {key: value.shape for key, value in official.state_dict().items()}
    assert {key: value.shape for key, value in rebuilt.state_dict().items()} == shapes


def test_a_box_becomes_a_mask_inside_the_box(sam, astronaut):
    found = det.Detections("test", 1, 512, 512, [
        det.Detection(0, (170, 70, 280, 190), 0.9, "face", torch.zeros(512, 512))])
    refined = sam_ops.refine(sam, astronaut, found)
    (item,) = refined.items
    assert (item.box, item.confidence, item.label) == ((170, 70, 280, 190), 0.9, "face")
    assert item.mask.shape == (512, 512) and set(item.mask.unique().tolist()) <= {0.0, 1.0}
    assert 0 < item.mask.sum() <= item.area
    assert item.mask[:70].sum() == 0 and item.mask[:, 280:].sum() == 0
    again = sam_ops.refine(sam, astronaut, found)
    assert torch.equal(again.items[0].mask, item.mask)  # deterministic


def test_segment_returns_the_best_of_three_per_prompt(sam, astronaut):
    prompts = [sam_ops.SamPrompt(0, (170, 70, 280, 190)),
               sam_ops.SamPrompt(0, None, ((220.0, 130.0), (10.0, 10.0)), (1, 0))]
    results = sam_ops.segment(sam, astronaut, prompts)
    assert len(results) == 2
    for mask, score in results:
        assert mask.shape == (512, 512) and isinstance(score, float)


def test_points_alone_segment_one_object_per_image(sam, astronaut):
    found = sam_ops.from_points(sam, torch.cat([astronaut, astronaut]),
                                sam_ops.parse_points("220, 130\n10, 10, 0", 512, 512))
    assert [d.batch_index for d in found.items] == [0, 1]
    assert torch.equal(found.items[0].mask, found.items[1].mask)
    assert all(0 <= d.confidence <= 1 and d.label == "sam" for d in found.items)
    with pytest.raises(ValueError, match="object point"):
        sam_ops.from_points(sam, astronaut, [(10.0, 10.0, 0)])


def test_mask_parts_become_boxes():
    mask = torch.zeros(2, 40, 60)
    mask[0, 5:10, 5:15] = 1
    mask[0, 20:30, 40:50] = 1
    mask[1, 0:4, 0:4] = 1
    found = sam_ops.boxes_from_mask(mask)
    assert [(d.batch_index, d.box) for d in found.items] == [
        (0, (5, 5, 15, 10)), (0, (40, 20, 50, 30)), (1, (0, 0, 4, 4))]
    assert torch.equal(found.union_mask(), mask)


def test_points_syntax():
    assert sam_ops.parse_points("1, 2\n3.5,4,0; 5, 6, 1\n", 8, 8) == [(1, 2, 1), (3.5, 4, 0),
                                                                      (5, 6, 1)]
    for bad in ("1", "1, 2, 3", "a, b"):
        with pytest.raises(ValueError, match="points"):
            sam_ops.parse_points(bad, 8, 8)


@pytest.mark.parametrize("bad", ["64, 10", "10, 48", "-1, 5", "nan, 5", "5, inf"])
def test_points_outside_the_image_are_refused(bad):
    with pytest.raises(ValueError, match=r"points: .* lies outside the 64x48 image; x must be "
                                         r"0..63 and y 0..47"):
        sam_ops.parse_points(bad, 64, 48)


def test_missing_checkpoint_says_where_to_put_one(tmp_path):
    message = sam_ops.missing_checkpoint_message([str(tmp_path / "models" / "sams")])
    assert str(tmp_path / "models" / "sams") in message and "sam_vit_b_01ec64.pth" in message
    with pytest.raises(ValueError, match=r"'gone.pth' not found(.|\n)*" + str(tmp_path)):
        sam_ops.load_sam(tmp_path / "gone.pth")


def test_a_file_that_is_not_sam_is_refused(tmp_path):
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a segment-anything state_dict"):
        sam_ops.load_sam(tmp_path / "other.pth")
