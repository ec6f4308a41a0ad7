"""Datasets: the ``meta.json`` index, the generic layout readers and the exact preprocessing.

**Index.** Every dataset root holds (or gets, via :func:`prepare`) a ``meta.json`` in the
de-facto format of AnomalyCLIP / APRIL-GAN / AdaCLIP::

    {"train": {cls: [item, ...]}, "test": {cls: [item, ...]}, "synthetic": true}   # marker optional
    item = {"img_path": "bottle/test/broken_large/000.png",      # relative to the root
            "mask_path": "bottle/ground_truth/broken_large/000_mask.png",  # "" if none
            "cls_name": "bottle", "specie_name": "broken_large",  # "good" for normal images
            "anomaly": 1}

:func:`read_meta` validates it (one line naming the entry for: duplicate images, a mask on a
normal image, ``anomaly`` not 0/1, a non-string ``cls_name``, a path that leaves the root) and
keeps the top-level ``"synthetic": true`` marker of generated data (:func:`is_synthetic`).
:func:`load_index` turns it into :class:`Sample` lists per category. Roots without a
``meta.json`` are indexed on the fly when they have a known layout: the generic readers live
here (MVTec AD :func:`index_mvtec`, VisA :func:`index_visa`, the user layout
:func:`index_folder`); the 17 datasets of the paper and their detection are in
:mod:`anomclip.layouts`. :func:`split_sdd` cuts KolektorSDD into an MVTec-style root.

**Preprocessing** (exact, SPEC §7, equal to the authors' ``dataset.py`` + ``test.py``):

* images → read upright (EXIF orientation applied, ``PIL.ImageOps.exif_transpose``), RGB
  (greyscale, RGBA, palette and 16-bit images are converted; 16-bit values are scaled to 8 bit
  with ``round(v * 255 / 65535)``, never clipped), resized to S×S with PIL bicubic (aspect
  ratio squashed; PIL antialiases when downsampling), scaled to [0, 1] and normalised with the
  CLIP mean/std;
* masks → read upright, single channel at their original resolution, binarised with ``> 0``
  (VisA masks hold class ids, not 255) and stored as an 8-bit image of 0/255, resized to S×S
  with **PIL bilinear** (which antialiases — smooths — when it shrinks, exactly like
  torchvision's ``Resize`` on a PIL image in the authors' code), divided by 255 and
  thresholded ``> 0.5`` (i.e. a resized value ≥ 128); normal images get an all-zero mask. A
  mask whose size differs from its image is an error.
"""
from __future__ import annotations

import csv
import json
import os
import posixpath
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import AnomclipError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: File suffixes treated as images by the layout readers (compared case-insensitively).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: Folder names of the user layout (:func:`index_folder`).
NORMAL_DIRS = ("normal", "good")
ANOMALOUS_DIRS = ("anomalous", "anomaly", "abnormal")
MASK_DIRS = ("masks", "mask", "ground_truth")
SPLITS = ("train", "test")
META_NAME = "meta.json"
#: Top-level key of ``meta.json`` marking generated (synthetic) data.
SYNTHETIC_KEY = "synthetic"
#: A file a generated stand-in leaves in its root; :func:`prepare` turns it into the marker.
SYNTHETIC_MARKER = ".anomclip-synthetic"


# --------------------------------------------------------------------------- samples / meta


@dataclass(frozen=True)
class Sample:
    """One image of a dataset, with absolute paths."""

    img_path: Path
    mask_path: Path | None
    cls_name: str
    specie_name: str
    anomaly: int


def _item(img: str, mask: str, cls_name: str, specie: str, anomaly: int) -> dict:
    """One ``meta.json`` item (paths relative to the root, POSIX separators)."""
    return {
        "img_path": img,
        "mask_path": mask,
        "cls_name": cls_name,
        "specie_name": specie,
        "anomaly": int(anomaly),
    }


def _check_root(root: str | os.PathLike) -> Path:
    """``root`` as a Path, or an error if it is not an existing directory."""
    path = Path(root).expanduser()
    if not path.exists():
        raise AnomclipError(f"dataset root {path} does not exist")
    if not path.is_dir():
        raise AnomclipError(f"dataset root {path} is not a directory")
    return path


