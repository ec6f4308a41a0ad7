"""A dataset's samples and the torch ``Dataset`` that preprocesses them.

:func:`load_index` reads the samples of one split per category from ``meta.json`` or, for a
root without one, from its release layout (:func:`anomclip.data.releases.read_layout`, looking
through the wrapper folders an archive unpacks below the root, paths relative to the root as
``meta.json`` would list them), checking that every listed file exists. :class:`AnomalyDataset`
decodes and preprocesses them (:mod:`anomclip.data.preprocess`). Detecting a layout and writing
``meta.json`` are :func:`anomclip.data.releases.detect` and :func:`anomclip.data.releases.prepare`.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from ..errors import AnomclipError
from .index import META_NAME, SPLITS, Sample, check_root, read_meta, validate_meta
from .preprocess import image_to_tensor, mask_to_tensor, read_image, read_mask
from .releases import read_layout


def _resolve_meta(root: Path) -> dict:
    """The meta dict of ``root``: its ``meta.json``, or an index built from its layout."""
    if (root / META_NAME).is_file():
        return read_meta(root)
    return validate_meta(read_layout(root)[1], root / META_NAME)


def _pick_categories(
    known: Sequence[str], categories: str | Iterable[str] | None, where: str
) -> list[str]:
    """The requested categories in the requested order, or all of them."""
    if categories is None:
        return list(known)
    if isinstance(categories, str):
        categories = [c.strip() for c in categories.split(",") if c.strip()]
    picked = list(dict.fromkeys(categories))
    if not picked:
        raise AnomclipError(
            f"empty category selection for {where}; known: {', '.join(known) or '(none)'}"
        )
    for cls_name in picked:
        if cls_name not in known:
            raise AnomclipError(
                f"unknown category {cls_name!r} in {where}; known: {', '.join(known) or '(none)'}"
            )
    return picked


def load_index(
    root: str | os.PathLike,
    split: str = "test",
    categories: str | Iterable[str] | None = None,
    require_masks: bool = False,
) -> dict[str, list[Sample]]:
    """Samples of one split per category, checked to exist on disk.

    ``categories`` is a list of names, a comma-separated string or None (all, in index order).
    An item whose ``mask_path`` is set but missing on disk is always an error; with
    ``require_masks`` every anomalous item must also *have* a mask (pixel metrics need them).
    Datasets with no masks at all (image-level labels only) load with the default.
    """
    root = check_root(root)
    where = str(root / META_NAME)
    if split not in SPLITS:
        raise AnomclipError(f"unknown split {split!r} (choose from {', '.join(SPLITS)})")
    meta = _resolve_meta(root)
    if split not in meta:
        raise AnomclipError(f"{where} has no '{split}' split")
    classes = meta[split]
    if not classes:
        raise AnomclipError(f"{where} has no category in its '{split}' split")
    out: dict[str, list[Sample]] = {}
    for cls_name in _pick_categories(list(classes), categories, where):
        items = classes[cls_name]
        if not items:
            raise AnomclipError(f"category {cls_name!r} in {where} has no {split} samples")
        out[cls_name] = [_to_sample(root, it, require_masks) for it in items]
    return out


def _listed_file(root: Path, rel: str, what: str) -> Path:
    """The file ``root/rel`` of the index, resolved, or an error naming the path as listed."""
    path = root / rel
    where = f"{what} {rel!r} listed in {root / META_NAME}"
    if path.is_symlink() and not path.exists():
        raise AnomclipError(f"{where} is a dangling symlink (to {os.readlink(path)})")
    if path.is_dir():
        raise AnomclipError(f"{where} is a directory, not a file")
    if not path.is_file():
        raise AnomclipError(f"{where} does not exist ({path})")
    return path.resolve()


def _to_sample(root: Path, item: dict, require_masks: bool) -> Sample:
    """A :class:`Sample` from a meta item, checking its files exist."""
    img = _listed_file(root, item["img_path"], "image file")
    mask: Path | None = None
    if item["mask_path"]:
        mask = _listed_file(root, item["mask_path"], "mask file")
    elif require_masks and item["anomaly"] == 1:
        raise AnomclipError(f"anomalous image {img} has no mask in {root / META_NAME}")
    return Sample(img, mask, item["cls_name"], item["specie_name"], int(item["anomaly"]))


def has_masks(samples: Iterable[Sample]) -> bool:
    """True when at least one anomalous sample has a pixel mask (pixel metrics make sense)."""
    return any(s.anomaly == 1 and s.mask_path is not None for s in samples)


def _read_pair(sample: Sample) -> tuple[Image.Image, np.ndarray | None]:
    """Image and (boolean) mask of a sample at original size, checking the sizes agree."""
    img = read_image(sample.img_path)
    if sample.mask_path is None:
        return img, None
    mask = read_mask(sample.mask_path)
    w, h = img.size
    if mask.shape != (h, w):
        raise AnomclipError(
            f"mask {sample.mask_path} is {mask.shape[1]}x{mask.shape[0]} "
            f"but its image {sample.img_path.name} is {w}x{h}"
        )
    return img, mask


class AnomalyDataset(torch.utils.data.Dataset):
    """Samples → ``{"image", "mask", "label", "cls_name", "specie_name", "path"}``.

    ``image`` is [3, S, S] normalised, ``mask`` [S, S] float {0, 1} (zeros without a mask).
    With ``skip_unreadable`` every image and mask is decoded once at construction
    (:meth:`scan`, a full pass over the data) and the unreadable ones are left out and listed
    in :attr:`skipped` as ``(path, reason)``; otherwise a bad file raises
    :class:`AnomclipError` when its item is read.
    """

    def __init__(self, samples: Sequence[Sample], image_size: int, skip_unreadable: bool = False):
        if int(image_size) < 1:
            raise AnomclipError(f"image size must be a positive integer, got {image_size}")
        self.samples: list[Sample] = list(samples)
        self.image_size = int(image_size)
        self.skip_unreadable = skip_unreadable
        self.skipped: list[tuple[str, str]] = []
        if skip_unreadable:
            self.scan()

    def scan(self) -> list[tuple[str, str]]:
        """Decode every file; drop unreadable samples into :attr:`skipped` (with a warning)."""
        good: list[Sample] = []
        bad: list[tuple[str, str]] = []
        for sample in self.samples:
            try:
                _read_pair(sample)
            except AnomclipError as exc:
                bad.append((str(sample.img_path), str(exc)))
            else:
                good.append(sample)
        self.samples = good
        self.skipped.extend(bad)
        if bad:
            warnings.warn(
                f"skipped {len(bad)} unreadable sample{'' if len(bad) == 1 else 's'}, first: {bad[0][1]}", stacklevel=2
            )
        return bad

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        img, mask = _read_pair(sample)
        size = self.image_size
        mask_t = mask_to_tensor(mask, size) if mask is not None else torch.zeros(size, size)
        return {
            "image": image_to_tensor(img, size),
            "mask": mask_t,
            "label": int(sample.anomaly),
            "cls_name": sample.cls_name,
            "specie_name": sample.specie_name,
            "path": str(sample.img_path),
        }

