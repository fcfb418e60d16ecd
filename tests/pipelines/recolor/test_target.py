"""pipelines/recolor/target.py: colour names, instructions and modifiers, swatches, the target
from the three inputs."""

from __future__ import annotations

import pytest
import torch
from lab_colors import lab_of

from region_repair.pipelines.core import color
from region_repair.pipelines.core.color import ciede2000
from region_repair.pipelines.recolor import target as recolor_target


def test_names_come_from_css4_then_xkcd():
    assert recolor_target.parse_color_text("forest green").rgb == color.parse_hex("#228B22")
    assert recolor_target.parse_color_text("xkcd forest green").rgb == color.parse_hex("#06470c")
    # XKCD-only names, with an apostrophe and four words
    assert recolor_target.parse_color_text("robin's egg blue").color_text == "robin's egg blue"
    assert recolor_target.parse_color_text("mustard").rgb == color.parse_hex("#ceb301")


def test_instructions_give_a_color_and_modifiers():
    parsed = recolor_target.parse_color_text("Make it forest green!")
    assert parsed.color_text == "forest green" and parsed.modifiers == ()
    parsed = recolor_target.parse_color_text("a slightly darker navy")
    assert parsed.color_text == "navy"
    assert [(word, scale) for word, _, scale in parsed.modifiers] == [("darker", 0.5)]
    assert recolor_target.parse_color_text("change the red jacket to teal").color_text == "teal"
    assert recolor_target.parse_color_text("use #2e5a3b please").rgb == color.parse_hex("#2E5A3B")
    # modifier words are never the colour itself (XKCD has colours named "dark" and "pale")
    parsed = recolor_target.parse_color_text("make it darker")
    assert parsed.rgb is None and parsed.modifiers[0][0] == "darker"


def test_modifiers_move_the_color_the_way_they_say():
    navy = lab_of("#000080")
    darker = recolor_target.resolve_target(None, None, "a much lighter navy").lab
    assert darker[0] > navy[0] + 20
    pastel = recolor_target.resolve_target(None, None, "pastel forest green").lab
    assert pastel[0] >= 84 and torch.hypot(pastel[1], pastel[2]) <= 28.01
    muted = recolor_target.resolve_target(None, "red", "muted").lab
    red = lab_of("#FF0000")
    assert torch.hypot(muted[1], muted[2]) < 0.7 * torch.hypot(red[1], red[2])


def test_text_sets_the_color_and_the_instruction_refines_it():
    target = recolor_target.resolve_target(None, "#2E5A3B", "make it darker")
    assert target.lab[0] == pytest.approx(float(lab_of("#2E5A3B")[0]) - 12, abs=0.01)
    assert any("modifiers darker" in note for note in target.notes)


def test_pattern_words_are_not_silently_dropped():
    target = recolor_target.resolve_target(None, None, "navy with pinstripes, polka dots")
    assert target.lab.allclose(lab_of("#000080"), atol=0.01)
    assert any("instruction: pattern words 'pinstripes', 'polka', 'dots' ignored" in note
               for note in target.notes)
    # An XKCD colour, not a pattern.
    target = recolor_target.resolve_target(None, "camo green", None)
    assert not any("pattern" in note for note in target.notes)


def test_a_modifier_only_instruction_starts_from_the_garment():
    garment = torch.tensor([50.0, 20.0, 30.0], dtype=torch.float64)
    target = recolor_target.resolve_target(None, None, "lighter", lambda: garment)
    assert target.lab[0] == pytest.approx(62.0, abs=1e-6)


def test_no_target_names_all_three_inputs_and_bad_text_is_refused():
    with pytest.raises(ValueError) as error:
        recolor_target.resolve_target(None, "", "  ")
    for name in ("reference_image", "reference_text", "instruction"):
        assert name in str(error.value)
    with pytest.raises(ValueError, match="reference_text"):
        recolor_target.resolve_target(None, "not a colour at all", None)
    with pytest.raises(ValueError, match="instruction"):
        recolor_target.resolve_target(None, None, "do something nice")


def test_a_patterned_swatch_gives_its_dominant_color():
    swatch = torch.zeros(60, 60, 3)
    swatch[:] = torch.tensor(color.parse_hex("#8E44AD"))
    swatch[:, ::3] = 1.0  # white stripes on a third of the columns
    swatch += 0.02 * torch.randn(60, 60, 3, generator=torch.Generator().manual_seed(1))
    rgb = recolor_target.dominant_color(swatch.clamp(0, 1))
    assert float(ciede2000(color.rgb_lab(rgb), lab_of("#8E44AD"))) < 1.0


# --- the transfer ------------------------------------------------------------------------------
