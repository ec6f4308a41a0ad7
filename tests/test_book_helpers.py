"""The helpers the chapters call, checked outside notebook execution against independent
expectations (brute force, the paper's CSV read by hand, explicit loops)."""
from __future__ import annotations

import csv
import math
import warnings
from importlib import resources
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from anomclip.book import (
    attention,
    examples,
    figcheck,
    failures,
    labels,
    plots,
    reference,
    tables,
    widgets,
)
from anomclip.engine import metrics


# --------------------------------------------------------------------------- metrics helpers
def _brute_f1_threshold(s, y):
    best, best_t = -1.0, None
    for t in np.unique(s):  # ascending: the smallest threshold wins ties
        pred = s >= t
        tp = np.sum(pred & (y == 1))
        p = tp / pred.sum()
        r = tp / (y == 1).sum()
        f1 = 0.0 if p + r == 0 else 2 * p * r / (p + r)
        if f1 > best + 1e-12:
            best, best_t = f1, t
    return best_t


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_f1_threshold_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60)
    y[0], y[1] = 0, 1
    s = np.round(rng.normal(size=60) + y, 1)  # rounded: ties on purpose
    assert metrics.f1_threshold(s, y) == pytest.approx(_brute_f1_threshold(s, y))


def test_f1_threshold_separable_is_lowest_anomalous_score():
    s = np.array([0.1, 0.2, 0.3, 0.7, 0.8])
    y = np.array([0, 0, 0, 1, 1])
    assert metrics.f1_threshold(s, y) == pytest.approx(0.7)
    assert math.isnan(metrics.f1_threshold(s, np.zeros(5, int)))


def test_auroc_or_nan_is_pairwise_probability_and_silent_when_undefined():
    rng = np.random.default_rng(3)
    s = np.round(rng.normal(size=40), 1)
    y = rng.integers(0, 2, 40)
    pos, neg = s[y == 1], s[y == 0]
    expected = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert metrics.auroc_or_nan(s, y) == pytest.approx(expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(metrics.auroc_or_nan(s, np.ones(40, int)))


# --------------------------------------------------------------------------- attention
def test_diagonal_prominence_matches_loops():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 5, 5, generator=g)
    a = a / a.sum(-1, keepdim=True)
    a_id = torch.eye(5).expand(2, 5, 5).clone() * 0.6 + 0.1  # rows sum to 1: 0.6 + 0.1 * 4 = 1.0
    df = attention.diagonal_prominence({3: {"vv": a, "qk": a_id}})
    selfs, others, ratios = [], [], []
    for b in range(2):
        for i in range(5):
            own = float(a[b, i, i])
            other = float(sum(a[b, i, j] for j in range(5) if j != i)) / 4
            selfs.append(own), others.append(other), ratios.append(own / other)
    row = df[df["mode"] == "V-V"].iloc[0]
    assert row["block"] == 3
    assert row["self"] == pytest.approx(np.mean(selfs), rel=1e-5)
    assert row["other"] == pytest.approx(np.mean(others), rel=1e-5)
    assert row["ratio"] == pytest.approx(np.mean(ratios), rel=1e-5)
    assert df[df["mode"] == "Q-K"].iloc[0]["ratio"] == pytest.approx(0.7 / 0.1)


def test_mask_centre():
    m = np.zeros((10, 20))
    m[2:4, 10:14] = 1
    assert attention.mask_centre(m) == pytest.approx(((2.5 + 0.5) / 10, (11.5 + 0.5) / 20))
    assert attention.mask_centre(np.zeros((4, 4))) == (0.5, 0.5)


def test_pixel_auroc_by_mode_uses_smoothed_maps():
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    maps = {"vv": torch.as_tensor(rng.uniform(size=(2, 16, 16)), dtype=torch.float32)}
    masks = np.zeros((2, 16, 16))
    masks[0, 4:8, 4:8] = 1
    got = attention.pixel_auroc_by_mode(maps, masks, sigma=2.0)["vv"]
    sm = np.stack([gaussian_filter(maps["vv"][i].numpy().astype(np.float64), 2.0, mode="reflect", truncate=4.0)
                   for i in range(2)])
    from sklearn.metrics import roc_auc_score

    assert got == pytest.approx(roc_auc_score(masks.ravel().astype(int), sm.ravel()), abs=1e-4)


# --------------------------------------------------------------------------- labels
def test_fmt_shows_dash_for_missing_and_fixed_decimals():
    assert labels.fmt(float("nan")) == "–"
    assert labels.fmt(None) == "–"
    assert labels.fmt(0.91234, percent=True) == "91.2"
    assert labels.fmt(3.14159, 2) == "3.14"


def test_metric_names_are_one_set_for_every_key():
    for key in metrics.IMAGE_KEYS + metrics.PIXEL_KEYS:
        name = labels.metric_name(key)
        assert "_" not in name and name != key
    assert labels.SHOWN == ("pixel_auroc", "pixel_aupro", "image_auroc", "image_ap")


def test_ours_label_and_caveat():
    class P:
        name, synthetic = "smoke", True

    class R:
        name, synthetic = "paper", False

    assert labels.ours_label(P) == "ours (smoke run)" and labels.ours_label(R) == "ours"
    box = labels.caveat(P)
    assert "admonition caution" in box._repr_html_() and labels.SMOKE_ANCHOR in box._repr_html_()
    assert "admonition note" in labels.caveat(R)._repr_html_()


def test_compare_matches_hand_computed_rows():
    ours = pd.DataFrame([
        {"label": "AnomalyCLIP", "dataset": "objects", "metric": "image_auroc", "value": 0.6},
        {"label": "AnomalyCLIP", "dataset": "objects", "metric": "pixel_auroc", "value": 0.75},
        {"label": "AnomalyCLIP", "dataset": "objects", "metric": "image_f1_max", "value": 0.5},
    ])
    paper_rows = pd.DataFrame([
        {"label": "AnomalyCLIP", "dataset": "VisA", "metric": "image_auroc", "value": 82.1},
        {"label": "AnomalyCLIP", "dataset": "VisA", "metric": "pixel_auroc", "value": 95.5},
        {"label": "AnomalyCLIP", "dataset": "MPDD", "metric": "image_auroc", "value": 77.0},
    ])
    cmp = labels.compare(ours, paper_rows, synthetic=True, missing={"MPDD": "not in the smoke run"})
    assert list(cmp.columns) == ["label", "dataset", "metric", "paper", "ours", "Δ", "status", "ours on"]
    assert all(cmp[c].dtype == float for c in ("paper", "ours", "Δ"))  # numbers only: words live in "status"
    visa = cmp[(cmp["dataset"] == "VisA")].set_index("metric")
    assert visa.loc["image_auroc", "paper"] == 82.1 and visa.loc["image_auroc", "ours"] == 60.0
    assert visa.loc["image_auroc", "Δ"] == pytest.approx(60.0 - 82.1, abs=0.05)
    assert visa.loc["pixel_auroc", "ours on"] == "objects (stands in for VisA)"
    assert list(visa["status"]) == ["", ""]
    mpdd = cmp[cmp["dataset"] == "MPDD"].iloc[0]
    assert math.isnan(mpdd["ours"]) and mpdd["status"] == "not in the smoke run" and math.isnan(mpdd["Δ"])
    assert "image_f1_max" not in set(cmp["metric"])  # not a SHOWN metric
    assert list(dict.fromkeys(cmp["dataset"])) == ["VisA", "MPDD"]  # the paper's order, not the alphabet
    # as shown: the status in the ours cell, the metric by its display name, the numbers as they are
    t = labels.compare_table(cmp, "MPDD")
    assert list(t.columns) == ["paper", "ours", "Δ", "status"]
    shown = labels.words(t)
    assert list(shown.columns) == ["paper", "ours", "Δ"] and list(shown.index) == [("AnomalyCLIP", "image AUROC")]
    assert shown.iloc[0]["ours"] == "not in the smoke run" and shown.iloc[0]["paper"] == 77.0
    html = labels.styled(t).to_html()
    assert "not in the smoke run" in html and "77.0" in html and "image AUROC" in html and "image_auroc" not in html
    assert "status" not in html
    missing = labels.compare(ours, paper_rows, synthetic=True)  # no reason given: NaN, shown "–"
    assert list(missing.loc[missing["dataset"] == "MPDD", "status"]) == [""]
    assert labels.words(labels.compare_table(missing, "MPDD")).iloc[0]["ours"] != labels.words(t).iloc[0]["ours"]
    # ours all computed on one domain: said once in the caption, not on every row
    t = labels.compare_table(cmp, "VisA")
    assert list(t.columns) == ["paper", "ours", "Δ"] and t.attrs["ours_on"] == "objects (stands in for VisA)"
    html = labels.styled(t, "Table 1 — VisA").to_html()
    assert "Table 1 — VisA — ours on objects (stands in for VisA)" in html
    real = labels.compare(ours.assign(dataset=ours["dataset"].replace({"objects": "VisA"})), paper_rows,
                          synthetic=False)
    t = labels.compare_table(real, "VisA")  # ours on the dataset itself: nothing to say
    assert list(t.columns) == ["paper", "ours", "Δ"] and "ours_on" not in t.attrs
    mixed = cmp.copy()
    mixed.loc[mixed.index[0], "ours on"] = "textures (stands in for MVTec AD)"
    assert list(labels.compare_table(mixed, "VisA").columns) == ["paper", "ours", "Δ", "ours on"]


