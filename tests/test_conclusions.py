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
    gap = {"image_auroc": -30.04, "pixel_auroc": -12.0}
    smoke = conclusions.gap_to_paper(gap, 2, 6, smoke=True)
    real = conclusions.gap_to_paper(gap, 1, 1, smoke=False)
    assert smoke.case == "smoke" and "says nothing about the method" in smoke.text
    assert real.case == "real" and "chapter 14" in real.text
    assert "-30.0 points of image AUROC, -12.0 points of pixel AUROC" in smoke.text
    assert "2 datasets" in smoke.text and "6 methods" in smoke.text
    assert "1 dataset " in real.text and "1 method," in real.text
    assert str(real) == real.text == real._repr_markdown_()


def test_unseen_domain_quotes_ours_and_the_paper_and_says_what_a_smoke_run_shows():
    mean, paper = {"image_auroc": 0.5123, "pixel_auroc": 0.7777}, {"image_auroc": 0.821, "pixel_auroc": 0.951}
    smoke = conclusions.unseen_domain("objects", "mean of the 4 categories", mean, paper, smoke=True)
    real = conclusions.unseen_domain("VisA", "mean of the 12 categories", mean, paper, smoke=False)
    assert smoke.case == "smoke" and "pipeline runs end to end" in smoke.text
    assert real.case == "real" and "pretrained backbone on the real data" in real.text
    assert "On objects (mean of the 4 categories)" in smoke.text and "On VisA (mean of the 12" in real.text
    assert "image AUROC is **51.2 %**" in smoke.text and "pixel AUROC **77.8 %**" in smoke.text
    assert "The paper reports 82.1 % and 95.1 % on VisA" in real.text


def modes(spread):
    last = pd.Series({"Q-K": 1.104, "Q-Q": 2.2, "K-K": 1.9, "V-V": 3.333})
    tuned = pd.Series({"Q-K": 60.0, "Q-Q": 61.0, "K-K": 62.0, "V-V": 62.0 + spread})
    return last, tuned


def test_diagonal_attention_names_a_best_mode_only_beyond_the_noise():
    ahead = conclusions.diagonal_attention(*modes(5.0), 3.0, smoke=False)
    level = conclusions.diagonal_attention(*modes(3.0), 3.0, smoke=True)  # a lead equal to the noise is no lead
    assert ahead.case == "ahead, real" and level.case == "within-noise, smoke"
    assert conclusions.diagonal_attention(*modes(0.5), 3.0, smoke=False).case == "within-noise, real"
    assert conclusions.diagonal_attention(*modes(9.0), 3.0, smoke=True).case == "ahead, smoke"
    assert "most diagonal mode of the last block is **V-V** (self/other ratio 3.33, against 1.10 for Q-K)" in ahead.text
    assert "**V-V** (67.0 % pixel AUROC on four images, 5.0 points ahead of K-K, more than the noise of ±3.0" \
        in ahead.text
    assert "the four modes lie within 60.0–65.0 % pixel AUROC" in level.text and "(±3.0 points" in level.text
    assert "Fig. 3 directly" in ahead.text and "a random backbone has not" in level.text


def test_object_agnostic_gain_lists_the_paper_and_ours_per_dataset_and_metric():
    paper = pd.Series({("MVTec AD", "pixel_auroc"): 1.23, ("VisA", "image_auroc"): -0.4})
    ours = pd.DataFrame({"dataset": ["objects", "VisA"], "metric": ["pixel_auroc", "image_auroc"],
                         "value": [2.5, -3.25]})
    smoke = conclusions.object_agnostic_gain(paper, ours, "ours (smoke run)", smoke=True)
    real = conclusions.object_agnostic_gain(paper, ours, "ours", smoke=False)
    assert smoke.case == "smoke" and "knows no class names" in smoke.text
    assert real.case == "real" and "knows no class names" not in real.text
    assert "paper (Table 7): MVTec AD pixel AUROC +1.2, VisA image AUROC -0.4; ours (smoke run): " in smoke.text
    assert "objects (stands in for VisA) pixel AUROC +2.5, VisA image AUROC -3.2 points." in smoke.text
    assert "by -0.4 to 1.2 points over its datasets" in real.text


