"""The dataset releases: one reader per release layout, the one ``detect`` and the one ``prepare``.

Each dataset is read **as it is published** (and, where the authors' index scripts expect a
re-arranged copy, that copy too — it is usually MVTec-like and read by the ``mvtec`` reader).
A reader turns a root folder into the ``meta.json`` dict of :mod:`anomclip.data.index`; masks are
always paired with images **by file stem** (``<stem>.*``, else ``<stem>_<suffix>.*`` such as
``_mask``, ``_label``, ``_Segmentation``) — never by sort order, which silently mis-pairs
every later image once one file is missing. Hidden files, ``Thumbs.db``, read-mes and other
non-image files are ignored; extensions are compared case-insensitively
(:mod:`~anomclip.data.releases.listing`, what every reader lists a folder with).

Archives often unpack one or more **wrapper folders** (a folder holding a single sub-folder)
below the folder the user names: ``btad/BTech_Dataset_transformed/01…``,
``dagm/DAGM_KaggleUpload/Class1…``, ``tn3k/Thyroid Dataset/tn3k/test-image…``. Detection and
every reader look through them, at most :data:`~anomclip.data.releases.listing.MAX_WRAPPERS`
deep (:func:`locate`), and say which folder they used; ``meta.json`` stays in the folder the
user named and its paths are relative to it (the wrapper is a prefix of every path). Inside a
release, an image or mask folder unpacked into a folder of its own name (ISIC's
``…Test_Data/…Test_Data/``) is looked through the same way
(:func:`~anomclip.data.releases.listing.unwrap`). When a dataset's test counts differ from the
paper's Table 6, ``prepare`` says so in one line (:func:`~anomclip.data.releases.prepared.table6_check`).

=============  ================  ==========================================================
layout         module            what it reads (docs/anomalyclip.md §7b)
=============  ================  ==========================================================
mvtec, mpdd,   ``mvtec``         ``<cls>/test/{good,<defect>}/*``, masks
dtd                              ``<cls>/ground_truth/<defect>/<stem>_mask.png`` (a root that
                                 is itself one category, ``root/test/…``, is read too)
btad           ``mvtec``         the same with ``ok`` (normal) / ``ko``; masks keep the stem,
                                 not the extension
visa           ``visa``          ``split_csv/1cls.csv``; without it ``<cls>/Data/Images/{Normal,Anomaly}``
                                 + ``<cls>/Data/Masks/Anomaly/<stem>.png`` (class ids, > 0 is anomalous)
sdd            ``kolektorsdd``   ``kosNN/PartN.jpg`` + ``PartN_label.bmp``: cut into top/bottom
                                 halves (written under ``root/halves/``, see
                                 :func:`~anomclip.data.releases.kolektorsdd.split_sdd`)
dagm           ``dagm``          ``ClassN/{Train,Test}/NNNN.PNG``, ``…/Label/NNNN_label.PNG``;
                                 ``Label/Labels.txt`` (``id flag file 0 labelfile``) says which
                                 images are defective, else the presence of a label file does
isic           ``isic``          ``*Test_Data/ISIC_*.jpg`` + ``*Test_GroundTruth/ISIC_*_Segmentation.png``
clinicdb       ``polyps``        ``Original/*.tif`` + ``Ground Truth/*.tif``, or ``images/`` + ``masks/``
colondb,       ``polyps``        ``images/`` + ``masks/`` (Kvasir's masks are JPEG)
kvasir, endo
tn3k           ``tn3k``          ``test-image/*.jpg`` + ``test-mask/*.jpg`` (``trainval-*`` ignored)
headct         ``headct``        ``head_ct/*.png`` + ``labels.csv`` (``id``, ``hemorrhage``)
brainmri,      ``brain_mri``     ``no/`` (normal), ``yes/`` (anomalous); Br35H's unlabeled
br35h                            ``pred/`` is ignored
covid          ``covid``         ``NORMAL``/``Normal`` and ``COVID`` folders, optionally
                                 ``<class>/images/`` (``<class>/masks/`` there are lung masks,
                                 not anomalies: ignored; other classes such as
                                 ``Viral Pneumonia`` are ignored with a note)
folder         ``user_folders``  the user layout of :func:`~anomclip.data.releases.user_folders.index_folder`
=============  ================  ==========================================================

Pixel-level medical sets contain anomalous images only (image metrics undefined); image-level
ones have no masks (pixel metrics undefined): :mod:`anomclip.engine.evaluate` reports both as null
with a note.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ...errors import AnomclipError
from ..catalogue import BY_KEY, Dataset
from ..index import META_NAME, SPLITS, SYNTHETIC_MARKER, SYNTHETIC_KEY, check_root, read_meta, write_meta
from .brain_mri import looks_brain_mri, read_brain_mri
from .covid import looks_covid, read_covid
from .dagm import looks_dagm, read_dagm
from .headct import looks_headct, read_headct
from .isic import looks_isic, read_isic
from .kolektorsdd import looks_sdd, read_sdd, split_sdd
from .listing import Reader, not_found, relpath, wrapper_chain
from .mvtec import index_mvtec, looks_btad, looks_mvtec, mvtec_category, read_btad, read_mvtec
from .polyps import looks_clinicdb, looks_polyps, read_clinicdb, read_colondb, read_endo, read_kvasir
from .prepared import Prepared, table6_check
from .tn3k import looks_tn3k, read_tn3k
from .user_folders import index_folder, looks_folder, read_folder
from .visa import index_visa, looks_visa, read_visa


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


#: The registry: layout name → reader, in detection order (the most specific structures first).
LAYOUTS: dict[str, Layout] = {L.key: L for L in (
    Layout("visa", read_visa, looks_visa),
    Layout("isic", read_isic, looks_isic),
    Layout("tn3k", read_tn3k, looks_tn3k),
    Layout("dagm", read_dagm, looks_dagm),
    Layout("sdd", read_sdd, looks_sdd),
    Layout("headct", read_headct, looks_headct),
    Layout("covid", read_covid, looks_covid),
    Layout("brainmri", read_brain_mri, looks_brain_mri),
    Layout("br35h", read_brain_mri, looks_brain_mri),
    Layout("btad", read_btad, looks_btad),
    Layout("mvtec", read_mvtec, looks_mvtec),
    Layout("mpdd", read_mvtec, looks_mvtec),
    Layout("dtd", read_mvtec, looks_mvtec),
    Layout("clinicdb", read_clinicdb, looks_clinicdb, looks_polyps),
    Layout("colondb", read_colondb, looks_polyps),
    Layout("kvasir", read_kvasir, looks_polyps),
    Layout("endo", read_endo, looks_polyps),
    Layout("folder", read_folder, looks_folder),
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
    wrappers are looked through, at most :data:`~anomclip.data.releases.listing.MAX_WRAPPERS`
    deep: the shallowest folder whose structure matches decides the layout, and the data folder
    is then followed down the wrappers for as long as it still matches. When several datasets
    share a structure (MVTec AD / MPDD / DTD-Synthetic, the polyp sets, BrainMRI / Br35H), the
    one named like a folder on the way wins — they are read alike, only the reported title
    differs. A forced ``layout`` is located the same way (``root`` itself when nothing matches:
    its reader then says what is missing).
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


def prepare(root: str | Path, layout: str = "auto") -> Prepared:
    """Write ``root/meta.json`` for ``layout`` (``auto``: keep a valid existing one, else detect).

    With ``auto`` an existing ``meta.json`` is validated and kept (:attr:`Prepared.layout` is
    then ``"meta"``); an explicit layout always (re)writes it. The layout's own notes (the
    wrapper folder it was read in, ignored folders, images without masks, SDD halves…) come back
    in :attr:`Prepared.notes`; when the test counts differ from the paper's Table 6,
    :attr:`Prepared.table6` says so in one line (never an error; for a kept ``meta.json`` the
    dataset is the one its folder is named after). :meth:`Prepared.summary` is what
    ``anomclip prepare`` prints.
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


__all__ = ["LAYOUTS", "LAYOUT_NAMES", "Layout", "Prepared", "candidates", "detect", "get_layout", "index_folder",
           "index_mvtec", "index_visa", "locate", "mvtec_category", "prepare", "read_layout", "split_sdd",
           "table6_check"]