def test_wide_compare_puts_variants_in_rows_and_metric_by_source_in_columns():
    """Rows = variants, columns = (short metric, paper | ours); Δ only when asked (paper profile);
    the headers in full and why a number is missing go to the caption."""
    ours = pd.DataFrame([
        {"label": "full", "dataset": "objects", "metric": m, "value": v}
        for m, v in (("pixel_auroc", 0.75), ("image_auroc", 0.6))] + [
        {"label": "global only", "dataset": "objects", "metric": "pixel_auroc", "value": 0.5}])
    paper_rows = pd.DataFrame([
        {"label": lb, "dataset": "VisA", "metric": m, "value": v}
        for lb, m, v in (("full", "pixel_auroc", 95.5), ("full", "image_auroc", 82.1),
                         ("global only", "pixel_auroc", 80.0), ("global only", "image_auroc", 81.0))])
    cmp = labels.compare(ours, paper_rows, synthetic=True, metrics=("pixel_auroc", "image_auroc"),
                         missing={"VisA": "not run"})
    t = labels.wide_compare(cmp, "VisA", labels=["global only", "full"])
    assert list(t.index) == ["global only", "full"]
    assert list(t.columns) == [("px AUROC", "paper"), ("px AUROC", "ours"), ("img AUROC", "paper"),
                               ("img AUROC", "ours")]
    assert t.loc["full", ("px AUROC", "ours")] == 75.0 and t.loc["full", ("img AUROC", "paper")] == 82.1
    assert t.loc["global only", ("px AUROC", "ours")] == 50.0
    assert math.isnan(t.loc["global only", ("img AUROC", "ours")])  # not computed: "–", said in the caption
    assert t.attrs["missing"] == {"global only": "not run"} and t.attrs["ours_on"] == "objects (stands in for VisA)"
    caption = labels.wide_caption(t, "Table 5 — VisA")
    assert caption.startswith("Table 5 — VisA (px AUROC = pixel AUROC; img AUROC = image AUROC;")
    assert "Δ" not in caption and "– in ours: not run (global only)" in caption
    d = labels.wide_compare(cmp, "VisA", delta=True)  # the paper profile keeps the difference
    assert list(d.columns)[:3] == [("px AUROC", "paper"), ("px AUROC", "ours"), ("px AUROC", "Δ")]
    assert d.loc["full", ("px AUROC", "Δ")] == pytest.approx(75.0 - 95.5, abs=0.05)
    html = labels.styled(t, caption).to_html()
    assert "img AUROC" in html and "image_auroc" not in html and "75.0" in html


def test_recipe_names_say_paper_only_for_the_papers_numbers():
    assert labels.recipe_name("paper") == "four-layer" and labels.recipe_name("official") == "official"
    assert labels.recipe_name("vand") == "vand"
    prov = {"recipe": {"name": "paper", "layers": [0.25, 0.5, 0.75, 1.0], "lam": 1.0, "epochs": 2}}
    rows = dict(labels.provenance_rows(prov))
    assert rows["recipe"].startswith("four-layer (layers") and "paper" not in rows["recipe"]


def test_dot_plot_draws_one_dot_per_label_and_metric_apart():
    """Fig. 6's dot plot: every (label, metric) number is one dot, labels with the same value
    sit in their own lanes (different y), and each label keeps the book's colour."""
    from matplotlib.colors import to_hex

    frame = pd.DataFrame([{"label": lb, "dataset": "objects", "metric": m, "value": 0.5}
                          for lb in ("Q-Q", "K-K", "V-V") for m in ("pixel_auroc", "image_auroc")])
    fig = plots.plot_dots(frame, metrics=("pixel_auroc", "image_auroc"))
    ax = fig.axes[0]
    dots = [ln for ln in ax.lines if ln.get_marker() not in (None, "None", "")]
    assert len(dots) == 6
    ys = sorted({float(ln.get_ydata()[0]) for ln in dots})
    assert len(ys) == 6  # same value, six distinct lanes: nothing on top of another
    xs = {float(ln.get_xdata()[0]) for ln in dots}
    assert xs == {50.0}
    by_label = {ln.get_label(): to_hex(ln.get_color()) for ln in dots if not ln.get_label().startswith("_")}
    assert by_label == {lb: plots.colour(lb) for lb in ("Q-Q", "K-K", "V-V")}
    assert figcheck.colour_clashes(fig) == [] and figcheck.legend_overlaps(fig) == []
    plt.close(fig)


def test_provenance_box_reads_weights_from_provenance_not_recipe():
    doc = {"provenance": {"label": "untrained tiny backbone, synthetic data — not a reproduction of the paper",
                          "backbone": {"name": "tiny-random", "weights": "untrained (seed 0)", "trained": False,
                                       "image_size": 96},
                          "recipe": {"name": "official", "pretrained": "openai", "layers": [1.0], "lam": 4.0,
                                     "epochs": 15},
                          "data": {"name": "objects", "images": 10, "categories": ["a", "b"]},
                          "commit": "abc", "device": "cpu", "created": "2026-01-01"}}
    rows = dict(labels.provenance_rows(doc))
    assert rows["weights"] == "untrained (seed 0)"  # never the recipe's "openai"
    assert rows["backbone"] == "tiny-random at 96 px"
    assert "not a reproduction" in labels.provenance_box(doc)._repr_html_()


def test_notes_box_lists_each_note_once():
    box = labels.notes_box([{"notes": ["a: image_auroc undefined"]}, {"notes": ["a: image_auroc undefined", "b"]}])
    assert box._repr_html_().count("image AUROC undefined") == 1 and "image_auroc" not in box._repr_html_()
    assert labels.display_text("pixel_aupro_official and pixel_aupro") == "pixel AUPRO (authors' code) and pixel AUPRO"
    assert labels.display_text("a: image_ap undefined: x; returning NaN") == "a: image AP undefined: x (shown as –)"
    assert labels.notes_box([{"notes": []}]) is None


# --------------------------------------------------------------------------- paper numbers and tables
def _csv_rows():
    with resources.files("anomclip.book.reference").joinpath("paper_results.csv").open() as f:
        return list(csv.DictReader(f))


def test_paper_long_equals_the_csv_read_by_hand():
    rows = [r for r in _csv_rows() if r["table"] == "1" and r["method"] == "AnomalyCLIP" and r["category"] == "mean"]
    expected = {(r["dataset"], (r["level"], r["metric"])): float(r["value"]) for r in rows}
    got = tables.paper_long(1)
    assert len(got) > 0
    key_of = reference.METRIC_KEYS
    for r in got.itertuples():
        assert r.value == pytest.approx(expected[(r.dataset, key_of[r.metric])])
    visa = next(v for (d, (lvl, m)), v in expected.items() if d == "VisA" and (lvl, m) == ("image", "AUROC"))
    assert reference.paper_value(1, "VisA", "image_auroc") == pytest.approx(visa / 100)


