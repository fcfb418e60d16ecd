"""The set loader's order and orientation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from region_repair.pipelines.core.image_set import load_upright, natural_key, set_files


def test_names_sort_naturally_whatever_the_directory_order(tmp_path):
    names = ["shot10.png", "shot2.jpg", "Shot1.webp", "shot2b.png", "back.JPEG", "0.png"]
    for name in names:
        Image.new("RGB", (4, 3)).save(tmp_path / name, format="PNG")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub.png").mkdir()
    assert [path.name for path in set_files(tmp_path)] == [
        "0.png", "back.JPEG", "Shot1.webp", "shot2.jpg", "shot2b.png", "shot10.png"]


@given(st.lists(st.integers(0, 10 ** 6), min_size=1, max_size=30, unique=True))
def test_numbered_files_come_in_number_order(numbers):
    names = [f"{number}.png" for number in numbers]
    assert sorted(names, key=natural_key) == [f"{n}.png" for n in sorted(numbers)]


def test_an_empty_folder_is_an_error_naming_it(tmp_path):
    (tmp_path / "readme.txt").write_text("")
    with pytest.raises(ValueError, match=r"folder: .* holds no \.png, \.jpg, \.jpeg, \.webp"):
        set_files(tmp_path)


def test_a_rotated_phone_photo_loads_upright(tmp_path):
    pixels = np.zeros((20, 30, 3), np.uint8)
    pixels[:5, :5] = 255  # a white corner, top left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    Image.fromarray(pixels).save(tmp_path / "phone.jpg", exif=exif, quality=100)
    image = load_upright(tmp_path / "phone.jpg")
    assert image.shape == (1, 30, 20, 3) and image.dtype == torch.float32
    assert image[0, :5, -5:].mean() > 0.9 and image[0, -5:, :5].mean() < 0.1
    Image.fromarray(pixels).save(tmp_path / "plain.png")
    assert torch.equal(load_upright(tmp_path / "plain.png")[0],
                       torch.from_numpy(pixels.astype(np.float32) / 255))
