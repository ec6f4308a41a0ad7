"""One set of words for the book: display names, labels, caveats, provenance and comparisons.

Every chapter shows numbers with the same names (``image AUROC``, never ``image_auroc``), the
same column labels (``paper``, ``ours`` / ``ours (smoke run)``), one provenance box read from
the results files themselves, one caveat box for smoke runs, and one comparison helper that
puts our numbers beside the paper's. Tables hold numbers and metric keys; the words (display
names, why a number is missing, the paper's † marks) are put in only when a table is shown
(:func:`words`, :func:`styled`). Nothing here trains, evaluates or draws.
"""
from __future__ import annotations

import html as _html
import math

import numpy as np
import pandas as pd

from ..data.catalogue import (
    DATASET_ORDER,  # the paper's datasets in its tables' order (tables, colours)
)

#: metric key (results files) → display name (every table, figure and sentence of the book)
METRIC_NAMES = {
    "image_auroc": "image AUROC", "image_ap": "image AP", "image_f1_max": "image F1-max",
    "pixel_auroc": "pixel AUROC", "pixel_ap": "pixel AP", "pixel_f1_max": "pixel F1-max",
    "pixel_aupro": "pixel AUPRO", "pixel_aupro_official": "pixel AUPRO (authors' code)",
}
#: the metrics the paper's tables report, in their order
SHOWN = ("pixel_auroc", "pixel_aupro", "image_auroc", "image_ap")
#: DPAM mode key → display name
MODE_NAMES = {"qk": "Q-K", "qq": "Q-Q", "kk": "K-K", "vv": "V-V", "none": "no DPAM",
              "qq+kk+vv": "Q-Q+K-K+V-V", "qk+qq+kk+vv": "Q-K+Q-Q+K-K+V-V"}
PAPER_LABEL = "paper"
OURS_LABEL = "ours"
#: recipe key → the name a reader sees: "paper" means only the paper's published numbers, so the
#: recipe of the paper's text (four feature layers, λ = 1; key ``paper`` in the code) is shown as
#: "four-layer"; the released code's recipe keeps its name
RECIPE_NAMES = {"paper": "four-layer", "official": "official"}
OURS_SMOKE_LABEL = "ours (smoke run)"
#: which paper dataset each synthetic smoke domain stands in for (same role in the protocol:
#: textures are the main tuning set like MVTec AD, objects are evaluated like VisA)
SMOKE_STANDINS = {"textures": "MVTec AD", "objects": "VisA"}
#: where chapter 1 says, once, what a smoke run can and cannot show (linked from every caveat)
SMOKE_ANCHOR = "01_overview.html#smoke-runs"
NOT_RUN = "not run: dataset not found"
MISSING = "–"


def metric_name(key: str) -> str:
    """The display name of a metric key (unknown keys are returned unchanged)."""
    return METRIC_NAMES.get(key, key)


def recipe_name(key: str) -> str:
    """The name a reader sees for a recipe key (:data:`RECIPE_NAMES`; others unchanged)."""
    return RECIPE_NAMES.get(key, key)


def plural(n: int, word: str, many: str | None = None) -> str:
    """``n`` and the word in its number: "1 dataset", "2 datasets" (never "dataset(s)")."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def _no_plural_s(text: str) -> str:
    """"2 image(s)" → "2 images", "1 anomalous image(s)" → "1 anomalous image", any other
    "word(s)" → "words"."""
    import re

    def in_number(m):
        n, between, word = int(m.group(1)), m.group(2), m.group(3)
        return f"{n} {between}{word if n == 1 else word + 's'}"

    text = re.sub(r"\b(\d+) ((?:[A-Za-z-]+ ){0,3})([A-Za-z]+)\(s\)", in_number, text)
    return re.sub(r"\b([A-Za-z]{2,})\(s\)", r"\1s", text)


def display_text(text: str) -> str:
    """``text`` (e.g. a results file's note) with every metric key replaced by its display name
    (longest keys first), the library's "returning NaN" said the way tables show it, and
    "image(s)" written in its number ("1 image", "2 images")."""
    for key in sorted(METRIC_NAMES, key=len, reverse=True):
        text = text.replace(key, METRIC_NAMES[key])
    return _no_plural_s(text.replace("; returning NaN", f" (shown as {MISSING})"))


def is_smoke(profile_or_synthetic) -> bool:
    """True for the smoke profile (or ``synthetic=True``)."""
    if isinstance(profile_or_synthetic, bool):
        return profile_or_synthetic
    return bool(getattr(profile_or_synthetic, "synthetic", False)) or getattr(profile_or_synthetic, "name", "") == "smoke"


def ours_label(profile_or_synthetic) -> str:
    """The column label of our numbers: ``ours`` or ``ours (smoke run)``."""
    return OURS_SMOKE_LABEL if is_smoke(profile_or_synthetic) else OURS_LABEL


def fmt(value, digits: int = 1, percent: bool = False) -> str:
    """A number as text with ``digits`` decimals (×100 if ``percent``); NaN/None → "–"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v):
        return MISSING
    return f"{100 * v if percent else v:.{digits}f}"


