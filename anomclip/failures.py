"""Helpers of the failure-analysis chapter (13): score distributions, worst cases, an explorer.

Everything here reads a results doc (``scores``/``labels``/``paths_by_category``, written by
:func:`anomclip.runner.evaluate_dataset`) or the maps an evaluation kept; nothing trains or
evaluates by itself except through :func:`anomclip.runner.run_experiment`.

* :func:`score_frame` — one row per image: category, label, image score, and how often the image
  is out-ranked by the other class of its category (the cause of a lost image AUROC).
* :func:`worst_cases` — the worst false positives (highest-ranked normal images) and false
  negatives (lowest-ranked anomalous images).
* :func:`pixel_score_frame` — a sample of pixel scores of normal and anomalous pixels.
* :func:`failure_explorer` — (image, threshold, σ) explorer of the worst cases; static unless
  ``live=True`` in a running Jupyter kernel with ipywidgets (as :func:`anomclip.widgets.map_explorer`).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .scoring import gaussian_blur
from .widgets import _auroc, _live_ok, checkpoint_path

KINDS = {"fp": "false positive (normal, scored high)", "fn": "false negative (anomalous, scored low)"}


# --------------------------------------------------------------------------- the run
def official_with_maps(P, recipe, src: str, reuse_folder: str = "main", folder: str = "ch13",
                       label: str = "AnomalyCLIP", device: str = "auto", force: bool = False):
    """:func:`~anomclip.runner.run_experiment` of ``recipe`` tuned on ``src``, keeping model and maps.

    The prompts chapter 04 tuned (``<reuse_folder>/<label>-from-<src>``, same recipe) are copied
    to ``folder`` first, so the run resumes a finished training instead of repeating it; without
    them (or with ``force``) the prompts are tuned here.
    """
    from .runner import run_experiment

    ckpt = checkpoint_path(P, folder, label, recipe, src)
    done = checkpoint_path(P, reuse_folder, label, recipe, src)
    if not force and done.is_file() and not ckpt.is_file():
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(done, ckpt)
    return run_experiment(recipe, P.datasets[src], [P.datasets[t] for t in P.protocol[src]], P.out / folder,
                          label=f"{label}-from-{src}", device=device, force=force, progress=False,
                          keep_model=True, keep_maps=True)


# --------------------------------------------------------------------------- image scores
def score_frame(doc: dict, dataset: str | None = None) -> pd.DataFrame:
    """One row per image of a results doc: dataset, category, i (index in the category), path,
    y (1 = anomalous), label, score and ``outranked``: the fraction of the *other* class of the
    same category on the wrong side of this image (normal: anomalous images scored lower;
    anomalous: normal images scored higher). 0 = no harm to the category's image AUROC."""
    dataset = dataset or doc["provenance"].get("data", {}).get("name", "")
    rows = []
    for cat, scores in doc["scores"].items():
        s = np.asarray(scores, dtype=float)
        y = np.asarray(doc["labels"][cat], dtype=int)
        paths = doc.get("paths_by_category", {}).get(cat, [""] * len(s))
        for i, (score, yi, path) in enumerate(zip(s, y, paths)):
            other = s[y != yi]
            if len(other) == 0:
                bad = np.nan
            elif yi == 0:
                bad = float(np.mean(other < score) + 0.5 * np.mean(other == score))
            else:
                bad = float(np.mean(other > score) + 0.5 * np.mean(other == score))
            rows.append({"dataset": dataset, "category": cat, "i": i, "path": path, "y": int(yi),
                         "label": "anomalous" if yi else "normal", "score": float(score), "outranked": bad})
    return pd.DataFrame(rows)


