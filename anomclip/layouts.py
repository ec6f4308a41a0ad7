"""The 17 datasets of the paper: a reader per release layout, detection and ``prepare``.

Each dataset is read **as it is published** (and, where the authors' index scripts expect a
re-arranged copy, that copy too — it is usually MVTec-like and read by the ``mvtec`` reader).
A reader turns a root folder into the ``meta.json`` dict of :mod:`anomclip.data`; masks are
always paired with images **by file stem** (``<stem>.*``, else ``<stem>_<suffix>.*`` such as
``_mask``, ``_label``, ``_Segmentation``) — never by sort order, which silently mis-pairs
every later image once one file is missing. Hidden files, ``Thumbs.db``, read-mes and other
non-image files are ignored; extensions are compared case-insensitively.

=============  ==========================================================================
layout         what it reads (SPEC §7b)
=============  ==========================================================================
mvtec, mpdd,   ``<cls>/test/{good,<defect>}/*``, masks ``<cls>/ground_truth/<defect>/<stem>_mask.png``
dtd            (a root that is itself one category, ``root/test/…``, is read too)
btad           the same with ``ok`` (normal) / ``ko``; masks keep the stem, not the extension
visa           ``split_csv/1cls.csv``; without it ``<cls>/Data/Images/{Normal,Anomaly}`` +
               ``<cls>/Data/Masks/Anomaly/<stem>.png`` (class ids, > 0 is anomalous)
sdd            ``kosNN/PartN.jpg`` + ``PartN_label.bmp``: cut into top/bottom halves (written
               under ``root/halves/``, see :func:`anomclip.data.split_sdd`)
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
folder         the user layout of :func:`anomclip.data.index_folder`
=============  ==========================================================================

Pixel-level medical sets contain anomalous images only (image metrics undefined); image-level
ones have no masks (pixel metrics undefined): :mod:`anomclip.evaluate` reports both as null
with a note.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from . import data as D
from .errors import AnomclipError

Reader = Callable[[Path, list], dict]


# --------------------------------------------------------------------------- helpers


def _child(folder: Path, names: Sequence[str]) -> Path | None:
    """The sub-folder of ``folder`` whose name is one of ``names`` (case-insensitive)."""
    wanted = [n.lower() for n in names]
    found = [d for d in D._subdirs(folder) if d.name.lower() in wanted]
    found.sort(key=lambda d: wanted.index(d.name.lower()))
    return found[0] if found else None


def _search(root: Path, names: Sequence[str]) -> Path | None:
    """``_child(root, names)``, else the same one level down (a release unpacked in a folder)."""
    hit = _child(root, names)
    if hit is None:
        for sub in D._subdirs(root):
            hit = _child(sub, names)
            if hit is not None:
                break
    return hit


def _missing(root: Path, what: str) -> AnomclipError:
    entries = ", ".join(sorted(p.name for p in root.iterdir() if not p.name.startswith(".")))[:200]
    return AnomclipError(f"{root} does not hold {what} (found: {entries or 'nothing'})")


def _test_only(cls_name: str, items: list[dict]) -> dict:
    return {"train": {}, "test": {cls_name: items}}


def _pairs(root: Path, img_dir: Path, mask_dir: Path | None, cls_name: str, specie: str = "anomaly") -> list[dict]:
    """Every image of ``img_dir`` as anomalous, with its mask from ``mask_dir`` paired by stem."""
    masks = D._images(mask_dir) if mask_dir else []
    items = []
    for img in D._images(img_dir):
        mask = D._mask_for(img.stem, masks, mask_dir) if mask_dir else None
        items.append(D._item(D._rel(img, root), D._rel(mask, root) if mask else "", cls_name, specie, 1))
    return items


def _note_unmasked(items: list[dict], notes: list, where: Path) -> None:
    n = sum(1 for it in items if it["anomaly"] and not it["mask_path"])
    if n:
        notes.append(f"{n} anomalous image(s) in {where} have no mask")


# --------------------------------------------------------------------------- readers


def read_mvtec(root: Path, notes: list, normal: Sequence[str] = ("good",)) -> dict:
    """MVTec AD / MPDD / DTD-Synthetic (and a single-category root ``root/test/…``)."""
    if (root / "test").is_dir():
        train, test = D.mvtec_category(root, root, root.name, normal)
        meta = {"train": {root.name: train}, "test": {root.name: test}}
    else:
        meta = D.index_mvtec(root, normal=normal)
    for cls_name, items in meta["test"].items():
        _note_unmasked(items, notes, Path(cls_name))
    return meta


def read_btad(root: Path, notes: list) -> dict:
    """BTAD: MVTec-like with ``ok`` normal and ``ko`` anomalous."""
    return read_mvtec(root, notes, normal=("ok", "good"))


def read_visa(root: Path, notes: list) -> dict:
    """VisA via ``split_csv/1cls.csv``, or from its folders when the CSV is absent (all test)."""
    if (root / "split_csv" / "1cls.csv").is_file():
        return D.index_visa(root)
    notes.append("no split_csv/1cls.csv: every image of <cls>/Data/Images is put in the test split")
    meta: dict = {"train": {}, "test": {}}
    for cls_dir in D._subdirs(root):
        images = _search(cls_dir, ("Data",))
        images = _child(images, ("Images",)) if images else None
        if images is None:
            continue
        normal_dir, bad_dir = _child(images, ("Normal",)), _child(images, ("Anomaly",))
        masks_dir = cls_dir / "Data" / "Masks"
        mask_dir = _child(masks_dir, ("Anomaly",)) if masks_dir.is_dir() else None
        items = [D._item(D._rel(p, root), "", cls_dir.name, "good", 0)
                 for p in (D._images(normal_dir) if normal_dir else [])]
        if bad_dir:
            items += _pairs(root, bad_dir, mask_dir, cls_dir.name)
        meta["test"][cls_dir.name] = items
        _note_unmasked(items, notes, cls_dir)
    if not meta["test"]:
        raise _missing(root, "VisA (split_csv/1cls.csv or <cls>/Data/Images/)")
    return meta


#: Folder (under the SDD root) that receives the cut halves.
SDD_HALVES = "halves"


def read_sdd(root: Path, notes: list) -> dict:
    """KolektorSDD: every image and its label cut into halves, written to ``root/halves``."""
    out = root / SDD_HALVES
    try:
        halves = D.read_meta(D.split_sdd(root, out).parent)
    except OSError as exc:
        raise AnomclipError(f"cannot write the SDD halves to {out} ({exc.strerror or exc}); "
                            "copy KolektorSDD to a writable folder") from None
    meta: dict = {"train": {}, "test": {}}
    for split, classes in halves.items():
        if split not in D.SPLITS:
            continue
        for cls_name, items in classes.items():
            meta[split][cls_name] = [
                dict(it, img_path=f"{SDD_HALVES}/{it['img_path']}",
                     mask_path=f"{SDD_HALVES}/{it['mask_path']}" if it["mask_path"] else "")
                for it in items
            ]
    notes.append(f"each image and its label were cut into top and bottom halves under {out}")
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
    for cls_dir in D._subdirs(root):
        if not _DAGM_CLASS.match(cls_dir.name):
            continue
        for split in D.SPLITS:
            split_dir = _child(cls_dir, (split,))
            if split_dir is None:
                continue
            label_dir = _child(split_dir, ("Label", "Labels"))
            labels = D._images(label_dir) if label_dir else []
            flags = _dagm_flags(label_dir)
            items = []
            for img in D._images(split_dir):
                mask = D._mask_for(img.stem, labels, label_dir) if label_dir else None
                if flags is None:
                    anomaly = int(mask is not None)
                else:
                    if img.stem not in flags:
                        raise AnomclipError(f"{img} is not listed in {label_dir}/Labels.txt")
                    anomaly = flags[img.stem]
                    if not anomaly and mask is not None:
                        notes.append(f"{img}: Labels.txt says defect-free but {mask.name} exists; kept as normal")
                        mask = None
                items.append(D._item(D._rel(img, root), D._rel(mask, root) if mask else "", cls_dir.name,
                                     "defect" if anomaly else "good", anomaly))
            meta[split][cls_dir.name] = items
            if split == "test":
                _note_unmasked(items, notes, split_dir)
    if not meta["test"]:
        raise _missing(root, "DAGM (Class1…Class10/Test/)")
    return meta


def read_isic(root: Path, notes: list) -> dict:
    """ISIC 2016 test set: every image is a lesion; masks ``<stem>_Segmentation.png``."""
    dirs = D._subdirs(root)
    img_dir = next((d for d in dirs if re.search(r"test_data$", d.name, re.I)), None) or _child(root, ("images",))
    mask_dir = next((d for d in dirs if re.search(r"groundtruth$", d.name, re.I)), None) or _child(root, ("masks",))
    if img_dir is None:
        raise _missing(root, "ISIC (ISBI2016_ISIC_Part1_Test_Data/)")
    items = _pairs(root, img_dir, mask_dir, "skin")
    _note_unmasked(items, notes, img_dir)
    return _test_only("skin", items)


def _pair_reader(image_names: Sequence[str], mask_names: Sequence[str], cls_name: str, what: str) -> Reader:
    """A reader of an ``images`` + ``masks`` pixel-level set (all images anomalous)."""

    def read(root: Path, notes: list) -> dict:
        img_dir = _search(root, image_names)
        if img_dir is None:
            raise _missing(root, f"{what} ({'/'.join(image_names)} folder)")
        mask_dir = _child(img_dir.parent, mask_names)
        if mask_dir is None:
            notes.append(f"no {'/'.join(mask_names)} folder beside {img_dir}: no pixel metrics")
        items = _pairs(root, img_dir, mask_dir, cls_name)
        _note_unmasked(items, notes, img_dir)
        return _test_only(cls_name, items)

    return read


def read_headct(root: Path, notes: list) -> dict:
    """HeadCT: ``head_ct/NNN.png`` labelled by ``labels.csv`` (``id``, ``hemorrhage``)."""
    csv_path = _headct_csv(root)
    img_dir = _search(root, ("head_ct",))
    if img_dir is not None and _child(img_dir, ("head_ct",)):  # the Kaggle archive nests it
        img_dir = _child(img_dir, ("head_ct",))
    if csv_path is None or img_dir is None:
        raise _missing(root, "HeadCT (head_ct/ and labels.csv)")
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
    for img in D._images(img_dir):
        if not img.stem.isdigit():
            continue
        if int(img.stem) not in labels:
            raise AnomclipError(f"{img} has no row in {csv_path}")
        anomaly = labels[int(img.stem)]
        items.append(D._item(D._rel(img, root), "", "brain", "hemorrhage" if anomaly else "good", anomaly))
    return _test_only("brain", items)


def read_no_yes(root: Path, notes: list) -> dict:
    """BrainMRI / Br35H: ``no/`` normal, ``yes/`` anomalous (any other folder ignored)."""
    no, yes = _search(root, ("no",)), _search(root, ("yes",))
    if no is None or yes is None:
        raise _missing(root, "no/ and yes/ folders")
    ignored = [d.name for d in D._subdirs(no.parent) if d not in (no, yes)]
    if ignored:
        notes.append(f"ignored folder(s) without labels: {', '.join(ignored)}")
    items = [D._item(D._rel(p, root), "", "brain", "good", 0) for p in D._images(no)]
    items += [D._item(D._rel(p, root), "", "brain", "tumor", 1) for p in D._images(yes)]
    return _test_only("brain", items)


def read_covid(root: Path, notes: list) -> dict:
    """COVID-19 Radiography Database: ``NORMAL`` normal, ``COVID`` anomalous."""
    normal, covid = _search(root, ("normal",)), _search(root, ("covid", "covid-19"))
    if normal is None or covid is None:
        raise _missing(root, "COVID-19 (NORMAL/ and COVID/ folders)")
    ignored = [d.name for d in D._subdirs(normal.parent) if d not in (normal, covid)]
    if ignored:
        notes.append(f"ignored class folder(s): {', '.join(ignored)}")

    def images(folder: Path) -> list[Path]:
        sub = _child(folder, ("images",))
        return D._images(sub if sub else folder)

    items = [D._item(D._rel(p, root), "", "chest", "good", 0) for p in images(normal)]
    items += [D._item(D._rel(p, root), "", "chest", "covid", 1) for p in images(covid)]
    return _test_only("chest", items)


def read_folder(root: Path, notes: list) -> dict:
    """The user layout (:func:`anomclip.data.index_folder`)."""
    meta = D.index_folder(root)
    for cls_name, items in meta["test"].items():
        _note_unmasked(items, notes, Path(cls_name))
    return meta


# --------------------------------------------------------------------------- detection


def _has_child(root: Path, names: Sequence[str]) -> bool:
    return _child(root, names) is not None


def _any_sub(root: Path, test: Callable[[Path], bool]) -> bool:
    return any(test(d) for d in D._subdirs(root))


def _looks_mvtec(root: Path) -> bool:
    return (root / "test").is_dir() or _any_sub(root, lambda d: (d / "test").is_dir())


def _looks_btad(root: Path) -> bool:
    return _any_sub(root, lambda d: (d / "test").is_dir() and _has_child(d / "test", ("ok", "ko")))


def _looks_visa(root: Path) -> bool:
    return (root / "split_csv" / "1cls.csv").is_file() or _any_sub(
        root, lambda d: (d / "Data" / "Images").is_dir())


def _looks_sdd(root: Path) -> bool:
    return _any_sub(root, lambda d: any(D._is_image(p) and p.stem.lower().endswith("_label")
                                        for p in d.iterdir()))


def _looks_dagm(root: Path) -> bool:
    return _any_sub(root, lambda d: bool(_DAGM_CLASS.match(d.name)) and _has_child(d, ("test", "train")))


def _looks_isic(root: Path) -> bool:
    return _any_sub(root, lambda d: bool(re.search(r"test_data$", d.name, re.I)))


def _looks(image_names: Sequence[str], mask_names: Sequence[str]) -> Callable[[Path], bool]:
    def test(root: Path) -> bool:
        img = _search(root, image_names)
        return img is not None and _has_child(img.parent, mask_names)

    return test


def _headct_csv(root: Path) -> Path | None:
    """``labels.csv`` in ``root`` or one folder down (case-insensitive)."""
    for folder in [root] + D._subdirs(root):
        hit = next((p for p in folder.iterdir() if p.is_file() and p.name.lower() == "labels.csv"), None)
        if hit:
            return hit
    return None


def _looks_headct(root: Path) -> bool:
    return _search(root, ("head_ct",)) is not None and _headct_csv(root) is not None


def _looks_no_yes(root: Path) -> bool:
    return _search(root, ("no",)) is not None and _search(root, ("yes",)) is not None


def _looks_covid(root: Path) -> bool:
    return _search(root, ("normal",)) is not None and _search(root, ("covid", "covid-19")) is not None


def _looks_folder(root: Path) -> bool:
    return _any_sub(root, lambda d: bool(D._find_dir(d, D.NORMAL_DIRS + D.ANOMALOUS_DIRS)))


@dataclass(frozen=True)
class Layout:
    """How one dataset is published and read."""

    key: str  # the ``--layout`` name
    title: str  # the dataset's name in the paper's tables
    read: Reader
    looks_like: Callable[[Path], bool]
    aliases: tuple[str, ...] = ()  # folder names that hint at this dataset when layouts coincide


_POLYP = (("images",), ("masks",))

#: Every layout, in detection order (the most specific structures first).
LAYOUTS: dict[str, Layout] = {L.key: L for L in (
    Layout("visa", "VisA", read_visa, _looks_visa, ("visa",)),
    Layout("isic", "ISIC", read_isic, _looks_isic, ("isic", "isic2016")),
    Layout("tn3k", "TN3K", _pair_reader(("test-image",), ("test-mask",), "thyroid", "TN3K"),
           _looks(("test-image",), ("test-mask",)), ("tn3k",)),
    Layout("dagm", "DAGM", read_dagm, _looks_dagm, ("dagm", "dagm2007")),
    Layout("sdd", "SDD", read_sdd, _looks_sdd, ("sdd", "kolektorsdd", "kolektor")),
    Layout("headct", "HeadCT", read_headct, _looks_headct, ("headct", "head_ct")),
    Layout("covid", "COVID-19", read_covid, _looks_covid, ("covid", "covid-19", "covid19")),
    Layout("brainmri", "BrainMRI", read_no_yes, _looks_no_yes, ("brainmri", "brain_mri", "brain_tumor_dataset")),
    Layout("br35h", "Br35H", read_no_yes, _looks_no_yes, ("br35h",)),
    Layout("btad", "BTAD", read_btad, _looks_btad, ("btad",)),
    Layout("mvtec", "MVTec AD", read_mvtec, _looks_mvtec, ("mvtec", "mvtec_ad", "mvtec-ad", "mvtecad")),
    Layout("mpdd", "MPDD", read_mvtec, _looks_mvtec, ("mpdd",)),
    Layout("dtd", "DTD-Synthetic", read_mvtec, _looks_mvtec, ("dtd", "dtd-synthetic", "dtd_synthetic")),
    Layout("clinicdb", "CVC-ClinicDB",
           _pair_reader(("original", "images"), ("ground truth", "groundtruth", "masks"), "colon", "CVC-ClinicDB"),
           _looks(("original",), ("ground truth", "groundtruth")), ("clinicdb", "cvc-clinicdb")),
    Layout("colondb", "CVC-ColonDB", _pair_reader(*_POLYP, "colon", "CVC-ColonDB"), _looks(*_POLYP),
           ("colondb", "cvc-colondb")),
    Layout("kvasir", "Kvasir", _pair_reader(*_POLYP, "colon", "Kvasir"), _looks(*_POLYP), ("kvasir", "kvasir-seg")),
    Layout("endo", "Endo", _pair_reader(*_POLYP, "colon", "Endo"), _looks(*_POLYP), ("endo", "endotect")),
    Layout("folder", "your own data", read_folder, _looks_folder, ()),
)}
# ClinicDB as widely redistributed (images/ + masks/) is detected by its folder name
LAYOUTS["clinicdb"] = Layout("clinicdb", "CVC-ClinicDB", LAYOUTS["clinicdb"].read,
                             lambda r: _looks(("original",), ("ground truth", "groundtruth"))(r) or (
                                 r.name.lower() in ("clinicdb", "cvc-clinicdb") and _looks(*_POLYP)(r)),
                             LAYOUTS["clinicdb"].aliases)

#: The ``--layout`` choices.
LAYOUT_NAMES = tuple(LAYOUTS)


def get_layout(name: str) -> Layout:
    """The layout called ``name``, or an error listing the known ones."""
    if name not in LAYOUTS:
        raise AnomclipError(f"unknown layout {name!r} (choose from auto, {', '.join(LAYOUT_NAMES)})")
    return LAYOUTS[name]


def candidates(root: str | Path) -> list[Layout]:
    """Every layout whose structure ``root`` matches, in detection order."""
    root = D._check_root(root)
    return [L for L in LAYOUTS.values() if L.looks_like(root)]


def detect(root: str | Path) -> Layout:
    """The layout of ``root``: the first match in detection order; when several datasets share
    a structure (MVTec AD / MPDD / DTD-Synthetic, the polyp sets, BrainMRI / Br35H) the one
    named like the folder wins — they are read alike, only the reported title differs."""
    root = D._check_root(root)
    found = candidates(root)
    if not found:
        raise AnomclipError(
            f"{root} has no meta.json and matches none of the known layouts; run `anomclip prepare "
            f"--layout NAME` ({', '.join(LAYOUT_NAMES)}) or write a meta.json"
        )
    named = [L for L in found if root.name.lower() in L.aliases]
    return named[0] if named else found[0]


# --------------------------------------------------------------------------- prepare


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
        if self.meta.get(D.SYNTHETIC_KEY):
            lines.append("  synthetic: generated stand-in data, not the real dataset")
        return lines


def read_layout(root: str | Path, layout: str = "auto") -> tuple[Layout, dict, list]:
    """``(layout, meta dict, notes)`` of ``root`` read with ``layout`` (``auto`` detects it)."""
    root = D._check_root(root)
    L = detect(root) if layout == "auto" else get_layout(layout)
    notes: list = []
    meta = L.read(root, notes)
    if not any(meta.get("test", {}).values()):
        raise _missing(root, f"any test image of the {L.title} layout")
    if (root / D.SYNTHETIC_MARKER).is_file():
        meta[D.SYNTHETIC_KEY] = True
    return L, meta, notes


def prepare_dataset(root: str | Path, layout: str = "auto") -> Prepared:
    """Write ``root/meta.json`` for ``layout`` (``auto``: keep a valid existing one, else detect).

    The layout's own notes (ignored folders, images without masks, SDD halves…) come back in
    :attr:`Prepared.notes`; :meth:`Prepared.summary` is what ``anomclip prepare`` prints.
    """
    root = D._check_root(root)
    if layout != "auto":
        get_layout(layout)
    if layout == "auto" and (root / D.META_NAME).is_file():
        return Prepared(root / D.META_NAME, "meta", "existing meta.json", D.read_meta(root))
    L, meta, notes = read_layout(root, layout)
    path = D.write_meta(root, meta)
    return Prepared(path, L.key, L.title, D.read_meta(root), notes)