def test_the_papers_dagger_marks_the_16_values_of_table_1_taken_from_original_papers():
    """Read off the paper's Table 1 (lines 111-112, 118-119; "[†] denotes results taken from original
    papers"): the † sits on WinCLIP's and VAND's (AUROC, AP) and (AUROC, PRO) pairs of MVTec AD and VisA."""
    expected = {  # (dataset, method, level, metric): value, as printed in the paper
        ("MVTec AD", "WinCLIP", "image", "AUROC"): 91.8, ("MVTec AD", "WinCLIP", "image", "AP"): 96.5,
        ("MVTec AD", "VAND", "image", "AUROC"): 86.1, ("MVTec AD", "VAND", "image", "AP"): 93.5,
        ("VisA", "WinCLIP", "image", "AUROC"): 78.1, ("VisA", "WinCLIP", "image", "AP"): 81.2,
        ("VisA", "VAND", "image", "AUROC"): 78.0, ("VisA", "VAND", "image", "AP"): 81.4,
        ("MVTec AD", "WinCLIP", "pixel", "AUROC"): 85.1, ("MVTec AD", "WinCLIP", "pixel", "AUPRO"): 64.6,
        ("MVTec AD", "VAND", "pixel", "AUROC"): 87.6, ("MVTec AD", "VAND", "pixel", "AUPRO"): 44.0,
        ("VisA", "WinCLIP", "pixel", "AUROC"): 79.6, ("VisA", "WinCLIP", "pixel", "AUPRO"): 56.8,
        ("VisA", "VAND", "pixel", "AUROC"): 94.2, ("VisA", "VAND", "pixel", "AUPRO"): 86.8,
    }
    rows = _csv_rows()
    marked = {(r["dataset"], r["method"], r["level"], r["metric"]): float(r["value"])
              for r in rows if r["dagger"] == "1"}
    assert marked == expected  # every mark in table 1, none elsewhere, on the printed values
    assert {r["table"] for r in rows if r["dagger"] == "1"} == {"1"}
    assert all(r["dagger"] in ("0", "1") for r in rows)
    df = reference.reference_table()
    assert df["dagger"].dtype == bool and int(df["dagger"].sum()) == 16 and set(df["source"]) == {"paper"}
    keys = {("image", "AUROC"): "image_auroc", ("image", "AP"): "image_ap",
            ("pixel", "AUROC"): "pixel_auroc", ("pixel", "AUPRO"): "pixel_aupro"}
    assert reference.daggered(1) == {(d, m, keys[(lvl, met)]) for d, m, lvl, met in expected}
    assert reference.daggered(2) == set()
    assert ("MVTec AD", "AnomalyCLIP", "image_auroc") not in reference.daggered(1)


def test_the_authors_rerun_is_its_own_reference_with_its_provenance():
    """The ``mean`` rows of results/*/zero_shot/log.txt in zqhang/AnomalyCLIP at ff7ca47 (2024-03-19)."""
    expected = {("MVTec AD", "image_auroc"): 91.6, ("MVTec AD", "image_ap"): 96.4,
                ("MVTec AD", "pixel_auroc"): 91.1, ("MVTec AD", "pixel_aupro"): 81.4,
                ("VisA", "image_auroc"): 82.0, ("VisA", "image_ap"): 85.3,
                ("VisA", "pixel_auroc"): 95.5, ("VisA", "pixel_aupro"): 86.7}
    long = reference.rerun_long()
    assert {(r.dataset, r.metric): r.value for r in long.itertuples()} == expected and len(long) == 8
    assert set(long["label"]) == {"AnomalyCLIP"}
    df = reference.authors_rerun()
    assert set(df["source"]) == {"authors' re-run"} and set(df["repo"]) == {"zqhang/AnomalyCLIP"}
    assert set(df["commit"]) == {"ff7ca4770dea3ecd187daf8b911cb12ca7630ecd"} and set(df["commit_date"]) == {"2024-03-19"}
    # trained on VisA, tested on MVTec AD (checkpoint 9_12_4_multiscale) and the other way round
    assert dict(zip(df["dataset"], df["path"])) == {
        "MVTec AD": "results/9_12_4_multiscale/zero_shot/log.txt",
        "VisA": "results/9_12_4_multiscale_visa/zero_shot/log.txt"}
    assert dict(zip(df["dataset"], df["tuned_on"])) == {"MVTec AD": "VisA", "VisA": "MVTec AD"}
    # a reference of its own: the paper's numbers are not these (e.g. VisA image AUROC 82.1 vs 82.0)
    assert reference.paper_value(1, "VisA", "image_auroc") == pytest.approx(0.821)
    assert "paper" not in set(df["source"])


def test_comparison_tables_carry_the_dagger_and_the_rerun_beside_the_paper():
    ours = pd.DataFrame([{"label": "VAND", "dataset": "objects", "metric": "image_auroc", "value": 0.6},
                         {"label": "AnomalyCLIP", "dataset": "objects", "metric": "image_auroc", "value": 0.5}])
    main = pd.concat([tables.paper_long(1, method=None, label_by="method")], ignore_index=True)
    cmp = labels.compare(ours, main, synthetic=True)  # smoke: objects stands in for VisA
    t = reference.with_dagger(labels.compare_table(cmp, "VisA", labels=["VAND", "AnomalyCLIP"]), "VisA")
    assert t.loc[("VAND", "image_auroc"), "paper"] == pytest.approx(78.0) and t["paper"].dtype == float
    assert t.loc[("VAND", "image_auroc"), "dagger"] and t.loc[("VAND", "pixel_aupro"), "dagger"]
    assert not t.loc[("AnomalyCLIP", "image_auroc"), "dagger"]  # not marked
    shown = labels.words(t)
    assert shown.loc[("VAND", "image AUROC"), "paper"] == "78.0 †" and shown.loc[("VAND", "pixel AUPRO"), "paper"] == "86.8 †"
    assert shown.loc[("AnomalyCLIP", "image AUROC"), "paper"] == pytest.approx(82.1) and "dagger" not in shown.columns
    assert t.loc[("VAND", "image_auroc"), "ours"] == pytest.approx(60.0)
    t = reference.with_dagger(labels.compare_table(cmp, "MPDD", labels=["VAND"]), "MPDD")
    assert not t["dagger"].any()  # Table 1 marks MVTec AD and VisA only
    assert not labels.words(t)["paper"].astype(str).str.contains("†").any()
    r = reference.with_rerun(cmp)
    assert list(r.columns) == ["paper", "authors' re-run", "ours", "status", "ours on"]
    assert set(r.index.get_level_values("label")) == {"AnomalyCLIP"} and len(r) == 8
    assert r.loc[("VisA", "AnomalyCLIP", "image_auroc"), "authors' re-run"] == pytest.approx(82.0)
    assert r.loc[("VisA", "AnomalyCLIP", "image_auroc"), "paper"] == pytest.approx(82.1)
    assert r.loc[("VisA", "AnomalyCLIP", "image_auroc"), "ours"] == pytest.approx(50.0)
    assert r.loc[("MVTec AD", "AnomalyCLIP", "pixel_aupro"), "authors' re-run"] == pytest.approx(81.4)
    assert list(labels.words(r).columns) == ["paper", "authors' re-run", "ours", "ours on"]


def _hand_built_comparison():
    """A comparison as labels.compare returns it, written by hand: two runs (ours on two smoke
    domains), a paper-only dataset, a row without a number of ours."""
    nan = float("nan")
    rows = [  # label, dataset, metric, paper, ours, ours on
        ("full", "MVTec AD", "pixel_auroc", 91.1, 60.0, "textures (stands in for MVTec AD)"),
        ("full", "MVTec AD", "image_auroc", 91.5, 55.0, "textures (stands in for MVTec AD)"),
        ("w/o T2", "MVTec AD", "pixel_auroc", 90.0, 58.5, "textures (stands in for MVTec AD)"),
        ("w/o T2", "MVTec AD", "image_auroc", 86.0, 57.5, "textures (stands in for MVTec AD)"),
        ("full", "VisA", "image_auroc", 82.1, 51.0, "objects (stands in for VisA)"),
        ("w/o T2", "VisA", "image_auroc", 80.0, nan, nan),
        ("full", "MPDD", "image_auroc", 77.0, nan, nan),
    ]
    d = pd.DataFrame(rows, columns=["label", "dataset", "metric", "paper", "ours", "ours on"])
    return d.assign(**{"Δ": d["ours"] - d["paper"], "status": ["", "", "", "", "", "", "not run: dataset not found"]})


