"""The paper's reported numbers and the authors' re-run: this package and the CSV files beside it.

``paper_results.csv`` (here, ``anomclip/book/reference/``) holds every number of the paper's tables
(columns: table, dataset, category, method, variant, level, metric, value, dagger; values in %).
``dagger`` is 1 for the 16 values of Table 1 the paper marks † "taken from original papers"
(WinCLIP and VAND on MVTec AD and VisA): those were not run by the AnomalyCLIP authors.
Everything read from it is labelled **paper**; our own numbers come from results files.

``authors_rerun.csv`` holds another reference: the AnomalyCLIP
authors' own re-run, the ``mean`` rows of the logs in their repository (columns: dataset,
method, tuned_on, level, metric, value, and where they come from: repo, path, commit,
commit_date). Everything read from it is labelled **authors' re-run**.

``after_anomalyclip.csv`` holds the published zero-shot numbers of the methods after AnomalyCLIP
(docs/after-anomalyclip.md; columns: dataset, method, variant — ``paper`` or ``code`` where a
repository reports both —, setting — ``transductive`` for MuSc, which scores a category's test
images jointly —, level, metric, value, and where each comes from: repo, path, commit, commit_date).
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
    with resources.files(__name__).joinpath("paper_results.csv").open() as f:
        df = pd.read_csv(f, dtype={"table": str})
    df["variant"] = df["variant"].fillna("")
    df["dagger"] = df["dagger"].astype(int).astype(bool)
    df["source"] = "paper"
    return df


#: the footnote mark of the paper's values "taken from original papers" (Table 1)
DAGGER = "†"
DAGGER_NOTE = "† taken from original papers (the paper's Table 1: WinCLIP's and VAND's own papers, not re-run)"
#: the label of the authors' re-run
RERUN = "authors' re-run"


def daggered(table: int | str = 1) -> set:
    """``{(dataset, method, metric key)}`` of the values the paper marks † in ``table``."""
    key_of = {v: k for k, v in METRIC_KEYS.items()}
    df = paper_values(table, category="mean")
    df = df[df["dagger"]]
    return {(r.dataset, r.method, key_of[(r.level, r.metric)]) for r in df.itertuples()}


@lru_cache(maxsize=1)
def authors_rerun() -> pd.DataFrame:
    """The authors' re-run (values in %), with a ``source`` column = "authors' re-run" and a
    ``provenance`` column (``repo@commit:path (commit_date)``)."""
    with resources.files(__name__).joinpath("authors_rerun.csv").open() as f:
        df = pd.read_csv(f, dtype=str)
    df["value"] = df["value"].astype(float)
    df["source"] = RERUN
    df["provenance"] = [f"{r.repo}@{r.commit[:7]}:{r.path} ({r.commit_date})" for r in df.itertuples()]
    return df


def rerun_long(method: str = "AnomalyCLIP") -> pd.DataFrame:
    """The authors' re-run as a long frame as :func:`anomclip.book.tables.paper_long` gives the
    paper's: label (the method), dataset, category ("mean"), metric (key), value (%)."""
    key_of = {v: k for k, v in METRIC_KEYS.items()}
    df = authors_rerun()
    df = df[df["method"] == method]
    return pd.DataFrame([{"label": r.method, "dataset": r.dataset, "category": "mean",
                          "metric": key_of[(r.level, r.metric)], "value": float(r.value)} for r in df.itertuples()],
                        columns=["label", "dataset", "category", "metric", "value"])


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


def with_dagger(t: pd.DataFrame, dataset: str, table: int | str = 1) -> pd.DataFrame:
    """A table of :func:`anomclip.book.labels.compare_table` (index: label, metric key) with a
    column ``dagger``: True for the paper's values of ``dataset`` that the paper marks †
    (:func:`anomclip.book.labels.styled` writes them "91.8 †"; the numbers stay numbers)."""
    marks = {(m, k) for d, m, k in daggered(table) if d == dataset}
    return t.assign(dagger=[key in marks for key in t.index])


def with_rerun(cmp: pd.DataFrame) -> pd.DataFrame:
    """The rows of a :func:`anomclip.book.labels.compare` frame that the authors' re-run also has,
    its number beside the paper's and ours: index (dataset, label, metric key), columns
    paper, authors' re-run, ours, status, ours on (values in %)."""
    rr = rerun_long().rename(columns={"value": RERUN})
    d = cmp.merge(rr[["label", "dataset", "metric", RERUN]], on=["label", "dataset", "metric"], how="inner")
    return d.set_index(["dataset", "label", "metric"])[["paper", RERUN, "ours", "status", "ours on"]]


@lru_cache(maxsize=1)
def after_anomalyclip() -> pd.DataFrame:
    """The published numbers of the methods after AnomalyCLIP (values in %), with a ``provenance``
    column (``repo@commit:path (commit_date)``)."""
    with resources.files(__name__).joinpath("after_anomalyclip.csv").open() as f:
        df = pd.read_csv(f, dtype=str)
    df["value"] = df["value"].astype(float)
    df["provenance"] = [f"{r.repo}@{r.commit[:7]}:{r.path} ({r.commit_date})" for r in df.itertuples()]
    return df


#: the tables of the paper that hold its zero-shot comparison (industrial, medical)
ZERO_SHOT_TABLES = ("1", "2")


def published_long(methods=None) -> pd.DataFrame:
    """Every method's published zero-shot means as one long frame: label (the method's name),
    dataset, metric (key of :data:`METRIC_KEYS`), value (%), source and setting.

    The paper's six methods come from its Tables 1–2 (``source`` "AnomalyCLIP paper, Table N";
    ``setting`` "" — its protocol); the later methods from :func:`after_anomalyclip`: per
    (method, dataset, metric), the ``paper`` variant where there is one, else the ``code`` one
    (``source``: its provenance; ``setting``: e.g. "tuned on VisA", "transductive"). ``methods``
    (names) keeps those; metrics outside :data:`METRIC_KEYS` (F1-max) are left out."""
    key_of = {v: k for k, v in METRIC_KEYS.items()}
    rows = []
    paper = paper_values(None, category="mean", variant="")
    for r in paper[paper["table"].isin(ZERO_SHOT_TABLES)].itertuples():
        if (r.level, r.metric) in key_of:
            rows.append({"label": r.method, "dataset": r.dataset, "metric": key_of[(r.level, r.metric)],
                         "value": float(r.value), "source": f"AnomalyCLIP paper, Table {r.table}", "setting": ""})
    after = after_anomalyclip()
    after = after.assign(_rank=(after["variant"] != "paper").astype(int)).sort_values("_rank", kind="stable")
    after = after.drop_duplicates(["method", "dataset", "level", "metric"])
    for r in after.itertuples():
        if (r.level, r.metric) in key_of:
            rows.append({"label": r.method, "dataset": r.dataset, "metric": key_of[(r.level, r.metric)],
                         "value": float(r.value), "source": r.provenance, "setting": r.setting})
    df = pd.DataFrame(rows, columns=["label", "dataset", "metric", "value", "source", "setting"])
    if methods is not None:
        df = df[df["label"].isin(list(methods))]
    return df.reset_index(drop=True)
