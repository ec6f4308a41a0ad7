"""The ablation helper (compare → table → plot) and the workbench, on a stand-in chapter whose
runs are a known function of the recipe (no training)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import pandas as pd
import pytest

from anomclip.book import workbench as wbm
from anomclip.book.labels import metric_name
from anomclip.book.tables import paper_long
from anomclip.recipes import get_recipe

METRICS = ("pixel_auroc", "image_auroc")


def value(recipe, dataset, metric):
    """The stand-in's number (a fraction) for a recipe: depends on λ, the loss terms and the dataset."""
    v = 0.5 + 0.03 * recipe.lam + (0.05 if recipe.use_focal_loss else 0) + (0.02 if dataset == "objects" else 0)
    return min(v + (0.01 if metric == "image_auroc" else 0), 0.99)


class FakeChapter:
    smoke = True
    ours = "ours (smoke)"

    def __init__(self):
        self.P = SimpleNamespace(protocol={"textures": ["objects"], "objects": ["textures"]},
                                 datasets={"textures": 1, "objects": 2})
        self.calls = []

    def run(self, rows, datasets=None, train=True, on_epoch=None):
        self.calls.append(([l for l, _ in rows], datasets, train))
        for epoch in (1, 2):  # a two-epoch training
            if train and on_epoch is not None:
                on_epoch(epoch, 2)
        targets = datasets or ["objects", "textures"]
        frame = pd.DataFrame([{"label": l, "dataset": t, "metric": m, "value": value(r, t, m)}
                              for l, r in rows for t in targets for m in METRICS])
        return SimpleNamespace(frame=frame)


@pytest.fixture
def chapter():
    ch = FakeChapter()
    full = get_recipe("paper")
    rows = [("full", full), ("global only", full.with_(use_focal_loss=False, use_dice_loss=False))]
    return ch, full, ch.run(rows).frame


def test_ablation_pairs_our_rows_with_the_papers(chapter):
    ch, full, ours = chapter
    ab = wbm.ablation(ch, ours, [("full", "local + global"), "global only"], table=5, title="t", metrics=METRICS)
    tables, fig = ab
    assert fig is not None and set(tables) == {"VisA", "MVTec AD"}  # the smoke domains' stand-ins
    paper = paper_long(5)
    for (label, metric), row in tables["VisA"].iterrows():
        key = {v: k for k, v in {m: metric_name(m) for m in METRICS}.items()}[metric]
        ours_label = {"local + global": "full"}.get(label, label)
        want_paper = paper[(paper["label"] == label) & (paper["dataset"] == "VisA") & (paper["metric"] == key)]["value"]
        assert row["paper"] == pytest.approx(round(float(want_paper.iloc[0]), 1))
        recipe = full if ours_label == "full" else full.with_(use_focal_loss=False, use_dice_loss=False)
        assert row["ours"] == pytest.approx(round(100 * value(recipe, "objects", key), 1))
    assert list(tables["VisA"].index.get_level_values(0).unique()) == ["local + global", "global only"]
    assert ab.names == {"full": "local + global", "global only": "global only"}


def test_ablation_without_paper_numbers(chapter):
    ch, full, ours = chapter
    ab = wbm.ablation(ch, ours, ["full"], table=None, metrics=METRICS, figure=False)
    assert ab.figure is None and ab.cmp["paper"].isna().all() and len(ab.cmp) == 4


def test_workbench_run_adds_a_row_with_the_difference_to_the_reference(chapter):
    ch, full, ours = chapter
    ab = wbm.ablation(ch, ours, [("full", "local + global"), "global only"], table=5, metrics=METRICS, figure=False)
    wb = wbm.Workbench(ch, ab, ("local + global", full), ["lam", "use_focal_loss"])
    steps = []
    label = wb.run(progress=lambda i, n: steps.append((i, n)), lam=2.0, use_focal_loss=False)
    assert label == "yours: λ=2.0, focal loss off"
    # two targets, two epochs each: the bar moves by half a target per epoch
    assert steps == [(0.5, 2), (1.0, 2), (1, 2), (1.5, 2), (2.0, 2), (2, 2)] and [c[1] for c in ch.calls[-2:]] == [["objects"], ["textures"]]
    t = wb.table()
    assert t.index.get_level_values(0)[-1] == label
    new = full.with_(lam=2.0, use_focal_loss=False)
    for metric in METRICS:
        row = t.loc[(label, metric_name(metric))]
        for ours_on, paper_ds in (("objects", "VisA"), ("textures", "MVTec AD")):
            want = round(100 * value(new, ours_on, metric), 1) - round(100 * value(full, ours_on, metric), 1)
            assert row[(paper_ds, "Δ ref")] == pytest.approx(want, abs=0.051)
            assert math.isnan(row[(paper_ds, "paper")])
        assert t.loc[("local + global", metric_name(metric))][("VisA", "Δ ref")] == 0
    fig = wb.figure()
    labels = {tl.get_text() for ax in fig.axes for tl in ax.get_yticklabels()}
    assert label in labels and "global only" in labels


def test_setting_labels_and_unknown_fields(chapter):
    ch, full, ours = chapter
    assert wbm.setting_label(full, full, ["lam"], "full") == "yours: full"
    assert wbm.setting_label(full, full.with_(dpam="qq", object_aware=True), ["dpam", "object_aware"], "full") \
        == "yours: DPAM=Q-Q, object-aware on"
    ab = wbm.ablation(ch, ours, ["full"], metrics=METRICS, figure=False)
    with pytest.raises(ValueError, match="no control"):
        wbm.Workbench(ch, ab, ("full", full), ["not_a_field"])


def test_every_control_makes_a_widget_at_the_recipes_value():
    full = get_recipe("paper")
    for f, c in wbm.CONTROLS.items():
        w = wbm.make_widget(c, getattr(full, f))
        assert w.value == getattr(full, f), f
        assert w.description == c.description


def test_static_workbench_draws_nothing_but_a_line(chapter, monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs: shown.extend(objs))
    ch, full, ours = chapter
    ab = wbm.ablation(ch, ours, ["full"], metrics=METRICS, figure=False)
    assert wbm.Workbench(ch, ab, ("full", full), ["lam", "dpam"]).show(live=True) is None  # no kernel here
    assert len(shown) == 1 and "λ, DPAM" in shown[0].data and ch.calls == [(["full", "global only"], None, True)]


def test_warm_up_loads_the_reference_backbone_in_the_background(chapter, monkeypatch):
    """While the reader sets the controls, the reference recipe's backbone loads in a thread,
    once: the first Run then finds it (models keeps one backbone per process)."""
    from anomclip.engine import models
    from anomclip.recipes import smoke

    ch, _, _ = chapter
    loads = []
    real = models.bb.load_clip
    monkeypatch.setattr(models.bb, "load_clip", lambda *a, **k: loads.append(a) or real(*a, **k))
    monkeypatch.setattr(models, "_BACKBONES", {})
    ref = smoke("paper")
    wb = wbm.Workbench(ch, None, ("full", ref), ["lam"])
    assert wb.warm_up() is None  # a stand-in chapter without a device: nothing to load
    ch.device = "cpu"
    thread = wb.warm_up()
    thread.join(timeout=120)
    assert not thread.is_alive() and len(loads) == 1
    models.build_model(ref.with_(lam=2.0), "cpu")  # the Run's model: same backbone, not loaded again
    assert len(loads) == 1
    assert list(models._BACKBONES) == [(ref.backbone, ref.pretrained, ref.image_size, ref.pos_interpolation, "cpu")]