def test_paper_and_ours_of_a_comparison_by_label():
    cmp = _hand_built_comparison()
    p = tables.paper_on(cmp)  # MVTec AD by default
    assert p.to_dict() == {("full", "pixel_auroc"): 91.1, ("full", "image_auroc"): 91.5,
                           ("w/o T2", "pixel_auroc"): 90.0, ("w/o T2", "image_auroc"): 86.0}
    assert tables.paper_on(cmp, "MPDD").to_dict() == {("full", "image_auroc"): 77.0}
    assert tables.ours_by_run(cmp, "image_auroc") == {"textures (stands in for MVTec AD)": {"full": 55.0, "w/o T2": 57.5},
                                                      "objects (stands in for VisA)": {"full": 51.0}}
    assert list(tables.ours_by_run(cmp, "image_auroc")) == ["textures (stands in for MVTec AD)",
                                                             "objects (stands in for VisA)"]  # the frame's order
    assert tables.ours_by_run(cmp, "pixel_aupro") == {}
    # without T2 − full: 57.5 − 55.0 on textures; objects has no "w/o T2" number: left out
    assert tables.ours_difference(cmp, "image_auroc", "w/o T2", "full") == {"textures (stands in for MVTec AD)": 2.5}
    assert tables.ours_difference(cmp, "pixel_auroc", "w/o T2", "full") == \
        {"textures (stands in for MVTec AD)": pytest.approx(-1.5)}


def test_wide_pivots_in_percent_and_its_display_renames_metrics():
    df = pd.DataFrame([{"label": "a", "dataset": "x", "metric": "image_auroc", "value": 0.5},
                       {"label": "a", "dataset": "x", "metric": "pixel_auroc", "value": float("nan")},
                       {"label": "b", "dataset": "x", "metric": "image_auroc", "value": 0.25}])
    w = tables.wide(df)
    assert w.loc["a", ("x", "image_auroc")] == 50.0 and w.loc["b", ("x", "image_auroc")] == 25.0
    assert ("x", "pixel_auroc") in w.columns and math.isnan(w.loc["a", ("x", "pixel_auroc")])
    assert list(labels.words(w).columns) == [("x", "pixel AUROC"), ("x", "image AUROC")]  # names when shown
    r = tables.relabel(df, {"b": "B"})
    assert list(r["label"]) == ["B"]


# --------------------------------------------------------------------------- failures
def _doc():
    return {"scores": {"c": [0.1, 0.4, 0.35, 0.8]}, "labels": {"c": [0, 0, 1, 1]},
            "paths_by_category": {"c": ["p0", "p1", "p2", "p3"]}, "provenance": {"data": {"name": "d"}}}


def test_score_frame_outranked_is_the_share_on_the_wrong_side():
    f = failures.score_frame(_doc())
    # normal 0.4 out-ranks anomalous 0.35 (1 of 2); anomalous 0.35 is out-ranked by normal 0.4 (1 of 2)
    assert list(f["outranked"]) == [0.0, 0.5, 0.5, 0.0]
    fp = failures.worst_cases(f, "fp", n=1)
    fn = failures.worst_cases(f, "fn", n=1)
    assert fp.iloc[0]["score"] == 0.4 and fn.iloc[0]["score"] == 0.35
    # image AUROC from the frame: 1 − mean outranked of the anomalous images = 3/4
    assert 1 - f[f.y == 1]["outranked"].mean() == pytest.approx(metrics.image_auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]))


def test_cases_table_says_the_worst_cases_in_words():
    doc = _doc()
    doc["paths_by_category"]["c"] = ["/data/x/good/000.png", "/data/x/good/001.png", "/data/x/bad/002.png",
                                     "/data/x/bad/003.png"]
    f = failures.score_frame(doc, dataset="objects")
    cases = pd.concat([failures.worst_cases(f, k, n=1) for k in ("fp", "fn")], ignore_index=True)
    t = failures.cases_table(cases)
    fp, fn = t.iloc[0], t.iloc[1]
    # normal 0.4 scores above 1 of the 2 anomalous images; anomalous 0.35 below 1 of the 2 normal ones
    assert fp["ranks"] == "above 50 % of the anomalous images" and fn["ranks"] == "below 50 % of the normal images"
    assert fp["case"] == "c / good / 001.png" and fn["case"] == "c / bad / 002.png"  # category / defect / file
    assert fp["image score"] == "0.40" and fn["image score"] == "0.35"
    assert fp["dataset"] == "objects (stands in for VisA)"
    assert "false positive" in fp["error"] and "false negative" in fn["error"]
    text = " ".join(map(str, t.to_numpy().ravel()))
    assert "fp" not in text.split() and "fn" not in text.split() and "outranked" not in text


def test_case_names_tell_two_defect_folders_apart():
    """Two defect folders of one category both hold a 001.png: the case name tells them apart."""
    a = labels.case_name("capsule", "/d/capsule/test/crack/001.png", 1)
    b = labels.case_name("capsule", "/d/capsule/test/squeeze/001.png", 1)
    assert a == "capsule / crack / 001.png" and b == "capsule / squeeze / 001.png" and a != b
    assert labels.case_name("capsule", "", 3) == "capsule / #3"


def test_pixel_thresholds_shares():
    px = pd.DataFrame({"dataset": "d", "category": "c", "pixel": ["normal"] * 4 + ["anomalous"] * 2,
                       "score": [0.1, 0.2, 0.6, 0.3, 0.7, 0.9]})
    t = failures.pixel_thresholds(px).iloc[0]
    assert t["F1-max threshold"] == pytest.approx(_brute_f1_threshold(px["score"].to_numpy(),
                                                                      (px["pixel"] == "anomalous").to_numpy().astype(int)))
    assert t["normal px ≥ 0.5 (%)"] == pytest.approx(25.0) and t["anomalous px ≥ 0.5 (%)"] == pytest.approx(100.0)


# --------------------------------------------------------------------------- figures
def _check_figure(fig):
    w, _ = fig.get_size_inches()
    assert w <= plots.COLUMN_WIDTH_IN + 1e-6, f"figure {w:.2f} in wide"
    fig.canvas.draw()
    tight = fig.get_tightbbox().width  # inches: what the page shows (titles and legends included)
    assert tight <= plots.COLUMN_WIDTH_IN + 0.2, f"drawn {tight:.2f} in wide"
    small = [(t.get_text(), t.get_fontsize()) for t in fig.findobj(matplotlib.text.Text)
             if t.get_visible() and t.get_text().strip() and t.get_fontsize() < plots.MIN_FONT_PT]
    assert not small, small
    plt.close(fig)


def _maps_clim(fig):
    return {tuple(np.round(im.get_clim(), 6)) for ax in fig.axes for im in ax.get_images()
            if im.get_cmap().name == plots.MAP_CMAP}


def test_show_maps_fixed_scale_and_sizes():
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(4)]
    maps = [rng.uniform(0.2, 0.4, (32, 32)) for _ in range(4)]
    fig = plots.show_maps(imgs, maps, [None, np.ones((32, 32)), None, None], titles=list("abcd"),
                          scores=[0.1, 0.2, 0.3, 0.4])
    assert _maps_clim(fig) == {(0.0, 1.0)}  # never rescaled to the maps' own range 0.2–0.4
    _check_figure(fig)


def test_draw_maps_and_cases_fixed_scale_and_sizes():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (3, 24, 24, 3), dtype=np.uint8)
    masks = np.zeros((3, 24, 24))
    masks[:, 5:9, 5:9] = 1
    maps = {m: torch.rand(3, 24, 24) * 0.3 for m in ("qk", "qq", "kk", "vv", "qq+kk+vv", "qk+qq+kk+vv")}
    fig = plots.draw_maps(rgb, masks, maps, sigma=1.0, title="t")
    assert _maps_clim(fig) == {(0.0, 1.0)}
    _check_figure(fig)
    cases = pd.DataFrame({"kind": ["fp", "fn", "fn"], "category": "c", "i": [0, 1, 2], "label": "x",
                          "score": [0.5, 0.2, 0.1], "outranked": [0.5, 0.5, 0.2]})
    fig = plots.draw_cases(rgb, masks, maps["vv"], cases, threshold=0.5)
    assert _maps_clim(fig) == {(0.0, 1.0)}
    _check_figure(fig)


