"""``anomclip predict``: scores, overlays and masks for a user's own images, at folder scale.

The inputs are image files and folders (searched recursively for the suffixes of
:data:`IMAGE_SUFFIXES`). The command runs in two passes, each holding one image (then one
batch) in memory whatever the number of inputs:

1. **check** — every input is decoded once (EXIF orientation applied) and dropped; only its
   path is kept. A file that cannot be read stops the command with one line naming it, before
   the model is loaded and before anything is written;
2. **predict** — the images are read again batch by batch (``batch_size``), preprocessed as
   in evaluation, scored, and each overlay (and, with a threshold, its binary mask) written
   atomically; ``scores.csv`` and ``scores.json`` are written at the end.

**One colour scale for every image.** A map of AnomalyCLIP (and VAND) is the sum of one
probability map per layer, so it lies in [0, L]; it is divided by the number of layers L of
the method (the mean over layers: in [0, 1], ranked exactly as the map — the rule of
:func:`anomclip.book.examples.method_maps`). That mean is drawn on the fixed scale [0, 1] of
:data:`COLORMAP` (never stretched to an image's own min–max: a flat image gives a flat
overlay), written once as ``colour_scale.png`` and described under ``"colour_scale"`` in
``scores.json``. ``map_max`` and the ``--threshold`` of the masks are on the same [0, 1] scale.

Output names mirror the inputs' folders (:func:`output_names`), so nothing is overwritten.
"""
from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.preprocess import image_to_tensor, read_image
from ..errors import AnomclipError
from ..io import atomic_write, atomic_write_text

#: File suffixes collected from an input folder (a file named explicitly is read whatever its suffix).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: The colour map of the overlays, on the fixed scale [0, 1].
COLORMAP = "jet"
#: Weight of the heat map in an overlay (the image gets 1 − this).
OVERLAY_ALPHA = 0.5
#: The legend written once beside the overlays.
LEGEND = "colour_scale.png"


def output_names(paths: list[Path], anchors=()) -> list[str]:
    """A distinct output stem per input image, stable and readable.

    The inputs' paths relative to their common folder (that of the images' folders and the
    ``anchors``: the folders given as input, so a folder's sub-folders are mirrored even when
    all its images lie in one of them), without the suffix (``a/x.png`` and ``b/x.png`` →
    ``a/x`` and ``b/x``: the input tree is mirrored, nothing overwritten); two inputs differing
    only by suffix keep it (``x.png``, ``x.jpg`` → ``x_png``, ``x_jpg``).
    """
    resolved = [p.resolve() for p in paths]
    folders = [str(r.parent) for r in resolved] + [str(Path(a).resolve()) for a in anchors]
    base = Path(os.path.commonpath(folders)) if resolved else Path(".")
    rel = [r.relative_to(base) for r in resolved]
    stems = [str(r.with_suffix("")) for r in rel]
    counts: dict = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    return [str(r.with_name(r.name.replace(".", "_"))) if counts[s] > 1 else s for r, s in zip(rel, stems)]


def collect_inputs(items, exclude: Path | None = None) -> tuple[list[Path], list[Path]]:
    """``(image paths, folders given)`` of the command's inputs, each file once, in a stable order.

    A folder is searched recursively for :data:`IMAGE_SUFFIXES` (hidden files and folders and
    anything under ``exclude`` — the output folder — are left out); a folder without any image
    and a path that does not exist are one-line errors.
    """
    exclude = exclude.resolve() if exclude is not None else None
    files, folders = [], []
    for item in items:
        p = Path(item)
        if p.is_dir():
            folders.append(p.resolve())
            found = []
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                                 and (exclude is None or Path(root, d).resolve() != exclude))
                found += [Path(root, n).resolve() for n in sorted(names)
                          if not n.startswith(".") and n.lower().endswith(IMAGE_SUFFIXES)]
            if not found:
                raise AnomclipError(f"folder {p} holds no images ({', '.join(IMAGE_SUFFIXES)}), "
                                    "in it or in its sub-folders")
            files += found
        elif p.exists():
            files.append(p.resolve())
        else:
            raise AnomclipError(f"image file {p} does not exist")
    return list(dict.fromkeys(files)), folders


