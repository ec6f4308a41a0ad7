"""The user's own folders (``--layout folder``): ``<cls>/normal/``, ``<cls>/anomalous/``, masks.

Also the layout of Table 3's medical auxiliary set (docs/datasets.md).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ...errors import AnomclipError
from ..index import check_root, make_item
from .listing import any_sub, list_images, mask_for, note_unmasked, relpath, subdirs

#: Folder names of the user layout (:func:`index_folder`).
NORMAL_DIRS = ("normal", "good")


ANOMALOUS_DIRS = ("anomalous", "anomaly", "abnormal")


MASK_DIRS = ("masks", "mask", "ground_truth")


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


def read_folder(root: Path, notes: list) -> dict:
    """The user layout (:func:`index_folder`)."""
    meta = index_folder(root)
    for cls_name, items in meta["test"].items():
        note_unmasked(items, notes, Path(cls_name))
    return meta


def looks_folder(root: Path) -> bool:
    return any_sub(root, lambda d: bool(find_dirs(d, NORMAL_DIRS + ANOMALOUS_DIRS)))
