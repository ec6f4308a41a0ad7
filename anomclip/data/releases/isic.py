"""ISIC 2016 (Part 1 test set): every image is a lesion; masks ``<stem>_Segmentation.png``.

``ISBI2016_ISIC_Part1_Test_Data/ISIC_*.jpg`` + ``ISBI2016_ISIC_Part1_Test_GroundTruth/``; each
zip unzipped into a folder named after it (``…Test_Data/…Test_Data/``) is read too.
"""
from __future__ import annotations

import re
from pathlib import Path

from .listing import anomalous_pairs, any_sub, child, not_found, note_unmasked, subdirs, test_only, unwrap


def read_isic(root: Path, notes: list) -> dict:
    """ISIC 2016 test set: every image is a lesion; masks ``<stem>_Segmentation.png``."""
    dirs = subdirs(root)
    img_dir = unwrap(next((d for d in dirs if re.search(r"test_data$", d.name, re.I)), None)
                     or child(root, ("images",)), notes)
    mask_dir = unwrap(next((d for d in dirs if re.search(r"groundtruth$", d.name, re.I)), None)
                      or child(root, ("masks",)), notes)
    if img_dir is None:
        raise not_found(root, "ISIC (ISBI2016_ISIC_Part1_Test_Data/)")
    items = anomalous_pairs(root, img_dir, mask_dir, "skin")
    note_unmasked(items, notes, img_dir)
    return test_only("skin", items)


def looks_isic(root: Path) -> bool:
    return any_sub(root, lambda d: bool(re.search(r"test_data$", d.name, re.I)))
