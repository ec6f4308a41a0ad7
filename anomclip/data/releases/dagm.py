"""DAGM 2007: ``ClassN/{Train,Test}/NNNN.PNG`` with defect labels in ``…/Label/``.

``Label/Labels.txt`` (``id flag file 0 labelfile``) says which images are defective; without
it, the presence of a label file ``NNNN_label.PNG`` does.
"""
from __future__ import annotations

import re
from pathlib import Path

from ...errors import AnomclipError
from ..index import SPLITS, make_item
from .listing import any_sub, child, has_child, list_images, mask_for, not_found, note_unmasked, relpath, subdirs

_DAGM_CLASS = re.compile(r"^class\d+$", re.IGNORECASE)


def _dagm_flags(label_dir: Path | None) -> dict[str, int] | None:
    """``{image stem: 0/1}`` from ``Labels.txt`` (rows ``id flag file 0 labelfile`` after a
    one-field header line), or None when there is no such file."""
    if label_dir is None:
        return None
    txt = next((p for p in label_dir.iterdir() if p.is_file() and p.name.lower() == "labels.txt"), None)
    if txt is None:
        return None
    flags: dict[str, int] = {}
    for n, line in enumerate(txt.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        parts = line.split()
        if len(parts) <= 1:  # the header line ("1") or an empty line
            continue
        if len(parts) < 3 or parts[1] not in ("0", "1"):
            raise AnomclipError(f"{txt} line {n}: expected 'id flag file 0 labelfile', got {line.strip()!r}")
        flags[Path(parts[2]).stem] = int(parts[1])
    return flags


def read_dagm(root: Path, notes: list) -> dict:
    """DAGM 2007: ``ClassN/{Train,Test}`` with defect labels in ``Label/``."""
    meta: dict = {"train": {}, "test": {}}
    for cls_dir in subdirs(root):
        if not _DAGM_CLASS.match(cls_dir.name):
            continue
        for split in SPLITS:
            split_dir = child(cls_dir, (split,))
            if split_dir is None:
                continue
            label_dir = child(split_dir, ("Label", "Labels"))
            labels = list_images(label_dir) if label_dir else []
            flags = _dagm_flags(label_dir)
            items = []
            for img in list_images(split_dir):
                mask = mask_for(img.stem, labels, label_dir) if label_dir else None
                if flags is None:
                    anomaly = int(mask is not None)
                else:
                    if img.stem not in flags:
                        raise AnomclipError(f"{img} is not listed in {label_dir}/Labels.txt")
                    anomaly = flags[img.stem]
                    if not anomaly and mask is not None:
                        notes.append(f"{img}: Labels.txt says defect-free but {mask.name} exists; kept as normal")
                        mask = None
                items.append(make_item(relpath(img, root), relpath(mask, root) if mask else "", cls_dir.name,
                                     "defect" if anomaly else "good", anomaly))
            meta[split][cls_dir.name] = items
            if split == "test":
                note_unmasked(items, notes, split_dir)
    if not meta["test"]:
        raise not_found(root, "DAGM (Class1…Class10/Test/)")
    return meta


def looks_dagm(root: Path) -> bool:
    return any_sub(root, lambda d: bool(_DAGM_CLASS.match(d.name)) and has_child(d, ("test", "train")))
