"""Load Image Set, called in-process the way ComfyUI's executor calls it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def input_dir(pack, tmp_path):
    import folder_paths

    before = folder_paths.get_input_directory()
    folder_paths.set_input_directory(str(tmp_path))
    yield tmp_path
    folder_paths.set_input_directory(before)


@pytest.fixture(scope="module")
def load_image_set(pack):
    from region_repair.nodes.input_nodes import LoadImageSet

    return LoadImageSet


def shots(folder, sizes):
    folder.mkdir(parents=True)
    for index, (width, height) in enumerate(sizes):
        pixels = np.full((height, width, 3), index * 20, np.uint8)
        Image.fromarray(pixels).save(folder / f"shot{index}.png")


def test_a_set_of_any_sizes_loads_in_name_order_with_its_names(load_image_set, input_dir):
    shots(input_dir / "skus" / "2210", [(40, 30)] * 2 + [(20, 50)] * 9 + [(64, 64)])
    images, names = load_image_set.execute(folder="skus/2210").result
    assert names == [f"shot{index}.png" for index in range(12)]  # shot10 after shot9
    assert [tuple(image.shape) for image in images] == \
        [(1, 30, 40, 3)] * 2 + [(1, 50, 20, 3)] * 9 + [(1, 64, 64, 3)]
    assert [round(float(image.mean()) * 255) for image in images] == \
        [index * 20 for index in range(12)]
    schema = load_image_set.define_schema()
    assert "skus/2210" in schema.inputs[0].options and all(o.is_output_list
                                                           for o in schema.outputs)


def test_the_fingerprint_changes_when_a_photo_does(load_image_set, input_dir):
    shots(input_dir / "set", [(8, 8), (8, 8)])
    before = load_image_set.fingerprint_inputs(folder="set")
    assert load_image_set.fingerprint_inputs(folder="set") == before
    Image.new("RGB", (9, 8)).save(input_dir / "set" / "shot1.png")
    assert load_image_set.fingerprint_inputs(folder="set") != before


@pytest.mark.parametrize("folder", ["../outside", "missing", "/etc"])
def test_a_folder_outside_the_input_directory_is_an_error(load_image_set, input_dir, folder):
    (input_dir.parent / "outside").mkdir(exist_ok=True)
    with pytest.raises(ValueError, match="folder: .* is not a folder of ComfyUI's input"):
        load_image_set.execute(folder=folder)