def fmt_sig(value, sig: int = 3) -> str:
    """A measured rate or time at ``sig`` significant figures, never in exponent notation
    (226.32 → "226", 9.614 → "9.61", 0.01523 → "0.0152"); NaN/None → "–"."""
    text = fmt(value, 0)
    if text == MISSING or text == str(value):
        return text
    v = float(value)
    if v == 0:
        return "0"
    decimals = max(0, sig - 1 - math.floor(math.log10(abs(v))))
    return f"{round(v, decimals):.{decimals}f}"


#: the column of a comparison that says why ``ours`` has no number ("" where it has one)
STATUS = "status"
#: the column of a comparison that marks the paper's values "taken from original papers" (True: †)
DAGGER_COLUMN = "dagger"


def words(df: pd.DataFrame) -> pd.DataFrame:
    """A numeric table as a reader sees it: metric keys (in cells, index and column labels) by
    their display names, the ``status`` of a missing number of ours written in its ``ours`` cell
    (the ``status`` column then goes), the paper's values marked in the ``dagger`` column written
    "91.8 †" (the ``dagger`` column then goes). Every other cell is left as it is."""
    from .reference import DAGGER

    d = df.copy()
    if STATUS in d.columns:
        if "ours" in d.columns:
            why = d[STATUS].fillna("").astype(str)
            d["ours"] = [w if w and pd.isna(v) else v for v, w in zip(d["ours"], why)]
        d = d.drop(columns=STATUS)
    if DAGGER_COLUMN in d.columns:
        if "paper" in d.columns:
            d["paper"] = [f"{float(v):.1f} {DAGGER}" if bool(mark) and pd.notna(v) else v
                          for v, mark in zip(d["paper"], d[DAGGER_COLUMN].fillna(False))]
        d = d.drop(columns=DAGGER_COLUMN)
    for c in d.columns:
        if d[c].dtype == object:
            d[c] = [metric_name(v) if isinstance(v, str) else v for v in d[c]]
    return d.rename(index=_label_name, columns=_label_name)


def _label_name(label):
    return metric_name(label) if isinstance(label, str) else label


def styled(df: pd.DataFrame, caption: str | None = None, digits: int = 1):
    """A table for display, in :func:`words`: numbers with ``digits`` decimals, NaN as "–", text
    as is; a table whose numbers were all computed on one other dataset (``attrs["ours_on"]``,
    from :func:`compare_table`) says it in the caption."""
    def f(v):
        if isinstance(v, (bool, np.bool_)):
            return "yes" if v else "no"
        if isinstance(v, (int, np.integer)):
            return str(int(v))
        if isinstance(v, (float, np.floating)):
            return fmt(v, 0 if float(v).is_integer() and digits == 0 else digits)
        return MISSING if v is None else str(v)
    on = df.attrs.get("ours_on")
    if on:
        caption = f"{caption} — ours on {on}" if caption else f"ours on {on}"
    s = words(df).style.format(f)
    return s.set_caption(caption) if caption else s


