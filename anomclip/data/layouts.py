"""The 17 datasets of the paper: a reader per release layout, detection and ``prepare``.

Each dataset is read **as it is published** (and, where the authors' index scripts expect a
re-arranged copy, that copy too — it is usually MVTec-like and read by the ``mvtec`` reader).
A reader turns a root folder into the ``meta.json`` dict of :mod:`anomclip.data.index`; masks are
always paired with images **by file stem** (``<stem>.*``, else ``<stem>_<suffix>.*`` such as
``_mask``, ``_label``, ``_Segmentation``) — never by sort order, which silently mis-pairs
every later image once one file is missing. Hidden files, ``Thumbs.db``, read-mes and other
non-image files are ignored; extensions are compared case-insensitively.

Archives often unpack one or more **wrapper folders** (a folder holding a single sub-folder)
below the folder the user names: ``btad/BTech_Dataset_transformed/01…``,
``dagm/DAGM_KaggleUpload/Class1…``, ``tn3k/Thyroid Dataset/tn3k/test-image…``. Detection and
every reader look through them, at most :data:`~anomclip.data.scan.MAX_WRAPPERS` deep
(:func:`locate`), and say which folder they used; ``meta.json`` stays in the folder the user
named and its paths are relative to it (the wrapper is a prefix of every path). Inside a
release, an image or mask folder unpacked into a folder of its own name (ISIC's
``…Test_Data/…Test_Data/``) is looked through the same way (:func:`~anomclip.data.scan.unwrap`).
When a dataset's test counts differ from the paper's Table 6, ``prepare`` says so in one line
(:func:`table6_check`).

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
    unwrap,
    wrapper_chain,
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
    img_dir = unwrap(next((d for d in dirs if re.search(r"test_data$", d.name, re.I)), None)
                     or child(root, ("images",)), notes)
    mask_dir = unwrap(next((d for d in dirs if re.search(r"groundtruth$", d.name, re.I)), None)
                      or child(root, ("masks",)), notes)
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
        mask_dir = unwrap(child(img_dir.parent, mask_names), notes)
        img_dir = unwrap(img_dir, notes)
        if mask_dir is None:
            notes.append(f"no {'/'.join(mask_names)} folder beside {img_dir}: no pixel metrics")
        items = anomalous_pairs(root, img_dir, mask_dir, cls_name)
        note_unmasked(items, notes, img_dir)
        return test_only(cls_name, items)

    return read


def read_headct(root: Path, notes: list) -> dict:
    """HeadCT: ``head_ct/NNN.png`` labelled by ``labels.csv`` (``id``, ``hemorrhage``)."""
    csv_path = _headct_csv(root)
    img_dir = unwrap(search_child(root, ("head_ct",)))  # the Kaggle archive nests head_ct/head_ct/
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
        notes.append(f"ignored folder{'' if len(ignored) == 1 else 's'} without labels: {', '.join(ignored)}")
    no, yes = unwrap(no, notes), unwrap(yes, notes)
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
        notes.append(f"ignored class folder{'' if len(ignored) == 1 else 's'}: {', '.join(ignored)}")

    def images(folder: Path) -> list[Path]:
        sub = child(folder, ("images",))
        return list_images(unwrap(sub if sub else folder, notes))

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


#: ClinicDB as released (``Original/`` + ``Ground Truth/``); the widely redistributed copy
#: (``images/`` + ``masks/``) counts only in a folder named like it (``Layout.named_only``).
_looks_clinicdb = _looks(("original",), ("ground truth", "groundtruth"))


@dataclass(frozen=True)
class Layout:
    """How one dataset is published and read: its reader and the structure that detects it."""

    key: str  # the ``--layout`` name (the catalogue's key)
    read: Reader
    looks_like: Callable[[Path], bool]
    #: a structure that counts only when a folder on the way (the root or a wrapper) is named
    #: like the dataset, or when the layout is forced
    named_only: Callable[[Path], bool] | None = None

    def matches(self, folder: Path, names: Sequence[str] = (), forced: bool = False) -> bool:
        """Whether ``folder`` has this layout's structure; ``names`` are the folder names from
        the root the user named down to ``folder``."""
        if self.looks_like(folder):
            return True
        return self.named_only is not None and (forced or any(n.lower() in self.aliases for n in names)) \
            and self.named_only(folder)

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
                                    "CVC-ClinicDB"), _looks_clinicdb, _looks(*_POLYP)),
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


def candidates(root: str | Path, names: Sequence[str] | None = None) -> list[Layout]:
    """Every layout whose structure ``root`` itself matches, in detection order (``names``: the
    folder names that may name the dataset, ``root``'s own by default)."""
    root = check_root(root)
    names = [root.name] if names is None else list(names)
    return [L for L in LAYOUTS.values() if L.matches(root, names)]


def _pick(found: list[Layout], names: Sequence[str]) -> Layout:
    """The layout named like a folder on the way (the root first), else the first found."""
    for name in names:
        named = [L for L in found if name.lower() in L.aliases]
        if named:
            return named[0]
    return found[0]


def locate(root: str | Path, layout: str = "auto") -> tuple[Layout, Path]:
    """``(layout, data folder)`` of ``root``: the folder is ``root`` or a wrapper below it.

    Archives often unpack one or more single-child folders below the folder the user names
    (``btad/BTech_Dataset_transformed/01…``, ``tn3k/Thyroid Dataset/tn3k/test-image…``). The
    wrappers are looked through, at most :data:`MAX_WRAPPERS` deep: the shallowest folder
    whose structure matches decides the layout, and the data folder is then followed down the
    wrappers for as long as it still matches. When several datasets share a structure
    (MVTec AD / MPDD / DTD-Synthetic, the polyp sets, BrainMRI / Br35H), the one named like a
    folder on the way wins — they are read alike, only the reported title differs. A forced
    ``layout`` is located the same way (``root`` itself when nothing matches: its reader then
    says what is missing).
    """
    root = check_root(root)
    forced = None if layout == "auto" else get_layout(layout)
    pool = list(LAYOUTS.values()) if forced is None else [forced]
    chain = wrapper_chain(root)
    for depth, folder in enumerate(chain):
        names = [f.name for f in chain[: depth + 1]]
        found = [L for L in pool if L.matches(folder, names, forced is not None)]
        if not found:
            continue
        while depth + 1 < len(chain):
            deeper = [L for L in found if L.matches(chain[depth + 1], names + [chain[depth + 1].name],
                                                     forced is not None)]
            if not deeper:
                break
            depth, found = depth + 1, deeper
            names.append(chain[depth].name)
        return _pick(found, names), chain[depth]
    if forced is not None:
        return forced, root
    looked = f" (looked through {relpath(chain[-1], root)}/)" if len(chain) > 1 else ""
    raise AnomclipError(
        f"{root} has no meta.json and matches none of the known layouts{looked}; run `anomclip prepare "
        f"--layout NAME` ({', '.join(LAYOUT_NAMES)}) or write a meta.json"
    )


def detect(root: str | Path) -> Layout:
    """The layout of ``root`` (looking through wrapper folders, see :func:`locate`)."""
    return locate(root)[0]


def _prefixed(meta: dict, prefix: str) -> dict:
    """``meta`` with every path of its splits prefixed by ``prefix/`` (paths stay relative to
    the root that holds ``meta.json``: a wrapper folder only adds a prefix)."""
    out = dict(meta)
    for split in SPLITS:
        if split in meta:
            out[split] = {cls: [dict(it, img_path=f"{prefix}/{it['img_path']}",
                                     mask_path=f"{prefix}/{it['mask_path']}" if it["mask_path"] else "")
                                for it in items]
                          for cls, items in meta[split].items()}
    return out


def split_counts(meta: dict) -> tuple[int, int]:
    """(normal, anomalous) images of the test split of a meta dict."""
    items = [it for items in meta.get("test", {}).values() for it in items]
    normal = sum(1 for it in items if not it["anomaly"])
    return normal, len(items) - normal


def table6_check(dataset: Dataset | None, meta: dict) -> str:
    """One line when the test split's counts differ from the paper's Table 6, else ``""``.

    Never an error: a later release (COVID-19), a partial copy or a stand-in (synthetic, small
    on purpose) is still usable, but its numbers are not the paper's.
    """
    if dataset is None:
        return ""
    normal, bad = split_counts(meta)
    if (normal, bad) == (dataset.normal, dataset.anomalous):
        return ""
    unit = " halves" if dataset.key == "sdd" else ""
    line = (f"{dataset.name}'s test split has {normal} normal + {bad} anomalous{unit}, the paper's "
            f"Table 6 has {dataset.normal} + {dataset.anomalous}")
    if meta.get(SYNTHETIC_KEY):
        return line + " (a synthetic stand-in, small on purpose)"
    return line + (f": {dataset.counts_note}" if dataset.counts_note else ": results are not comparable as they are")


@dataclass
class Prepared:
    """What :func:`prepare_dataset` wrote and found."""

    path: Path  # the meta.json
    layout: str  # the layout key, or "meta" for an existing meta.json
    title: str
    meta: dict
    notes: list = field(default_factory=list)
    data_dir: Path | None = None  # the folder the layout was read in (the root or a wrapper below it)
    table6: str = ""  # the one line saying how the test counts differ from Table 6 ("" when equal)

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
        if self.table6:
            lines.append(f"  Table 6: {self.table6}")
        if normal == 0:
            lines.append("  image metrics: not defined (every image is anomalous)")
        if masks == 0:
            lines.append("  pixel metrics: not defined (no masks)")
        lines += [f"  note: {n}" for n in self.notes]
        if self.meta.get(SYNTHETIC_KEY):
            lines.append("  synthetic: generated stand-in data, not the real dataset")
        return lines


def read_layout(root: str | Path, layout: str = "auto") -> tuple[Layout, dict, list]:
    """``(layout, meta dict, notes)`` of ``root`` read with ``layout`` (``auto`` detects it).

    The layout is read in the folder :func:`locate` finds (``root`` or a wrapper below it); the
    paths of the meta dict are relative to ``root`` all the same, and a note names the wrapper.
    """
    L, _, meta, notes = _read(root, layout)
    return L, meta, notes


def _read(root: str | Path, layout: str) -> tuple[Layout, Path, dict, list]:
    root = check_root(root)
    L, base = locate(root, layout)
    notes: list = []
    meta = L.read(base, notes)
    if not any(meta.get("test", {}).values()):
        raise not_found(base, f"any test image of the {L.title} layout")
    if base != root:
        prefix = relpath(base, root)
        meta = _prefixed(meta, prefix)
        notes.insert(0, f"read {L.title} in the wrapper folder {prefix}/ (meta.json paths start with it)")
    if (root / SYNTHETIC_MARKER).is_file():
        meta[SYNTHETIC_KEY] = True
    return L, base, meta, notes


def prepare_dataset(root: str | Path, layout: str = "auto") -> Prepared:
    """Write ``root/meta.json`` for ``layout`` (``auto``: keep a valid existing one, else detect).

    The layout's own notes (the wrapper folder it was read in, ignored folders, images without
    masks, SDD halves…) come back in :attr:`Prepared.notes`; when the test counts differ from
    the paper's Table 6, :attr:`Prepared.table6` says so in one line (never an error; for a kept
    ``meta.json`` the dataset is the one its folder is named after). :meth:`Prepared.summary`
    is what ``anomclip prepare`` prints.
    """
    root = check_root(root)
    if layout != "auto":
        get_layout(layout)
    if layout == "auto" and (root / META_NAME).is_file():
        meta = read_meta(root)
        named = [L.dataset for L in LAYOUTS.values() if L.dataset and root.name.lower() in L.aliases]
        return Prepared(root / META_NAME, "meta", "existing meta.json", meta,
                        table6=table6_check(named[0] if named else None, meta))
    L, base, meta, notes = _read(root, layout)
    path = write_meta(root, meta)
    meta = read_meta(root)
    return Prepared(path, L.key, L.title, meta, notes, data_dir=base, table6=table6_check(L.dataset, meta))