def worst_cases(frame: pd.DataFrame, kind: str = "fp", n: int = 4) -> pd.DataFrame:
    """The ``n`` worst false positives (``kind="fp"``: normal images that out-rank the most
    anomalous images of their category) or false negatives (``"fn"``: anomalous images
    out-ranked by the most normal ones); ties broken by the score."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}")
    sub = frame[frame["y"] == (0 if kind == "fp" else 1)]
    sub = sub.sort_values(["outranked", "score"], ascending=[False, kind == "fn"])
    return sub.head(n).assign(kind=kind)


# --------------------------------------------------------------------------- pixels
def samples_of(P, dataset: str, paths) -> list:
    """The :class:`~anomclip.data.Sample` of each image path of a results doc (matched on the
    last four path parts, so a doc written under another data root still resolves)."""
    from .data import load_index

    spec = P.datasets[dataset]
    idx = load_index(spec.root, spec.split, spec.categories)
    key = {Path(s.img_path).parts[-4:]: s for v in idx.values() for s in v}
    return [key[Path(p).parts[-4:]] for p in paths]


def masks_of(samples, size: int) -> np.ndarray:
    """Ground-truth masks ``[n, size, size]`` (zeros for normal images)."""
    from .data import load_mask

    return np.stack([load_mask(s.mask_path, size).numpy() if s.mask_path is not None
                     else np.zeros((size, size), np.float32) for s in samples])


def pixel_score_frame(P, dataset: str, doc: dict, maps: dict, n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """A random sample of at most ``n`` normal and ``n`` anomalous pixels per category:
    category, pixel ("normal"/"anomalous"), score (the smoothed map value)."""
    rng = np.random.default_rng(seed)
    rows = []
    for cat, m in maps.items():
        m = np.asarray(m)
        gt = masks_of(samples_of(P, dataset, doc["paths_by_category"][cat]), m.shape[-1]) > 0.5
        for name, sel in (("normal", ~gt), ("anomalous", gt)):
            v = m[sel]
            if len(v) > n:
                v = rng.choice(v, n, replace=False)
            rows.append(pd.DataFrame({"category": cat, "pixel": name, "score": v}))
    return pd.concat(rows, ignore_index=True)


def f1_threshold(scores, labels) -> float:
    """The score threshold with the best F1 (a common binarisation of anomaly maps)."""
    from sklearn.metrics import precision_recall_curve

    p, r, t = precision_recall_curve(np.asarray(labels).astype(int), np.asarray(scores))
    f1 = 2 * p * r / np.maximum(p + r, 1e-12)
    return float(t[np.argmax(f1[:-1])]) if len(t) else 0.5


def plot_distributions(frame: pd.DataFrame, value: str = "score", hue: str = "label", col: str = "category",
                       title: str | None = None, bins: int = 20):
    """One histogram panel per category: the score distributions of normal vs anomalous."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    order = sorted(frame[hue].unique(), key=lambda h: h != "normal")
    g = sns.displot(data=frame, x=value, hue=hue, hue_order=order, col=col, kind="hist", bins=bins,
                    stat="density", common_norm=False, element="step", height=2.6, aspect=1.1,
                    col_wrap=min(4, frame[col].nunique()), facet_kws={"sharey": False})
    g.set_titles("{col_name}")
    if title:
        g.figure.suptitle(title, y=1.04, fontsize=10)
    plt.close(g.figure)
    return g.figure


# --------------------------------------------------------------------------- cases
def case_batch(P, dataset: str, cases: pd.DataFrame, model):
    """``(rgb [B,S,S,3], masks [B,S,S], raw maps [B,S,S])`` of the chosen cases: the anomaly maps
    are recomputed *unsmoothed* with ``model`` so that the explorer can apply any σ."""
    from .widgets import batch_of, raw_maps_by_mode

    samples = samples_of(P, dataset, cases["path"])
    images, masks, _, rgb = batch_of(samples, model.image_size)
    mode = model.recipe.dpam
    raw = raw_maps_by_mode(model, images, model.encode_text(), modes=[mode])[mode]
    return rgb, masks.numpy(), raw


