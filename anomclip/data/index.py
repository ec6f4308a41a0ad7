"""The ``meta.json`` index: the one format every dataset is read through.

Every dataset root holds (or gets, via ``anomclip prepare``) a ``meta.json`` in the de-facto
format of AnomalyCLIP / APRIL-GAN / AdaCLIP::

    {"train": {cls: [item, ...]}, "test": {cls: [item, ...]}, "synthetic": true}   # marker optional
    item = {"img_path": "bottle/test/broken_large/000.png",      # relative to the root
            "mask_path": "bottle/ground_truth/broken_large/000_mask.png",  # "" if none
            "cls_name": "bottle", "specie_name": "broken_large",  # "good" for normal images
            "anomaly": 1}

:func:`read_meta` validates it (one line naming the entry for: duplicate images, a mask on a
normal image, ``anomaly`` not 0/1, a non-string ``cls_name``, a path that leaves the root) and
keeps the top-level ``"synthetic": true`` marker of generated data (:func:`is_synthetic`).
Readers of the release layouts (:mod:`anomclip.data.releases`) produce this dict; the
samples of a split are loaded by :func:`anomclip.data.dataset.load_index`.
"""
from __future__ import annotations

import json
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

from ..errors import AnomclipError
from ..io import atomic_write

SPLITS = ("train", "test")


META_NAME = "meta.json"


#: Top-level key of ``meta.json`` marking generated (synthetic) data.
SYNTHETIC_KEY = "synthetic"


#: A file a generated mock release leaves in its root; :func:`prepare` turns it into the marker.
SYNTHETIC_MARKER = ".anomclip-synthetic"


@dataclass(frozen=True)
class Sample:
    """One image of a dataset, with absolute paths."""

    img_path: Path
    mask_path: Path | None
    cls_name: str
    specie_name: str
    anomaly: int


def make_item(img: str, mask: str, cls_name: str, specie: str, anomaly: int) -> dict:
    """One ``meta.json`` item (paths relative to the root, POSIX separators)."""
    return {
        "img_path": img,
        "mask_path": mask,
        "cls_name": cls_name,
        "specie_name": specie,
        "anomaly": int(anomaly),
    }


def check_root(root: str | os.PathLike) -> Path:
    """``root`` as a Path, or an error if it is not an existing directory."""
    path = Path(root).expanduser()
    if not path.exists():
        raise AnomclipError(f"dataset root {path} does not exist")
    if not path.is_dir():
        raise AnomclipError(f"dataset root {path} is not a directory")
    return path


def validate_meta(meta: object, source: Path) -> dict:
    """Check the structure of a meta dict and return it normalised (defaults filled in).

    Refused, each with one line naming the entry: a split that is not a mapping, a category
    that is not a list, an item without an ``img_path`` string, ``anomaly`` other than the
    integers 0/1, a non-string ``cls_name`` or ``mask_path``, a mask on a normal image, a path
    that leaves the dataset root (absolute, or ``..`` above it) and the same image listed twice
    in a split. The top-level ``"synthetic": true`` marker is kept.
    """
    if not isinstance(meta, dict) or not any(s in meta for s in SPLITS):
        raise AnomclipError(f"{source} is malformed: expected an object with 'train' and/or 'test'")
    out: dict = {}
    synthetic = meta.get(SYNTHETIC_KEY, False)
    if not isinstance(synthetic, bool):
        raise AnomclipError(f"{source} is malformed: '{SYNTHETIC_KEY}' must be true or false, got {synthetic!r}")
    for split in SPLITS:
        if split not in meta:
            continue
        classes = meta[split]
        if not isinstance(classes, dict):
            raise AnomclipError(f"{source} is malformed: '{split}' must map category names to lists")
        out[split] = {}
        seen: dict[str, str] = {}
        for cls_name, items in classes.items():
            if not isinstance(items, list):
                raise AnomclipError(f"{source} is malformed: '{split}/{cls_name}' is not a list")
            checked = [_validate_item(it, source, split, cls_name) for it in items]
            for it in checked:
                key = posixpath.normpath(it["img_path"])
                if key in seen:
                    raise AnomclipError(
                        f"{source}: image {it['img_path']!r} is listed twice in '{split}' "
                        f"(categories {seen[key]!r} and {cls_name!r})"
                    )
                seen[key] = cls_name
            out[split][cls_name] = checked
    if synthetic:
        out[SYNTHETIC_KEY] = True
    return out


