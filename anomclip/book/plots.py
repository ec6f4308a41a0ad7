"""Every figure of the book: sized for the page, on fixed scales, with one colour per dataset.

Rules every helper here follows (tests check them):

* a figure is at most :data:`COLUMN_WIDTH_IN` inches wide (the book's ~690 px text column at
  96 dpi), so it is never shrunk by the page; no text is smaller than :data:`MIN_FONT_PT`
  points (≈ the body's small print);
* anomaly maps are probabilities, drawn on one fixed scale [0, 1] with a colorbar; where a
  panel uses its own scale (attention weights), the figure says so;
* a dataset keeps its colour in every figure (:func:`dataset_colors`; a smoke domain takes the
  colour of the paper dataset it stands in for).

Nothing here trains or evaluates; the numbers come from the runner, labels from
:mod:`anomclip.book.labels`.
"""
from __future__ import annotations

import functools
import math
import re

import numpy as np
import pandas as pd
import torch

from ..engine.metrics import auroc_or_nan
from ..model.scoring import gaussian_blur
from .labels import (
    DATASET_ORDER,
    MISSING,
    MODE_NAMES,
    PAPER_LABEL,
    SHOWN,
    SMOKE_STANDINS,
    case_name,
    metric_name,
    standin_label,
)

#: the book's text column (~690 px) at 96 dpi, less the padding of a tight bounding box
COLUMN_WIDTH_IN = 7.0
DPI = 96
#: the smallest text of any figure (points; 10 pt = 13.3 px at 96 dpi)
MIN_FONT_PT = 10
MAP_CMAP = "jet"
RC = {
    "figure.dpi": DPI, "savefig.dpi": DPI, "font.size": MIN_FONT_PT, "axes.titlesize": MIN_FONT_PT + 1,
    "axes.labelsize": MIN_FONT_PT, "xtick.labelsize": MIN_FONT_PT, "ytick.labelsize": MIN_FONT_PT,
    "legend.fontsize": MIN_FONT_PT, "legend.title_fontsize": MIN_FONT_PT, "figure.titlesize": MIN_FONT_PT + 1,
    "figure.max_open_warning": 0,
}


def book_style() -> None:
    """Apply the book's figure style (seaborn whitegrid + :data:`RC`) to the whole session."""
    import matplotlib as mpl
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    mpl.rcParams.update(RC)


