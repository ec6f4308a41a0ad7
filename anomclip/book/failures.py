"""Helpers of the failure-analysis chapter (13): score distributions, worst cases, an explorer.

Everything here reads a results doc (``scores``/``labels``/``paths_by_category``, written by
:func:`anomclip.engine.runner.evaluate_dataset`) or the maps of :meth:`anomclip.engine.runner.Experiment.predict`;
nothing trains or evaluates.

* :func:`score_frame` — one row per image: category, label, image score, and how often the image
  is out-ranked by the other class of its category (the cause of a lost image AUROC).
* :func:`worst_cases` — the worst false positives (highest-ranked normal images) and false
  negatives (lowest-ranked anomalous images); :func:`cases_table` says them in words.
* :func:`pixel_score_frame` — a sample of pixel scores of normal and anomalous pixels.
* :func:`pixel_thresholds` — per category, the F1-max pixel threshold and the share of pixels
  it flags, beside a fixed threshold.
* :func:`case_batch` — images, masks and unsmoothed maps of chosen cases, for
  :func:`anomclip.book.widgets.failure_explorer`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..engine.metrics import f1_threshold
from .attention import raw_maps_by_mode
from .examples import batch_of

KINDS = {"fp": "false positive (normal, scored high)", "fn": "false negative (anomalous, scored low)"}


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


def cases_table(cases: pd.DataFrame) -> pd.DataFrame:
    """:func:`worst_cases` written for a reader: one row per case with the dataset (a smoke domain
    says what it stands in for), the kind of error in words, the case ("category / defect / file",
    :func:`~anomclip.book.labels.case_name`, as the figures title it), its image score (2 decimals) and how badly it ranks, in words:
    "above 75 % of the anomalous images" (a false positive) or "below 75 % of the normal images"
    (a false negative), rounded to whole percent."""
    from .labels import case_name, fmt, standin_label

    rows = []
    for _, c in cases.iterrows():
        fp = c["kind"] == "fp"
        path = str(c.get("path") or "")
        rows.append({"dataset": standin_label(str(c["dataset"])), "error": KINDS[c["kind"]],
                     "case": case_name(c["category"], path, int(c["i"])),
                     "image score": fmt(c["score"], 2),
                     "ranks": (f"above {fmt(c['outranked'], 0, percent=True)} % of the anomalous images" if fp
                               else f"below {fmt(c['outranked'], 0, percent=True)} % of the normal images")})
    return pd.DataFrame(rows, columns=["dataset", "error", "case", "image score", "ranks"])


# --------------------------------------------------------------------------- pixels
def samples_of(P, dataset: str, paths) -> list:
    """The :class:`~anomclip.data.Sample` of each image path of a results doc (matched on the
    last four path parts, so a doc written under another data root still resolves)."""
    from ..data.dataset import load_index

    spec = P.datasets[dataset]
    idx = load_index(spec.root, spec.split, spec.categories)
    key = {Path(s.img_path).parts[-4:]: s for v in idx.values() for s in v}
    return [key[Path(p).parts[-4:]] for p in paths]


def masks_of(samples, size: int) -> np.ndarray:
    """Ground-truth masks ``[n, size, size]`` (zeros for normal images)."""
    from ..data.preprocess import load_mask

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


# --------------------------------------------------------------------------- cases
def case_batch(P, dataset: str, cases: pd.DataFrame, model):
    """``(rgb [B,S,S,3], masks [B,S,S], raw maps [B,S,S])`` of the chosen cases: the anomaly maps
    are recomputed *unsmoothed* with ``model`` so that the explorer can apply any σ."""
    samples = samples_of(P, dataset, cases["path"])
    images, masks, _, rgb = batch_of(samples, model.image_size)
    mode = model.recipe.dpam
    raw = raw_maps_by_mode(model, images, model.encode_text(), modes=[mode])[mode]
    return rgb, masks.numpy(), raw


def pixel_thresholds(pixels: pd.DataFrame, fixed: float = 0.5) -> pd.DataFrame:
    """Per (dataset, category) of a :func:`pixel_score_frame`: the F1-max threshold
    (:func:`anomclip.engine.metrics.f1_threshold`) and the share of the sampled normal and anomalous
    pixels at or above it, beside the same shares at the ``fixed`` threshold (0.5: the map says
    "anomalous" is more likely than "normal")."""
    rows = []
    keys = [k for k in ("dataset", "category") if k in pixels.columns]
    for key, g in pixels.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        y = (g["pixel"] == "anomalous").to_numpy()
        s = g["score"].to_numpy()
        t = f1_threshold(s, y.astype(int))
        row = dict(zip(keys, key))
        row.update({"F1-max threshold": t,
                    "normal px ≥ F1 threshold (%)": 100 * float(np.mean(s[~y] >= t)) if (~y).any() else np.nan,
                    "anomalous px ≥ F1 threshold (%)": 100 * float(np.mean(s[y] >= t)) if y.any() else np.nan,
                    f"normal px ≥ {fixed:g} (%)": 100 * float(np.mean(s[~y] >= fixed)) if (~y).any() else np.nan,
                    f"anomalous px ≥ {fixed:g} (%)": 100 * float(np.mean(s[y] >= fixed)) if y.any() else np.nan})
        rows.append(row)
    return pd.DataFrame(rows)


def score_summary(scores: pd.DataFrame, by=("dataset", "category", "prompts")) -> pd.DataFrame:
    """Per group of a :func:`score_frame` (with the columns in ``by``): the mean score of normal
    and of anomalous images, the range of all scores (max − min) and the image AUROC
    (:func:`anomclip.engine.metrics.auroc_or_nan`, in %; "–" without both classes)."""
    from ..engine.metrics import auroc_or_nan

    rows = []
    for key, g in scores.groupby(list(by), sort=False):
        y = g["y"].to_numpy()
        s = g["score"].to_numpy()
        rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))),
                     "normal mean": float(s[y == 0].mean()) if (y == 0).any() else np.nan,
                     "anomalous mean": float(s[y == 1].mean()) if (y == 1).any() else np.nan,
                     "score range": float(s.max() - s.min()),
                     "image AUROC (%)": 100 * auroc_or_nan(s, y)})
    return pd.DataFrame(rows)
