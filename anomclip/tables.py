"""Ablation tables: a list of ``(label, recipe)`` rows, one runner, ours beside the paper's.

>>> rows = [("V-V", P.recipe("official")), ("Q-K", P.recipe("official", dpam="qk"))]
>>> ours = run_table(P, rows, folder="ch09")              # one row per (label, dataset)
>>> compare(ours, paper_values(10), variants={"V-V": "V-V", "Q-K": "Q-K"})

Each row is trained on every tuning dataset of the profile's protocol and evaluated zero-shot
on the datasets tuned elsewhere (smoke: textures ↔ objects; paper: MVTec AD ↔ VisA…).
"""
from __future__ import annotations

import pandas as pd

from .paper import METRIC_KEYS, paper_values
from .runner import run_experiment

SHOWN = ("pixel_auroc", "pixel_aupro", "image_auroc", "image_ap")


def run_table(profile, rows, folder: str, datasets=None, train: bool = True, force: bool = False,
              device: str = "auto", progress: bool = False, **kwargs) -> pd.DataFrame:
    """Run every ``(label, recipe)`` row under the profile's protocol; long table of means.

    Columns: label, dataset, metric, value (fraction), source ("ours"), provenance label.
    ``train=False`` evaluates the untrained prompts (no tuning data).
    """
    out = []
    for label, recipe in rows:
        for src, targets in profile.protocol.items():
            targets = [t for t in targets if datasets is None or t in datasets]
            if not targets:
                continue
            exp = run_experiment(recipe, profile.datasets[src] if train else None,
                                 [profile.datasets[t] for t in targets], profile.out / folder,
                                 label=f"{label}-from-{src}" if train else label, device=device,
                                 force=force, progress=progress, **kwargs)
            for t in targets:
                doc = exp.results[t]
                for metric, value in doc["mean"].items():
                    out.append({"label": label, "dataset": t, "metric": metric, "value": value,
                                "source": "ours", "tuned_on": src if train else None,
                                "provenance": doc["provenance"].get("label", "")})
    return pd.DataFrame(out)


def relabel(df: pd.DataFrame, rows: dict) -> pd.DataFrame:
    """The rows of ``df`` whose label is a key of ``rows``, renamed to its value (a paper row name)."""
    d = df[df["label"].isin(rows)].copy()
    d["label"] = d["label"].map(rows)
    return d


def wide(df: pd.DataFrame, metrics=SHOWN, percent: bool = True) -> pd.DataFrame:
    """Rows = label, columns = (dataset, metric); values in % (rounded to 0.1)."""
    d = df[df["metric"].isin(metrics)].copy()
    if percent:
        d["value"] = (d["value"] * 100).round(1)
    t = d.pivot_table(index="label", columns=["dataset", "metric"], values="value", sort=False)
    return t


def paper_wide(table: int, variants: dict | None = None, method: str = "AnomalyCLIP",
               metrics=SHOWN) -> pd.DataFrame:
    """The paper's table in the same shape as :func:`wide` (labels renamed by ``variants``)."""
    df = paper_values(table, method=method, category="mean")
    rows = []
    for _, r in df.iterrows():
        key = next((k for k, (lvl, m) in METRIC_KEYS.items() if lvl == r["level"] and m == r["metric"]), None)
        if key is None or key not in metrics:
            continue
        label = r["variant"] or r["method"]
        if variants is not None:
            if label not in variants:
                continue
            label = variants[label]
        rows.append({"label": label, "dataset": r["dataset"], "metric": key, "value": r["value"]})
    d = pd.DataFrame(rows)
    return d.pivot_table(index="label", columns=["dataset", "metric"], values="value", sort=False)
