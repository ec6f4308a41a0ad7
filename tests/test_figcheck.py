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