def _styled(fn):
    """Draw inside the book's rc settings, so a helper's figure looks the same wherever it runs."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import matplotlib.pyplot as plt

        with plt.rc_context(RC):
            return fn(*args, **kwargs)
    return wrapper


def _figure(height: float, width: float = COLUMN_WIDTH_IN, layout: str | None = "constrained"):
    import matplotlib.pyplot as plt

    return plt.figure(figsize=(min(width, COLUMN_WIDTH_IN), height), layout=layout)


def _np(x) -> np.ndarray:
    return np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=float)


# --------------------------------------------------------------------------- the one colour table
_UNTRAINED, _OFFICIAL = "#7f7f7f", "#d62728"
#: the book's one colour table: every method, DPAM mode, setting, loss term, image class and metric
#: keeps this colour in every figure of every chapter (datasets: :data:`DATASET_PALETTE`; see
#: :func:`colour`). The families take colours apart from each other: the metrics the dark shades
#: of tab20b, the loss terms and image classes Dark2's, the datasets tab10/tab20 (so a metric is
#: never coloured like a dataset, nor a loss term like a metric); within a family no two entries
#: share a colour, except the names of one thing ("no DPAM" is Q-K; "official" is AnomalyCLIP).
COLOURS = {
    # the methods, in the paper's order; AnomalyCLIP is red like its own mode (V-V) and setting
    "CLIP": "#17becf", "CLIP-AC": "#9edae5", "WinCLIP": "#bcbd22", "VAND": "#e377c2", "CoOp": "#8c564b",
    "AnomalyCLIP": _OFFICIAL,
    # the methods published after it (chapter 15): colours of no other family
    "Crane": "#1a9850", "AdaptCLIP": "#e08214", "MuSc": "#2166ac",
    # DPAM modes (Q-K is the original attention: "no DPAM" shares its colour), apart from the
    # datasets' tab10 (chapter 9 draws modes and datasets in consecutive figures); V-V is AnomalyCLIP's
    "Q-K": "#01665e", "no DPAM": "#01665e", "Q-Q": "#b35806", "K-K": "#542788", "V-V": _OFFICIAL,
    "Q-Q+K-K+V-V": "#5aae61", "Q-K+Q-Q+K-K+V-V": "#c2a5cf",
    # settings: the official recipe and tuned prompts in red, untrained prompts in grey
    "official": _OFFICIAL, "official (released code)": _OFFICIAL, "full": _OFFICIAL, "tuned": _OFFICIAL,
    "after training": _OFFICIAL, "untrained": _UNTRAINED, "untrained prompts": _UNTRAINED,
    "before (init)": _UNTRAINED, "no local, no global": _UNTRAINED,
    "four-layer": "#e7298a",
    # whose number: the paper's (dark grey) and ours (deep pink: not a method's, mode's or metric's)
    "paper": "#4d4d4d", "ours": "#c51b7d",
    # the forward passes of chapter 12: plain CLIP (its method's colour), DPAM (AnomalyCLIP's), two passes
    "naive two-pass": "#bf812d",
    "object-agnostic": _OFFICIAL, "object-aware": "#9467bd",
    "zero-shot": _OFFICIAL, "in-domain (scored on its tuning images)": "#ff7f0e",
    # loss terms (Dark2) and the loss set-ups of Tables 5 and 11 (a set-up takes its term's colour)
    "total": "#222222", "global": "#7570b3", "local": "#66a61e", "focal": "#e6ab02", "dice": "#a6761d",
    "local + global": _OFFICIAL, "focal + dice": _OFFICIAL, "global only": "#7570b3", "no focal, no dice": "#7570b3",
    "local only": "#66a61e", "focal only": "#e6ab02", "dice only": "#a6761d",
    # image classes (and pixel classes)
    "normal": "#1b9e77", "anomalous": _OFFICIAL,
    # metrics (display names): the dark shades of tab20b
    "pixel AUROC": "#393b79", "pixel AUPRO": "#843c39", "image AUROC": "#637939", "image AP": "#7b4173",
    "pixel AUPRO (authors' code)": "#d6616b", "image F1-max": "#8ca252", "pixel AP": "#6b6ecf",
    "pixel F1-max": "#ad494a",
}
#: one colour per paper dataset, in :data:`DATASET_ORDER` (tab10, then the dark half of tab20)
DATASET_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                   "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
                   "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5"]
#: colours for names outside the table (categories…), handed out in the order a figure gives them,
#: skipping any colour the figure's other names already have (tab20c, then tab20b's light shades)
_EXTRA = ["#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363", "#6baed6", "#fd8d3c", "#74c476", "#9e9ac8",
          "#969696", "#9ecae1", "#fdae6b", "#a1d99b", "#bcbddc", "#5254a3", "#8c6d31", "#bd9e39", "#e7ba52",
          "#a55194", "#ce6dbd"]


def colour(name) -> str | None:
    """The book's colour of one entity (hex), or None for a name the table does not know.

    Looked up, in order: the table :data:`COLOURS`; a paper dataset (:data:`DATASET_ORDER`); a
    smoke domain (its stand-in's colour, also when labelled "objects (stands in for VisA)");
    "tuned on X" (X's colour); "(a) X: …" (X's colour); a label with a parenthesis ("Q-K (no DPAM)": its head, "Q-K")."""
    n = str(name).strip()
    if n in COLOURS:
        return COLOURS[n]
    if n in DATASET_ORDER:
        return DATASET_PALETTE[DATASET_ORDER.index(n) % len(DATASET_PALETTE)]
    if n in SMOKE_STANDINS:
        return colour(SMOKE_STANDINS[n])
    if n.startswith("tuned on "):
        return colour(n[len("tuned on "):])
    if re.match(r"^\([a-z]\)\s*[^:]+:", n):  # chapter 14's "(a) four-layer: 4 layers, λ=1": its recipe's
        return colour(re.match(r"^\([a-z]\)\s*([^:]+):", n).group(1).strip())
    if " (" in n:
        return colour(n.split(" (")[0])
    return None


def colours(names) -> dict:
    """``{name: colour}`` for the names of one figure: :func:`colour` for every name the book
    knows; the others (e.g. categories) get the colours of :data:`_EXTRA` in the order given,
    skipping those the figure's known names have (no two names of a figure share a colour unless
    the table gives them one)."""
    names = list(dict.fromkeys(names))
    out = {n: colour(n) for n in names}
    taken = {c for c in out.values() if c is not None}
    free = [c for c in _EXTRA if c not in taken] or _EXTRA
    extra = 0
    for n in names:
        if out[n] is None:
            out[n] = free[extra % len(free)]
            extra += 1
    return out


def dataset_colors(names) -> dict:
    """A fixed colour for each dataset name: the paper's datasets by :data:`DATASET_ORDER`, a smoke
    domain by the dataset it stands in for, anything else after those (in the order given)."""
    return colours(names)


def _no_ticks(axes):
    for a in np.ravel(axes):
        a.set_xticks([])
        a.set_yticks([])


# --------------------------------------------------------------------------- data and maps
@_styled
def show_samples(rgb, masks, titles, per_row: int = 6, title: str | None = None):
    """Images with their ground-truth masks below them, ``per_row`` images per row."""
    n = len(rgb)
    rows = math.ceil(n / per_row)
    side = COLUMN_WIDTH_IN / per_row
    fig = _figure(rows * 2 * side + 0.5 * rows + 0.4)
    axes = fig.subplots(2 * rows, per_row, squeeze=False)
    for k in range(rows * per_row):
        r, c = 2 * (k // per_row), k % per_row
        if k >= n:
            axes[r, c].axis("off"), axes[r + 1, c].axis("off")
            continue
        axes[r, c].imshow(rgb[k])
        axes[r, c].set_title(titles[k])
        axes[r + 1, c].imshow(_np(masks[k]), cmap="gray", vmin=0, vmax=1)
    _no_ticks(axes)
    if title:
        fig.suptitle(title)
    return fig


@_styled
def show_maps(images, maps, masks=None, titles=None, scores=None, threshold: float | None = None):
    """One column per image: the image (title: name and image score), its ground-truth mask, and
    the anomaly map on the fixed scale [0, 1] (colorbar) overlaid on the image."""
    import matplotlib.pyplot as plt

    n = len(images)
    rows = 3 if masks is not None else 2
    side = min(1.9, COLUMN_WIDTH_IN / (n + 0.3))
    fig = _figure(side * rows + 0.9)
    axes = fig.subplots(rows, n, squeeze=False)
    im = None
    for j in range(n):
        img = np.asarray(images[j])
        axes[0, j].imshow(img)
        t = titles[j] if titles is not None else f"image {j}"
        if scores is not None:
            t = f"{t}\nscore {float(scores[j]):.2f}"
        axes[0, j].set_title(t)
        r = 1
        if masks is not None:
            m = masks[j]
            m = np.zeros(img.shape[:2]) if m is None else _np(m).squeeze()
            axes[1, j].imshow(m, cmap="gray", vmin=0, vmax=1)
            if j == 0:
                axes[1, j].set_ylabel("mask")
            r = 2
        axes[r, j].imshow(img)
        im = axes[r, j].imshow(_np(maps[j]), cmap=MAP_CMAP, vmin=0.0, vmax=1.0, alpha=0.5)
        if j == 0:
            axes[r, j].set_ylabel("map")
    _no_ticks(axes)
    fig.colorbar(plt.cm.ScalarMappable(norm=im.norm, cmap=MAP_CMAP), ax=axes[-1, :], orientation="horizontal",
                 fraction=0.08, shrink=0.6, label="anomaly map: P(anomalous), fixed scale 0–1")
    return fig


# --------------------------------------------------------------------------- training
def _loss_frame(history) -> pd.DataFrame:
    df = pd.DataFrame(history)
    if "step" not in df.columns:
        df["step"] = np.arange(len(df))
    df = df.rename(columns={"loss": "total"})
    keep = [c for c in ("total", "global", "local") if c in df.columns]
    return df.melt(id_vars=[c for c in ("epoch", "step") if c in df.columns], value_vars=keep,
                   var_name="term", value_name="value")


@_styled
def loss_curves(history, x: str = "step", title: str | None = None, ax=None, logy: bool = True):
    """Total, global and local loss against ``x`` ("step" or "epoch").

    ``history`` is a list of dicts (``exp.training["history"]`` or ``["steps"]``) or a dict
    ``{run label: list}`` for several runs. The total is ``global + λ · local``; the local term is
    drawn unweighted. Colours come from the book's table (:func:`colours`): one colour per term,
    or, when several runs record a single term, one colour per run (and the term on the axis).
    The legend sits outside the axes, so it never covers a curve."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    runs = history if isinstance(history, dict) else {"": history}
    frames = []
    for name, h in runs.items():
        f = _loss_frame(h)
        f["run"] = name
        frames.append(f)
    df = pd.concat(frames, ignore_index=True)
    if ax is None:
        _, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 3.4), layout="constrained")
    terms = list(dict.fromkeys(df["term"]))
    by_run = len(runs) > 1 and len(terms) == 1
    hue = "run" if by_run else "term"
    style = "run" if len(runs) > 1 and not by_run else None
    sns.lineplot(data=df, x=x if x in df.columns else "step", y="value", hue=hue, style=style,
                 palette=colours(df[hue]), marker="o" if x == "epoch" else None, ax=ax)
    what = f"{terms[0]} loss" if len(terms) == 1 else "loss"
    ax.set_ylabel(what + (" (log scale)" if logy else ""))
    if logy:
        ax.set_yscale("log")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), title=None, frameon=False)
    if title:
        ax.set_title(title)
    return ax.figure


