"""bench/quality_truth.py's case builders and truth metrics (the benchmark itself is not run)."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
from pack_paths import PACK_ROOT


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(PACK_ROOT / "bench"))  # for its `_common`
    try:
        spec = importlib.util.spec_from_file_location("quality_truth",
                                                      PACK_ROOT / "bench" / "quality_truth.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["quality_truth"] = module  # its dataclass looks itself up there
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("quality_truth", None)
        sys.path.remove(str(PACK_ROOT / "bench"))


def test_removal_cases_change_only_what_their_masks_cover(bench):
    cases = bench.removal_cases(quick=True)
    assert [c.group for c in cases] == ["removal, exact mask",
                                        f"removal, mask +{bench.GROWN_BY} px"] * 2
    for exact, grown in zip(cases[::2], cases[1::2]):
        changed = (exact.image != exact.truth).any(-1)
        assert changed.sum() > 1500  # an object of about 64 px
        assert not changed[~exact.mask].any() and (grown.mask >= exact.mask).all()
        assert 0.9 < changed.sum() / exact.mask.sum() <= 1  # the mask is the object, not more
        # grown all round: at least the growth times a disc's perimeter (3.5 sqrt(area))
        assert (grown.mask.sum() - exact.mask.sum()) > 3 * bench.GROWN_BY * np.sqrt(
            exact.mask.sum())


def test_repair_cases_garble_the_box_and_carry_a_transformed_reference(bench):
    cases = bench.repair_cases(quick=True)
    assert len(cases) == 3 and {c.group for c in cases} == {"repair, reference 3x"}
    for case in cases:
        assert not (case.image != case.truth).any(-1)[~case.mask].any()
        assert np.abs(case.image - case.truth)[case.mask].mean() > 0.02
        box = np.ptp(np.nonzero(case.mask)[0]) + 1, np.ptp(np.nonzero(case.mask)[1]) + 1
        # 3x the box at a scale of 0.6-2x
        assert 3 * 0.6 * min(box) <= min(case.reference.shape[:2]) <= 3 * 2 * max(box) + 1
        assert case.reference.dtype == np.float32 and 0 <= case.reference.min() <= 1


def test_the_truth_scores_perfectly_and_leftover_content_counts_as_residue(bench):
    case = bench.removal_cases(quick=True)[0]
    perfect = bench.score(case, case.truth)
    assert perfect["delta_e"] == 0 and perfect["seam"] == 0 and not perfect["residue"]
    left = bench.score(case, case.image)  # nothing removed
    assert left["residue"] and left["seam"] > 5 and left["psnr"] < perfect["psnr"]


def test_the_floors_change_only_the_mask_and_grow_with_the_blur(bench):
    case = bench.removal_cases(quick=True)[0]
    runs = bench.methods("removal")
    floors = [bench.score(case, runs[f"floor: truth blurred σ{s:g}"](case)[0])
              for s in bench.FLOOR_SIGMAS]
    assert all(f["changed_outside"] == 0 for f in floors)
    assert 0 < floors[0]["seam"] < floors[1]["seam"]
    assert 0 < floors[0]["delta_e"] < floors[1]["delta_e"]