def draw_cases(rgb, masks, raw, cases: pd.DataFrame, threshold: float, sigma: float = 4.0, images=None,
               fig=None):
    """Rows = cases: image + mask contour, smoothed map (σ), map ≥ threshold over the image."""
    import matplotlib.pyplot as plt

    images = list(range(len(rgb))) if images is None else list(images)
    sm = gaussian_blur(torch.as_tensor(raw).float(), sigma).numpy()
    if fig is None:
        fig = plt.figure(figsize=(7.2, 2.3 * len(images) + 0.5))
    axes = np.atleast_2d(fig.subplots(len(images), 3, squeeze=False))
    for i, k in enumerate(images):
        c = cases.iloc[k]
        gt = np.asarray(masks[k]) > 0.5
        s = sm[k]
        axes[i, 0].imshow(rgb[k])
        if gt.any():
            axes[i, 0].contour(gt, levels=[0.5], colors="red", linewidths=1)
        axes[i, 0].set_title(f"{c['kind'].upper()} {c['category']} #{c['i']} ({c['label']})\n"
                             f"image score {c['score']:.3f}, out-ranks {100 * c['outranked']:.0f} %", fontsize=7)
        axes[i, 1].imshow(s, cmap="jet")  # own colour scale per image: the title gives its range
        au = _auroc(s.ravel(), gt.ravel().astype(int))
        axes[i, 1].set_title(f"map, σ = {sigma:g}" + ("" if np.isnan(au) else f"\npixel AUROC {100 * au:.0f}")
                             + f"\nrange {s.min():.3g}–{s.max():.3g}", fontsize=7)
        axes[i, 2].imshow(rgb[k])
        axes[i, 2].imshow(np.ma.masked_less(s, threshold), cmap="autumn", alpha=0.6)
        if gt.any():
            axes[i, 2].contour(gt, levels=[0.5], colors="white", linewidths=0.8)
        flagged = (s >= threshold)
        axes[i, 2].set_title(f"map ≥ {threshold:.3g}: {100 * flagged.mean():.0f} % of pixels"
                             + (f"\nrecall {100 * (flagged & gt).sum() / gt.sum():.0f} %" if gt.any() else ""),
                             fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def failure_explorer(rgb, masks, raw, cases: pd.DataFrame, threshold: float, live: bool = False,
                     image: str | int = "all", sigma: float = 4.0):
    """(image, threshold, σ) explorer of the worst cases.

    Static (default, and whenever no live Jupyter kernel with ipywidgets runs): draws the default
    state. ``live=True`` in Jupyter: an image menu ("all" or one case), a threshold slider (on the
    map values) and a σ slider redraw the figure.
    """
    import matplotlib.pyplot as plt

    def pick(image):
        return None if image == "all" else [int(image)]

    if not _live_ok(live):
        draw_cases(rgb, masks, raw, cases, threshold, sigma, pick(image))
        plt.show()
        return None
    import ipywidgets as W
    from IPython.display import display

    out = W.Output()
    hi = float(gaussian_blur(torch.as_tensor(raw).float(), 0.0).max())

    def redraw(image, threshold, sigma):
        with out:
            out.clear_output(wait=True)
            fig = draw_cases(rgb, masks, raw, cases, threshold, sigma, pick(image))
            plt.show()
            plt.close(fig)

    options = [("all", "all")] + [(f"{c.kind.upper()} {c.category} #{c.i}", str(k))
                                  for k, c in enumerate(cases.itertuples())]
    ctl = W.interactive(redraw,
                        image=W.Dropdown(options=options, value=str(image), description="image"),
                        threshold=W.FloatSlider(value=threshold, min=0.0, max=max(hi, threshold), step=0.005,
                                                readout_format=".3f", description="threshold"),
                        sigma=W.FloatSlider(value=sigma, min=0.0, max=12.0, step=0.5, description="σ"))
    display(W.VBox([W.HBox(list(ctl.children[:-1])), out]))
    ctl.update()
    return ctl