def test_module_ablation_quotes_the_paper_and_each_run_of_ours():
    p4 = pd.Series({("base", "pixel_auroc"): 47.26, ("+T1 DPAM", "pixel_auroc"): 89.0, ("base", "image_auroc"): 1.0})
    p7 = pd.Series({("full", "image_auroc"): 91.5, ("without T2 object-agnostic prompts", "image_auroc"): 86.25})
    none = conclusions.module_ablation(p4, p7, {})
    ran = conclusions.module_ablation(p4, p7, {"textures (stands in for MVTec AD)": -1.24,
                                              "objects (stands in for VisA)": 2.0})
    assert (none.case, ran.case) == ("not-run", "ran")
    # 91.5 − 86.25 = 5.25 → "5.2" (round half to even of the float 5.25), 86.25 → "86.2"
    assert "removing it costs 5.2 points of image AUROC on MVTec AD (91.5 → 86.2)" in none.text
    assert "(pixel AUROC 47.3 → 89.0 on MVTec AD, image level unchanged)" in none.text
    assert none.text.endswith("image level unchanged).") and "In this run" not in none.text
    assert ran.text.startswith(none.text)
    assert ran.text.endswith(" In this run, removing T2 changes image AUROC by -1.2 points on textures (stands in "
                             "for MVTec AD), +2.0 points on objects (stands in for VisA).")


def test_module_ablation_says_what_t3_and_t4_add_from_the_numbers():
    """The steps of Table 4 as the numbers give them (no "about a point each")."""
    p4 = pd.Series({("base", "pixel_auroc"): 47.26, ("+T1 DPAM", "pixel_auroc"): 89.0,
                    ("+T2 object-agnostic prompts", "pixel_auroc"): 90.0, ("+T2 object-agnostic prompts", "image_auroc"): 90.0,
                    ("+T3 text prompt tuning", "pixel_auroc"): 90.25, ("+T3 text prompt tuning", "image_auroc"): 90.5,
                    ("+T4 multi-layer features", "pixel_auroc"): 91.25, ("+T4 multi-layer features", "image_auroc"): 91.6})
    p7 = pd.Series({("full", "image_auroc"): 91.5, ("without T2 object-agnostic prompts", "image_auroc"): 86.25})
    text = conclusions.module_ablation(p4, p7, {}).text
    # T3: +0.25 (pixel), +0.5 (image); T4: +1.0, +1.1
    assert text.endswith("Then, over the 2 metrics of Table 4 on MVTec AD, T3 by +0.2 to +0.5 points and T4 by "
                         "+1.0 to +1.1 points move them: small steps beside T2's.")
    assert "about a point" not in text


P5 = pd.Series({("global only", "pixel_auroc"): 80.1, ("local only", "pixel_auroc"): 90.2,
                ("local only", "image_auroc"): 88.0, ("local + global", "image_auroc"): 91.5})
P11 = pd.Series({("focal only", "pixel_auroc"): 89.9, ("dice only", "pixel_auroc"): 85.0})


def test_loss_terms_quotes_the_paper_and_each_run_of_ours():
    ours = {"textures": {"global only": 51.0, "local only": 60.0, "local + global": 61.54},
            "objects": {"local only": 55.0}}
    none = conclusions.loss_terms(P5, P11, {}, smoke=True)
    smoke = conclusions.loss_terms(P5, P11, ours, smoke=True)
    real = conclusions.loss_terms(P5, P11, ours, smoke=False)
    assert (none.case, smoke.case, real.case) == ("not-run", "smoke", "real")
    assert "In this run" not in none.text and none.text.endswith("the two together are best. ")
    assert "80.1 with the global loss alone, 90.2 with the local loss alone" in none.text
    assert "image AUROC 88.0 → 91.5" in none.text and "pixel AUROC 89.9 vs 85.0 for Dice" in none.text
    assert "both: 51.0 → 60.0 → 61.5 on textures; – → 55.0 → – on objects." in real.text  # missing: "–"
    assert real.text.endswith("on objects.") and smoke.text.endswith("not how much it helps.")


