"""The sentences a chapter concludes with, written from its numbers by tested functions.

A chapter computes its numbers, then asks one of these functions what they say; the function
picks the sentence that the numbers support (and says which case it is in), so that no chapter
holds a hidden three-way f-string, and every branch of every conclusion is tested
(tests/test_conclusions.py) without executing the chapter.
"""
from __future__ import annotations

from dataclasses import dataclass

from .labels import SMOKE_ANCHOR, fmt, plural


@dataclass(frozen=True)
class Conclusion:
    """A conclusion: which case the numbers fall in, and the Markdown that says it."""

    case: str
    text: str

    def _repr_markdown_(self) -> str:
        return self.text

    def __str__(self) -> str:
        return self.text


def defect_shift(n_categories: int, median_ratio: dict, below_one: dict, delta: dict,
                 trained_backbone: bool) -> Conclusion:
    """What the defect-shift diagnostic (chapter 4) says about image-level transfer.

    ``median_ratio`` / ``below_one``: per feature (``"global"``, ``"patch"``) the median over the
    categories of (defect shift / normal spread) and the number of categories where it is below
    1; ``delta``: tuned − untrained, in points, per metric key (``image_auroc``, ``pixel_auroc``).
    Cases: ``random-global-blind`` (random weights and a global ratio below 1), ``global-sees``
    (global ratio ≥ 1), ``global-blind`` (trained weights, ratio below 1).
    """
    g, p = median_ratio["global"], median_ratio["patch"]
    measured = (f"**Measured.** Median ratio over the {plural(n_categories, 'category', 'categories')}: "
                f"global feature {fmt(g, 3)} (below 1 in {below_one['global']} of them), patch features "
                f"{fmt(p, 3)} (below 1 in {below_one['patch']}). Tuning changed the evaluated datasets' mean "
                f"image AUROC by {delta['image_auroc']:+.1f} points and their pixel AUROC by "
                f"{delta['pixel_auroc']:+.1f} points (mean over datasets, tuned − untrained). ")
    if g >= 1:
        return Conclusion("global-sees", measured + "Here the global feature does see the defect (median ratio "
                          "≥ 1), so image-level transfer has something to work with.")
    if not trained_backbone:
        return Conclusion("random-global-blind", measured + (
            "With random weights the class token hardly sees the defect: a ratio below 1 means two normal "
            "images differ more than an image and its defective twin, so no direction learned on one domain "
            "can rank another domain's images by defect. The patch tokens at the defect do move, which is "
            "what the maps use. The image-level transfer the paper reports rests on CLIP's pretrained global "
            "token, which this smoke run does not have."))
    return Conclusion("global-blind", measured + (
        "Even with these weights the global feature moves less with a defect than between normal images "
        "(median ratio < 1): image-level transfer has little to work with on these pairs."))


def gap_to_paper(mean_gap: dict, n_datasets: int, n_methods: int, smoke: bool) -> Conclusion:
    """What the mean gap ours − paper (points, per metric display name) says (chapter 4).

    Cases: ``smoke`` (a smoke run: far from the paper by construction) and ``real``.
    """
    said = (f"**What it means.** Over the {plural(n_datasets, 'dataset')} this run covers and the "
            f"{plural(n_methods, 'method')}, ours − paper is "
            + ", ".join(f"{fmt(v)} points of {m}" for m, v in mean_gap.items()) + " on average. ")
    if smoke:
        return Conclusion("smoke", said + (f"A smoke run is far from the paper by construction ([what a smoke run "
                                           f"can and cannot show]({SMOKE_ANCHOR})); the gap says nothing about "
                                           "the method."))
    return Conclusion("real", said + "Remaining differences come from the paper-vs-code choices of chapter 14 and "
                      "run-to-run noise.")
