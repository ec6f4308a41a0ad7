"""The 17 datasets of the paper: a reader per release layout, detection and ``prepare``.

Each dataset is read **as it is published** (and, where the authors' index scripts expect a
re-arranged copy, that copy too — it is usually MVTec-like and read by the ``mvtec`` reader).
A reader turns a root folder into the ``meta.json`` dict of :mod:`anomclip.data.index`; masks are
always paired with images **by file stem** (``<stem>.*``, else ``<stem>_<suffix>.*`` such as
``_mask``, ``_label``, ``_Segmentation``) — never by sort order, which silently mis-pairs
every later image once one file is missing. Hidden files, ``Thumbs.db``, read-mes and other
non-image files are ignored; extensions are compared case-insensitively.

=============  ==========================================================================
layout         what it reads (docs/method.md §7b)
=============  ==========================================================================
mvtec, mpdd,   ``<cls>/test/{good,<defect>}/*``, masks ``<cls>/ground_truth/<defect>/<stem>_mask.png``
dtd            (a root that is itself one category, ``root/test/…``, is read too)
btad           the same with ``ok`` (normal) / ``ko``; masks keep the stem, not the extension
visa           ``split_csv/1cls.csv``; without it ``<cls>/Data/Images/{Normal,Anomaly}`` +
               ``<cls>/Data/Masks/Anomaly/<stem>.png`` (class ids, > 0 is anomalous)
sdd            ``kosNN/PartN.jpg`` + ``PartN_label.bmp``: cut into top/bottom halves (written
               under ``root/halves/``, see :func:`anomclip.data.sdd.split_sdd`)
dagm           ``ClassN/{Train,Test}/NNNN.PNG``, ``…/Label/NNNN_label.PNG``; ``Label/Labels.txt``
               (``id flag file 0 labelfile``) says which images are defective, else the
               presence of a label file does
isic           ``*Test_Data/ISIC_*.jpg`` + ``*Test_GroundTruth/ISIC_*_Segmentation.png``
clinicdb       ``Original/*.tif`` + ``Ground Truth/*.tif``, or ``images/`` + ``masks/``
colondb,       ``images/`` + ``masks/`` (Kvasir's masks are JPEG)
kvasir, endo
tn3k           ``test-image/*.jpg`` + ``test-mask/*.jpg`` (``trainval-*`` ignored)
headct         ``head_ct/*.png`` + ``labels.csv`` (``id``, ``hemorrhage``)
brainmri,      ``no/`` (normal), ``yes/`` (anomalous); Br35H's unlabeled ``pred/`` is ignored
br35h
covid          ``NORMAL``/``Normal`` and ``COVID`` folders, optionally ``<class>/images/``
               (``<class>/masks/`` there are lung masks, not anomalies: ignored; other
               classes such as ``Viral Pneumonia`` are ignored with a note)
folder         the user layout of :func:`anomclip.data.readers.index_folder`
=============  ==========================================================================

Pixel-level medical sets contain anomalous images only (image metrics undefined); image-level
ones have no masks (pixel metrics undefined): :mod:`anomclip.engine.evaluate` reports both as null
with a note.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..errors import AnomclipError
from .catalogue import BY_KEY, Dataset
from .index import (
    META_NAME,
    SPLITS,
    SYNTHETIC_KEY,
    SYNTHETIC_MARKER,
    check_root,
    make_item,
    read_meta,
    write_meta,
)
from .readers import (
    ANOMALOUS_DIRS,
    NORMAL_DIRS,
    find_dirs,
    index_folder,
    index_mvtec,
    index_visa,
    mvtec_category,
)
from .scan import (
    anomalous_pairs,
    any_sub,
    child,
    has_child,
    list_images,
    mask_for,
    not_found,
    note_unmasked,
    relpath,
    search_child,
    subdirs,
    test_only,
)
from .sdd import looks_sdd, read_sdd

Reader = Callable[[Path, list], dict]


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


def read_isic(root: Path, notes: list) -> dict:
    """ISIC 2016 test set: every image is a lesion; masks ``<stem>_Segmentation.png``."""
    dirs = subdirs(root)
    img_dir = next((d for d in dirs if re.search(r"test_data$", d.name, re.I)), None) or child(root, ("images",))
    mask_dir = next((d for d in dirs if re.search(r"groundtruth$", d.name, re.I)), None) or child(root, ("masks",))
    if img_dir is None:
        raise not_found(root, "ISIC (ISBI2016_ISIC_Part1_Test_Data/)")
    items = anomalous_pairs(root, img_dir, mask_dir, "skin")
    note_unmasked(items, notes, img_dir)
    return test_only("skin", items)


def _pair_reader(image_names: Sequence[str], mask_names: Sequence[str], cls_name: str, what: str) -> Reader:
    """A reader of an ``images`` + ``masks`` pixel-level set (all images anomalous)."""

    def read(root: Path, notes: list) -> dict:
        img_dir = search_child(root, image_names)
        if img_dir is None:
            raise not_found(root, f"{what} ({'/'.join(image_names)} folder)")
        mask_dir = child(img_dir.parent, mask_names)
        if mask_dir is None:
            notes.append(f"no {'/'.join(mask_names)} folder beside {img_dir}: no pixel metrics")
        items = anomalous_pairs(root, img_dir, mask_dir, cls_name)
        note_unmasked(items, notes, img_dir)
        return test_only(cls_name, items)

    return read


def read_headct(root: Path, notes: list) -> dict:
    """HeadCT: ``head_ct/NNN.png`` labelled by ``labels.csv`` (``id``, ``hemorrhage``)."""
    csv_path = _headct_csv(root)
    img_dir = search_child(root, ("head_ct",))
    if img_dir is not None and child(img_dir, ("head_ct",)):  # the Kaggle archive nests it
        img_dir = child(img_dir, ("head_ct",))
    if csv_path is None or img_dir is None:
        raise not_found(root, "HeadCT (head_ct/ and labels.csv)")
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = [h.strip().lower() for h in next(reader, [])]
        if "id" not in header or "hemorrhage" not in header:
            raise AnomclipError(f"{csv_path} lacks the columns 'id' and 'hemorrhage' (found {header})")
        i_id, i_lab = header.index("id"), header.index("hemorrhage")
        labels = {}
        for n, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                labels[int(row[i_id])] = int(row[i_lab])
            except (ValueError, IndexError):
                raise AnomclipError(f"{csv_path} line {n}: expected an integer id and a 0/1 label") from None
    items = []
    for img in list_images(img_dir):
        if not img.stem.isdigit():
            continue
        if int(img.stem) not in labels:
            raise AnomclipError(f"{img} has no row in {csv_path}")
        anomaly = labels[int(img.stem)]
        items.append(make_item(relpath(img, root), "", "brain", "hemorrhage" if anomaly else "good", anomaly))
    return test_only("brain", items)


def read_no_yes(root: Path, notes: list) -> dict:
    """BrainMRI / Br35H: ``no/`` normal, ``yes/`` anomalous (any other folder ignored)."""
    no, yes = search_child(root, ("no",)), search_child(root, ("yes",))
    if no is None or yes is None:
        raise not_found(root, "no/ and yes/ folders")
    ignored = [d.name for d in subdirs(no.parent) if d not in (no, yes)]
    if ignored:
        notes.append(f"ignored folder(s) without labels: {', '.join(ignored)}")
    items = [make_item(relpath(p, root), "", "brain", "good", 0) for p in list_images(no)]
    items += [make_item(relpath(p, root), "", "brain", "tumor", 1) for p in list_images(yes)]
    return test_only("brain", items)


def read_covid(root: Path, notes: list) -> dict:
    """COVID-19 Radiography Database: ``NORMAL`` normal, ``COVID`` anomalous."""
    normal, covid = search_child(root, ("normal",)), search_child(root, ("covid", "covid-19"))
    if normal is None or covid is None:
        raise not_found(root, "COVID-19 (NORMAL/ and COVID/ folders)")
    ignored = [d.name for d in subdirs(normal.parent) if d not in (normal, covid)]
    if ignored:
        notes.append(f"ignored class folder(s): {', '.join(ignored)}")

    def images(folder: Path) -> list[Path]:
        sub = child(folder, ("images",))
        return list_images(sub if sub else folder)

    items = [make_item(relpath(p, root), "", "chest", "good", 0) for p in images(normal)]
    items += [make_item(relpath(p, root), "", "chest", "covid", 1) for p in images(covid)]
    return test_only("chest", items)


def read_folder(root: Path, notes: list) -> dict:
    """The user layout (:func:`anomclip.data.index_folder`)."""
    meta = index_folder(root)
    for cls_name, items in meta["test"].items():
        note_unmasked(items, notes, Path(cls_name))
    return meta


def _looks_mvtec(root: Path) -> bool:
    return (root / "test").is_dir() or any_sub(root, lambda d: (d / "test").is_dir())


def _looks_btad(root: Path) -> bool:
    return any_sub(root, lambda d: (d / "test").is_dir() and has_child(d / "test", ("ok", "ko")))


def _looks_visa(root: Path) -> bool:
    return (root / "split_csv" / "1cls.csv").is_file() or any_sub(
        root, lambda d: (d / "Data" / "Images").is_dir())


def _looks_dagm(root: Path) -> bool:
    return any_sub(root, lambda d: bool(_DAGM_CLASS.match(d.name)) and has_child(d, ("test", "train")))


def _looks_isic(root: Path) -> bool:
    return any_sub(root, lambda d: bool(re.search(r"test_data$", d.name, re.I)))


def _looks(image_names: Sequence[str], mask_names: Sequence[str]) -> Callable[[Path], bool]:
    def test(root: Path) -> bool:
        img = search_child(root, image_names)
        return img is not None and has_child(img.parent, mask_names)

    return test


def _headct_csv(root: Path) -> Path | None:
    """``labels.csv`` in ``root`` or one folder down (case-insensitive)."""
    for folder in [root] + subdirs(root):
        hit = next((p for p in folder.iterdir() if p.is_file() and p.name.lower() == "labels.csv"), None)
        if hit:
            return hit
    return None


def _looks_headct(root: Path) -> bool:
    return search_child(root, ("head_ct",)) is not None and _headct_csv(root) is not None


def _looks_no_yes(root: Path) -> bool:
    return search_child(root, ("no",)) is not None and search_child(root, ("yes",)) is not None


def _looks_covid(root: Path) -> bool:
    return search_child(root, ("normal",)) is not None and search_child(root, ("covid", "covid-19")) is not None


def _looks_folder(root: Path) -> bool:
    return any_sub(root, lambda d: bool(find_dirs(d, NORMAL_DIRS + ANOMALOUS_DIRS)))


def _looks_clinicdb(root: Path) -> bool:
    """ClinicDB as released (``Original/`` + ``Ground Truth/``), or as widely redistributed
    (``images/`` + ``masks/``) in a folder named like it."""
    return _looks(("original",), ("ground truth", "groundtruth"))(root) or (
        root.name.lower() in BY_KEY["clinicdb"].aliases and _looks(*_POLYP)(root))


@dataclass(frozen=True)
class Layout:
    """How one dataset is published and read: its reader and the structure that detects it."""

    key: str  # the ``--layout`` name (the catalogue's key)
    read: Reader
    looks_like: Callable[[Path], bool]

    @property
    def dataset(self) -> Dataset | None:
        """The catalogue entry (None for the user's own folder layout)."""
        return BY_KEY.get(self.key)

    @property
    def title(self) -> str:
        """The dataset's name in the paper's tables."""
        return self.dataset.name if self.dataset else "your own data"

    @property
    def aliases(self) -> tuple[str, ...]:
        """Folder names that name this dataset when several layouts coincide."""
        return self.dataset.aliases if self.dataset else ()


_POLYP = (("images",), ("masks",))

#: Every layout, in detection order (the most specific structures first).
LAYOUTS: dict[str, Layout] = {L.key: L for L in (
    Layout("visa", read_visa, _looks_visa),
    Layout("isic", read_isic, _looks_isic),
    Layout("tn3k", _pair_reader(("test-image",), ("test-mask",), "thyroid", "TN3K"),
           _looks(("test-image",), ("test-mask",))),
    Layout("dagm", read_dagm, _looks_dagm),
    Layout("sdd", read_sdd, looks_sdd),
    Layout("headct", read_headct, _looks_headct),
    Layout("covid", read_covid, _looks_covid),
    Layout("brainmri", read_no_yes, _looks_no_yes),
    Layout("br35h", read_no_yes, _looks_no_yes),
    Layout("btad", read_btad, _looks_btad),
    Layout("mvtec", read_mvtec, _looks_mvtec),
    Layout("mpdd", read_mvtec, _looks_mvtec),
    Layout("dtd", read_mvtec, _looks_mvtec),
    Layout("clinicdb", _pair_reader(("original", "images"), ("ground truth", "groundtruth", "masks"), "colon",
                                    "CVC-ClinicDB"), _looks_clinicdb),
    Layout("colondb", _pair_reader(*_POLYP, "colon", "CVC-ColonDB"), _looks(*_POLYP)),
    Layout("kvasir", _pair_reader(*_POLYP, "colon", "Kvasir"), _looks(*_POLYP)),
    Layout("endo", _pair_reader(*_POLYP, "colon", "Endo"), _looks(*_POLYP)),
    Layout("folder", read_folder, _looks_folder),
)}
assert set(LAYOUTS) == set(BY_KEY) | {"folder"}, "every catalogue dataset has a layout"


#: The ``--layout`` choices.
LAYOUT_NAMES = tuple(LAYOUTS)


def get_layout(name: str) -> Layout:
    """The layout called ``name``, or an error listing the known ones."""
    if name not in LAYOUTS:
        raise AnomclipError(f"unknown layout {name!r} (choose from auto, {', '.join(LAYOUT_NAMES)})")
    return LAYOUTS[name]


def candidates(root: str | Path) -> list[Layout]:
    """Every layout whose structure ``root`` matches, in detection order."""
    root = check_root(root)
    return [L for L in LAYOUTS.values() if L.looks_like(root)]


def detect(root: str | Path) -> Layout:
    """The layout of ``root``: the first match in detection order; when several datasets share
    a structure (MVTec AD / MPDD / DTD-Synthetic, the polyp sets, BrainMRI / Br35H) the one
    named like the folder wins — they are read alike, only the reported title differs."""
    root = check_root(root)
    found = candidates(root)
    if not found:
        raise AnomclipError(
            f"{root} has no meta.json and matches none of the known layouts; run `anomclip prepare "
            f"--layout NAME` ({', '.join(LAYOUT_NAMES)}) or write a meta.json"
        )
    named = [L for L in found if root.name.lower() in L.aliases]
    return named[0] if named else found[0]


@dataclass
class Prepared:
    """What :func:`prepare_dataset` wrote and found."""

    path: Path  # the meta.json
    layout: str  # the layout key, or "meta" for an existing meta.json
    title: str
    meta: dict
    notes: list = field(default_factory=list)

    def summary(self) -> list[str]:
        """Human-readable lines: the layout, per category its counts, what metrics are defined."""
        lines = [f"{self.path.parent}: {self.title} ({self.layout})"]
        all_items = []
        for cls_name, items in self.meta.get("test", {}).items():
            normal = sum(1 for it in items if not it["anomaly"])
            bad = len(items) - normal
            masks = sum(1 for it in items if it["mask_path"])
            lines.append(f"  {cls_name}: {normal} normal, {bad} anomalous, {masks} masks")
            all_items += items
        normal = sum(1 for it in all_items if not it["anomaly"])
        masks = sum(1 for it in all_items if it["mask_path"])
        n_cats = len(self.meta.get("test", {}))
        lines.append(f"  total: {n_cats} categor{'y' if n_cats == 1 else 'ies'}, {normal} normal, "
                     f"{len(all_items) - normal} anomalous, {masks} masks")
        if normal == 0:
            lines.append("  image metrics: not defined (every image is anomalous)")
        if masks == 0:
            lines.append("  pixel metrics: not defined (no masks)")
        lines += [f"  note: {n}" for n in self.notes]
        if self.meta.get(SYNTHETIC_KEY):
            lines.append("  synthetic: generated stand-in data, not the real dataset")
        return lines


def read_layout(root: str | Path, layout: str = "auto") -> tuple[Layout, dict, list]:
    """``(layout, meta dict, notes)`` of ``root`` read with ``layout`` (``auto`` detects it)."""
    root = check_root(root)
    L = detect(root) if layout == "auto" else get_layout(layout)
    notes: list = []
    meta = L.read(root, notes)
    if not any(meta.get("test", {}).values()):
        raise not_found(root, f"any test image of the {L.title} layout")
    if (root / SYNTHETIC_MARKER).is_file():
        meta[SYNTHETIC_KEY] = True
    return L, meta, notes


def prepare_dataset(root: str | Path, layout: str = "auto") -> Prepared:
    """Write ``root/meta.json`` for ``layout`` (``auto``: keep a valid existing one, else detect).

    The layout's own notes (ignored folders, images without masks, SDD halves…) come back in
    :attr:`Prepared.notes`; :meth:`Prepared.summary` is what ``anomclip prepare`` prints.
    """
    root = check_root(root)
    if layout != "auto":
        get_layout(layout)
    if layout == "auto" and (root / META_NAME).is_file():
        return Prepared(root / META_NAME, "meta", "existing meta.json", read_meta(root))
    L, meta, notes = read_layout(root, layout)
    path = write_meta(root, meta)
    return Prepared(path, L.key, L.title, read_meta(root), notes)
