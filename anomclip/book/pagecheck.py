"""What an executed chapter shows a reader, read from its notebook (no browser needed).

A chapter's cells reach the page as their tags say (Jupyter Book / MyST-NB): ``remove-cell``
shows nothing, ``remove-input`` / ``hide-input`` keep the code off the page (hidden behind a
toggle for ``hide-input``), ``remove-output`` / ``hide-output`` the outputs. These functions list
what the book must not show (``tools/check_book.py`` fails on any of them):

* :func:`shown_none` — a bare ``None`` printed under a cell (``display(None)``);
* :func:`shown_parameters` — a parameters cell whose code is on the page (the reader needs the
  chapter's argument, not its plumbing; papermill's injected cell included);
* :func:`paper_labels` — on a smoke-run page, a label of *our* run that says "paper": the word
  means only the paper's published numbers (the recipe of the paper's text is "four-layer",
  :data:`anomclip.book.labels.RECIPE_NAMES`).

Each takes a notebook as read by ``json`` (a dict) and returns ``(cell number, what)`` pairs.
"""
from __future__ import annotations

import html as _html
import re

#: tags that keep a cell's code off the page
INPUT_HIDDEN = {"remove-cell", "remove-input", "hide-input", "hide-cell"}
#: tags that keep a cell's outputs off the page (or behind a toggle)
OUTPUT_HIDDEN = {"remove-cell", "remove-output", "hide-output", "hide-cell"}
PARAMETER_TAGS = {"parameters", "injected-parameters"}
#: the title of the caution box of a smoke-run page (anomclip.book.labels.caveat)
SMOKE_TITLE = "Smoke run"
#: the provenance box's recipe row: "recipe | paper (…)" (HTML) or "**recipe**: paper (…)" (Markdown)
RECIPE_ROW = re.compile(r"recipe</th>\s*<td[^>]*>\s*paper\b|\*\*recipe\*\*:\s*paper\b")
#: a label that names one of our runs "paper": "(a) paper: 4 layers", "paper recipe"
PAPER_NAMED = re.compile(r"^\s*(?:\([a-z]\)\s*)?paper(?:\s*:|\s+recipe\b)", re.IGNORECASE)
#: the row headers of an HTML table (pandas' Styler writes them as <th class="row_heading …">)
ROW_HEADER = re.compile(r"<th[^>]*class=\"[^\"]*row_heading[^\"]*\"[^>]*>(.*?)</th>", re.DOTALL)


def _cells(notebook: dict):
    for i, cell in enumerate(notebook.get("cells", []), start=1):
        if cell.get("cell_type") == "code":
            yield i, cell, set((cell.get("metadata") or {}).get("tags", []) or [])


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def shown_none(notebook: dict) -> list[tuple[int, str]]:
    """Cells whose shown outputs include a bare ``None`` (an output whose only content is the
    text "None")."""
    out = []
    for i, cell, tags in _cells(notebook):
        if tags & OUTPUT_HIDDEN:
            continue
        for o in cell.get("outputs", []) or []:
            if o.get("output_type") not in ("display_data", "execute_result"):
                continue
            data = o.get("data") or {}
            shown = {k: v for k, v in data.items() if not k.startswith("application/vnd.anomclip")}
            if set(shown) == {"text/plain"} and _text(shown["text/plain"]).strip() == "None":
                out.append((i, "a bare None output"))
        for o in cell.get("outputs", []) or []:
            if o.get("output_type") == "stream" and _text(o.get("text")).strip() == "None":
                out.append((i, "None printed"))
    return out


def shown_parameters(notebook: dict) -> list[tuple[int, str]]:
    """Parameters cells (``parameters`` or papermill's ``injected-parameters``) whose code is on
    the page."""
    return [(i, f"parameters cell shown (tags: {sorted(tags) or 'none'})") for i, cell, tags in _cells(notebook)
            if tags & PARAMETER_TAGS and not tags & INPUT_HIDDEN]


def is_smoke_page(notebook: dict) -> bool:
    """Whether the chapter shows the smoke run's caution box."""
    for _, cell, tags in _cells(notebook):
        for o in cell.get("outputs", []) or []:
            html = _text((o.get("data") or {}).get("text/html"))
            if f">{SMOKE_TITLE}<" in html:
                return True
    return False


def _labels_of(output: dict) -> list[str]:
    """The labels an output shows: the row headers of its tables, its figure's legend entries."""
    data = output.get("data") or {}
    found = [_html.unescape(re.sub(r"<[^>]+>", "", h)).strip() for h in ROW_HEADER.findall(_text(data.get("text/html")))]
    check = data.get("application/vnd.anomclip.figure-check+json") or {}
    found += list(check.get("legend_labels", []))
    return found


def paper_labels(notebook: dict) -> list[tuple[int, str]]:
    """On a smoke-run page: our runs labelled "paper" — a provenance box whose recipe row says
    "paper", a table row or legend entry that names a run "paper: …" / "paper recipe". (Column
    headers "paper" — the paper's own numbers — are what the word is for.)"""
    if not is_smoke_page(notebook):
        return []
    out = []
    for i, cell, tags in _cells(notebook):
        if tags & OUTPUT_HIDDEN:
            continue
        for o in cell.get("outputs", []) or []:
            data = o.get("data") or {}
            for mime in ("text/html", "text/markdown"):
                if RECIPE_ROW.search(_text(data.get(mime))):
                    out.append((i, "provenance box: recipe \"paper\""))
                    break
            for label in _labels_of(o):
                if PAPER_NAMED.search(label):
                    out.append((i, f"label {label!r}"))
    return list(dict.fromkeys(out))


def page_problems(name: str, notebook: dict) -> list[str]:
    """Every problem of one executed chapter, as lines naming it and the cell."""
    found = [(i, w) for f in (shown_none, shown_parameters, paper_labels) for i, w in f(notebook)]
    return [f"{name} cell {i}: {what}" for i, what in sorted(found)]