def _validate_meta(meta: object, source: Path) -> dict:
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
    return _item(img, mask, name, str(specie), anomaly)


def read_meta(root: str | os.PathLike) -> dict:
    """Read and validate ``root/meta.json``."""
    path = _check_root(root) / META_NAME
    if not path.is_file():
        raise AnomclipError(f"{path} does not exist; run `anomclip prepare` on {path.parent}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnomclipError(f"{path} is not valid JSON: {exc}") from None
    return _validate_meta(meta, path)


def write_meta(root: str | os.PathLike, meta: dict) -> Path:
    """Write ``root/meta.json`` atomically (temporary file in the same folder + ``os.replace``)."""
    root = _check_root(root)
    path = root / META_NAME
    meta = _validate_meta(meta, path)
    from .results import atomic_write

    return atomic_write(path, json.dumps(meta, indent=2) + "\n")


def is_synthetic(root: str | os.PathLike) -> bool:
    """True when ``root/meta.json`` carries ``"synthetic": true`` (or, before ``prepare``, when
    the root holds the :data:`SYNTHETIC_MARKER` file a generated stand-in leaves)."""
    root = _check_root(root)
    if (root / META_NAME).is_file():
        return bool(read_meta(root).get(SYNTHETIC_KEY, False))
    return (root / SYNTHETIC_MARKER).is_file()


def mark_synthetic(root: str | os.PathLike) -> Path:
    """Add the top-level ``"synthetic": true`` marker to ``root/meta.json`` (generated data)."""
    meta = read_meta(root)
    if meta.get(SYNTHETIC_KEY):
        return Path(root) / META_NAME
    return write_meta(root, {**meta, SYNTHETIC_KEY: True})


def _resolve_meta(root: Path) -> dict:
    """The meta dict of ``root``: its ``meta.json``, or an index built from its layout."""
    if (root / META_NAME).is_file():
        return read_meta(root)
    from .layouts import read_layout

    return _validate_meta(read_layout(root)[1], root / META_NAME)


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
    root = _check_root(root)
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


# --------------------------------------------------------------------------- layout readers


def _is_image(path: Path) -> bool:
    """A visible file with an image suffix."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def _images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if _is_image(p)), key=lambda p: p.name)


def _subdirs(folder: Path) -> list[Path]:
    """Visible sub-folders of ``folder``, sorted by name."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.name)


def _rel(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` with POSIX separators."""
    return path.relative_to(root).as_posix()


def _mask_for(stem: str, masks: list[Path], where: Path) -> Path | None:
    """The mask paired with image ``stem``: ``<stem>.*``, else ``<stem>_*`` / ``<stem>-*``.

    Pairing is by file stem, never by sort order. Several candidates for one stem are an error.
    """
    exact = [m for m in masks if m.stem == stem]
    if len(exact) == 1:
        return exact[0]
    loose = exact or [m for m in masks if m.stem.startswith((stem + "_", stem + "-"))]
    if len(loose) > 1:
        names = ", ".join(m.name for m in loose)
        raise AnomclipError(f"image {stem!r} matches several masks in {where}: {names}")
    return loose[0] if loose else None


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
    train = [_item(_rel(p, root), "", cls_name, d.name, int(d.name.lower() not in normal))
             for d in _subdirs(cls_dir / "train") for p in _images(d)]
    test = []
    for defect_dir in _subdirs(cls_dir / "test"):
        defect, good = defect_dir.name, defect_dir.name.lower() in normal
        gt_dir = cls_dir / "ground_truth" / defect
        masks = _images(gt_dir)
        for img in _images(defect_dir):
            mask = None if good else _mask_for(img.stem, masks, gt_dir)
            test.append(_item(_rel(img, root), _rel(mask, root) if mask else "", cls_name,
                              "good" if good else defect, int(not good)))
    return train, test


def index_mvtec(root: str | os.PathLike, normal: Sequence[str] = ("good",)) -> dict:
    """Meta dict of an MVTec AD layout (also MPDD, DTD-Synthetic; BTAD with ``normal=("ok",)``).

    Every sub-folder with a ``test/`` folder is a category, read by :func:`mvtec_category`.
    """
    root = _check_root(root)
    meta: dict = {"train": {}, "test": {}}
    for cls_dir in _subdirs(root):
        if (cls_dir / "test").is_dir():
            meta["train"][cls_dir.name], meta["test"][cls_dir.name] = mvtec_category(
                root, cls_dir, normal=normal)
    if not meta["test"]:
        raise AnomclipError(f"{root} is not an MVTec AD layout: no <category>/test/ folder found")
    return meta


def index_visa(root: str | os.PathLike) -> dict:
    """Meta dict of a VisA root from ``split_csv/1cls.csv`` (object, split, label, image, mask)."""
    root = _check_root(root)
    csv_path = root / "split_csv" / "1cls.csv"
    if not csv_path.is_file():
        raise AnomclipError(f"{csv_path} does not exist: {root} is not a VisA layout")
    meta: dict = {"train": {}, "test": {}}
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        needed = {"object", "split", "label", "image", "mask"}
        missing = needed - set(reader.fieldnames or [])
        if missing:
            raise AnomclipError(f"{csv_path} lacks the column(s) {', '.join(sorted(missing))}")
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
                _item(row["image"].strip(), mask, cls_name, "anomaly" if anomaly else "good", anomaly)
            )
    if not meta["test"]:
        raise AnomclipError(f"{csv_path} lists no test images")
    return meta


def _find_dir(cls_dir: Path, names: Sequence[str]) -> list[Path]:
    """The sub-folders of ``cls_dir`` whose name is in ``names``."""
    return [d for d in _subdirs(cls_dir) if d.name.lower() in names]


def index_folder(root: str | os.PathLike) -> dict:
    """Meta dict of a user layout.

    ``<cls>/normal/*`` (or ``good/``), ``<cls>/anomalous/*`` (or ``anomaly/``, ``abnormal/``;
    images may sit in defect-type sub-folders, whose name becomes ``specie_name``) and optional
    masks ``<cls>/masks/<stem>*.png`` paired by stem. Everything goes to ``test``; ``train``
    gets the normal images too.
    """
    root = _check_root(root)
    meta: dict = {"train": {}, "test": {}}
    for cls_dir in _subdirs(root):
        normal_dirs = _find_dir(cls_dir, NORMAL_DIRS)
        bad_dirs = _find_dir(cls_dir, ANOMALOUS_DIRS)
        if not normal_dirs and not bad_dirs:
            continue
        cls_name = cls_dir.name
        mask_dirs = _find_dir(cls_dir, MASK_DIRS)
        masks = [m for d in mask_dirs for m in _images(d)]
        normal = [_item(_rel(p, root), "", cls_name, "good", 0)
                  for d in normal_dirs for p in _images(d)]
        bad = []
        for d in bad_dirs:
            groups = [(d, "anomaly")] + [(sub, sub.name) for sub in _subdirs(d)]
            for folder, specie in groups:
                for img in _images(folder):
                    mask = _mask_for(img.stem, masks, cls_dir / "masks")
                    bad.append(_item(_rel(img, root), _rel(mask, root) if mask else "",
                                     cls_name, specie, 1))
        meta["train"][cls_name] = [dict(it) for it in normal]
        meta["test"][cls_name] = normal + bad
    if not meta["test"]:
        raise AnomclipError(
            f"{root} is not a folder layout: no <category>/normal/ or <category>/anomalous/ found"
        )
    return meta


def detect_layout(root: str | os.PathLike) -> str:
    """``"meta"`` when ``root/meta.json`` exists, else the layout :mod:`anomclip.layouts` finds."""
    from .layouts import detect

    root = _check_root(root)
    if (root / META_NAME).is_file():
        return "meta"
    return detect(root).key


def prepare(root: str | os.PathLike, layout: str = "auto") -> Path:
    """Write ``root/meta.json`` from the layout (``auto`` detects it) and return its path.

    With ``auto`` an existing ``meta.json`` is validated and kept; an explicit layout always
    (re)writes it. :func:`anomclip.layouts.prepare_dataset` also says what it found.
    """
    from .layouts import prepare_dataset

    return prepare_dataset(root, layout).path


# --------------------------------------------------------------------------- preprocessing


def _sixteen_to_eight(arr: np.ndarray) -> np.ndarray:
    """Scale 16-bit values (0…65535) to 8 bit with rounding: 65535 → 255, 257 → 1."""
    arr = np.clip(arr.astype(np.float64), 0, 65535)
    return np.round(arr * (255.0 / 65535.0)).astype(np.uint8)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB.

    Alpha is dropped (no compositing); ``I;16*`` is scaled by 255/65535; 32-bit ``I`` images
    are read as 16-bit when a value exceeds 255, else as 8-bit; ``F`` as [0, 1] when its
    maximum is ≤ 1, else as 0…255.
    """
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I;16"):
        return Image.fromarray(_sixteen_to_eight(np.asarray(img)), "L").convert("RGB")
    if img.mode == "I":
        arr = np.asarray(img)
        if arr.max(initial=0) > 255:
            eight = _sixteen_to_eight(arr)
        else:
            eight = np.clip(arr, 0, 255).astype(np.uint8)
        return Image.fromarray(eight, "L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        arr = arr * 255.0 if arr.max(initial=0) <= 1.0 else arr
        return Image.fromarray(np.round(np.clip(arr, 0, 255)).astype(np.uint8), "L").convert("RGB")
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA")
    return img.convert("RGB")


#: The EXIF tag holding a camera's orientation (1 = upright).
EXIF_ORIENTATION = 0x0112


def _upright(img: Image.Image) -> Image.Image:
    """``img`` rotated/flipped as its EXIF orientation says (phones and some scanners store
    pixels sideways and an orientation tag); unchanged when there is no such tag."""
    try:
        orientation = img.getexif().get(EXIF_ORIENTATION, 1)
    except (OSError, ValueError, SyntaxError, TypeError, AttributeError):  # a broken EXIF block:
        # the pixels decode fine, keep them as stored
        return img
    return ImageOps.exif_transpose(img) if orientation not in (None, 1) else img


def read_image(path: str | os.PathLike) -> Image.Image:
    """Decode an image file as 8-bit RGB at its original size, upright (EXIF orientation)."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            return _to_rgb(_upright(img))
    except FileNotFoundError:
        raise AnomclipError(f"image file {path} does not exist") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError,
            ValueError) as exc:
        raise AnomclipError(f"cannot read image {path}: {exc}") from None


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Decode a mask file as a boolean array (``value > 0``) at its original size, upright.

    Single-channel modes (``1``, ``L``, ``P`` indices, ``I``, ``I;16``, ``F``) are compared
    directly; colour masks are anomalous where any channel is non-zero (the authors convert
    to ``L`` first, which rounds a faint pure-blue/red pixel to 0; real masks are 0/255 or
    class ids, where both agree).
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            img = _upright(img)
            if img.mode in ("1", "L", "P", "I", "F") or img.mode.startswith("I;16"):
                arr = np.asarray(img)
            else:
                arr = np.asarray(img.convert("RGB")).max(axis=-1)
    except FileNotFoundError:
        raise AnomclipError(f"mask file {path} does not exist") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError,
            ValueError) as exc:
        raise AnomclipError(f"cannot read mask {path}: {exc}") from None
    return arr > 0


def image_to_tensor(img: Image.Image, size: int) -> torch.Tensor:
    """RGB PIL image → normalised float tensor [3, size, size] (bicubic, aspect squashed)."""
    img = img.resize((size, size), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    return ((x - mean) / std).contiguous()


def mask_to_tensor(mask: np.ndarray, size: int) -> torch.Tensor:
    """Boolean mask [H, W] → float {0, 1} [size, size], the authors' steps exactly.

    ``Image.fromarray(mask * 255, "L").resize((size, size), BILINEAR)`` (PIL's bilinear
    filter widens with the shrink factor, i.e. antialiases), ``/ 255``, then ``> 0.5``.
    """
    eight = Image.fromarray(np.ascontiguousarray(mask, dtype=bool).astype(np.uint8) * 255, "L")
    resized = np.asarray(eight.resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
    return torch.from_numpy((resized > 0.5).astype(np.float32))


def load_image(path: str | os.PathLike, size: int) -> torch.Tensor:
    """Image file → normalised tensor [3, size, size]."""
    return image_to_tensor(read_image(path), size)


def load_mask(path: str | os.PathLike, size: int) -> torch.Tensor:
    """Mask file → float {0, 1} tensor [size, size]."""
    return mask_to_tensor(read_mask(path), size)


def denormalize(t: torch.Tensor) -> np.ndarray:
    """Normalised image tensor [3, H, W] (or [1, 3, H, W]) → ``uint8`` array [H, W, 3]."""
    t = t.detach().cpu().float()
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 3 or t.shape[0] != 3:
        raise ValueError(f"denormalize expects a [3, H, W] tensor, got {tuple(t.shape)}")
    x = t * torch.tensor(CLIP_STD).view(3, 1, 1) + torch.tensor(CLIP_MEAN).view(3, 1, 1)
    return (x.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()


# --------------------------------------------------------------------------- dataset


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
                f"skipped {len(bad)} unreadable sample(s), first: {bad[0][1]}", stacklevel=2
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


# --------------------------------------------------------------------------- SDD


def _sdd_pairs(root: Path, exclude: Path) -> list[tuple[Path, Path]]:
    """(image, label) pairs of KolektorSDD: ``PartN.jpg`` + ``PartN_label.bmp`` (or ``_GT``).

    Files under ``exclude`` (the output folder, if it lies inside ``root``) are ignored.
    """
    label_tags = ("_label", "_GT")
    exclude = exclude.resolve()
    files = sorted(p for p in root.rglob("*")
                   if _is_image(p) and exclude not in p.resolve().parents)
    labels = {(p.parent, p.stem): p for p in files if p.stem.endswith(label_tags)}
    pairs = []
    for img in files:
        if img.stem.endswith(label_tags):
            continue
        label = next((labels[(img.parent, img.stem + t)] for t in label_tags
                      if (img.parent, img.stem + t) in labels), None)
        if label is None:
            raise AnomclipError(f"SDD image {img} has no {img.stem}_label.* mask next to it")
        pairs.append((img, label))
    if not pairs:
        raise AnomclipError(f"{root} holds no SDD images (expected kosNN/PartN.jpg + PartN_label.bmp)")
    return pairs


def _halves(arr: np.ndarray) -> tuple[tuple[str, np.ndarray], tuple[str, np.ndarray]]:
    """Cut an array [H, W, ...] across its long axis: top/bottom if H ≥ W, else left/right."""
    h, w = arr.shape[:2]
    if h >= w:
        return ("top", arr[: h // 2]), ("bottom", arr[h // 2:])
    return ("left", arr[:, : w // 2]), ("right", arr[:, w // 2:])


def split_sdd(root: str | os.PathLike, out: str | os.PathLike, cls_name: str = "sdd") -> Path:
    """Cut every KolektorSDD image (≈500×1250) and its mask into two halves along the long axis.

    Writes an MVTec-style root ``out/<cls_name>/test/{good,defect}/<kos>_<Part>_<half>.png``
    with masks ``out/<cls_name>/ground_truth/defect/<stem>_mask.png`` (255 = defect); a half is
    anomalous when its half of the mask has a non-zero pixel. Returns ``out/meta.json``.
    """
    root = _check_root(root)
    out = Path(out)
    pairs = _sdd_pairs(root, out)
    cls_dir = out / cls_name
    for sub in ("test/good", "test/defect", "ground_truth/defect"):
        (cls_dir / sub).mkdir(parents=True, exist_ok=True)
    for img_path, label_path in pairs:
        img = np.asarray(read_image(img_path))
        mask = read_mask(label_path)
        if mask.shape != img.shape[:2]:
            raise AnomclipError(
                f"mask {label_path} is {mask.shape[1]}x{mask.shape[0]} "
                f"but its image {img_path.name} is {img.shape[1]}x{img.shape[0]}"
            )
        base = "_".join(img_path.relative_to(root).with_suffix("").parts)
        for (half, img_part), (_, mask_part) in zip(_halves(img), _halves(mask)):
            stem = f"{base}_{half}"
            defect = "defect" if mask_part.any() else "good"
            Image.fromarray(img_part).save(cls_dir / "test" / defect / f"{stem}.png")
            if defect == "defect":
                m = Image.fromarray(mask_part.astype(np.uint8) * 255, "L")
                m.save(cls_dir / "ground_truth" / "defect" / f"{stem}_mask.png")
    return write_meta(out, index_mvtec(out))
