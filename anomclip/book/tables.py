"""Tables of the book: our runs and the paper's numbers as long and wide frames.

Our numbers come from :func:`anomclip.engine.run_table.run_table` (a long frame: label, dataset, metric,
value as a fraction); the paper's from :func:`paper_long` / :func:`paper_wide` (values in %);
:func:`anomclip.book.labels.compare` puts them side by side.

>>> rows = [("V-V", P.recipe("paper")), ("Q-K", P.recipe("paper", dpam="qk"))]
>>> ours = run_table(P, rows).frame
>>> compare(ours, paper_long(10, variants={"V-V": "V-V", "Q-K": "Q-K"}), synthetic=P.synthetic)
"""
from __future__ import annotations

import pandas as pd

from .labels import SHOWN
from .reference import METRIC_KEYS, paper_values


def relabel(df: pd.DataFrame, rows: dict) -> pd.DataFrame:
    """The rows of ``df`` whose label is a key of ``rows``, renamed to its value (a paper row name)."""
    d = df[df["label"].isin(rows)].copy()
    d["label"] = d["label"].map(rows)
    return d


def wide(df: pd.DataFrame, metrics=SHOWN, percent: bool = True) -> pd.DataFrame:
    """Rows = label, columns = (dataset, metric key); values in % (rounded to 0.1).
    :func:`anomclip.book.labels.styled` shows the metrics by their display names (``image AUROC``)."""
    d = df[df["metric"].isin(metrics)].copy()
    if percent:
        d["value"] = (d["value"].astype(float) * 100).round(1)
    t = d.pivot_table(index="label", columns=["dataset", "metric"], values="value", sort=False, dropna=False)
    present = set(zip(d["dataset"], d["metric"]))
    cols = [(ds, m) for ds in dict.fromkeys(d["dataset"]) for m in metrics if (ds, m) in present]
    return t[cols]


def paper_long(table: int | str, variants: dict | None = None, method: str | None = "AnomalyCLIP",
               metrics=SHOWN, category: str = "mean", label_by: str = "variant") -> pd.DataFrame:
    """The paper's numbers of one table as a long frame: label, dataset, metric (key), value (%).

    ``label`` is the row's variant (or method when it has none; ``label_by="method"``: always
    the method), renamed by ``variants`` (rows not in ``variants`` are dropped when it is given)."""
    filters = {"category": category} if category is not None else {}
    if method is not None:
        filters["method"] = method
    df = paper_values(table, **filters)
    key_of = {v: k for k, v in METRIC_KEYS.items()}
    rows = []
    for r in df.itertuples():
        key = key_of.get((r.level, r.metric))
        if key is None or key not in metrics:
            continue
        label = r.method if label_by == "method" else (r.variant or r.method)
        if variants is not None:
            if label not in variants:
                continue
            label = variants[label]
        rows.append({"label": label, "dataset": r.dataset, "category": r.category, "metric": key,
                     "value": float(r.value)})
    return pd.DataFrame(rows, columns=["label", "dataset", "category", "metric", "value"])


def paper_wide(table: int, variants: dict | None = None, method: str = "AnomalyCLIP",
               metrics=SHOWN) -> pd.DataFrame:
    """The paper's table in the same shape as :func:`wide` (labels renamed by ``variants``)."""
    d = paper_long(table, variants, method, metrics)
    return d.pivot_table(index="label", columns=["dataset", "metric"], values="value", sort=False)


def paper_on(cmp: pd.DataFrame, dataset: str = "MVTec AD") -> pd.Series:
    """The paper's numbers (%) of one dataset of a comparison
    (:func:`anomclip.book.labels.compare`), by (label, metric key)."""
    return cmp[cmp["dataset"] == dataset].set_index(["label", "metric"])["paper"]