def test_compare_and_other_figures_fit_the_column():
    ours = pd.DataFrame([{"label": lb, "dataset": ds, "metric": m, "value": v}
                         for lb, v in (("full", 0.6), ("without T1 DPAM", 0.55)) for ds in ("objects", "textures")
                         for m in ("pixel_auroc", "image_auroc")])
    paper_rows = tables.paper_long(7, variants={"full": "full", "without T1 DPAM": "without T1 DPAM"})
    cmp = labels.compare(ours, paper_rows, synthetic=True)
    _check_figure(plots.plot_compare(cmp, title="Table 7", ours_label="ours (smoke run)"))
    _check_figure(plots.plot_dots(ours.assign(metric=ours["metric"]), metrics=("pixel_auroc", "image_auroc")))
    frame = ours.assign(value=100 * ours["value"], metric=ours["metric"].map(labels.metric_name))
    _check_figure(plots.bars(frame))
    hist = [{"epoch": e, "step": e, "loss": 1.0 / (e + 1), "global": 0.5, "local": 0.1} for e in range(4)]
    _check_figure(plots.loss_curves({"a": hist, "b": hist}, x="epoch", title="loss"))
    scores = pd.DataFrame({"category": ["a"] * 6 + ["b"] * 6, "label": ["normal", "anomalous"] * 6,
                           "score": np.linspace(0, 1, 12)})
    _check_figure(plots.plot_distributions(scores, title="scores", threshold=0.5))
    prom = pd.DataFrame([{"block": b, "mode": m, "ratio": 1.0 + b, "self": 0.1} for b in (1, 2) for m in ("Q-K", "V-V")])
    _check_figure(plots.plot_prominence(prom, dpam_start=1, n_tokens=10, title="prominence"))


def test_draw_attention_fits_the_column():
    a = torch.rand(1, 17, 17)
    attn = {2: {m: a / a.sum(-1, keepdim=True) for m in ("qk", "qq", "kk", "vv")}}
    rgb = np.zeros((1, 32, 32, 3), dtype=np.uint8)
    _check_figure(plots.draw_attention(rgb, attn, query=(0.1, 0.9)))


def test_dataset_colours_are_fixed_and_shared_with_stand_ins():
    c1 = plots.dataset_colors(["VisA", "objects", "MVTec AD"])
    c2 = plots.dataset_colors(["MVTec AD", "textures"])
    assert c1["objects"] == c1["VisA"] and c2["textures"] == c1["MVTec AD"] == c2["MVTec AD"]
    assert c1["VisA"] != c1["MVTec AD"]
    # a labelled stand-in and "tuned on" a dataset keep the dataset's colour
    assert plots.colour("objects (stands in for VisA)") == c1["VisA"]
    assert plots.colour("tuned on textures") == c1["MVTec AD"]


def _hex(c):
    return matplotlib.colors.to_hex(c)


def _line_colours(fig):
    """{legend label: colour} of every line with a label in a figure's axes."""
    return {ln.get_label(): _hex(ln.get_color()) for ax in fig.axes for ln in ax.get_lines()
            if not ln.get_label().startswith("_")}


def _legend_colours(fig):
    """{legend text: colour} of every legend of a figure (patches or lines)."""
    out = {}
    for leg in fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]:
        for h, t in zip(leg.legend_handles, leg.get_texts()):
            c = h.get_facecolor() if hasattr(h, "get_facecolor") and not hasattr(h, "get_xdata") else h.get_color()
            out[t.get_text()] = _hex(c)
    return out


def test_one_colour_per_entity_across_the_helpers():
    # the same DPAM modes drawn by three helpers (chapter 2's prominence, chapter 9's dot plot, bars)
    modes = ["V-V", "Q-Q", "K-K", "Q-K"]  # not in the table's order: colours must not follow the order
    prom = pd.DataFrame([{"block": b, "mode": m, "ratio": 1.0 + b + i, "self": 0.1} for b in (1, 2)
                         for i, m in enumerate(modes)])
    fig = plots.plot_prominence(prom, dpam_start=1, n_tokens=10)
    c_prom = _legend_colours(fig)
    plt.close(fig)
    radar = pd.DataFrame([{"label": m, "dataset": "objects", "metric": k, "value": 0.5} for m in reversed(modes)
                          for k in ("pixel_auroc", "image_auroc", "image_ap")])
    fig = plots.plot_dots(radar, metrics=("pixel_auroc", "image_auroc", "image_ap"))
    c_radar = _legend_colours(fig)
    plt.close(fig)
    fig = plots.bars(pd.DataFrame([{"label": m, "dataset": "d", "metric": "image AUROC", "value": 60.0}
                                   for m in modes[1:]]))
    c_bars = _legend_colours(fig)
    plt.close(fig)
    for m in modes:
        assert c_prom[m] == c_radar[m]
    for m in modes[1:]:
        assert c_bars[m] == c_prom[m]
    assert len({c_prom[m] for m in modes}) == 4  # four modes, four colours
    # a setting keeps its colour in two figures with different companions and orders
    f1 = plots.bars(pd.DataFrame([{"label": lb, "dataset": "d", "metric": "image AUROC", "value": 60.0}
                                  for lb in ("untrained prompts", "AnomalyCLIP")]))
    f2 = plots.bars(pd.DataFrame([{"label": lb, "dataset": "d", "metric": "image AUROC", "value": 60.0}
                                  for lb in ("AnomalyCLIP", "CLIP", "untrained prompts")]))
    a, b = _legend_colours(f1), _legend_colours(f2)
    plt.close("all")
    assert a["untrained prompts"] == b["untrained prompts"] and a["AnomalyCLIP"] == b["AnomalyCLIP"]
    assert a["untrained prompts"] != a["AnomalyCLIP"]
    # a smoke domain takes its stand-in's colour, and says what it stands in for
    f3 = plots.bars(pd.DataFrame([{"label": "x", "dataset": ds, "metric": "image AUROC", "value": 60.0}
                                  for ds in ("objects", "VisA")]), hue="dataset", col="label")
    c3 = _legend_colours(f3)
    plt.close(f3)
    assert c3["objects (stands in for VisA)"] == c3["VisA"]


def test_loss_curves_one_colour_per_run_when_one_term():
    hist = [{"epoch": e, "global": 1.0 / (e + 1)} for e in range(3)]
    fig = plots.loss_curves({"local + global": hist, "focal only": hist, "global only": hist}, x="epoch",
                            logy=False, title="global loss")
    c = _line_colours(fig)
    ax = fig.axes[0]
    assert {"local + global", "focal only", "global only"} <= set(c)
    assert len({c["local + global"], c["focal only"], c["global only"]}) == 3
    assert "global" in ax.get_ylabel()
    texts = {t.get_text() for t in ax.get_legend().get_texts()}
    assert "total" not in texts and "term" not in texts
    # the legend sits outside the plotting area: it cannot cover a curve
    fig.canvas.draw()
    leg, area = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert leg.x0 >= area.x1 - 1
    plt.close(fig)


def test_bars_chance_line_only_over_auroc():
    d = pd.DataFrame([{"label": "a", "dataset": "d", "metric": m, "value": 60.0}
                      for m in ("image AUROC", "pixel AUPRO", "image AP")])
    fig = plots.bars(d)
    ax = fig.axes[0]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    spans = [seg for coll in ax.collections for seg in coll.get_segments()
             if len(seg) and np.allclose(seg[:, 1], 50.0)]
    assert len(spans) == 1  # one dotted segment, over the AUROC bars only
    x = spans[0][:, 0].mean()
    assert ticks[int(round(x))] == "image AUROC"
    plt.close(fig)


