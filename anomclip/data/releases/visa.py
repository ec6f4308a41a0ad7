"""VisA: its split CSV ``split_csv/1cls.csv``, or its folders when the CSV is absent.

Images ``<cls>/Data/Images/{Normal,Anomaly}/*``, masks ``<cls>/Data/Masks/Anomaly/<stem>.png``
holding class ids (> 0 is anomalous).
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

from ...errors import AnomclipError
from ..index import SPLITS, check_root, make_item
from .listing import (anomalous_pairs, any_sub, child, list_images, not_found, note_unmasked, relpath, search_child,
                      subdirs)


def index_visa(root: str | os.PathLike) -> dict:
    """Meta dict of a VisA root from ``split_csv/1cls.csv`` (object, split, label, image, mask)."""
    root = check_root(root)
    csv_path = root / "split_csv" / "1cls.csv"
    if not csv_path.is_file():
        raise AnomclipError(f"{csv_path} does not exist: {root} is not a VisA layout")
    meta: dict = {"train": {}, "test": {}}
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        needed = {"object", "split", "label", "image", "mask"}
        missing = needed - set(reader.fieldnames or [])
        if missing:
            raise AnomclipError(f"{csv_path} lacks the column{'s' if len(missing) > 1 else ''} {', '.join(sorted(missing))}")
        for line, row in enumerate(reader, start=2):
            split, label = row["split"].strip(), row["label"].strip()
            if split not in SPLITS or label not in ("normal", "anomaly"):
                raise AnomclipError(
                    f"{csv_path} line {line}: split {split!r} / label {label!r} "
                    "(expected train|test and normal|anomaly)"
                )
            anomaly = int(label == "anomaly")
            mask = (row["mask"] or "").strip() if anomaly else ""
            cls_name = row["object"].strip()
            meta[split].setdefault(cls_name, []).append(
                make_item(row["image"].strip(), mask, cls_name, "anomaly" if anomaly else "good", anomaly)
            )
    if not meta["test"]:
        raise AnomclipError(f"{csv_path} lists no test images")
    return meta


def read_visa(root: Path, notes: list) -> dict:
    """VisA via ``split_csv/1cls.csv``, or from its folders when the CSV is absent (all test)."""
    if (root / "split_csv" / "1cls.csv").is_file():
        return index_visa(root)
    notes.append("no split_csv/1cls.csv: every image of <cls>/Data/Images is put in the test split")
    meta: dict = {"train": {}, "test": {}}
    for cls_dir in subdirs(root):
        images = search_child(cls_dir, ("Data",))
        images = child(images, ("Images",)) if images else None
        if images is None:
            continue
        normal_dir, bad_dir = child(images, ("Normal",)), child(images, ("Anomaly",))
        masks_dir = cls_dir / "Data" / "Masks"
        mask_dir = child(masks_dir, ("Anomaly",)) if masks_dir.is_dir() else None
        items = [make_item(relpath(p, root), "", cls_dir.name, "good", 0)
                 for p in (list_images(normal_dir) if normal_dir else [])]
        if bad_dir:
            items += anomalous_pairs(root, bad_dir, mask_dir, cls_dir.name)
        meta["test"][cls_dir.name] = items
        note_unmasked(items, notes, cls_dir)
    if not meta["test"]:
        raise not_found(root, "VisA (split_csv/1cls.csv or <cls>/Data/Images/)")
    return meta


def looks_visa(root: Path) -> bool:
    return (root / "split_csv" / "1cls.csv").is_file() or any_sub(
        root, lambda d: (d / "Data" / "Images").is_dir())