def ours_by_run(cmp: pd.DataFrame, metric: str) -> dict:
    """``{ours on: {label: ours}}``: our numbers (%) of one metric key of a comparison, per
    dataset they were computed on, in the comparison's order; rows without a number of ours
    are left out."""
    d = cmp[(cmp["metric"] == metric) & cmp["ours"].notna()]
    return {on: dict(zip(g["label"], g["ours"])) for on, g in d.groupby("ours on", sort=False)}


def ours_difference(cmp: pd.DataFrame, metric: str, label: str, other: str) -> dict:
    """``{ours on: ours of label − ours of other}`` (points) for one metric key of a comparison,
    for every dataset ours were computed on that has both numbers."""
    runs = ours_by_run(cmp, metric)
    return {on: r[label] - r[other] for on, r in runs.items() if label in r and other in r}


def deviations(frame: pd.DataFrame, group=("dataset", "metric")) -> pd.DataFrame:
    """For each group of a long frame (label, …, value): the row that deviates most from the
    median of the *other* rows of its group, how far (``deviation`` = value − that median), and
    the spread (max − min) of the other rows — a number far outside a tight spread is an outlier
    of its table (e.g. a typo in the paper). Sorted by ``|deviation|``, largest first."""
    rows = []
    for key, g in frame.groupby(list(group), sort=False):
        if len(g) < 3:
            continue
        best = None
        for i, r in g.iterrows():
            others = g.drop(index=i)["value"].astype(float)
            dev = float(r["value"]) - float(others.median())
            if best is None or abs(dev) > abs(best["deviation"]):
                best = {**dict(zip(group, key if isinstance(key, tuple) else (key,))), "label": r["label"],
                        "value": float(r["value"]), "median of the others": float(others.median()),
                        "deviation": dev, "spread of the others": float(others.max() - others.min())}
        rows.append(best)
    out = pd.DataFrame(rows)
    return out.reindex(out["deviation"].abs().sort_values(ascending=False).index).reset_index(drop=True)


def paired_means(per_category: pd.DataFrame) -> pd.Series:
    """The mean of each column over the categories (rows) where *every* column is defined, so
    that two metrics' means are taken over the same categories; ``n`` is how many there are."""
    both = per_category.dropna()
    return pd.concat([both.mean(), pd.Series({"n": float(len(both))})])


def score_differences(doc_a: dict, doc_b: dict, dataset: str = "") -> pd.DataFrame:
    """Per category, the largest and the mean absolute difference between the image scores of
    two results docs of the same images (same order)."""
    import numpy as np

    rows = []
    for c, a in doc_a["scores"].items():
        d = np.abs(np.asarray(a, dtype=float) - np.asarray(doc_b["scores"][c], dtype=float))
        rows.append({"dataset": dataset, "category": c, "max |Δ score|": float(d.max()),
                     "mean |Δ score|": float(d.mean())})
    return pd.DataFrame(rows)


def _seconds(durations: dict, key: str) -> float:
    return float(durations[key]) if key in durations else float("nan")


def training_cost(training: dict | None) -> dict:
    """A run's training cost from its provenance (``Experiment.training``): the number of epochs,
    the median seconds of one epoch (on cached features), the one-off extraction of the tuning
    set's features (≈ 0 when they were already in the feature cache: ``features cached before the run``)
    and the whole training time. A run that trained nothing (zero-shot methods, ``training`` None
    or an empty history) gives NaN (None for the flag) for everything but ``epochs`` = 0."""
    nan = float("nan")
    history = (training or {}).get("history") or []
    durations = (training or {}).get("durations") or {}
    seconds = sorted(float(h["seconds"]) for h in history if "seconds" in h)
    n = len(seconds)
    median = nan if n == 0 else (seconds[n // 2] if n % 2 else 0.5 * (seconds[n // 2 - 1] + seconds[n // 2]))
    return {"epochs": len(history),
            "s per epoch (median)": median,
            "feature extraction (s)": _seconds(durations, "train_features_s") if history else nan,
            "training (s)": _seconds(durations, "train_s") if history else nan,
            "features cached before the run": bool((training or {}).get("features_from_cache")) if history else None}
