"""KolektorSDD (SDD): every image and its label cut into two halves along the long axis.

The released files are ``kosNN/PartN.jpg`` + ``PartN_label.bmp`` (≈500×1250 px); the paper
evaluates halves (Table 6 counts halves: 181 normal + 74 anomalous). :func:`split_sdd` writes
an MVTec-style root of the halves, split as Table 6 counts them (every anomalous half and a
seeded 25 % of the normal ones in test, the rest in train — inferred from the counts, the
paper does not say); :func:`read_sdd` is the layout reader that does it under ``root/halves``.
"""
from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image

from ...errors import AnomclipError
from ...io import atomic_write
from ..index import SPLITS, check_root, make_item, read_meta, write_meta
from ..preprocess import read_image, read_mask
from .listing import any_sub, is_image


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


#: Table 6's SDD split: every anomalous half and this fraction of the normal halves are tested.
SDD_TEST_FRACTION = 0.25

#: The seed of the normal halves' draw when ``prepare`` reads KolektorSDD.
SDD_SEED = 0


def normal_test_count(n_normal: int, fraction: float = SDD_TEST_FRACTION) -> int:
    """How many of ``n_normal`` normal halves go to the test split: ``fraction`` of them rounded
    up (the convention of scikit-learn's ``train_test_split``), 181 of 724 for KolektorSDD."""
    if not 0.0 <= fraction <= 1.0:
        raise AnomclipError(f"the SDD test fraction must lie in [0, 1], got {fraction}")
    return min(n_normal, math.ceil(round(n_normal * fraction, 9)))


def _save_png(path: Path, image: Image.Image) -> None:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    atomic_write(path, buf.getvalue())


def split_sdd(root: str | os.PathLike, out: str | os.PathLike, cls_name: str = "sdd",
              seed: int = SDD_SEED, test_fraction: float = SDD_TEST_FRACTION) -> Path:
    """Cut every KolektorSDD image (≈500×1250) and its mask into two halves along the long axis,
    and split the halves as Table 6 counts them.

    A half is anomalous when its half of the mask has a non-zero pixel. Every anomalous half is
    tested; of the normal halves, sorted by name, ``test_fraction`` (rounded up:
    :func:`normal_test_count`) drawn by ``numpy.random.default_rng(seed).permutation`` are
    tested too, the others go to ``train`` — 181 + 74 of KolektorSDD's 724 + 74 halves. (The
    paper gives only the counts; this split is inferred from them, docs/datasets.md.)

    Writes an MVTec-style root ``out/<cls_name>/{train/good,test/{good,defect}}/<kos>_<Part>_<half>.png``
    with masks ``out/<cls_name>/ground_truth/defect/<stem>_mask.png`` (255 = defect), and
    ``out/meta.json`` listing exactly the halves written (a file left there by an earlier run
    with another seed is not listed). Returns the ``meta.json`` path.
    """
    root = check_root(root)
    out = Path(out)
    pairs = _sdd_pairs(root, out)
    halves: list[tuple[str, Image.Image, np.ndarray]] = []  # (stem, image, mask half)
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
            halves.append((f"{base}_{half}", Image.fromarray(img_part), mask_part))
    normal = sorted(stem for stem, _, m in halves if not m.any())
    k = normal_test_count(len(normal), test_fraction)
    tested = {normal[j] for j in np.random.default_rng(seed).permutation(len(normal))[:k]}
    meta: dict = {"train": {cls_name: []}, "test": {cls_name: []}}
    for stem, img_part, mask_part in sorted(halves, key=lambda h: h[0]):
        if mask_part.any():
            rel, mrel = f"{cls_name}/test/defect/{stem}.png", f"{cls_name}/ground_truth/defect/{stem}_mask.png"
            _save_png(out / mrel, Image.fromarray(mask_part.astype(np.uint8) * 255, "L"))
            item = make_item(rel, mrel, cls_name, "defect", 1)
        else:
            split = "test" if stem in tested else "train"
            rel = f"{cls_name}/{split}/good/{stem}.png"
            item = make_item(rel, "", cls_name, "good", 0)
        _save_png(out / rel, img_part)
        meta["test" if item["anomaly"] or stem in tested else "train"][cls_name].append(item)
    # index order of an MVTec-style tree: defect/ before good/, names sorted
    meta["test"][cls_name].sort(key=lambda it: it["img_path"])
    return write_meta(out, meta)


#: Folder (under the SDD root) that receives the cut halves.
SDD_HALVES = "halves"


def read_sdd(root: Path, notes: list) -> dict:
    """KolektorSDD: every image and its label cut into halves, written to ``root/halves`` and
    split as Table 6 counts them (:func:`split_sdd`)."""
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
    test = [it for items in meta["test"].values() for it in items]
    n_bad = sum(it["anomaly"] for it in test)
    n_train = sum(len(items) for items in meta["train"].values())
    notes.append(f"each image and its label were cut into top and bottom halves under {out}; "
                 f"test: all {n_bad} anomalous halves + {len(test) - n_bad} of the {len(test) - n_bad + n_train} "
                 f"normal ones ({SDD_TEST_FRACTION:.0%}, seed {SDD_SEED}), the other {n_train} in train "
                 "(Table 6's split, inferred from its counts)")
    return meta


def looks_sdd(root: Path) -> bool:
    return any_sub(root, lambda d: any(is_image(p) and p.stem.lower().endswith("_label")
                                        for p in d.iterdir()))