def test_map_titles_do_not_overlap_the_panels_above():
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 255, (3, 24, 24, 3), dtype=np.uint8)
    masks = np.zeros((3, 24, 24))
    masks[:, 5:9, 5:9] = 1
    maps = {m: torch.rand(3, 24, 24) for m in ("vv", "qq+kk+vv", "qk+qq+kk+vv")}
    a = torch.rand(1, 17, 17)
    attn = {2: {m: a / a.sum(-1, keepdim=True) for m in ("qk", "qq", "kk", "vv", "qq+kk+vv")}}
    for fig in (plots.draw_maps(rgb, masks, maps, sigma=1.0), plots.draw_attention(np.zeros((1, 32, 32, 3)), attn)):
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        panels = [ax for ax in fig.axes if ax.get_images()]
        for ax in panels:
            if not ax.title.get_text():
                continue
            t = ax.title.get_window_extent(r)
            for other in panels:
                if other is not ax:
                    o = other.get_window_extent(r)
                    overlap = min(t.x1, o.x1) - max(t.x0, o.x0) > 1 and min(t.y1, o.y1) - max(t.y0, o.y0) > 1
                    assert not overlap, (ax.title.get_text(), "overlaps a panel")
        plt.close(fig)


def test_stand_in_labels_in_compare_and_its_figure():
    ours = pd.DataFrame([{"label": "full", "dataset": ds, "metric": m, "value": 0.6}
                         for ds in ("objects", "textures") for m in ("pixel_auroc", "image_auroc")])
    paper_rows = tables.paper_long(7, variants={"full": "full"})
    cmp = labels.compare(ours, paper_rows, synthetic=True)
    ran = cmp.dropna(subset=["ours on"])
    expected = {f"{d} (stands in for {labels.SMOKE_STANDINS[d]})" for d in ("objects", "textures")}
    assert set(ran["ours on"]) == expected
    fig = plots.plot_compare(cmp, ours_label="ours (smoke run)")
    legend = {t.get_text() for leg in fig.legends for t in leg.get_texts()}
    plt.close(fig)
    assert expected <= legend
    assert not legend & set(labels.SMOKE_STANDINS.values())  # never the paper's name alone


def test_explorers_draw_statically_outside_jupyter():
    assert widgets.live_ok(True) is False and widgets.live_ok(False) is False
    rgb = np.zeros((2, 24, 24, 3), dtype=np.uint8)
    masks = np.zeros((2, 24, 24))
    before = len(plt.get_fignums())
    assert widgets.map_explorer(rgb, masks, {"vv": torch.rand(2, 24, 24)}, live=True) is None
    assert len(plt.get_fignums()) == before + 1
    plt.close("all")


# --------------------------------------------------------------------------- profiles and the chapter template
def test_chapter_recipe_keeps_backbone_override_on_every_recipe(tmp_path):
    from anomclip.book.chapter import Chapter
    from anomclip.engine.profiles import Profile
    from anomclip.recipes import smoke

    P = Profile("smoke", smoke("official"), {}, {}, tmp_path, synthetic=True)
    ch = Chapter(P, "cpu", overrides={"backbone": "ViT-B-16", "pretrained": "/w.pt"})
    assert ch.profile is P
    for name in ("official", "paper"):
        r = ch.recipe(name, dpam="qk")
        assert (r.backbone, r.pretrained, r.dpam) == ("ViT-B-16", "/w.pt", "qk")
        assert r.image_size == P.base.image_size and r.epochs == P.base.epochs
    assert ch.recipe("paper").layers == (0.25, 0.5, 0.75, 1.0)
    assert Chapter(P, "cpu").recipe("official").backbone == P.base.backbone


def test_the_ablation_schedule_shortens_the_smoke_tunings_only(tmp_path, monkeypatch):
    """Chapters 6–9 tune with the smoke profile's named ``ablation`` schedule: 2 epochs there (a
    workbench setting in seconds), the recipe's own 15 on the paper profile."""
    from anomclip.book.chapter import Chapter
    from anomclip.engine import profiles
    from anomclip.engine.profiles import Profile
    from anomclip.errors import AnomclipError
    from anomclip.recipes import get_recipe, smoke

    monkeypatch.setattr(profiles, "ensure_synthetic", lambda root: {d: tmp_path / d for d in ("textures", "objects")})
    S = profiles.get_profile("smoke", tmp_path, tmp_path)
    short = S.recipe("paper", schedule="ablation")
    assert short.epochs == 2 and short.epochs_by_tuning == ()
    assert short == smoke("paper", epochs=2)  # the same run (key) as the settings written out
    assert S.recipe("paper").epochs == 15  # the smoke profile's other chapters keep 15
    assert S.recipe("paper", schedule="ablation", epochs=4).epochs == 4  # an explicit setting wins
    ch = Chapter(S, "cpu", overrides={"backbone": "ViT-B-16"})
    assert (ch.recipe("official", schedule="ablation").epochs, ch.recipe("official", schedule="ablation").backbone) \
        == (2, "ViT-B-16")
    paper = Profile("paper", get_recipe("official"), {}, synthetic=False)
    assert paper.recipe("paper", schedule="ablation") == get_recipe("paper") and get_recipe("paper").epochs == 15
    with pytest.raises(AnomclipError, match="unknown schedule 'fast' \\(choose from ablation, epoch-curve\\)"):
        S.recipe("paper", schedule="fast")
    with pytest.raises(AnomclipError, match="unknown schedule"):
        paper.recipe("paper", schedule="fast")


def test_the_workbench_bench_builds_each_chapters_reference_as_the_chapter_does():
    """anomclip bench workbench repeats the chapters' reference recipes: chapters 6–9 ask for the
    ``ablation`` schedule in their notebooks, 10 and 11 set their ``smoke_epochs`` parameter."""
    import re

    from anomclip.bench.workbench import CHAPTERS

    root = Path(__file__).resolve().parent.parent / "notebooks"
    for name, (_, recipe, schedule, *_) in CHAPTERS.items():
        text = (root / f"{name}.py").read_text()
        if isinstance(schedule, str):
            assert f'ch.recipe("{recipe}", schedule="{schedule}")' in text, name
        else:
            assert re.search(rf"^smoke_epochs = {schedule}\b", text, re.M), name


def test_every_chapter_has_the_template_parameters():
    import ast

    want = {"profile", "data_root", "device", "force", "backbone", "pretrained", "live"}
    for src in sorted(Path(__file__).resolve().parent.parent.joinpath("notebooks").glob("[0-9][0-9]_*.py")):
        text = src.read_text()
        # the parameters cell is off the page (remove-cell): the reader sees the provenance box instead
        cell = text.split('# %% tags=["parameters", "remove-cell"]', 1)[1].split("# %%", 1)[0]
        names = {t.id for node in ast.parse(cell).body if isinstance(node, ast.Assign) for t in node.targets
                 if isinstance(t, ast.Name)}
        assert want <= names, f"{src.name}: missing {sorted(want - names)}"


def test_deviations_finds_the_outlier_against_the_median_of_the_others():
    df = pd.DataFrame({"dataset": ["B"] * 5 + ["S"] * 5, "metric": "image_ap",
                       "label": list("abcde") * 2,
                       "value": [87.3, 86.7, 87.4, 86.2, 67.1, 80.0, 76.3, 76.8, 77.2, 77.0]})
    d = tables.deviations(df)
    top = d.iloc[0]
    assert (top["dataset"], top["label"]) == ("B", "e")
    assert top["median of the others"] == pytest.approx(np.median([87.3, 86.7, 87.4, 86.2]))
    assert top["deviation"] == pytest.approx(67.1 - np.median([87.3, 86.7, 87.4, 86.2]))
    assert top["spread of the others"] == pytest.approx(87.4 - 86.2)
    s = d[d["dataset"] == "S"].iloc[0]
    assert s["label"] == "a" and s["deviation"] == pytest.approx(80.0 - np.median([76.3, 76.8, 77.2, 77.0]))


def test_read_timings_sums_the_chapters(tmp_path):
    import json

    from anomclip.book import build as book

    assert book.read_timings("smoke", tmp_path) is None
    (tmp_path / "results" / "smoke").mkdir(parents=True)
    (tmp_path / "results" / "smoke" / "book_timings.json").write_text(json.dumps(
        {"status": "running", "device": "cpu", "chapters_s": {"02_b": 2.5, "01_a": 10.0}}))
    t = book.read_timings("smoke", tmp_path)
    assert list(t["chapter"]) == ["01_a", "02_b"] and t.attrs["total_s"] == pytest.approx(12.5)
    assert t.attrs["status"] == "running"