# --------------------------------------------------------------------------- boxes
class Box:
    """Markdown text that renders as HTML in a notebook and the book, and as itself in a terminal."""

    def __init__(self, markdown: str, html: str):
        self.markdown, self.html = markdown, html

    def _repr_html_(self):
        return self.html

    def _repr_markdown_(self):
        return self.markdown

    def __repr__(self):
        return self.markdown


def admonition(kind: str, title: str, body_html: str, body_md: str | None = None) -> Box:
    """A MyST/Sphinx admonition (``caution``, ``note``, ``tip``…) as an output: the HTML uses the
    theme's own admonition classes, so it looks like a ``{caution}`` box written in Markdown."""
    html = (f"<div class='admonition {kind}'><p class='admonition-title'>{_html.escape(title)}</p>"
            f"<p>{body_html}</p></div>")
    md = f"> **{title}.** {body_md if body_md is not None else body_html}"
    return Box(md, html)


def caveat(profile_or_synthetic, what: str = "numbers") -> Box | None:
    """The one box a chapter shows about its own numbers (a caution for smoke runs, a note else)."""
    if is_smoke(profile_or_synthetic):
        body = (f"The {_html.escape(what)} on this page come from a <b>smoke run</b>: an untrained tiny backbone "
                "(random weights) on generated synthetic data. They check that the machinery runs; they are "
                f"<b>not</b> a reproduction of the paper. <a href='{SMOKE_ANCHOR}'>What a smoke run can and cannot "
                "show</a>.")
        md = (f"The {what} on this page come from a **smoke run**: an untrained tiny backbone (random weights) on "
              "generated synthetic data. They check that the machinery runs; they are **not** a reproduction of "
              f"the paper. [What a smoke run can and cannot show]({SMOKE_ANCHOR}).")
        return admonition("caution", "Smoke run", body, md)
    body = (f"The {_html.escape(what)} on this page come from the pretrained backbone on the real datasets; the "
            "provenance box says which weights, data and commit.")
    return admonition("note", "Real run", body, body)


def _provenance_of(source) -> dict:
    if isinstance(source, dict):
        return source.get("provenance", source)
    if isinstance(source, (list, tuple)) and source:
        return _provenance_of(source[0])
    results = getattr(source, "results", None)  # an Experiment
    if isinstance(results, dict) and results:
        return _provenance_of(next(iter(results.values())))
    raise TypeError(f"no provenance in {type(source).__name__}")


def provenance_rows(source) -> list[tuple[str, str]]:
    """(field, text) rows of a results doc's provenance (or a provenance dict / an Experiment /
    a list of docs: the first one). Everything is read from the provenance itself."""
    prov = _provenance_of(source)
    bb = prov.get("backbone") or {}
    data = prov.get("data") or {}
    recipe = prov.get("recipe") or {}
    tr = prov.get("training") or {}
    weights = bb.get("weights", MISSING)
    if bb and not bb.get("trained", True) and "untrained" not in str(weights):
        weights = f"{weights} (untrained: random weights)"
    rows = [("backbone", f"{bb.get('name', MISSING)} at {bb.get('image_size', MISSING)} px"),
            ("weights", str(weights))]
    if recipe:
        rows.append(("recipe", f"{recipe_name(recipe.get('name', MISSING))} (layers {recipe.get('layers')}, "
                               f"λ = {recipe.get('lam')}, {recipe.get('epochs')} epochs)"))
    if data:
        rows.append(("evaluated on", f"{data.get('name', MISSING)}: {data.get('images', MISSING)} images, "
                                     f"{len(data.get('categories', []))} categories"))
    if recipe or tr:
        tdata = tr.get("data") if isinstance(tr, dict) else None
        rows.append(("prompts", f"tuned on {tdata['name']} ({tdata.get('images', MISSING)} images)" if tdata
                     else str(prov.get("init") or "untrained (random initialisation)")))
    rows += [("commit", str(prov.get("commit") or "unknown (not a git checkout)")),
             ("device", str(prov.get("device", MISSING))), ("date", str(prov.get("created", MISSING)))]
    return rows