# --------------------------------------------------------------------------- ours vs paper
@_styled
def plot_compare(cmp: pd.DataFrame, order=None, metrics=("pixel_auroc", "image_auroc"), title: str | None = None,
                 ours_label: str = "ours"):
    """Bars of ours (left) and the paper (right) from :func:`anomclip.book.labels.compare`, one row of
    panels per metric, one bar colour per dataset (the paper's dataset: a smoke domain takes the
    colour of the dataset it stands in for). A missing number is a missing bar."""
    import seaborn as sns

    d = cmp[cmp["metric"].isin(metrics)]
    order = list(order or dict.fromkeys(d["label"]))
    datasets = [x for x in DATASET_ORDER if x in set(d["dataset"])] + sorted(set(d["dataset"]) - set(DATASET_ORDER))
    colors = dataset_colors(datasets)
    h = 0.9 + len(metrics) * (0.55 + 0.28 * len(order) * max(1, len(datasets)) ** 0.5)
    fig = _figure(h)
    axes = fig.subplots(len(metrics), 2, squeeze=False, sharey=True)
    for i, m in enumerate(metrics):
        for j, (col, label) in enumerate((("ours", ours_label), ("paper", PAPER_LABEL))):
            ax = axes[i, j]
            sub = d[d["metric"] == m].assign(value=lambda x: x[col].astype(float)).dropna(subset=["value"])
            if len(sub):
                sns.barplot(data=sub, y="label", x="value", hue="dataset", hue_order=datasets, order=order,
                            palette=colors, ax=ax, orient="h", legend=False)
            else:
                ax.text(50, 0, "no numbers", ha="center", va="center")
            ax.axvline(50, color="grey", lw=0.8, ls=":")
            ax.set_xlim(0, 100)
            ax.set_xlabel(f"{metric_name(m)} (%)")
            ax.set_ylabel("")
            ax.set_title(label if i == 0 else "")
    import matplotlib.patches as mpatches

    def ours_on(ds):
        return [o for o in dict.fromkeys(d.loc[d["dataset"] == ds, "ours on"].dropna()) if o != ds]

    stand_in = any(ours_on(ds) for ds in datasets)

    def name(ds):  # ours on a smoke domain: "objects (stands in for VisA)", never the paper's name alone
        if ours_on(ds):
            return " / ".join(ours_on(ds))
        return f"{ds} (paper only)" if stand_in else ds

    fig.legend(handles=[mpatches.Patch(color=colors[ds], label=name(ds)) for ds in datasets], loc="outside lower center",
               ncol=min(2 if stand_in else 4, len(datasets)),
               title=("zero-shot on (ours: smoke domain; paper: the dataset it stands in for)" if stand_in
                      else "zero-shot on (dotted line: chance)"))
    if title:
        fig.suptitle(title)
    return fig


