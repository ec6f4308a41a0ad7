"""The brain tumour MRI sets, BrainMRI and Br35H (Kaggle): ``no/`` normal, ``yes/`` anomalous.

BrainMRI unpacks into ``brain_tumor_dataset/``; Br35H's unlabelled ``pred/`` folder is ignored
with a note. The two share a structure: the folder name tells them apart.
"""
from __future__ import annotations

from pathlib import Path

from ..index import make_item
from .listing import list_images, not_found, relpath, search_child, subdirs, test_only, unwrap


def read_brain_mri(root: Path, notes: list) -> dict:
    """BrainMRI / Br35H: ``no/`` normal, ``yes/`` anomalous (any other folder ignored)."""
    no, yes = search_child(root, ("no",)), search_child(root, ("yes",))
    if no is None or yes is None:
        raise not_found(root, "no/ and yes/ folders")
    ignored = [d.name for d in subdirs(no.parent) if d not in (no, yes)]
    if ignored:
        notes.append(f"ignored folder{'' if len(ignored) == 1 else 's'} without labels: {', '.join(ignored)}")
    no, yes = unwrap(no, notes), unwrap(yes, notes)
    items = [make_item(relpath(p, root), "", "brain", "good", 0) for p in list_images(no)]
    items += [make_item(relpath(p, root), "", "brain", "tumor", 1) for p in list_images(yes)]
    return test_only("brain", items)


def looks_brain_mri(root: Path) -> bool:
    return search_child(root, ("no",)) is not None and search_child(root, ("yes",)) is not None
