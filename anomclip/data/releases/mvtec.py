"""MVTec AD-style trees: MVTec AD, MPDD, DTD-Synthetic, and BTAD (``ok`` / ``ko``).

``<cls>/train/<kind>/*``, ``<cls>/test/{good,<defect>}/*`` and masks
``<cls>/ground_truth/<defect>/<stem>*`` paired by file stem. A root that is itself one
category (``root/test/…``) is read too.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ...errors import AnomclipError
from ..index import check_root, make_item
from .listing import any_sub, has_child, list_images, mask_for, note_unmasked, relpath, subdirs


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


def read_mvtec(root: Path, notes: list, normal: Sequence[str] = ("good",)) -> dict:
    """MVTec AD / MPDD / DTD-Synthetic (and a single-category root ``root/test/…``)."""
    if (root / "test").is_dir():
        train, test = mvtec_category(root, root, root.name, normal)
        meta = {"train": {root.name: train}, "test": {root.name: test}}
    else:
        meta = index_mvtec(root, normal=normal)
    for cls_name, items in meta["test"].items():
        note_unmasked(items, notes, Path(cls_name))
    return meta


def read_btad(root: Path, notes: list) -> dict:
    """BTAD: MVTec-like with ``ok`` normal and ``ko`` anomalous."""
    return read_mvtec(root, notes, normal=("ok", "good"))


def looks_mvtec(root: Path) -> bool:
    return (root / "test").is_dir() or any_sub(root, lambda d: (d / "test").is_dir())


def looks_btad(root: Path) -> bool:
    return any_sub(root, lambda d: (d / "test").is_dir() and has_child(d / "test", ("ok", "ko")))