@_styled
def plot_dots(frame: pd.DataFrame, metrics=SHOWN, title: str | None = None, xlabel: str = "zero-shot, %"):
    """A dot plot: one panel per dataset (two side by side), one row per metric, one dot per label (long frame:
    label, dataset, metric key, value as a fraction) on a shared 0–100 % axis. The labels of a
    row are spread vertically (each its own lane, marker and colour from :func:`colours`), so
    dots with the same value stay visible side by side instead of on top of one another; a thin
    line joins each row's dots to show its range."""
    datasets = list(dict.fromkeys(frame["dataset"]))
    labels = list(dict.fromkeys(frame["label"]))
    metrics = [m for m in metrics if m in set(frame["metric"])]
    colors = colours(labels)
    markers = ["o", "s", "^", "D", "v", "P", "X", "*"]
    lane = 0.8 / max(1, len(labels))
    cols = min(2, len(datasets))
    rows = math.ceil(len(datasets) / cols)
    fig = _figure(1.0 + rows * (0.5 + len(metrics) * (0.17 * len(labels) + 0.1)))
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True).ravel()
    for ax in axes[len(datasets):]:
        ax.axis("off")
    for ax, ds in zip(axes, datasets):
        sub = frame[frame["dataset"] == ds]
        for r, m in enumerate(metrics):
            vals = []
            for i, lb in enumerate(labels):
                v = sub[(sub["label"] == lb) & (sub["metric"] == m)]["value"]
                if not len(v) or pd.isna(v.iloc[0]):
                    continue
                y = r + (i - (len(labels) - 1) / 2) * lane
                ax.plot([100 * float(v.iloc[0])], [y], ls="none", marker=markers[i % len(markers)], ms=7,
                        color=colors[lb], label=lb if r == 0 else "_nolegend_")
                vals.append(100 * float(v.iloc[0]))
            if vals:
                ax.hlines(r, min(vals), max(vals), color="#bbbbbb", lw=1, zorder=0)
        ax.set_yticks(range(len(metrics)), [metric_name(m).replace(" ", "\n") for m in metrics])
        ax.set_ylim(len(metrics) - 0.5, -0.5)
        ax.set_xlim(0, 100)
        ax.axvline(50, color="grey", lw=0.8, ls=":")
        ax.set_title(standin_label(str(ds)).replace(" (", "\n("))
        ax.set_xlabel(xlabel + " (dotted: 50)")
    from matplotlib.lines import Line2D

    fig.legend(handles=[Line2D([], [], ls="none", marker=markers[i % len(markers)], ms=7, color=colors[lb], label=lb)
                        for i, lb in enumerate(labels)], loc="outside lower center", ncol=min(4, len(labels)))
    if title:
        fig.suptitle(title)
    return fig


