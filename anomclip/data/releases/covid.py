"""The COVID-19 Radiography Database (Kaggle): ``NORMAL``/``Normal`` normal, ``COVID`` anomalous.

Images may sit in ``<class>/images/``; the ``<class>/masks/`` of later releases are lung masks,
not anomalies, and are ignored, as are the other classes (``Viral Pneumonia``, ``Lung_Opacity``).
"""
from __future__ import annotations

from pathlib import Path

from ..index import make_item
from .listing import child, list_images, not_found, relpath, search_child, subdirs, test_only, unwrap


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


def looks_covid(root: Path) -> bool:
    return search_child(root, ("normal",)) is not None and search_child(root, ("covid", "covid-19")) is not None
