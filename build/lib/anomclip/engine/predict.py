"""``anomclip predict``: scores, overlays and masks for a user's own images.

Each image is read (EXIF orientation applied), preprocessed as in evaluation, scored, and its
overlay (and, with a threshold, its binary mask) written atomically beside a ``scores.csv`` and
``scores.json``; output names mirror the inputs' folders so that nothing is overwritten.
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.preprocess import image_to_tensor, read_image
from ..io import atomic_write, atomic_write_text


def output_names(paths: list[Path]) -> list[str]:
    """A distinct output stem per input image, stable and readable.

    The inputs' paths relative to their common folder, without the suffix (``a/x.png`` and
    ``b/x.png`` → ``a/x`` and ``b/x``: the input tree is mirrored, nothing overwritten); two
    inputs differing only by suffix keep it (``x.png``, ``x.jpg`` → ``x_png``, ``x_jpg``).
    """
    resolved = [p.resolve() for p in paths]
    base = Path(os.path.commonpath([str(r.parent) for r in resolved])) if resolved else Path(".")
    rel = [r.relative_to(base) for r in resolved]
    stems = [str(r.with_suffix("")) for r in rel]
    counts = {s: stems.count(s) for s in stems}
    return [str(r.with_name(r.name.replace(".", "_"))) if counts[s] > 1 else s for r, s in zip(rel, stems)]


def predict_images(load_model, images, out: Path, threshold: float | None, class_name: str, echo=print) -> list:
    """Predict every image of ``images`` with the model ``load_model()`` returns; write to ``out``.

    Every image is read before the model is loaded and before anything is written (a bad file
    stops the command with one line, nothing written). Returns the rows of ``scores.csv``.
    """
    unique = list(dict.fromkeys(Path(p).resolve() for p in images))  # the same file once
    images = [(p, read_image(p)) for p in unique]  # read all first: a bad file stops before any write
    names = output_names([p for p, _ in images])
    model = load_model()
    import matplotlib

    cmap = matplotlib.colormaps["jet"]

    def png(img):
        return lambda f: img.save(f, format="PNG")

    rows = []
    for (path, img), name in zip(images, names):
        x = image_to_tensor(img, model.image_size).unsqueeze(0)
        with torch.no_grad():
            res = model(x, cls_names=[class_name])
        score = float(res.image_score[0])
        amap = res.anomaly_map[0].cpu().numpy()
        lo, hi = float(amap.min()), float(amap.max())
        heat = cmap((amap - lo) / (hi - lo + 1e-12))[..., :3]
        base = np.asarray(img.resize((model.image_size, model.image_size), Image.BICUBIC), np.float32) / 255
        overlay = Image.fromarray(((0.5 * base + 0.5 * heat) * 255).clip(0, 255).astype(np.uint8))
        overlay_path = out / f"{name}_overlay.png"
        atomic_write(overlay_path, png(overlay.resize(img.size, Image.BILINEAR)))
        row = {"image": str(path), "score": score, "map_max": hi, "overlay": str(overlay_path)}
        if threshold is not None:
            mask = Image.fromarray(((amap >= threshold) * 255).astype(np.uint8)).resize(img.size, Image.NEAREST)
            mask_path = out / f"{name}_mask.png"
            atomic_write(mask_path, png(mask))
            row["mask"] = str(mask_path)
        rows.append(row)
        echo(f"{score:.4f}  {path}")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=sorted({k for r in rows for k in r}))
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out / "scores.csv", buf.getvalue())
    atomic_write_text(out / "scores.json", json.dumps({"backbone": model.info.weights, "predictions": rows}, indent=1))
    echo(f"wrote {len(rows)} overlays and scores.csv/json to {out}")
    return rows