@_styled
def bars(frame: pd.DataFrame, x: str = "metric", hue: str = "label", col: str = "dataset", title: str | None = None,
         ylabel: str = "%", chance: float | None = 50.0, logy: bool = False):
    """Grouped bars, one panel per ``col`` value stacked vertically (long frame; ``value`` in %);
    ``chance`` draws a dotted reference line, ``logy`` a log scale (said on the axis). With
    ``x="metric"`` the chance line is drawn over the AUROC bars only (50 % is chance for AUROC,
    not for AP or AUPRO). Colours: the book's table (:func:`colours`)."""
    import seaborn as sns

    panels = list(dict.fromkeys(frame[col]))
    hues = list(dict.fromkeys(frame[hue]))
    palette = colours(hues)
    fig = _figure(2.4 * len(panels) + 1.0)
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, p in zip(axes, panels):
        sub = frame[frame[col] == p]
        sns.barplot(data=sub, x=x, y="value", hue=hue, hue_order=hues, palette=palette, ax=ax, errorbar=None,
                    legend=False)
        if chance is not None and x == "metric":
            for i, t in enumerate(ax.get_xticklabels()):
                if "AUROC" in t.get_text():
                    ax.hlines(chance, i - 0.45, i + 0.45, color="grey", lw=0.8, ls=":")
        elif chance is not None:
            ax.axhline(chance, color="grey", lw=0.8, ls=":")
        if logy:
            ax.set_yscale("log")
        ax.set_title(standin_label(str(p)))
        ax.set_xlabel("")
        ax.set_ylabel(ylabel + (" (log scale)" if logy else ""))
    import matplotlib.patches as mpatches

    fig.legend(handles=[mpatches.Patch(color=palette[h], label=standin_label(str(h))) for h in hues],
               loc="outside lower center", ncol=min(3, len(hues)))
    if title:
        fig.suptitle(title)
    return fig


