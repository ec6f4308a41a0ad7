"""Every case of every chapter conclusion, from numbers chosen to fall in it (no chapter executed)."""
from __future__ import annotations

import pandas as pd

from anomclip.book import conclusions


def shift_args(global_ratio, trained):
    ratio = pd.Series({"global": global_ratio, "patch": 2.5})
    below = pd.Series({"global": 3, "patch": 0})
    delta = pd.Series({"image_auroc": -1.25, "pixel_auroc": 4.0})
    return 4, ratio, below, delta, trained


def test_defect_shift_picks_the_case_the_ratio_supports():
    assert conclusions.defect_shift(*shift_args(0.4, trained=False)).case == "random-global-blind"
    assert conclusions.defect_shift(*shift_args(0.4, trained=True)).case == "global-blind"
    assert conclusions.defect_shift(*shift_args(1.0, trained=False)).case == "global-sees"  # 1 is "sees"
    assert conclusions.defect_shift(*shift_args(1.7, trained=True)).case == "global-sees"


def test_defect_shift_quotes_its_numbers():
    text = conclusions.defect_shift(*shift_args(0.4, trained=False)).text
    assert "4 categories" in text and "global feature 0.400 (below 1 in 3 of them)" in text
    assert "patch features 2.500 (below 1 in 0)" in text
    assert "image AUROC by -1.2 points" in text or "image AUROC by -1.3 points" in text
    assert "pixel AUROC by +4.0 points" in text
    one = conclusions.defect_shift(1, pd.Series({"global": 2.0, "patch": 2.0}), pd.Series({"global": 0, "patch": 0}),
                                   {"image_auroc": 0.0, "pixel_auroc": 0.0}, True).text
    assert "over the 1 category:" in one


def test_gap_to_paper_says_a_smoke_gap_means_nothing_and_lists_every_metric():
    gap = {"image AUROC": -30.04, "pixel AUROC": -12.0}
    smoke = conclusions.gap_to_paper(gap, 2, 6, smoke=True)
    real = conclusions.gap_to_paper(gap, 1, 1, smoke=False)
    assert smoke.case == "smoke" and "says nothing about the method" in smoke.text
    assert real.case == "real" and "chapter 14" in real.text
    assert "-30.0 points of image AUROC, -12.0 points of pixel AUROC" in smoke.text
    assert "2 datasets" in smoke.text and "6 methods" in smoke.text
    assert "1 dataset " in real.text and "1 method," in real.text
    assert str(real) == real.text == real._repr_markdown_()