def provenance_box(source, title: str = "Provenance") -> Box:
    """A box saying where the numbers come from (backbone, weights, recipe, data, commit, device,
    date and the results' own one-line label), read from a results doc's provenance."""
    prov = _provenance_of(source)
    rows = provenance_rows(prov)
    label = prov.get("label", "")
    md = f"**{title}**" + (f" — *{label}*" if label else "") + "\n\n" + "\n".join(f"- **{k}**: {v}" for k, v in rows)
    cells = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{_html.escape(k)}</th>"
                    f"<td style='text-align:left'>{_html.escape(v)}</td></tr>" for k, v in rows)
    html = (f"<details class='anomclip-provenance'><summary><b>{_html.escape(title)}</b>"
            + (f" — <i>{_html.escape(label)}</i>" if label else "")
            + f"</summary><table>{cells}</table></details>")
    return Box(md, html)


def model_provenance(model, device: str = "cpu", synthetic: bool = False) -> dict:
    """The provenance of numbers computed directly from a model on some images (no results
    file): its backbone identity (:class:`~anomclip.model.backbone.BackboneInfo`), commit, device,
    date, and the honest label (``synthetic``: the images were generated)."""
    from ..engine.results import provenance

    prov = provenance(model=model, device=device, data={"synthetic": synthetic})
    prov.pop("recipe", None)
    prov["data"] = {}
    return prov


def _note_metrics(note: str) -> set:
    """The metric keys a note names (whole keys: ``pixel_aupro`` is not in ``pixel_aupro_official``)."""
    import re

    return {k for k in METRIC_NAMES if re.search(rf"(?<![A-Za-z_]){re.escape(k)}(?![A-Za-z_])", note)}


def notes_box(docs, metrics=None) -> Box | None:
    """The notes of results docs (undefined metrics and why), once each; None without notes.

    With ``metrics`` (keys), only the notes about the metrics shown beside the box (and the
    notes that name no metric, e.g. "pixel metrics are not defined"): a note appears only where
    its metric is shown."""
    docs = list(docs.values()) if isinstance(docs, dict) else list(docs)
    raw = [n for d in docs for n in d.get("notes", [])]
    if metrics is not None:
        raw = [n for n in raw if not _note_metrics(n) or _note_metrics(n) & set(metrics)]
    notes = list(dict.fromkeys(display_text(n) for n in raw))
    if not notes:
        return None
    body = "<br>".join(_html.escape(n) for n in notes)
    return admonition("note", "Notes of the results files", body,
                      "; ".join(notes))


def mean_categories(doc: dict, metrics=SHOWN) -> str:
    """What a results doc's means are taken over, in words: "mean of the 4 categories", and for
    each metric in ``metrics`` whose mean leaves categories out (undefined there), which ones:
    "mean of the 4 categories (pixel AUPRO (authors' code): of 2, without disc, square)"."""
    cats = list(doc.get("categories", {}))
    out = []
    for k in metrics:
        gone = [c for c, m in doc.get("categories", {}).items()
                if m.get(k) is None or (isinstance(m.get(k), float) and math.isnan(m[k]))]
        if gone and len(gone) < len(cats):
            out.append(f"{metric_name(k)}: of {len(cats) - len(gone)}, without {', '.join(gone)}")
    n = len(cats)
    head = f"mean of the {n} categories" if n != 1 else "mean of the 1 category"
    return head + (f" ({'; '.join(out)})" if out else "")


# --------------------------------------------------------------------------- ours vs paper
def paper_dataset(dataset: str, synthetic: bool) -> str:
    """The paper's dataset that one of ours is compared with (smoke: its stand-in)."""
    return SMOKE_STANDINS.get(dataset, dataset) if synthetic else dataset


def standin_label(name: str) -> str:
    """A smoke domain's name as every label of the book shows it, "objects (stands in for VisA)"
    (smoke numbers never wear a paper dataset's name alone); any other name unchanged."""
    return f"{name} (stands in for {SMOKE_STANDINS[name]})" if name in SMOKE_STANDINS else name