# --------------------------------------------------------------------------- attention (Fig. 3)
def _grid(n_patches: int) -> int:
    return int(round(math.sqrt(n_patches)))


def _mode_title(m: str) -> str:
    name = MODE_NAMES.get(m, m)
    parts = name.split("+")
    return name if len(parts) < 3 else "+".join(parts[:2]) + "\n+" + "+".join(parts[2:])


@_styled
def draw_attention(rgb, attn: dict, image: int = 0, block: int | None = None, query=(0.5, 0.5), modes=None,
                   fig=None):
    """One image with its query patch, and the attention of that patch over all patches per mode
    (top), with each mode's head-averaged patch × patch attention matrix (bottom). Each panel has
    its own colour scale (the weights of different modes differ by orders of magnitude)."""
    import matplotlib.pyplot as plt

    block = block or max(attn)
    maps = attn[block]
    modes = list(modes or maps)
    n = next(iter(maps.values())).shape[-1] - 1
    g = _grid(n)
    r = min(g - 1, int(query[0] * g))
    c = min(g - 1, int(query[1] * g))
    q = 1 + r * g + c  # token index (0 = CLS)
    if fig is None:
        head = max(_mode_title(m).count("\n") + 2 for m in modes)  # the mode's name and "self …"
        fig = _figure(2 * COLUMN_WIDTH_IN / (len(modes) + 1) + 0.2 * head + 1.0)
    axes = fig.subplots(2, len(modes) + 1, squeeze=False)
    size = rgb.shape[1]
    axes[0, 0].imshow(rgb[image])
    axes[0, 0].add_patch(plt.Rectangle((c * size / g, r * size / g), size / g, size / g, fill=False, ec="red", lw=2))
    axes[0, 0].set_title(f"query ({r},{c})")
    axes[1, 0].axis("off")
    axes[1, 0].text(0.0, 0.5, f"block {block}\nrows: query,\ncols: key", va="center")
    for j, m in enumerate(modes, start=1):
        a = maps[m][image].float()  # [N+1, N+1], head-averaged
        row = a[q, 1:].reshape(g, g).numpy()
        axes[0, j].imshow(rgb[image], alpha=0.5)
        axes[0, j].imshow(row, cmap="inferno", alpha=0.7, extent=(0, size, size, 0), interpolation="nearest")
        axes[0, j].set_title(f"{_mode_title(m)}\nself {a[q, q]:.2f}")
        axes[1, j].imshow(a[1:, 1:].numpy(), cmap="viridis", interpolation="nearest")
    _no_ticks(axes)
    fig.suptitle("attention weights; each panel on its own colour scale")
    return fig


@_styled
def plot_prominence(prominence: pd.DataFrame, dpam_start: int, n_tokens: int, title: str | None = None):
    """Diagonal prominence per block (ratio, top; mean weight on itself, bottom), one line per
    mode; dashed: the first DPAM block; dotted: no preference (ratio 1, weight 1/T)."""
    import seaborn as sns

    fig = _figure(5.6)
    axes = fig.subplots(2, 1, sharex=True)
    palette = colours(prominence["mode"])
    sns.lineplot(data=prominence, x="block", y="ratio", hue="mode", palette=palette, marker="o", ax=axes[0])
    axes[0].set_ylim(0, 1.3 * prominence["ratio"].max())
    axes[0].legend(title=None, ncol=4, loc="upper center")
    axes[0].set_ylabel("self / other weight")
    sns.lineplot(data=prominence, x="block", y="self", hue="mode", palette=palette, marker="o", ax=axes[1],
                 legend=False)
    axes[1].set_ylabel("weight on itself")
    for ax, chance in zip(axes, (1.0, 1.0 / n_tokens)):
        ax.axvline(dpam_start, color="grey", ls="--", lw=0.8)
        ax.axhline(chance, color="grey", ls=":", lw=0.8)
    if title:
        fig.suptitle(title)
    return fig


