"""KolektorSDD: every image and its label cut into two halves along the long axis.

The released files are ``kosNN/PartN.jpg`` + ``PartN_label.bmp`` (≈500×1250 px); the paper
evaluates halves (Table 6 counts halves). :func:`split_sdd` writes an MVTec-style root of the
halves; :func:`read_sdd` is the layout reader that does it under ``root/halves``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import AnomclipError
from .index import SPLITS, check_root, read_meta, write_meta
from .preprocess import read_image, read_mask
from .readers import index_mvtec
from .scan import any_sub, is_image


def _sdd_pairs(root: Path, exclude: Path) -> list[tuple[Path, Path]]:
    """(image, label) pairs of KolektorSDD: ``PartN.jpg`` + ``PartN_label.bmp`` (or ``_GT``).

    Files under ``exclude`` (the output folder, if it lies inside ``root``) are ignored.
    """
    label_tags = ("_label", "_GT")
    exclude = exclude.resolve()
    files = sorted(p for p in root.rglob("*")
                   if is_image(p) and exclude not in p.resolve().parents)
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
    root = check_root(root)
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


#: Folder (under the SDD root) that receives the cut halves.
SDD_HALVES = "halves"


def read_sdd(root: Path, notes: list) -> dict:
    """KolektorSDD: every image and its label cut into halves, written to ``root/halves``."""
    out = root / SDD_HALVES
    try:
        halves = read_meta(split_sdd(root, out).parent)
    except OSError as exc:
        raise AnomclipError(f"cannot write the SDD halves to {out} ({exc.strerror or exc}); "
                            "copy KolektorSDD to a writable folder") from None
    meta: dict = {"train": {}, "test": {}}
    for split, classes in halves.items():
        if split not in SPLITS:
            continue
        for cls_name, items in classes.items():
            meta[split][cls_name] = [
                dict(it, img_path=f"{SDD_HALVES}/{it['img_path']}",
                     mask_path=f"{SDD_HALVES}/{it['mask_path']}" if it["mask_path"] else "")
                for it in items
            ]
    notes.append(f"each image and its label were cut into top and bottom halves under {out}")
    return meta


def looks_sdd(root: Path) -> bool:
    return any_sub(root, lambda d: any(is_image(p) and p.stem.lower().endswith("_label")
                                        for p in d.iterdir()))