def test_install_mathjax_brings_the_tex_fonts_and_the_configured_script(tmp_path):
    import yaml

    from anomclip.book import build as book

    target = tmp_path / "mathjax"
    target.mkdir()
    (target / "MathJax.js").write_text("// an old MathJax 2 without its TeX fonts")
    script = book.install_mathjax(target)
    assert not (target / "MathJax.js").exists()  # the old bundle is replaced, not mixed in
    cfg = yaml.safe_load((Path(book.BOOK) / "_config.yml").read_text())["sphinx"]["config"]
    assert cfg["mathjax_path"] == f"{target.name}/{script.relative_to(target).as_posix()}"
    assert script.is_file() and script.stat().st_size > 100_000
    fonts = {p.name for p in (target / "output" / "chtml" / "fonts" / "woff-v2").iterdir()}
    # \mathcal needs the calligraphic font, \mathbb the AMS one, plain math the italic one
    for f in ("MathJax_Calligraphic-Regular.woff", "MathJax_AMS-Regular.woff", "MathJax_Math-Italic.woff",
              "MathJax_Main-Regular.woff", "MathJax_Script-Regular.woff"):
        assert f in fonts
    assert (target / "input" / "tex" / "extensions" / "boldsymbol.js").is_file()


def test_injected_parameters_cell_is_hidden(tmp_path):
    import nbformat

    from anomclip.book import build as book

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("a = 1", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("a = 2", metadata={"tags": ["injected-parameters"]})]
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, str(path))
    assert book.hide_injected_parameters(path) == 1
    cells = nbformat.read(str(path), as_version=4).cells
    assert "remove-cell" in cells[1].metadata.tags and "remove-cell" not in cells[0].metadata.tags
    assert book.hide_injected_parameters(path) == 0


def test_score_summary_per_group():
    f = failures.score_frame(_doc()).assign(prompts="tuned")
    s = failures.score_summary(f).iloc[0]
    assert s["normal mean"] == pytest.approx(0.25) and s["anomalous mean"] == pytest.approx(0.575)
    assert s["score range"] == pytest.approx(0.7)
    assert s["image AUROC (%)"] == pytest.approx(75.0)  # 3 of the 4 (anomalous, normal) pairs are ordered


def test_paired_means_use_the_same_categories():
    t = pd.DataFrame({"standard": [0.5, 0.7, 0.9], "authors": [0.6, float("nan"), 1.0]}, index=list("abc"))
    m = tables.paired_means(t)
    assert m["standard"] == pytest.approx((0.5 + 0.9) / 2) and m["authors"] == pytest.approx((0.6 + 1.0) / 2)
    assert m["n"] == 2


def test_score_differences():
    a = {"scores": {"c": [0.1, 0.5], "d": [0.3]}}
    b = {"scores": {"c": [0.1, 0.25], "d": [0.4]}}
    d = tables.score_differences(a, b, "x").set_index("category")
    assert d.loc["c", "max |Δ score|"] == pytest.approx(0.25) and d.loc["c", "mean |Δ score|"] == pytest.approx(0.125)
    assert d.loc["d", "max |Δ score|"] == pytest.approx(0.1)


def test_prompt_stats_match_the_tensors(tiny_clip):
    from anomclip.book.diagnostics import prompt_stats
    from anomclip.model.anomalyclip import AnomalyCLIP
    from anomclip.recipes import smoke

    clip_model, tokenizer, info = tiny_clip
    model = AnomalyCLIP(clip_model, tokenizer, info, smoke("official"))
    summary, deep = prompt_stats(model)
    pl = model.prompt_learner
    n = pl.ctx_normal.detach().numpy()
    assert summary["‖ctx normal‖"] == pytest.approx(np.mean(np.sqrt((n ** 2).sum(-1))), rel=1e-5)
    text = model.encode_text().detach().numpy()
    cos = text[0] @ text[1] / np.linalg.norm(text[0]) / np.linalg.norm(text[1])
    assert summary["cos(normal text, damaged text)"] == pytest.approx(float(cos), abs=1e-5)
    assert list(deep) == [f"block {k}" for k in range(2, 2 + len(pl.deep_prompts))]
    first = pl.deep_prompts[0].detach().numpy()
    assert deep["block 2"] == pytest.approx(np.mean(np.sqrt((first ** 2).sum(-1))), rel=1e-5)


def test_batch_of_reads_masks_as_evaluation_does(tmp_path):
    from PIL import Image

    from anomclip.book.examples import batch_of
    from anomclip.data.index import Sample
    from anomclip.data.preprocess import load_mask

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    m = np.zeros((40, 50), dtype=np.uint8)
    m[5:20, 7:31] = 255
    Image.fromarray(m).save(tmp_path / "a_mask.png")
    Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(tmp_path / "b.png")
    samples = [Sample(tmp_path / "a.png", tmp_path / "a_mask.png", "c", "hole", 1),
               Sample(tmp_path / "b.png", None, "c", "good", 0)]
    images, masks, names, rgb = batch_of(samples, 32)
    assert images.shape == (2, 3, 32, 32) and rgb.shape == (2, 32, 32, 3) and rgb.dtype == np.uint8
    assert torch.equal(masks[0], load_mask(tmp_path / "a_mask.png", 32)) and masks[1].sum() == 0
    assert names == ["c", "c"]


def test_attention_by_block_returns_softmax_maps_and_their_prominence(tiny_clip, images):
    from anomclip.model.anomalyclip import AnomalyCLIP
    from anomclip.recipes import smoke

    clip_model, tokenizer, info = tiny_clip
    model = AnomalyCLIP(clip_model, tokenizer, info, smoke("official").with_(dpam="qk+qq+kk+vv"))
    kept, prom = attention.attention_by_block(model, images, keep=[2, model.encoder.depth])
    assert sorted(kept) == [2, model.encoder.depth]
    assert len(prom) == 4 * model.encoder.depth and set(prom["mode"]) == {"Q-K", "Q-Q", "K-K", "V-V"}
    t = 1 + info.grid ** 2
    for b, maps in kept.items():
        for m, a in maps.items():
            assert a.shape == (2, t, t)
            assert torch.allclose(a.sum(-1), torch.ones(2, t), atol=1e-4)  # head-averaged softmax rows
        # the definition (docstring of diagonal_prominence), by explicit loops over images and tokens
        here = prom[prom["block"] == b].set_index("mode")
        for m, a in maps.items():
            ratios, selfs = [], []
            for img in range(a.shape[0]):
                for i in range(t):
                    own = float(a[img, i, i])
                    rest = sum(float(a[img, i, j]) for j in range(t) if j != i) / (t - 1)
                    ratios.append(own / rest), selfs.append(own)
            name = labels.MODE_NAMES[m]
            assert here.loc[name, "ratio"] == pytest.approx(np.mean(ratios), rel=1e-4)
            assert here.loc[name, "self"] == pytest.approx(np.mean(selfs), rel=1e-4)


# --------------------------------------------------------------------------- baselines in the book
def test_training_cost_reads_history_and_durations():
    training = {"history": [{"epoch": 0, "seconds": 3.0}, {"epoch": 1, "seconds": 1.0},
                            {"epoch": 2, "seconds": 2.0}, {"epoch": 3, "seconds": 10.0}],
                "durations": {"train_features_s": 4.5, "train_s": 16.0}, "features_from_cache": True}
    c = tables.training_cost(training)
    assert c["epochs"] == 4
    assert c["s per epoch (median)"] == pytest.approx((2.0 + 3.0) / 2)  # median of 1, 2, 3, 10 by hand
    assert c["feature extraction (s)"] == 4.5 and c["training (s)"] == 16.0 and c["features cached before the run"] is True
    assert tables.training_cost({"history": [{"seconds": 7.0}], "durations": {}})["s per epoch (median)"] == 7.0


@pytest.mark.parametrize("training", [None, {"history": [], "durations": {"train_s": 0.0}}])
def test_training_cost_of_an_untrained_method_is_undefined(training):
    c = tables.training_cost(training)
    assert c["epochs"] == 0
    assert all(math.isnan(c[k]) for k in ("s per epoch (median)", "feature extraction (s)", "training (s)"))
    assert labels.fmt(c["training (s)"]) == labels.MISSING and c["features cached before the run"] is None


