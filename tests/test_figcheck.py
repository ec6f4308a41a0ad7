"""The legend check of the book's figures (anomclip.book.figcheck): figures built so that a
legend does or does not cover each kind of plotted data, and the formatter in a real IPython
shell."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

from anomclip.book import figcheck


@pytest.fixture(autouse=True)
def close_all():
    yield
    plt.close("all")


def legend_at_centre(ax):
    """A legend box whose centre is the axes' centre (axes fraction 0.5, 0.5)."""
    return ax.legend(loc="center", bbox_to_anchor=(0.5, 0.5))


def legend_outside(ax):
    return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)


def test_a_line_under_the_legend_is_reported_and_one_beside_it_is_not():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0.5, 0.5], label="through the centre")
    ax.set_xlim(0, 1), ax.set_ylim(0, 1)
    legend_at_centre(ax)
    hits = figcheck.legend_overlaps(fig)
    assert [(h["artist"], h["kind"]) for h in hits] == [("through the centre", "line")]
    assert hits[0]["legend"] == ["through the centre"]
    legend_outside(ax)
    assert figcheck.legend_overlaps(fig) == []


def test_a_line_in_a_corner_away_from_the_legend_is_not_reported():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0.0, 0.1], [0.0, 0.1], label="bottom-left corner")
    ax.set_xlim(0, 1), ax.set_ylim(0, 1)
    ax.legend(loc="upper right")
    assert figcheck.legend_overlaps(fig) == []


def test_a_segment_crossing_the_box_with_both_ends_outside_is_reported():
    # the clipping, against a hand-made box: a diagonal through (5, 5) crosses the box 4..6
    assert figcheck._segments_hit(np.array([[0.0, 0.0], [10.0, 10.0]]), (4, 4, 6, 6))
    assert not figcheck._segments_hit(np.array([[0.0, 10.0], [3.0, 0.0]]), (4, 4, 6, 6))
    assert not figcheck._segments_hit(np.array([[0.0, 5.0], [np.nan, 5.0], [10.0, 5.0]]), (4, 4, 6, 6))


@pytest.mark.parametrize("height, covered", [(0.9, True), (0.2, False)])
def test_bars_reaching_into_the_legend(height, covered):
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar([0.5], [height], width=0.4, label="bar")
    ax.set_xlim(0, 1), ax.set_ylim(0, 1)
    legend_at_centre(ax)
    assert bool(figcheck.legend_overlaps(fig)) is covered


def test_points_areas_and_reference_lines_count_as_data():
    fig, axes = plt.subplots(1, 3, figsize=(9, 3))
    axes[0].scatter([0.5], [0.5], label="a point")
    axes[1].fill_between([0, 1], [0, 0], [1, 1], label="an area")
    axes[2].axhline(0.5, label="chance")
    for ax in axes:
        ax.set_xlim(0, 1), ax.set_ylim(0, 1)
        legend_at_centre(ax)
    kinds = sorted((h["artist"], h["kind"]) for h in figcheck.legend_overlaps(fig))
    assert kinds == [("a point", "points"), ("an area", "area"), ("chance", "line")]


def test_a_figure_legend_is_checked_against_every_axes():
    fig, (a, b) = plt.subplots(1, 2, figsize=(6, 3))
    a.plot([0, 1], [0, 1], label="left")
    b.plot([0, 1], [1, 0], label="right")
    for ax in (a, b):
        ax.set_xlim(0, 1), ax.set_ylim(0, 1)
    fig.legend(loc="center", bbox_to_anchor=(0.25, 0.5))  # over the left axes' diagonal
    hits = figcheck.legend_overlaps(fig)
    assert [h["artist"] for h in hits] == ["left"]
    fig.legends.clear()
    fig.legend(loc="upper center", bbox_to_anchor=(0.5, 1.15), ncols=2)  # above both
    assert figcheck.legend_overlaps(fig) == []


def test_the_formatter_adds_the_check_beside_the_png_in_an_ipython_shell():
    from IPython.core.interactiveshell import InteractiveShell

    from IPython.core.pylabtools import select_figure_formats

    shell = InteractiveShell.instance()
    assert figcheck.install(shell)
    # then the inline backend is configured, as a kernel does on the first figure of a chapter:
    # it drops every formatter's entry for Figure
    select_figure_formats(shell, {"png"})
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0.5, 0.5], label="under")
    ax.set_xlim(0, 1), ax.set_ylim(0, 1)
    legend_at_centre(ax)
    data, _ = shell.display_formatter.format(fig)
    assert "image/png" in data
    assert [h["artist"] for h in data[figcheck.MIME]["legend_overlaps"]] == ["under"]
    nb = {"cells": [{"outputs": [{"data": data}]}, {"outputs": [{"data": {"text/plain": "x"}}]}]}
    checks = figcheck.figure_checks(nb)
    assert [i for i, _ in checks] == [1] and checks[0][1]["legend_overlaps"][0]["kind"] == "line"


