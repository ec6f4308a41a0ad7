"""Listing a release folder: images, sub-folders, wrapper folders, masks paired by file stem.

The building blocks every release reader of :mod:`anomclip.data.releases` uses. Hidden files,
read-mes and other non-image files are skipped; suffixes are compared case-insensitively; masks
are paired with images by file stem, never by sort order.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from ...errors import AnomclipError
from ..index import make_item

#: A release reader: ``(data folder, notes) -> meta dict``; it appends what it noticed to ``notes``.
Reader = Callable[[Path, list], dict]

#: File suffixes treated as images by the release readers (compared case-insensitively).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def is_image(path: Path) -> bool:
    """A visible file with an image suffix."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if is_image(p)), key=lambda p: p.name)


def subdirs(folder: Path) -> list[Path]:
    """Visible sub-folders of ``folder``, sorted by name."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.name)


def relpath(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` with POSIX separators."""
    return path.relative_to(root).as_posix()


def mask_for(stem: str, masks: list[Path], where: Path) -> Path | None:
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


def child(folder: Path, names: Sequence[str]) -> Path | None:
    """The sub-folder of ``folder`` whose name is one of ``names`` (case-insensitive)."""
    wanted = [n.lower() for n in names]
    found = [d for d in subdirs(folder) if d.name.lower() in wanted]
    found.sort(key=lambda d: wanted.index(d.name.lower()))
    return found[0] if found else None


def search_child(root: Path, names: Sequence[str]) -> Path | None:
    """``child(root, names)``, else the same one level down (a release unpacked in a folder)."""
    hit = child(root, names)
    if hit is None:
        for sub in subdirs(root):
            hit = child(sub, names)
            if hit is not None:
                break
    return hit


#: Wrapper folders (a folder holding only one sub-folder, such as ``BTech_Dataset_transformed/``
#: or ``Thyroid Dataset/``) that detection and the readers look through, at most.
MAX_WRAPPERS = 3

#: Sub-folders that never count (macOS zips add ``__MACOSX/`` beside the data).
ARCHIVE_DEBRIS = ("__macosx",)


def wrapped(folder: Path) -> Path | None:
    """The one sub-folder of ``folder`` when ``folder`` is a wrapper, else None.

    A wrapper holds exactly one visible sub-folder (``__MACOSX`` aside) and no image; other
    files beside it (a read-me, a licence) do not stop it being one.
    """
    if not folder.is_dir() or list_images(folder):
        return None
    subs = [d for d in subdirs(folder) if d.name.lower() not in ARCHIVE_DEBRIS]
    return subs[0] if len(subs) == 1 else None


def wrapper_chain(root: Path, depth: int = MAX_WRAPPERS) -> list[Path]:
    """``[root, w1, w2, …]``: ``root`` and the single-child folders below it, at most ``depth``."""
    chain = [root]
    while len(chain) <= depth:
        inner = wrapped(chain[-1])
        if inner is None:
            break
        chain.append(inner)
    return chain


def unwrap(folder: Path | None, notes: list | None = None, depth: int = MAX_WRAPPERS) -> Path | None:
    """``folder``, or the innermost wrapper below it (``X/X/*.jpg`` when an archive was unpacked
    into a folder named after it): the folder whose images a reader lists. When it goes down,
    ``notes`` gets a line naming the folder it used."""
    if folder is None:
        return None
    inner = wrapper_chain(folder, depth)[-1]
    if inner != folder and notes is not None:
        notes.append(f"{folder.name}/ is a wrapper folder: read {relpath(inner, folder.parent)}/")
    return inner


def not_found(root: Path, what: str) -> AnomclipError:
    entries = ", ".join(sorted(p.name for p in root.iterdir() if not p.name.startswith(".")))[:200]
    return AnomclipError(f"{root} does not hold {what} (found: {entries or 'nothing'})")


def test_only(cls_name: str, items: list[dict]) -> dict:
    return {"train": {}, "test": {cls_name: items}}


def anomalous_pairs(root: Path, img_dir: Path, mask_dir: Path | None, cls_name: str, specie: str = "anomaly") -> list[dict]:
    """Every image of ``img_dir`` as anomalous, with its mask from ``mask_dir`` paired by stem."""
    masks = list_images(mask_dir) if mask_dir else []
    items = []
    for img in list_images(img_dir):
        mask = mask_for(img.stem, masks, mask_dir) if mask_dir else None
        items.append(make_item(relpath(img, root), relpath(mask, root) if mask else "", cls_name, specie, 1))
    return items


def note_unmasked(items: list[dict], notes: list, where: Path) -> None:
    n = sum(1 for it in items if it["anomaly"] and not it["mask_path"])
    if n:
        notes.append(f"{n} anomalous image{'s' if n > 1 else ''} in {where} {'have' if n > 1 else 'has'} no mask")


def has_child(root: Path, names: Sequence[str]) -> bool:
    return child(root, names) is not None


def any_sub(root: Path, test: Callable[[Path], bool]) -> bool:
    return any(test(d) for d in subdirs(root))


def paired_reader(image_names: Sequence[str], mask_names: Sequence[str], cls_name: str, what: str) -> Reader:
    """A reader of a pixel-level set released as an image folder beside a mask folder (every
    image anomalous): ``image_names`` and ``mask_names`` are the folder names it accepts,
    ``what`` the release's name in its error line."""

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


def looks_paired(image_names: Sequence[str], mask_names: Sequence[str]) -> Callable[[Path], bool]:
    """Whether a folder holds (or holds one level down) an image folder with a mask folder beside it."""

    def test(root: Path) -> bool:
        img = search_child(root, image_names)
        return img is not None and has_child(img.parent, mask_names)

    return test