@pytest.mark.parametrize("method", ["clip", "vand"])
def test_method_maps_are_the_models_maps_image_by_image_and_resize_by_block_means(method):
    from anomclip.engine.loading import build_model
    from anomclip.recipes import smoke

    torch.manual_seed(0)
    model = build_model(smoke(method), "cpu")
    s = model.image_size
    images = torch.randn(3, 3, s, s, generator=torch.Generator().manual_seed(1))
    names = ["disc", "weave", "disc"]
    maps = examples.method_maps(model, images, names)
    assert maps.shape == (3, s, s) and maps.dtype == np.float32
    with torch.no_grad():  # one image at a time: the figure's maps do not depend on the batch
        for i in range(3):
            g, feats = model.encode_image(images[i:i + 1])
            one = model.score_features(g, feats, model.text_for([names[i]])).anomaly_map[0].numpy()
            np.testing.assert_allclose(maps[i] * len(model.layers), one, atol=1e-5)  # the sum over layers
    assert 0.0 <= maps.min() and maps.max() <= 1.0  # the mean over layers of probabilities
    half = examples.method_maps(model, images, names, size=s // 2)
    blocks = maps.reshape(3, s // 2, 2, s // 2, 2).mean(axis=(2, 4))  # bilinear at exactly ½ = 2×2 means
    np.testing.assert_allclose(half, blocks, atol=1e-5)


# --------------------------------------------------------------------------- the book check's rules
def _check_book():
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_book", Path(__file__).parents[1] / "tools" / "check_book.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_book_check_rules_on_text_and_requests(tmp_path):
    cb = _check_book()
    assert cb.plurals("over 2 dataset(s) and 3 method(s); time (s); dataset(s)") == ["dataset(s)", "method(s)"]
    assert cb.plurals("feature extraction (s)") == []
    smoke = "label metric paper ours (smoke run) Δ ours on\nfull image AUROC 91.5 60.0 -31.5"
    assert cb.unlabelled_standins(smoke + " VisA", names=("MVTec AD", "VisA")) == ["VisA"]
    assert cb.unlabelled_standins(smoke + " VisA objects (stands in for VisA)", names=("VisA",)) == []
    assert cb.unlabelled_standins("paper table: VisA 91.5", names=("VisA",)) == []  # the paper's own numbers
    there = tmp_path / "font.woff"
    there.write_bytes(b"x")
    urls = [there.as_uri(), (tmp_path / "fontdata.js").as_uri(), "https://cdn.example/x.js", "data:,x"]
    assert cb.missing_files(urls) == [(tmp_path / "fontdata.js").as_uri()]
    assert cb.outside_requests(urls) == ["https://cdn.example/x.js"]


def test_fmt_sig_keeps_three_significant_figures():
    for v, sig in ((226.32, 3), (9.614, 3), (0.015234, 3), (1234.5, 2), (0.5, 3)):
        text = labels.fmt_sig(v, sig)
        assert "e" not in text
        digits = text.replace(".", "").lstrip("0")
        assert len(digits) >= sig or float(text) == pytest.approx(v, rel=10 ** -sig)
        assert abs(float(text) - v) <= 0.5 * 10 ** (math.floor(math.log10(abs(v))) - sig + 1) + 1e-12
    assert labels.fmt_sig(226.32) == "226" and labels.fmt_sig(0.015234) == "0.0152"
    assert labels.fmt_sig(float("nan")) == labels.MISSING and labels.fmt_sig(None) == labels.MISSING


def test_display_text_writes_plurals_in_their_number():
    assert labels.display_text("1 anomalous image(s) without a mask left out") == "1 anomalous image without a mask left out"
    assert labels.display_text("skipped 3 unreadable sample(s)") == "skipped 3 unreadable samples"
    assert labels.display_text("ignored folder(s) without labels: a") == "ignored folders without labels: a"
    assert labels.display_text("feature extraction (s)") == "feature extraction (s)"  # a unit, not a plural
    assert labels.plural(1, "dataset") == "1 dataset" and labels.plural(0, "dataset") == "0 datasets"


def test_notes_only_for_the_metrics_shown_and_means_say_their_categories():
    doc = {"categories": {"a": {"pixel_aupro": 0.0, "pixel_aupro_official": None, "image_auroc": 0.5},
                          "b": {"pixel_aupro": 0.5, "pixel_aupro_official": 0.4, "image_auroc": 0.7},
                          "c": {"pixel_aupro": 0.6, "pixel_aupro_official": float("nan"), "image_auroc": 0.6}},
           "notes": ["a: pixel_aupro_official undefined: fewer than two distinct FPRs below 0.3; returning NaN",
                     "pixel_aupro_official: left out of the mean for categories a, c (undefined)",
                     "pixel metrics are not defined: no anomalous image has a mask"]}
    shown = labels.notes_box([doc], metrics=("pixel_aupro", "image_auroc"))
    assert "authors' code" not in shown.markdown and "no anomalous image has a mask" in shown.markdown
    both = labels.notes_box([doc], metrics=("pixel_aupro_official",))
    assert "authors' code" in both.markdown
    assert labels.notes_box([doc]).markdown.count("authors' code") == 2  # no filter: every note
    assert labels.mean_categories(doc, ("pixel_aupro", "image_auroc")) == "mean of the 3 categories"
    assert labels.mean_categories(doc, ("pixel_aupro", "pixel_aupro_official")) == (
        "mean of the 3 categories (pixel AUPRO (authors' code): of 1, without a, c)")


def test_per_image_auroc_and_noise_margin():
    rng = np.random.default_rng(4)
    masks = np.zeros((3, 16, 16))
    masks[:, 4:8, 4:8] = 1
    maps = {"vv": torch.as_tensor(rng.uniform(size=(3, 16, 16))), "qk": torch.as_tensor(rng.uniform(size=(3, 16, 16)))}
    per = attention.per_image_auroc(maps, masks, sigma=0.0)
    for m in maps:
        for i in range(3):
            assert per.loc[i, m] == pytest.approx(metrics.auroc_or_nan(maps[m][i].numpy().ravel(),
                                                                       masks[i].ravel().astype(int)))
    d = (per["vv"] - per["qk"]).to_numpy()
    assert attention.noise_margin(per, "vv", "qk") == pytest.approx(2 * np.std(d, ddof=1) / np.sqrt(3))
    assert math.isnan(attention.noise_margin(per.iloc[:1], "vv", "qk"))


def test_compare_figure_says_which_datasets_have_only_paper_numbers():
    ours = pd.DataFrame([{"label": "full", "dataset": "objects", "metric": m, "value": 0.6}
                         for m in ("pixel_auroc", "image_auroc")])
    cmp = labels.compare(ours, tables.paper_long(7, variants={"full": "full"}), synthetic=True)
    fig = plots.plot_compare(cmp, ours_label="ours (smoke run)")
    legend = {t.get_text() for leg in fig.legends for t in leg.get_texts()}
    plt.close(fig)
    assert "objects (stands in for VisA)" in legend and "MVTec AD (paper only)" in legend


def test_every_term_a_page_links_is_in_the_glossary():
    """{term}`X` (or {term}`text <X>`) in a chapter or the landing page names an entry of
    book/glossary.md's glossaries (Sphinx would warn and leave a dead link otherwise); and the
    glossary defines what the reading guide promises."""
    import re

    root = Path(__file__).resolve().parents[1]
    glossary = (root / "book" / "glossary.md").read_text()
    terms = {line.strip().lower() for block in re.findall(r"```\{glossary\}\n(.*?)```", glossary, re.S)
             for line in block.split("\n") if line and not line.startswith(" ")}
    assert {"auroc", "ap", "aupro", "f1-max", "dpam", "dpam modes", "surrogate path", "object-agnostic prompts",
            "object-aware prompts", "glocal loss", "clip", "clip-ac", "winclip", "vand", "coop"} <= terms
    pages = sorted((root / "notebooks").glob("[0-9][0-9]_*.py")) + [root / "book" / "intro.md"]
    used = {}
    for page in pages:
        for m in re.findall(r"\{term\}`([^`]*)`", page.read_text()):
            target = re.search(r"<([^>]*)>\s*$", m)
            used.setdefault((target.group(1) if target else m).strip().lower(), page.name)
    assert used and not {t: p for t, p in used.items() if t not in terms}