def _check_rel_path(rel: str, what: str, where: str) -> None:
    """Refuse an index path that is absolute or climbs above the dataset root."""
    if not rel.strip():
        raise AnomclipError(f"{where} has an empty {what}")
    pure = rel.replace("\\", "/")
    if pure.startswith("/") or os.path.isabs(rel) or (len(pure) > 1 and pure[1] == ":"):
        raise AnomclipError(f"{where}: {what} {rel!r} is absolute; paths must be relative to the dataset root")
    if posixpath.normpath(pure).split("/")[0] == "..":
        raise AnomclipError(f"{where}: {what} {rel!r} leaves the dataset root")


def _validate_item(item: object, source: Path, split: str, cls_name: str) -> dict:
    """Check one meta item; ``mask_path``, ``cls_name`` and ``specie_name`` get defaults."""
    where = f"{source} is malformed: an item of '{split}/{cls_name}'"
    if not isinstance(item, dict) or not isinstance(item.get("img_path"), str):
        raise AnomclipError(f"{where} has no 'img_path' string")
    img = item["img_path"]
    anomaly = item.get("anomaly")
    if type(anomaly) is not int or anomaly not in (0, 1):  # bools and floats refused too
        raise AnomclipError(f"{where} ({img}) has 'anomaly' {anomaly!r}, expected 0 or 1")
    mask = item.get("mask_path") or ""
    if not isinstance(mask, str):
        raise AnomclipError(f"{where} ({img}) has a non-string 'mask_path'")
    name = item.get("cls_name", cls_name)
    if not isinstance(name, str) or not name:
        raise AnomclipError(f"{where} ({img}) has 'cls_name' {name!r}, expected a non-empty string")
    if anomaly == 0 and mask:
        raise AnomclipError(f"{source}: image {img!r} is labelled normal (anomaly 0) but has the mask {mask!r}")
    _check_rel_path(img, "img_path", f"{source}: item {img!r}")
    if mask:
        _check_rel_path(mask, "mask_path", f"{source}: item {img!r}")
    specie = item.get("specie_name") or ("good" if anomaly == 0 else "anomaly")
    return make_item(img, mask, name, str(specie), anomaly)


def read_meta(root: str | os.PathLike) -> dict:
    """Read and validate ``root/meta.json``."""
    path = check_root(root) / META_NAME
    if not path.is_file():
        raise AnomclipError(f"{path} does not exist; run `anomclip prepare` on {path.parent}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnomclipError(f"{path} is not valid JSON: {exc}") from None
    return validate_meta(meta, path)


def write_meta(root: str | os.PathLike, meta: dict) -> Path:
    """Write ``root/meta.json`` atomically (temporary file in the same folder + ``os.replace``)."""
    root = check_root(root)
    path = root / META_NAME
    meta = validate_meta(meta, path)
    return atomic_write(path, json.dumps(meta, indent=2) + "\n")


def is_synthetic(root: str | os.PathLike) -> bool:
    """True when ``root/meta.json`` carries ``"synthetic": true`` (or, before ``prepare``, when
    the root holds the :data:`SYNTHETIC_MARKER` file a generated mock release leaves)."""
    root = check_root(root)
    if (root / META_NAME).is_file():
        return bool(read_meta(root).get(SYNTHETIC_KEY, False))
    return (root / SYNTHETIC_MARKER).is_file()


def mark_synthetic(root: str | os.PathLike) -> Path:
    """Add the top-level ``"synthetic": true`` marker to ``root/meta.json`` (generated data)."""
    meta = read_meta(root)
    if meta.get(SYNTHETIC_KEY):
        return Path(root) / META_NAME
    return write_meta(root, {**meta, SYNTHETIC_KEY: True})