def test_dpam_modes_quotes_the_paper_gains_and_each_single_mode_of_ours():
    p = pd.Series({("V-V", "pixel_auroc"): 91.1, ("Q-K (no DPAM)", "pixel_auroc"): 80.0,
                   ("V-V", "image_auroc"): 91.5, ("Q-K (no DPAM)", "image_auroc"): 85.0,
                   ("V-V", "pixel_aupro"): 81.4, ("Q-Q+K-K+V-V ensemble", "pixel_aupro"): 82.0})
    ours = {"textures": {"Q-K (no DPAM)": 50.0, "Q-Q": 52.0, "K-K": 53.0, "V-V": 66.6}}
    none = conclusions.dpam_modes(p, {}, smoke=False)
    smoke = conclusions.dpam_modes(p, ours, smoke=True)
    real = conclusions.dpam_modes(p, ours, smoke=False)
    assert (none.case, smoke.case, real.case) == ("not-run", "smoke", "real")
    assert "In this run" not in none.text
    assert "by 11.1 points of pixel AUROC and 6.5 of image AUROC" in none.text
    assert "pixel AUPRO 81.4 → 82.0" in none.text
    assert "single mode: textures: Q-K (no DPAM) 50.0, Q-Q 52.0, K-K 53.0, V-V 66.6." in real.text
    assert real.text.endswith("V-V 66.6.") and smoke.text.endswith("not which one is better.")


def test_state_words_quotes_the_spreads_and_the_cost_of_sharing():
    spread = pd.Series({("MVTec AD", "pixel_auroc"): 0.4, ("VisA", "image_auroc"): 1.7, ("VisA", "pixel_auroc"): 0.9})
    p9 = pd.Series({("unshared prompts", "image_auroc"): 91.5, ("shared prompts", "image_auroc"): 90.2})
    ours = pd.Series({("objects", "image_auroc"): 3.33, ("textures", "pixel_auroc"): 0.14})
    smoke = conclusions.state_words(spread, p9, ours, 2, smoke=True)
    real = conclusions.state_words(spread, p9, ours, 1, smoke=False)
    assert smoke.case == "smoke" and "cannot be resolved" in smoke.text
    assert real.case == "real" and real.text.endswith("after 1 epoch.")
    assert "by 0.9 points (median over datasets and metrics) and by 1.7 at most (VisA, image AUROC)" in smoke.text
    assert "Sharing the embeddings costs 1.3 points of image AUROC" in smoke.text
    assert ("spread by 3.3 points of image AUROC on objects (stands in for VisA), 0.1 points of pixel AUROC on "
            "textures (stands in for MVTec AD) after 2 epochs:") in smoke.text


def test_hyperparameter_sweeps_quotes_the_span_and_the_epochs():
    span = pd.Series({("E", "pixel AUROC"): 0.2, ("N", "image AUROC"): 4.44})
    smoke = conclusions.hyperparameter_sweeps(span, 1, smoke=True)
    real = conclusions.hyperparameter_sweeps(span, 3, smoke=False)
    assert smoke.case == "smoke" and smoke.text.endswith("run-to-run noise of a random backbone.")
    assert real.case == "real" and real.text.endswith("in one direction.")
    assert "moves AUROC by 0.2 to 4.4 points" in real.text
    assert "after 1 epoch per point" in smoke.text and "after 3 epochs per point" in real.text


def test_method_costs_quotes_relative_speeds_and_epoch_times_when_some_method_trains():
    rel = pd.Series({"WinCLIP": 0.0345, "CLIP": 2.5, "AnomalyCLIP": 1.0})
    prel = pd.Series({"WinCLIP": 0.33, "CLIP": 1.9, "AnomalyCLIP": 1.0})
    epochs = pd.Series({"AnomalyCLIP": 1.234, "VAND": 0.0567, "CoOp": 12.5})
    per_epoch = pd.Series({"AnomalyCLIP": 13.71, "VAND": 1.5, "CoOp": 3.0, "CLIP": float("nan")})
    tuned = conclusions.method_costs(rel, prel, epochs, per_epoch, smoke=False)
    none = conclusions.method_costs(rel, prel, pd.Series(dtype=float), per_epoch, smoke=True)
    assert tuned.case == "tuned, real" and none.case == "none-tuned, smoke"
    assert conclusions.method_costs(rel, prel, epochs, per_epoch, smoke=True).case == "tuned, smoke"
    assert conclusions.method_costs(rel, prel, epochs[:0], per_epoch, smoke=False).case == "none-tuned, real"
    assert "WinCLIP runs at 0.035× its speed here (paper: 0.33×) and plain CLIP at 2.50× (paper: 1.90×)" in none.text
    assert "takes 0.0567 s (VAND) to 12.5 s (CoOp) for the 3 tuned methods (paper: 1.50–13.71 min" in tuned.text
    assert "One training epoch" not in none.text and "only the ordering is indicative" in none.text
    assert "only the ordering" not in tuned.text
    missing = conclusions.method_costs(pd.Series({"AnomalyCLIP": 1.0}), prel[:0], epochs[:0], per_epoch, False)
    assert "WinCLIP runs at –× its speed here (paper: –×)" in missing.text