@_styled
def draw_maps(rgb, masks, maps: dict, sigma: float = 4.0, threshold: float | None = None, modes=None,
              images=None, fig=None, title: str | None = None, what: str | None = None):
    """Rows = images; columns = the image with its mask (red contour), then each mode's map
    smoothed with σ on the fixed scale [0, 1] (or, with ``threshold``, the map's pixels at or
    above that value over the image). Each panel's title: that map's pixel AUROC on the image.
    ``sigma=0`` draws maps that are already final (e.g. one per method, from :func:`anomclip.book.examples.method_maps`);
    ``what`` replaces the colorbar's description of the maps."""
    import matplotlib.pyplot as plt

    modes = list(modes or maps)
    images = list(range(len(rgb))) if images is None else list(images)
    sm = {m: gaussian_blur(torch.as_tensor(maps[m]).float(), sigma).numpy() for m in modes}
    side = min(1.8, COLUMN_WIDTH_IN / (len(modes) + 1.2))
    if fig is None:  # each row's panels carry a one-line title; the first row's also the modes (≤ 3 lines)
        head = max(_mode_title(m).count("\n") + 1 for m in modes)
        fig = _figure((side + 0.3) * len(images) + 0.2 * head + 1.6)
    axes = np.atleast_2d(fig.subplots(len(images), len(modes) + 1, squeeze=False))
    for i, k in enumerate(images):
        ax = axes[i, 0]
        ax.imshow(rgb[k])
        ax.contour(np.asarray(masks[k]), levels=[0.5], colors="red", linewidths=1)
        ax.set_title("image, mask" if i == 0 else "")
        for j, m in enumerate(modes, start=1):
            s = sm[m][k]
            ax = axes[i, j]
            if threshold is None:
                ax.imshow(s, cmap=MAP_CMAP, vmin=0.0, vmax=1.0)
            else:
                ax.imshow(rgb[k])
                ax.imshow(np.ma.masked_less(s, threshold), cmap="autumn", vmin=0.0, vmax=1.0, alpha=0.6)
            ax.contour(np.asarray(masks[k]), levels=[0.5], colors="white", linewidths=0.8)
            au = auroc_or_nan(s.ravel(), (np.asarray(masks[k]) > 0.5).ravel().astype(int))
            ax.set_title((f"{_mode_title(m)}\n" if i == 0 else "") + f"AUROC {MISSING if np.isnan(au) else f'{100 * au:.0f}'}")
    _no_ticks(axes)
    what = what or (f"smoothed map (σ = {sigma:g})" if threshold is None
                    else f"map ≥ {threshold:g} (σ = {sigma:g})")
    fig.colorbar(plt.cm.ScalarMappable(norm=plt.Normalize(0, 1), cmap=MAP_CMAP if threshold is None else "autumn"),
                 ax=axes[:, 1:], orientation="horizontal", fraction=0.05, shrink=0.6,
                 label=f"{what}: P(anomalous), fixed scale 0–1")
    if title:
        fig.suptitle(title)
    return fig



