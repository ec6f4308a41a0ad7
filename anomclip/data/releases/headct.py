"""HeadCT (Kaggle): ``head_ct/NNN.png`` labelled by ``labels.csv`` (``id, hemorrhage``).

The archive nests ``head_ct/head_ct/``; the ids of the CSV have no leading zeros.
"""
from __future__ import annotations

import csv
from pathlib import Path

from ...errors import AnomclipError
from ..index import make_item
from .listing import list_images, not_found, relpath, search_child, subdirs, test_only, unwrap


def _headct_csv(root: Path) -> Path | None:
    """``labels.csv`` in ``root`` or one folder down (case-insensitive)."""
    for folder in [root] + subdirs(root):
        hit = next((p for p in folder.iterdir() if p.is_file() and p.name.lower() == "labels.csv"), None)
        if hit:
            return hit
    return None


def read_headct(root: Path, notes: list) -> dict:
    """HeadCT: ``head_ct/NNN.png`` labelled by ``labels.csv`` (``id``, ``hemorrhage``)."""
    csv_path = _headct_csv(root)
    img_dir = unwrap(search_child(root, ("head_ct",)))  # the Kaggle archive nests head_ct/head_ct/
    if csv_path is None or img_dir is None:
        raise not_found(root, "HeadCT (head_ct/ and labels.csv)")
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = [h.strip().lower() for h in next(reader, [])]
        if "id" not in header or "hemorrhage" not in header:
            raise AnomclipError(f"{csv_path} lacks the columns 'id' and 'hemorrhage' (found {header})")
        i_id, i_lab = header.index("id"), header.index("hemorrhage")
        labels = {}
        for n, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                labels[int(row[i_id])] = int(row[i_lab])
            except (ValueError, IndexError):
                raise AnomclipError(f"{csv_path} line {n}: expected an integer id and a 0/1 label") from None
    items = []
    for img in list_images(img_dir):
        if not img.stem.isdigit():
            continue
        if int(img.stem) not in labels:
            raise AnomclipError(f"{img} has no row in {csv_path}")
        anomaly = labels[int(img.stem)]
        items.append(make_item(relpath(img, root), "", "brain", "hemorrhage" if anomaly else "good", anomaly))
    return test_only("brain", items)


def looks_headct(root: Path) -> bool:
    return search_child(root, ("head_ct",)) is not None and _headct_csv(root) is not None