def compare(ours: pd.DataFrame, paper: pd.DataFrame, synthetic: bool, metrics=SHOWN,
            paper_datasets=None, missing=()) -> pd.DataFrame:
    """Our numbers beside the paper's, in long format (one row per label, dataset, metric).

    ``ours``: long frame (label, dataset, metric, value as a fraction), as returned by the run
    table. ``paper``: long frame (label, dataset, metric, value in %), see
    :func:`anomclip.book.tables.paper_long`. Each of our datasets is matched with the paper's
    dataset it stands for (:func:`paper_dataset`). Every paper dataset in ``paper_datasets``
    (default: all of ``paper``'s) gets a row even when we have no number for it.

    Columns: label, dataset (the paper's), metric (key), paper (%), ours (%), Δ (ours − paper,
    points) — numbers, NaN where missing, rounded to 0.1 —, status (why ``ours`` is missing:
    ``not run: dataset not found`` for the datasets in ``missing``, or the reason ``missing`` maps
    them to, a dict; "" otherwise) and ours on (our dataset; a smoke domain as "objects (stands
    in for VisA)", :func:`standin_label`). :func:`styled` shows the metric by its display name
    and the status in the ``ours`` cell.
    """
    o = ours[ours["metric"].isin(metrics)].copy()
    o["paper dataset"] = [paper_dataset(d, synthetic) for d in o["dataset"]]
    o = o.rename(columns={"dataset": "ours on"})
    o["ours on"] = [standin_label(d) if synthetic else d for d in o["ours on"]]
    o["ours"] = 100 * o["value"].astype(float)
    p = paper[paper["metric"].isin(metrics)].rename(columns={"dataset": "paper dataset", "value": "paper"})
    keys = ["label", "paper dataset", "metric"]
    d = p[keys + ["paper"]].merge(o[keys + ["ours", "ours on"]], on=keys, how="outer")
    if paper_datasets is not None:
        d = d[d["paper dataset"].isin(paper_datasets) | d["ours"].notna()]
    d["Δ"] = d["ours"] - d["paper"]
    for c in ("paper", "ours", "Δ"):
        d[c] = d[c].astype(float).round(1)
    gone = dict(missing) if isinstance(missing, dict) else {ds: NOT_RUN for ds in missing}
    d[STATUS] = [gone.get(ds, "") if math.isnan(v) else "" for v, ds in zip(d["ours"], d["paper dataset"])]
    d = d.rename(columns={"paper dataset": "dataset"})
    order = {m: i for i, m in enumerate(metrics)}
    ds_order = {ds: i for i, ds in enumerate(DATASET_ORDER)}
    key = {"metric": lambda s: s.map(order),
           "dataset": lambda s: s.map(lambda v: (ds_order.get(v, len(ds_order)), v)),
           "label": lambda s: s}
    d = d.sort_values(["dataset", "label", "metric"], key=lambda s: key[s.name](s), kind="stable")
    return d[["label", "dataset", "metric", "paper", "ours", "Δ", STATUS, "ours on"]].reset_index(drop=True)


def compare_table(cmp: pd.DataFrame, dataset: str | None = None, labels=None) -> pd.DataFrame:
    """One dataset of :func:`compare` as a narrow table: rows = (label, metric key), columns
    paper, ours, Δ, the status of a missing number of ours (only when one has a status) and the
    dataset ours were computed on (fits the page whatever the number of datasets: show one
    table per dataset). When every row of ours was computed on one dataset, that column is left
    out and said once in the caption instead (:func:`styled` reads it from ``attrs["ours_on"]``;
    nothing when it is the table's own dataset)."""
    d = cmp if dataset is None else cmp[cmp["dataset"] == dataset]
    t = d.set_index(["label", "metric"])[["paper", "ours", "Δ", STATUS, "ours on"]]
    if labels is not None:
        t = t.reindex([lb for lb in labels if lb in t.index.get_level_values(0)], level=0)
    if not (t[STATUS].fillna("") != "").any():
        t = t.drop(columns=STATUS)
    on = list(dict.fromkeys(t["ours on"].dropna()))
    if len(on) <= 1:
        t = t.drop(columns="ours on")
        if on and on[0] != dataset:
            t.attrs["ours_on"] = on[0]
    return t



