"""pipelines/core/color.py against colour-science and the CIEDE2000 reference pairs."""

from __future__ import annotations

import colour
import numpy as np
import pytest
import torch

from region_repair.pipelines.core import color as pack_color

# Sharma, Wu and Dalal (2005), "The CIEDE2000 color-difference formula: implementation notes",
# table 1: pairs 1, 7, 13, 17, 25 and 34 with their published ΔE00.
SHARMA_PAIRS = [
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
    ((50.0, 2.5, 0.0), (56.0, -27.0, -3.0), 31.9030),
    ((50.0, 2.5, 0.0), (50.0, 3.2592, 0.3350), 1.0000),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),
]


@pytest.mark.parametrize("lab1, lab2, expected", SHARMA_PAIRS)
def test_ciede2000_matches_published_pairs(lab1, lab2, expected):
    got = pack_color.ciede2000(torch.tensor(lab1), torch.tensor(lab2)).item()
    assert got == pytest.approx(expected, abs=1e-4)


def test_ciede2000_matches_color_science_on_random_colors():
    rng = np.random.default_rng(0)
    lab1 = np.stack([rng.uniform(0, 100, 5000), rng.uniform(-100, 100, 5000),
                     rng.uniform(-100, 100, 5000)], -1)
    lab2 = lab1 + rng.normal(0, 8, lab1.shape)
    expected = colour.delta_E(lab1, lab2, method="CIE 2000")
    got = pack_color.ciede2000(torch.from_numpy(lab1), torch.from_numpy(lab2)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_lab_conversion_matches_color_science():
    rng = np.random.default_rng(1)
    rgb = rng.uniform(0, 1, (1, 8, 8, 3))
    expected = colour.XYZ_to_Lab(colour.sRGB_to_XYZ(rgb))
    got = pack_color.srgb_to_lab(torch.from_numpy(rgb).float()).numpy()
    np.testing.assert_allclose(got, expected, atol=0.05)
    back = pack_color.lab_to_srgb(torch.from_numpy(got)).numpy()
    np.testing.assert_allclose(back, rgb, atol=1e-3)


@pytest.mark.parametrize("text, expected", [("#2E5A3B", (0x2E, 0x5A, 0x3B)),
                                            ("fff", (255, 255, 255))])
def test_parse_hex(text, expected):
    assert pack_color.parse_hex(text) == pytest.approx(tuple(v / 255 for v in expected))


@pytest.mark.parametrize("bad", ["#12345", "green", "#GG0000"])
def test_parse_hex_rejects_with_the_expected_form(bad):
    with pytest.raises(ValueError, match=r"#RRGGBB"):
        pack_color.parse_hex(bad, name="reference_text")