def test_what_the_axes_clip_away_is_not_covered():
    """A bar from 0 on a log axis reaches −∞ beyond the axes; only what is drawn counts."""
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar([0.5], [10.0], width=0.4, label="bar")
    ax.set_yscale("log")
    ax.set_xlim(0, 1), ax.set_ylim(1, 100)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15))  # below the axes, under the bar's column
    assert figcheck.legend_overlaps(fig) == []
    ax.legend(loc="lower center")  # inside the axes, over the bar
    assert [(h["artist"], h["count"]) for h in figcheck.legend_overlaps(fig)] == [("bar", 1)]


def test_a_figure_made_without_pyplot_is_checked():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0.5, 0.5], label="x")
    ax.set_xlim(0, 1), ax.set_ylim(0, 1)
    legend_at_centre(ax)
    assert [h["artist"] for h in figcheck.legend_overlaps(fig)] == ["x"]
    assert "error" not in figcheck.check_figure(fig)


# --------------------------------------------------------------------------- one look, one label
def test_two_labels_in_one_colour_are_a_clash_and_distinct_colours_are_not():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1], color="#1f77b4", label="pixel AUROC")
    ax.plot([0, 1], [1, 0], color="#1f77b4", label="textures")
    legend_outside(ax)
    clashes = figcheck.colour_clashes(fig)
    assert [(c["colour"], c["labels"]) for c in clashes] == [("#1f77b4", ["pixel AUROC", "textures"])]
    ax.lines[1].set_color("#ff7f0e")
    legend_outside(ax)
    assert figcheck.colour_clashes(fig) == []


def test_a_colour_told_apart_by_its_dash_or_marker_is_not_a_clash():
    """seaborn's style legend: one grey, two dashes — a reader can tell them apart."""
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1], color="0.2", ls="-", label="tuned on textures")
    ax.plot([0, 1], [1, 0], color="0.2", ls="--", label="tuned on objects")
    ax.plot([0, 1], [0.5, 0.5], color="0.2", ls="none", marker="o", label="a dot")
    legend_outside(ax)
    assert figcheck.colour_clashes(fig) == []


def test_seaborn_section_titles_are_not_labels():
    """seaborn's hue + style legend titles its sections with white lines of width 0: they show
    nothing, so two of them ("term", "run") are no clash; the book's loss curves have them."""
    from anomclip.book import plots

    hist = [{"epoch": e, "step": e, "loss": 1.0 / (e + 1), "global": 0.5, "local": 0.1} for e in range(4)]
    fig = plots.loss_curves({"a": hist, "b": hist}, x="epoch")
    labels = [label for label, _ in figcheck.legend_entries(fig)]
    assert labels == ["total", "global", "local", "a", "b"]  # not "term", "run"
    assert figcheck.colour_clashes(fig) == []


def test_clashes_are_found_across_the_legends_of_one_figure():
    """A figure legend of bar patches and an axes legend of lines: one colour for two labels."""
    import matplotlib.patches as mpatches

    fig, (a, b) = plt.subplots(1, 2, figsize=(6, 3))
    a.plot([0, 1], [0, 1], color="#d62728", label="DPAM")
    legend_outside(a)
    fig.legend(handles=[mpatches.Patch(color="#d62728", label="ours"), mpatches.Patch(color="#4d4d4d", label="paper")],
               loc="upper center")
    clashes = figcheck.colour_clashes(fig)
    assert [c["labels"] for c in clashes] == [["DPAM", "ours"]]
    check = figcheck.check_figure(fig)
    assert check["colour_clashes"] == clashes and check["legend_labels"] == ["DPAM", "ours", "paper"]


def test_the_books_palette_gives_no_two_of_its_names_one_colour_in_a_figure():
    """colours() of one figure: a name outside the table never takes a colour a known name has;
    the metrics, loss terms and datasets the issue found clashing now differ."""
    from anomclip.book.plots import colour, colours

    got = colours(["image AUROC", "pixel AUROC", "disc", "ring", "textures", "objects"])
    assert len(set(got.values())) == len(got)
    assert colour("local") != colour("image AUROC")  # chapter 3's local loss vs chapters 6 and 11
    assert colour("pixel AUROC") != colour("textures")  # chapter 6's two figures
    assert colour("ours") not in {colour("V-V"), colour("naive two-pass"), colour("AnomalyCLIP")}  # chapter 12
    assert colour("paper") not in {colour("naive two-pass"), colour("untrained")}


# --------------------------------------------------------------------------- what a page shows
def _nb(*cells):
    return {"cells": [{"cell_type": "code", "metadata": {"tags": tags}, "outputs": outputs, "source": ""}
                      for tags, outputs in cells]}