def check_images(paths, progress: bool = False) -> None:
    """Decode every image once and drop it (one in memory at a time): a bad file is a one-line error."""
    from tqdm.auto import tqdm

    for p in tqdm(paths, desc="checking images", disable=not progress, leave=False, unit="img"):
        read_image(p)  # raises AnomclipError naming the file; the image itself is not kept


def map_scale(model) -> int:
    """The number of per-layer probability maps a map of ``model`` sums (its maps lie in [0, this])."""
    return max(1, len(getattr(model, "layers", ()) or ()))


def colour_scale(model) -> dict:
    """The overlays' colour scale, as ``scores.json`` records it."""
    layers = map_scale(model)
    return {"colormap": COLORMAP, "min": 0.0, "max": 1.0, "overlay_alpha": OVERLAY_ALPHA, "legend": LEGEND,
            "map": f"anomaly probability: the method's map divided by its {layers} layer{'' if layers == 1 else 's'} "
                   "(the mean of the per-layer probability maps), on the fixed scale [0, 1]; "
                   "map_max and the mask threshold are on this scale too",
            "layers": layers}


def _legend_png(f) -> None:
    """The colour bar of :data:`COLORMAP` on [0, 1] (a matplotlib figure without pyplot's state)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.0, 0.7), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.05, 0.55, 0.9, 0.35))
    fig.colorbar(matplotlib.cm.ScalarMappable(Normalize(0.0, 1.0), matplotlib.colormaps[COLORMAP]), cax=ax,
                 orientation="horizontal", ticks=[0, 0.25, 0.5, 0.75, 1.0])
    ax.set_xlabel("anomaly probability (mean over layers)", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.savefig(f, format="png")


def _batches(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def overlay_image(img: Image.Image, prob: np.ndarray, cmap) -> Image.Image:
    """``img`` blended with the colours of ``prob`` (a map in [0, 1] of ``img``'s size), fixed scale."""
    heat = cmap(np.clip(prob, 0.0, 1.0))[..., :3]
    base = np.asarray(img, np.float32) / 255.0
    return Image.fromarray(np.round(((1 - OVERLAY_ALPHA) * base + OVERLAY_ALPHA * heat) * 255).clip(0, 255)
                           .astype(np.uint8))


def _batch(model, imgs) -> torch.Tensor:
    """Images preprocessed for ``model`` as one batch on its device."""
    return torch.stack([image_to_tensor(img, model.image_size) for img in imgs]).to(model.device)


def _score_batch(model, x: torch.Tensor, class_name: str, texts: dict):
    """Scores ``[n]`` and maps ``[n, S, S]`` of a batch scored alone; ``texts`` caches the text
    features per batch size."""
    n = x.shape[0]
    with torch.no_grad():
        if n not in texts:
            texts[n] = model.text_for([class_name] * n)
        g, feats = model.encode_image(x)
        res = model.score_features(g, feats, texts[n])
    return res.image_score.float().cpu().numpy(), res.anomaly_map.float().cpu().numpy()


def _joint_scores(model, paths: list, batch_size: int, progress: bool = False):
    """Scores ``[n]`` and maps ``[n, S, S]`` of a transductive method (MuSc): the images are encoded
    ``batch_size`` at a time, their features kept (on the CPU), then scored together as one category."""
    from tqdm.auto import tqdm

    if len(paths) < 2:
        raise AnomclipError(f"{model.recipe.method} scores each image against the other images of its category, "
                            "so one image cannot be scored alone: give a folder of images of one category")
    gs, feats = [], []
    for chunk in tqdm(list(_batches(paths, batch_size)), desc="features", disable=not progress, leave=False):
        with torch.no_grad():
            g, f = model.encode_image(_batch(model, [read_image(p) for p in chunk]))
        gs.append(g.cpu())
        feats.append({m: {l: t.cpu() for l, t in d.items()} for m, d in f.items()})
    g = torch.cat(gs)
    f = {m: {l: torch.cat([b[m][l] for b in feats]) for l in feats[0][m]} for m in feats[0]}
    del feats
    with torch.no_grad():
        res = model.score_features(g, f)
    return res.image_score.float().cpu().numpy(), res.anomaly_map.float().cpu().numpy()


def predict_images(load_model, images, out: Path, threshold: float | None, class_name: str, echo=print,
                   batch_size: int = 8, progress: bool = False, plan=None) -> list:
    """Predict every image of ``images`` (files and folders) with the model ``load_model()`` returns.

    Every input is checked (decoded, then dropped) before the model is loaded and before
    anything is written: a bad file stops the command with one line, nothing written. Then the
    images are read, scored and written ``batch_size`` at a time. Returns the rows of
    ``scores.csv``. ``plan`` (:class:`ThresholdPlan`): how each image is judged normal or
    anomalous (a row's ``anomalous``), recorded under ``"threshold"`` in ``scores.json``.
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise AnomclipError(f"--batch-size {batch_size} must be ≥ 1")
    out = Path(out)
    paths, folders = collect_inputs(images, exclude=out)
    check_images(paths, progress)
    names = output_names(paths, anchors=folders)
    image_cats = plan.categories_of(names, class_name) if plan is not None else None
    if plan is not None and plan.ref is not None:
        check_images(plan.ref.paths, progress)  # the reference images too, before the model is loaded
    model = load_model()
    chosen, threshold_doc = plan.choose(model, class_name, batch_size, progress) if plan is not None else (None, None)
    joint = _joint_scores(model, paths, batch_size, progress) if getattr(model, "transductive", False) else None
    import matplotlib

    cmap = matplotlib.colormaps[COLORMAP]
    scale = map_scale(model)
    texts: dict = {}  # text features per batch size (the same class name for every image)

    def png(img):
        return lambda f: img.save(f, format="PNG")

    rows = []
    bar = tqdm(total=len(paths), desc="predict", disable=not progress, unit="img")
    say = (lambda line: tqdm.write(line, file=sys.stdout)) if progress else echo
    try:
        for chunk in _batches(list(zip(paths, names)), batch_size):
            imgs = [read_image(p) for p, _ in chunk]
            if joint is not None:  # scored with the whole folder (a transductive method)
                scores, maps = (a[len(rows):len(rows) + len(imgs)] for a in joint)
            else:
                scores, maps = _score_batch(model, _batch(model, imgs), class_name, texts)
            maps = maps / scale
            for (path, name), img, score, amap in zip(chunk, imgs, scores, maps):
                prob = np.asarray(Image.fromarray(amap.astype(np.float32), "F").resize(img.size, Image.BILINEAR))
                overlay_path = out / f"{name}_overlay.png"
                atomic_write(overlay_path, png(overlay_image(img, prob, cmap)))
                row = {"image": str(path), "score": float(score), "map_max": float(amap.max()),
                       "overlay": str(overlay_path)}
                if chosen is not None:
                    row["anomalous"] = bool(float(score) >= chosen[image_cats[len(rows)]])
                if threshold is not None:
                    mask_path = out / f"{name}_mask.png"
                    atomic_write(mask_path, png(Image.fromarray(((prob >= threshold) * 255).astype(np.uint8))))
                    row["mask"] = str(mask_path)
                rows.append(row)
                say(f"{row['score']:.4f}  {path}")
            bar.update(len(imgs))
    finally:
        bar.close()
    atomic_write(out / LEGEND, _legend_png)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=sorted({k for r in rows for k in r}))
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out / "scores.csv", buf.getvalue())
    atomic_write_text(out / "scores.json", json.dumps({"backbone": model.info.weights, "class_name": class_name,
                                                       "colour_scale": colour_scale(model),
                                                       **({"threshold": threshold_doc} if threshold_doc else {}),
                                                       "predictions": rows}, indent=1))
    echo(f"wrote {len(rows)} overlays, {LEGEND} and scores.csv/json to {out}")
    return rows


# ----------------------------------------------------------------------------- thresholds


def score_images(model, paths: list, class_name: str, batch_size: int = 8, progress: bool = False) -> np.ndarray:
    """Image scores ``[n]`` of ``paths``, preprocessed and scored as the predicted images (nothing written)."""
    if getattr(model, "transductive", False):
        return _joint_scores(model, list(paths), batch_size, progress)[0]
    texts: dict = {}
    out = [_score_batch(model, _batch(model, [read_image(p) for p in chunk]), class_name, texts)[0]
           for chunk in _batches(list(paths), batch_size)]
    return np.concatenate(out) if out else np.zeros(0)


def normal_reference(folder) -> "Reference":
    """The images of ``folder`` (recursively), all normal; an image's category is its first sub-folder."""
    from .thresholds import Reference

    root = Path(folder)
    if not root.is_dir():
        raise AnomclipError(f"--normal {folder}: not a folder" if root.exists()
                            else f"--normal {folder} does not exist")
    paths, _ = collect_inputs([root])
    cats = [p.relative_to(root.resolve()).parts[0] if len(p.relative_to(root.resolve()).parts) > 1 else ""
            for p in paths]
    return Reference("normal", str(root), paths, np.zeros(len(paths), np.int64), cats)


def labelled_reference(folder) -> "Reference":
    """The test split of a labelled dataset (``meta.json`` or a known layout, e.g. ``<category>/normal|anomalous``)."""
    from ..data.dataset import load_index
    from .thresholds import Reference

    if not Path(folder).is_dir():
        raise AnomclipError(f"--labelled {folder} does not exist" if not Path(folder).exists()
                            else f"--labelled {folder}: not a folder")
    samples = [s for v in load_index(folder, "test").values() for s in v]
    if not samples:
        raise AnomclipError(f"--labelled {folder} holds no images")
    return Reference("labelled", str(folder), [Path(s.img_path) for s in samples],
                     np.asarray([int(s.anomaly) for s in samples], np.int64), [s.cls_name for s in samples])


class ThresholdPlan:
    """A threshold rule, its scope and its reference images, checked before any model is loaded."""

    def __init__(self, rule, scope: str = "global", normal=None, labelled=None):
        from .thresholds import SCOPES

        if scope not in SCOPES:
            raise AnomclipError(f"--threshold-scope {scope!r}: choose global or category")
        self.rule, self.scope = rule, scope
        if rule.needs == "labelled" and labelled is None:
            raise AnomclipError(f"--threshold {rule} is chosen on a labelled set: give --labelled DIR")
        if rule.needs == "normal" and normal is None and labelled is None:
            raise AnomclipError(f"--threshold {rule} is chosen on images known to be normal: give --normal DIR "
                                "(or --labelled DIR)")
        if rule.needs is None and (normal is not None or labelled is not None):
            raise AnomclipError(f"--threshold {rule} is a number: --normal/--labelled would not be used")
        self.ref = None
        if rule.needs == "normal" and normal is not None:
            self.ref = normal_reference(normal)
        elif rule.needs is not None:
            self.ref = labelled_reference(labelled)
            if rule.needs == "normal" and self.ref.labels.all():
                raise AnomclipError(f"--labelled {labelled} holds no normal image to choose {rule} from")

    def categories_of(self, names: list, class_name: str) -> list:
        """Each predicted image's threshold key: its first sub-folder (else ``class_name``) with the
        category scope, ``"*"`` with the global one; a category without reference images is an error."""
        if self.scope == "global" or self.ref is None:
            return ["*"] * len(names)
        known = set(self.ref.categories)
        cats = [Path(n).parts[0] if len(Path(n).parts) > 1 else class_name for n in names]
        missing = sorted(set(cats) - known)
        if missing:
            raise AnomclipError(f"--threshold-scope category: no reference images of category {missing[0]!r} "
                                f"(the images' first sub-folder, else --class-name); {self.ref.kind} images "
                                f"have {', '.join(sorted(known)) or 'none'}")
        return cats

    def choose(self, model, class_name: str, batch_size: int, progress: bool = False) -> tuple[dict, dict]:
        """``({key: threshold}, the record of scores.json)``: the reference images scored by ``model``."""
        from .thresholds import record, thresholds

        scores = score_images(model, self.ref.paths, class_name, batch_size, progress) if self.ref else None
        values = thresholds(self.rule, self.scope if self.ref else "global", self.ref, scores)
        return values, record(self.rule, self.scope if self.ref else "global", values, self.ref)