# --------------------------------------------------------------------------- failure cases
@_styled
def plot_distributions(frame: pd.DataFrame, value: str = "score", hue: str = "label", col: str = "category",
                       title: str | None = None, bins: int = 20, threshold: float | None = None,
                       logy: bool = False):
    """One histogram panel per category: the score distributions of normal vs anomalous (densities,
    so that both classes show whatever their counts); ``threshold`` draws a dotted line; ``logy``
    a log density axis (said on the axis), for values piled up at 0 or 1 (pixel scores) that would
    flatten the rest of the distribution on a linear axis."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    order = sorted(frame[hue].unique(), key=lambda h: h != "normal")
    cols = list(dict.fromkeys(frame[col]))
    ncol = min(4, len(cols))
    fig = _figure(2.0 * math.ceil(len(cols) / ncol) + 1.2)
    axes = np.atleast_1d(fig.subplots(math.ceil(len(cols) / ncol), ncol, squeeze=False).ravel())
    colors = colours(order)
    for ax, c in zip(axes, cols):
        sns.histplot(data=frame[frame[col] == c], x=value, hue=hue, hue_order=order, bins=bins, stat="density",
                     common_norm=False, element="step", ax=ax, palette=colors, legend=False)
        if threshold is not None:
            ax.axvline(threshold, color="grey", lw=0.8, ls=":")
        if logy:
            ax.set_yscale("log")
        ax.set_title(str(c))
        ax.set_xlabel(value)
        ax.set_ylabel(("density (log)" if logy else "density") if ax.get_subplotspec().is_first_col() else "")
    for ax in axes[len(cols):]:
        ax.axis("off")
    import matplotlib.patches as mpatches

    fig.legend(handles=[mpatches.Patch(color=colors.get(h, "grey"), label=h) for h in order],
               loc="outside lower center", ncol=len(order))
    if title:
        fig.suptitle(title)
    plt.close(fig)
    return fig


@_styled
def draw_cases(rgb, masks, raw, cases: pd.DataFrame, threshold: float, sigma: float = 4.0, images=None, fig=None):
    """Rows = cases: image + mask contour, smoothed map (σ, fixed scale [0, 1]), and the map's
    pixels at or above ``threshold`` over the image (with the share of pixels they cover)."""
    import matplotlib.pyplot as plt

    images = list(range(len(rgb))) if images is None else list(images)
    sm = gaussian_blur(torch.as_tensor(raw).float(), sigma).numpy()
    if fig is None:
        fig = _figure(2.0 * len(images) + 1.2, width=6.4)
    axes = np.atleast_2d(fig.subplots(len(images), 3, squeeze=False))
    for i, k in enumerate(images):
        c = cases.iloc[k]
        gt = np.asarray(masks[k]) > 0.5
        s = sm[k]
        axes[i, 0].imshow(rgb[k])
        if gt.any():
            axes[i, 0].contour(gt, levels=[0.5], colors="red", linewidths=1)
        axes[i, 0].set_title(f"{c['kind'].upper()} {case_name(c['category'], c.get('path', ''), c['i'])}\n"
                             f"score {c['score']:.2f}", fontsize=MIN_FONT_PT)
        axes[i, 1].imshow(s, cmap=MAP_CMAP, vmin=0.0, vmax=1.0)
        au = auroc_or_nan(s.ravel(), gt.ravel().astype(int))
        axes[i, 1].set_title(f"map, σ = {sigma:g}" + ("" if np.isnan(au) else f"\npixel AUROC {100 * au:.0f}"))
        axes[i, 2].imshow(rgb[k])
        axes[i, 2].imshow(np.ma.masked_less(s, threshold), cmap="autumn", vmin=0.0, vmax=1.0, alpha=0.6)
        if gt.any():
            axes[i, 2].contour(gt, levels=[0.5], colors="white", linewidths=0.8)
        flagged = s >= threshold
        axes[i, 2].set_title(f"≥ {threshold:.2f}: {100 * flagged.mean():.0f} % px"
                             + (f"\nrecall {100 * (flagged & gt).sum() / gt.sum():.0f} %" if gt.any() else ""))
    _no_ticks(axes)
    fig.colorbar(plt.cm.ScalarMappable(norm=plt.Normalize(0, 1), cmap=MAP_CMAP), ax=axes[:, 1],
                 orientation="horizontal", fraction=0.05, label="P(anomalous), 0–1")
    return fig


@_styled
def plot_sweeps(frame: pd.DataFrame, marks: dict, metrics, title: str | None = None):
    """One panel per sweep (long frame: sweep, setting, metric key, score in %), one line per
    metric (named by its display name); a dotted line marks each sweep's value in ``marks`` (the
    official one)."""
    sweeps = list(dict.fromkeys(frame["sweep"]))
    fig = _figure(3.0)
    axes = fig.subplots(1, len(sweeps), sharey=True, squeeze=False)[0]
    colors = {m: c for m, c in zip(metrics, colours([metric_name(m) for m in metrics]).values())}
    for ax, sw in zip(axes, sweeps):
        sub = frame[(frame["sweep"] == sw) & frame["metric"].isin(metrics)].sort_values("setting")
        for m in metrics:
            s = sub[sub["metric"] == m]
            ax.plot(s["setting"], s["score"], marker="o", color=colors[m], label=metric_name(m))
        if sw in marks:
            ax.axvline(marks[sw], color="grey", lw=0.8, ls=":")
        ax.set_xticks(sorted(sub["setting"].unique()))
        ax.set_xlabel(sw.split(" (")[0])
    axes[0].set_ylabel("%")
    from matplotlib.lines import Line2D

    fig.legend(handles=[Line2D([], [], color=colors[m], marker="o", label=metric_name(m)) for m in metrics],
               loc="outside lower center", ncol=len(metrics))
    if title:
        fig.suptitle(title)
    return fig