SMOKE_BOX = {"output_type": "display_data",
             "data": {"text/html": "<div class='admonition caution'><p class='admonition-title'>Smoke run</p></div>"}}


def test_a_shown_none_output_fails_and_a_hidden_one_does_not():
    from anomclip.book import pagecheck

    none = {"output_type": "display_data", "data": {"text/plain": "None"}}
    text = {"output_type": "display_data", "data": {"text/plain": "None of these", "text/html": "<p>x</p>"}}
    nb = _nb(([], [none]), (["remove-output"], [none]), ([], [text]), (["remove-input"], [none]))
    assert [i for i, _ in pagecheck.shown_none(nb)] == [1, 4]


def test_a_shown_parameters_cell_fails():
    from anomclip.book import pagecheck

    nb = _nb((["parameters"], []), (["parameters", "remove-cell"], []), (["injected-parameters"], []),
             (["injected-parameters", "remove-cell"], []), (["remove-input"], []))
    assert [i for i, _ in pagecheck.shown_parameters(nb)] == [1, 3]


def test_paper_on_a_smoke_runs_label_fails():
    from anomclip.book import labels, pagecheck

    prov = {"provenance": {"recipe": {"name": "paper", "layers": [0.25, 1.0], "lam": 1.0, "epochs": 2}}}
    box = labels.provenance_box(prov)
    assert "four-layer" in box.html and not pagecheck.RECIPE_ROW.search(box.html)  # the book's own box is clean
    old = {"output_type": "display_data", "data": {"text/html": box.html.replace("four-layer", "paper"),
                                                   "text/markdown": box.markdown.replace("four-layer", "paper")}}
    table = {"output_type": "display_data", "data": {"text/html": (
        '<table><thead><tr><th class="blank level0"></th><th class="col_heading level0 col0">paper</th></tr></thead>'
        '<tr><th id="r0" class="row_heading level0 row0">(a) paper: 4 layers, λ=1</th><td>1</td></tr>'
        '<tr><th id="r1" class="row_heading level0 row1">(a) four-layer: 4 layers</th><td>1</td></tr></table>')}}
    legend = {"output_type": "display_data",
              "data": {"image/png": "", figcheck.MIME: {"legend_overlaps": [], "legend_labels": ["paper", "4 layers (paper)",
                                                                                               "paper recipe"]}}}
    smoke = _nb(([], [SMOKE_BOX]), ([], [old]), ([], [table]), ([], [legend]))
    found = pagecheck.paper_labels(smoke)
    assert found == [(2, 'provenance box: recipe "paper"'), (3, "label '(a) paper: 4 layers, λ=1'"),
                     (4, "label 'paper recipe'")]  # a column "paper" (the paper's numbers) is what the word is for
    real = _nb(([], [old]), ([], [table]))  # a paper-profile page: no smoke box, nothing to say
    assert pagecheck.paper_labels(real) == []


def test_page_problems_name_the_chapter_and_cell():
    from anomclip.book import pagecheck

    nb = _nb((["parameters"], []), ([], [{"output_type": "display_data", "data": {"text/plain": "None"}}]))
    assert pagecheck.page_problems("05_medical.ipynb", nb) == [
        "05_medical.ipynb cell 1: parameters cell shown (tags: ['parameters'])",
        "05_medical.ipynb cell 2: a bare None output"]


def _check_book():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("check_book_fc", Path(__file__).parents[1] / "tools" / "check_book.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_table_taller_than_1500_px_fails_unless_folded():
    """The browser gives the heights of the visible tables (a folded one is not visible)."""
    cb = _check_book()
    found = cb.tall_tables([[2800, "Table 7 — textures"], [1500, "just fits"], [300, "short"]])
    assert len(found) == 1 and "2800 px" in found[0] and "Table 7" in found[0]
    assert cb.tall_tables([]) == []


def test_the_book_check_reports_colour_clashes_and_page_problems(tmp_path):
    import json

    cb = _check_book()
    fig_out = {"output_type": "display_data", "data": {"image/png": "", figcheck.MIME: {
        "legend_overlaps": [], "colour_clashes": [{"colour": "#1f77b4", "style": ["", "", ""],
                                                   "labels": ["pixel AUROC", "textures"]}]}}}
    nb = _nb((["parameters"], []), ([], [fig_out]))
    (tmp_path / "06_x.ipynb").write_text(json.dumps(nb))
    problems = cb.figure_problems(tmp_path)
    assert "06_x.ipynb cell 1: parameters cell shown (tags: ['parameters'])" in problems
    assert "06_x.ipynb cell 2: one colour (#1f77b4) for 'pixel AUROC' and 'textures' in one figure" in problems
    assert len(problems) == 2
