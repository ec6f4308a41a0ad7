"""The generic readers: an MVTec AD-style tree, VisA's split CSV, and the user's own folders.

Each turns a root folder into the ``meta.json`` dict of :mod:`anomclip.data.index`. The
dataset-specific readers of the paper's 17 datasets (:mod:`anomclip.data.layouts`) build on
these.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Sequence

from ..errors import AnomclipError
from .index import SPLITS, check_root, make_item
from .scan import list_images, mask_for, relpath, subdirs

#: Folder names of the user layout (:func:`index_folder`).
NORMAL_DIRS = ("normal", "good")


ANOMALOUS_DIRS = ("anomalous", "anomaly", "abnormal")


MASK_DIRS = ("masks", "mask", "ground_truth")


def mvtec_category(root: Path, cls_dir: Path, cls_name: str | None = None,
                   normal: Sequence[str] = ("good",)) -> tuple[list[dict], list[dict]]:
    """(train items, test items) of one MVTec-style category folder ``cls_dir`` under ``root``.

    ``<cls>/train/<kind>/*``, ``<cls>/test/<defect>/*`` (a folder named in ``normal`` —
    compared case-insensitively — holds normal images) and masks
    ``<cls>/ground_truth/<defect>/<stem>*`` paired by file stem (``<stem>.*`` first, else
    ``<stem>_*`` such as ``_mask``). An anomalous image without a mask gets ``mask_path ""``.
    """
    cls_name = cls_name or cls_dir.name
    normal = tuple(n.lower() for n in normal)
    train = [make_item(relpath(p, root), "", cls_name, d.name, int(d.name.lower() not in normal))
             for d in subdirs(cls_dir / "train") for p in list_images(d)]
    test = []
    for defect_dir in subdirs(cls_dir / "test"):
        defect, good = defect_dir.name, defect_dir.name.lower() in normal
        gt_dir = cls_dir / "ground_truth" / defect
        masks = list_images(gt_dir)
        for img in list_images(defect_dir):
            mask = None if good else mask_for(img.stem, masks, gt_dir)
            test.append(make_item(relpath(img, root), relpath(mask, root) if mask else "", cls_name,
                              "good" if good else defect, int(not good)))
    return train, test


def index_mvtec(root: str | os.PathLike, normal: Sequence[str] = ("good",)) -> dict:
    """Meta dict of an MVTec AD layout (also MPDD, DTD-Synthetic; BTAD with ``normal=("ok",)``).

    Every sub-folder with a ``test/`` folder is a category, read by :func:`mvtec_category`.
    """
    root = check_root(root)
    meta: dict = {"train": {}, "test": {}}
    for cls_dir in subdirs(root):
        if (cls_dir / "test").is_dir():
            meta["train"][cls_dir.name], meta["test"][cls_dir.name] = mvtec_category(
                root, cls_dir, normal=normal)
    if not meta["test"]:
        raise AnomclipError(f"{root} is not an MVTec AD layout: no <category>/test/ folder found")
    return meta


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


def find_dirs(cls_dir: Path, names: Sequence[str]) -> list[Path]:
    """The sub-folders of ``cls_dir`` whose name is in ``names``."""
    return [d for d in subdirs(cls_dir) if d.name.lower() in names]


def index_folder(root: str | os.PathLike) -> dict:
    """Meta dict of a user layout.

    ``<cls>/normal/*`` (or ``good/``), ``<cls>/anomalous/*`` (or ``anomaly/``, ``abnormal/``;
    images may sit in defect-type sub-folders, whose name becomes ``specie_name``) and optional
    masks ``<cls>/masks/<stem>*.png`` paired by stem. Everything goes to ``test``; ``train``
    gets the normal images too.
    """
    root = check_root(root)
    meta: dict = {"train": {}, "test": {}}
    for cls_dir in subdirs(root):
        normal_dirs = find_dirs(cls_dir, NORMAL_DIRS)
        bad_dirs = find_dirs(cls_dir, ANOMALOUS_DIRS)
        if not normal_dirs and not bad_dirs:
            continue
        cls_name = cls_dir.name
        mask_dirs = find_dirs(cls_dir, MASK_DIRS)
        masks = [m for d in mask_dirs for m in list_images(d)]
        normal = [make_item(relpath(p, root), "", cls_name, "good", 0)
                  for d in normal_dirs for p in list_images(d)]
        bad = []
        for d in bad_dirs:
            groups = [(d, "anomaly")] + [(sub, sub.name) for sub in subdirs(d)]
            for folder, specie in groups:
                for img in list_images(folder):
                    mask = mask_for(img.stem, masks, cls_dir / "masks")
                    bad.append(make_item(relpath(img, root), relpath(mask, root) if mask else "",
                                     cls_name, specie, 1))
        meta["train"][cls_name] = [dict(it) for it in normal]
        meta["test"][cls_name] = normal + bad
    if not meta["test"]:
        raise AnomclipError(
            f"{root} is not a folder layout: no <category>/normal/ or <category>/anomalous/ found"
        )
    return meta
