"""The ablation helper (compare → table → plot) and the workbench, on a toy chapter whose runs
are a known function of the recipe (no training: tests/toy_chapter.py)."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import pytest
from toy_chapter import METRICS
from toy_chapter import toy_value as value

from anomclip.book import workbench as wbm
from anomclip.book.tables import paper_long
from anomclip.recipes import get_recipe


def no_loading(recipe, device):
    """A workbench's loader that loads nothing (the toy chapter's runs need no model)."""
    return None


@pytest.fixture
def chapter(toy_chapter):
    ch = toy_chapter
    full = get_recipe("paper")
    rows = [("full", full), ("global only", full.with_(use_focal_loss=False, use_dice_loss=False))]
    return ch, full, ch.run(rows).frame


def test_ablation_pairs_our_rows_with_the_papers(chapter):
    ch, full, ours = chapter
    ab = wbm.ablation(ch, ours, [("full", "local + global"), "global only"], table=5, title="t", metrics=METRICS)
    tables, fig = ab
    assert fig is not None and set(tables) == {"VisA", "MVTec AD"}  # the paper datasets of the smoke domains
    paper = paper_long(5)
    for (label, key), row in tables["VisA"].iterrows():
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
        row = t.loc[(label, metric)]
        for ours_on, paper_ds in (("objects", "VisA"), ("textures", "MVTec AD")):
            want = round(100 * value(new, ours_on, metric), 1) - round(100 * value(full, ours_on, metric), 1)
            assert row[(paper_ds, "Δ ref")] == pytest.approx(want, abs=0.051)
            assert math.isnan(row[(paper_ds, "paper")])
        assert t.loc[("local + global", metric)][("VisA", "Δ ref")] == 0
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


def test_static_workbench_draws_nothing_but_its_box(chapter, monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs: shown.extend(objs))
    ch, full, ours = chapter
    ab = wbm.ablation(ch, ours, ["full"], metrics=METRICS, figure=False)
    assert wbm.Workbench(ch, ab, ("full", full), ["lam", "dpam"]).show(live=True) is None  # no kernel here
    assert len(shown) == 1 and "λ, DPAM" in shown[0].markdown and "make lab" in shown[0].html and ch.calls == [(["full", "global only"], None, True)]


def test_warm_up_loads_the_reference_backbone_in_the_background(chapter, monkeypatch):
    """While the reader sets the controls, the reference recipe's backbone loads in a thread,
    once: the first Run then finds it (the loader keeps one backbone per process)."""
    from anomclip.engine import loading
    from anomclip.recipes import smoke

    ch, _, _ = chapter
    loads = []
    real = loading.bb.load_clip
    monkeypatch.setattr(loading.bb, "load_clip", lambda *a, **k: loads.append(a) or real(*a, **k))
    monkeypatch.setattr(loading, "_BACKBONES", {})
    ref = smoke("paper")
    asked = []
    thread = wbm.Workbench(ch, None, ("full", ref), ["lam"], loader=lambda r, d: asked.append((r, d))).warm_up()
    thread.join(timeout=10)
    assert asked == [(ref, "cpu")] and loads == []  # an injected loader is the one called, on the chapter's device
    thread = wbm.Workbench(ch, None, ("full", ref), ["lam"]).warm_up()
    thread.join(timeout=120)
    assert not thread.is_alive() and len(loads) == 1
    loading.build_model(ref.with_(lam=2.0), "cpu")  # the Run's model: same backbone, not loaded again
    assert len(loads) == 1
    assert list(loading._BACKBONES) == [(ref.backbone, ref.pretrained, ref.image_size, ref.pos_interpolation, "cpu")]


def _values(options):
    return [v for _, v in options]


def test_dpam_controls_offer_only_settings_that_run(toy_chapter, tiny_clip):
    """Chapter 9's workbench on the smoke profile: 8 visual blocks, feature layers ¼, ½, ¾, 1 =
    blocks 2, 4, 6, 8. With a DPAM mode on, the surrogate path must start at or before block 2,
    so "DPAM from" offers ¼ only and says why ½ and ¾ cannot run; every combination the
    controls offer builds a dual-path encoder on the tiny backbone, every other one is refused
    by it. Nothing is trained: the toy chapter's runs compute their numbers."""
    from anomclip.errors import AnomclipError
    from anomclip.model.dpam import DualPathEncoder
    from anomclip.recipes import resolve_block, smoke

    ref = smoke("paper")
    visual = tiny_clip[0].visual
    depth = len(visual.transformer.resblocks)
    assert depth == 8 and ref.layers == (0.25, 0.5, 0.75, 1.0) and ref.dpam == "vv"

    def encoder(recipe):  # the model's own check of the encoder settings
        modes = () if recipe.dpam == "none" else recipe.dpam_modes
        return DualPathEncoder(visual, modes, resolve_block(recipe.dpam_start, depth),
                               [resolve_block(m, depth) for m in recipe.layers])

    ab = wbm.ablation(toy_chapter, toy_chapter.run([("V-V", ref)]).frame, ["V-V"], metrics=METRICS, figure=False)
    wb = wbm.Workbench(toy_chapter, ab, ("V-V", ref), ["dpam", "dpam_start"], loader=no_loading)
    wb.build()
    dpam, start = wb.widgets["dpam"], wb.widgets["dpam_start"]
    assert wb.depth == 8
    assert _values(start.options) == [0.25]  # ¼ of 8 = block 2, the first feature layer
    assert wb.notes["dpam_start"].value == ("<small>cannot run with the other settings: "
                                            "½ (feature layer 2 comes before the DPAM start block 4), "
                                            "¾ (feature layer 2 comes before the DPAM start block 6)</small>")
    assert _values(dpam.options) == _values(wbm.CONTROLS["dpam"].options) and wb.notes["dpam"].value == ""
    dpam.value = "none"  # no surrogate path: it may start anywhere
    assert _values(start.options) == [0.25, 0.5, 0.75] and wb.notes["dpam_start"].value == ""
    start.value = 0.75  # block 6: now no DPAM mode can run (layer 2 comes before it)
    assert _values(dpam.options) == ["none"] and "V-V (feature layer 2 comes before the DPAM start block 6)" \
        in wb.notes["dpam"].value
    assert start.value == 0.75 and dpam.value == "none"

    offered, refused = [], []
    for mode in _values(wbm.CONTROLS["dpam"].options):
        for s in _values(wbm.CONTROLS["dpam_start"].options):
            dpam.value = "none"  # always offered; then the start, then the mode, as a reader would
            assert s in _values(start.options)
            start.value = s
            if mode not in _values(dpam.options):
                refused.append(ref.with_(dpam=mode, dpam_start=s))
                continue
            dpam.value = mode
            before = len(toy_chapter.recipes)
            wb.button.click()
            assert "error" not in wb.status.value, wb.status.value
            offered.extend(toy_chapter.recipes[before:])
    assert {(r.dpam, r.dpam_start) for r in offered} == \
        {(m, s) for m in ("none",) for s in (0.25, 0.5, 0.75)} | {(m, 0.25) for m in ("vv", "qq", "kk", "qk", "qq+kk+vv")}
    for recipe in offered:  # every offered combination builds
        encoder(recipe)
    for recipe in refused:  # and every other one is refused by the model itself
        with pytest.raises(AnomclipError, match="comes before the DPAM start block"):
            encoder(recipe)