def test_dpam_cost_quotes_the_ratios_and_says_how_the_timings_were_taken():
    bench = {"dpam_over_plain": 1.234, "naive_over_plain": 1.987}
    args = (bench, 1.0876, 3.21, 0.456, 13.71, 5)
    cases = {(s, d): conclusions.dpam_cost(*args, d, s) for s in (True, False) for d in ("cpu", "cuda:0")}
    assert {k: c.case for k, c in cases.items()} == {
        (True, "cpu"): "smoke, cpu", (True, "cuda:0"): "smoke, accelerator",
        (False, "cpu"): "real, cpu", (False, "cuda:0"): "real, accelerator"}
    text = cases[(True, "cpu")].text
    assert "here it costs 1.23× the time of plain CLIP, against 1.99× for running it as a second full pass" in text
    assert "AnomalyCLIP takes 1.09× the time" in text and "extracted once (3.2 s here)" in text
    assert "on the cache (0.46 s here)" in text and "the paper's 13.7 min per epoch" in text
    assert "tiny smoke backbone" in text and text.endswith("noisy; medians of 5 repeats after one warm-up.")
    assert "tiny smoke backbone" not in cases[(False, "cuda:0")].text
    assert cases[(False, "cuda:0")].text.endswith("go. Medians of 5 repeats after one warm-up.")


def ranges(r0, r1, a0, a1):
    return pd.DataFrame({"score range": [r0, r1], "image AUROC (%)": [a0, a1]}, index=["untrained", "tuned"])


def test_tuning_separation_says_widens_or_narrows_and_whether_the_classes_separate():
    wide = conclusions.tuning_separation(ranges(0.1, 0.25, 50.0, 60.0), smoke=True)
    narrow = conclusions.tuning_separation(ranges(0.3, 0.2, 50.0, 52.0), smoke=False)  # +2 points is not enough
    assert wide.case == "separates, smoke" and narrow.case == "overlaps, real"
    assert conclusions.tuning_separation(ranges(0.1, 0.2, 50.0, 52.01), smoke=False).case == "separates, real"
    assert conclusions.tuning_separation(ranges(0.1, 0.2, 60.0, 50.0), smoke=True).case == "overlaps, smoke"
    assert "Tuning widens the range of the image scores 2.5× (mean per category 0.100 → 0.250)" in wide.text
    assert "image AUROC goes 50.0 → 60.0 %" in wide.text and "the classes separate better" in wide.text
    assert "Tuning narrows the range of the image scores 0.7× (mean per category 0.300 → 0.200)" in narrow.text
    assert "tuning does not separate the two classes" in narrow.text
    assert "random features" in wide.text and "random features" not in narrow.text


def test_largest_code_change_finds_the_largest_absolute_change():
    flat = pd.DataFrame([[0.5, -3.25], [1.0, 0.1]], index=["(a) x", "(b) y"],
                        columns=["image AUROC on objects", "pixel AUPRO on textures"])
    smoke = conclusions.largest_code_change(flat, 3.3e-3, smoke=True)
    real = conclusions.largest_code_change(flat, 1.2e-5, smoke=False)
    assert smoke.case == "smoke" and "needs the `paper` profile" in smoke.text
    assert real.case == "real" and real.text.endswith("within run-to-run noise.")
    assert "The largest change here is -3.2 points of pixel AUPRO on textures ((a) x)" in smoke.text
    assert "at most 0.00330." in smoke.text and "at most 0.00001." in real.text