#: metric key → the short header of a wide comparison table (the caption spells them out)
SHORT_METRIC_NAMES = {
    "image_auroc": "img AUROC", "image_ap": "img AP", "image_f1_max": "img F1-max",
    "pixel_auroc": "px AUROC", "pixel_ap": "px AP", "pixel_f1_max": "px F1-max",
    "pixel_aupro": "px AUPRO", "pixel_aupro_official": "px AUPRO (code)",
}


def short_metric_name(key: str) -> str:
    """The short header of a metric key in a wide table ("px AUROC"); unknown keys unchanged."""
    return SHORT_METRIC_NAMES.get(key, key)


def wide_compare(cmp: pd.DataFrame, dataset: str | None = None, labels=None, delta: bool = False) -> pd.DataFrame:
    """One dataset of :func:`compare` as a wide table: rows = the labels (variants), columns =
    (metric's short header, ``paper`` | ``ours`` [| ``Δ``]) — numbers, NaN where missing.

    ``delta`` adds the Δ = ours − paper column per metric (the paper profile: on the smoke
    profile the difference measures nothing, so it is left out). ``attrs``: ``ours_on`` (as
    :func:`compare_table`: the one dataset ours were computed on, when it is not the table's own),
    ``missing`` ({label: why ours has no number}) and ``caption_note`` (the headers in full, for
    the caption; :func:`wide_caption`)."""
    d = cmp if dataset is None else cmp[cmp["dataset"] == dataset]
    metrics = list(dict.fromkeys(d["metric"]))
    order = list(dict.fromkeys(d["label"]))
    if labels is not None:
        order = [lb for lb in labels if lb in set(order)]
    parts = ("paper", "ours", "Δ") if delta else ("paper", "ours")
    by = d.set_index(["label", "metric"])
    cols = pd.MultiIndex.from_tuples([(short_metric_name(m), p) for m in metrics for p in parts])
    t = pd.DataFrame(index=pd.Index(order, name=None), columns=cols, dtype=float)
    for lb in order:
        for m in metrics:
            if (lb, m) in by.index:
                row = by.loc[(lb, m)]
                for p in parts:
                    t.loc[lb, (short_metric_name(m), p)] = float(row[p]) if pd.notna(row[p]) else float("nan")
    why = {}
    if STATUS in d.columns:
        for lb, st, v in zip(d["label"], d[STATUS].fillna(""), d["ours"]):
            if st and pd.isna(v) and lb in order:
                why.setdefault(lb, st)
    on = list(dict.fromkeys(d["ours on"].dropna())) if "ours on" in d.columns else []
    if len(on) == 1 and on[0] != dataset:
        t.attrs["ours_on"] = on[0]
    t.attrs["missing"] = why
    t.attrs["caption_note"] = ("; ".join(f"{short_metric_name(m)} = {metric_name(m)}" for m in metrics)
                               + "; paper = the paper's number, ours = this run's"
                               + ("; Δ = ours − paper (points)" if delta else "") + "; %")
    return t


def wide_caption(table: pd.DataFrame, title: str) -> str:
    """The caption of a :func:`wide_compare` table: ``title``, then its headers in full and why
    a number of ours is missing (the table itself keeps short headers and numbers)."""
    note = table.attrs.get("caption_note", "")
    why = table.attrs.get("missing") or {}
    gone = {}
    for lb, w in why.items():
        gone.setdefault(w, []).append(lb)
    extra = "".join(f"; {MISSING} in ours: {w} ({', '.join(lbs)})" for w, lbs in gone.items())
    return f"{title} ({note}{extra})" if note or extra else title


def case_name(category: str, path: str = "", i: int | None = None) -> str:
    """One image of a dataset as every table and figure of the book names it: "category / defect
    folder / file" ("capsule / crack / 001.png"; the defect folder is "good" for a normal image),
    read from its path — a file name alone is ambiguous (two defect folders of one category both
    hold a 001.png). Without a path: "category / #i" (its index in the category)."""
    from pathlib import PurePath

    parts = PurePath(str(path)).parts if path else ()
    if len(parts) >= 2:
        return f"{category} / {parts[-2]} / {parts[-1]}"
    if len(parts) == 1:
        return f"{category} / {parts[0]}"
    return f"{category} / #{i}" if i is not None else str(category)
