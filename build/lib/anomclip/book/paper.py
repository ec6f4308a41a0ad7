"""The paper's reported numbers, from the reference table shipped with the package.

``anomclip/book/reference/paper_results.csv`` holds every number of the paper's tables
(columns: table, dataset, category, method, variant, level, metric, value; values in %).
Everything read from it is labelled **paper**; our own numbers come from results files.
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

import pandas as pd

#: our metric keys → (level, metric) in the paper's table
METRIC_KEYS = {
    "image_auroc": ("image", "AUROC"), "image_ap": ("image", "AP"),
    "pixel_auroc": ("pixel", "AUROC"), "pixel_aupro": ("pixel", "AUPRO"),
}


@lru_cache(maxsize=1)
def reference_table() -> pd.DataFrame:
    """The whole reference table (values in %), with a ``source`` column = "paper"."""
    with resources.files("anomclip.book").joinpath("reference/paper_results.csv").open() as f:
        df = pd.read_csv(f, dtype={"table": str})
    df["variant"] = df["variant"].fillna("")
    df["source"] = "paper"
    return df


def paper_values(table: int | str | None = None, **filters) -> pd.DataFrame:
    """Rows of the reference table, filtered by ``table`` and any column (value or list)."""
    df = reference_table()
    if table is not None:
        df = df[df["table"] == str(table)]
    for col, want in filters.items():
        df = df[df[col].isin(want if isinstance(want, (list, tuple, set)) else [want])]
    return df.reset_index(drop=True)


def paper_value(table, dataset, metric_key, method="AnomalyCLIP", variant="", category="mean") -> float:
    """One number of the paper as a fraction (NaN if the paper has none)."""
    level, metric = METRIC_KEYS[metric_key]
    df = paper_values(table, dataset=dataset, method=method, variant=variant, category=category,
                      level=level, metric=metric)
    return float(df["value"].iloc[0]) / 100 if len(df) else float("nan")
