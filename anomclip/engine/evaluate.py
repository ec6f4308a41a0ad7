"""Zero-shot evaluation: scores and maps for every image, metrics per category (docs/anomalyclip.md §4, §8).

Categories are evaluated one at a time so only one category's maps are in memory. The
dataset-level number of each metric is the unweighted mean over categories, NaNs (undefined
cases) left out with a note.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from ..model.anomalyclip import AnomalyCLIP
from . import metrics as M
from .features import FeatureSet
from .intervals import Bootstrap, category_resamples, summarize


@dataclass
class EvalResult:
    categories: dict  # {category: {metric: value}}
    mean: dict  # {metric: value}
    notes: list = field(default_factory=list)
    seconds: float = 0.0
    scores: dict = field(default_factory=dict)  # {category: [n] image scores}
    maps: dict = field(default_factory=dict)  # {category: [n, S, S]} (only with keep_maps)
    intervals: dict = field(default_factory=dict)  # bootstrap intervals (intervals.summarize), {} without


def predict_features(model: AnomalyCLIP, features: FeatureSet, idx: np.ndarray, batch_size: int = 16,
                     sigma: float | None = None):
    """Image scores ``[n]`` and anomaly maps ``[n, S, S]`` (float32) of the samples ``idx``."""
    scores, maps = [], []
    with torch.no_grad():
        for i in range(0, len(idx), batch_size):
            g, feats, _, _, cls_names, _ = features.batch(idx[i:i + batch_size], model.device)
            out = model.score_features(g, feats, model.text_for(cls_names), sigma=sigma)
            scores.append(out.image_score.float().cpu().numpy())
            maps.append(out.anomaly_map.float().cpu().numpy())
    return np.concatenate(scores), np.concatenate(maps)


def category_loader(features: FeatureSet, idx: np.ndarray, device):
    """``load(rows, layer)``: one block's patch tokens (``layer=None``: the global features) of the
    category's images ``idx[rows]``, read from the cache as needed (what a transductive method reads)."""
    def load(rows, layer):
        sel = idx[np.asarray(rows)]
        array = features.global_feats if layer is None else features.patches[model_mode(features)][layer]
        return torch.from_numpy(np.ascontiguousarray(array[sel])).to(device).float()

    return load


def model_mode(features: FeatureSet) -> str:
    """The one mode of a feature set with a single mode (a transductive method's raw tokens)."""
    (mode,) = features.patches
    return mode


def predict_category(model, features: FeatureSet, idx: np.ndarray, sigma: float | None = None,
                     dataset: str | None = None):
    """Image scores ``[n]`` and maps ``[n, S, S]`` of one category scored jointly (a transductive method)."""
    with torch.no_grad():
        out = model.score_category(category_loader(features, idx, model.device), len(idx), dataset=dataset,
                                   sigma=sigma)
    return out.image_score.float().cpu().numpy(), out.anomaly_map.float().cpu().numpy()


def _structural_notes(labels: np.ndarray, has_mask: np.ndarray, pixel_metrics: bool) -> tuple[bool, bool, list]:
    """Whether image / pixel metrics are undefined for the whole dataset by its design, and the
    one note that says why (instead of a warning per category)."""
    no_image = bool(labels.size) and bool(labels.all())
    no_pixel = pixel_metrics and not bool((has_mask & (labels == 1)).any())
    notes = []
    if no_image:
        notes.append("image metrics (AUROC, AP) are not defined: every image is anomalous "
                     "(a pixel-level dataset)")
    if no_pixel:
        notes.append("pixel metrics are not defined: no anomalous image has a mask (an image-level dataset)")
    return no_image, no_pixel, notes


def evaluate(model: AnomalyCLIP, features: FeatureSet, batch_size: int = 16, progress: bool = True,
             keep_maps: bool = False, keep_scores: bool = True, sigma: float | None = None,
             pixel_metrics: bool = True, dataset: str | None = None,
             bootstrap: Bootstrap | None = Bootstrap()) -> EvalResult:
    """Metrics of ``model`` on ``features``, per category and their unweighted mean.

    Pixel metrics use the images that have a mask (normal images count as all-zero masks); an
    anomalous image without a mask is left out of them, with a note saying how many. A dataset
    whose images are all anomalous (pixel-level medical sets) has no image AUROC/AP, one
    without masks (image-level sets) no pixel metrics: both are NaN (null in results files)
    with one note each, not a warning per category. ``bootstrap``: how every metric's interval
    is made (:mod:`.intervals`; None: no intervals).
    """
    t0 = time.perf_counter()
    model.prompt_learner.eval()
    per_cat, scores, maps, resampled = {}, {}, {}, {}
    all_labels = np.asarray(features.labels)
    has_mask = np.asarray(features.has_mask, dtype=bool)
    no_image, no_pixel, notes = _structural_notes(all_labels, has_mask, pixel_metrics)
    cats = features.categories()
    for cat, idx in tqdm(cats.items(), desc="evaluate", disable=not progress, leave=False):
        idx = np.sort(idx)
        if getattr(model, "transductive", False):  # MuSc: the category's images are scored jointly
            s, m = predict_category(model, features, idx, sigma, dataset)
        else:
            s, m = predict_features(model, features, idx, batch_size, sigma)
        labels = all_labels[idx]
        masked = has_mask[idx]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if pixel_metrics and not no_pixel and masked.any():
                masks = np.asarray(features.masks[idx[masked]])
                res = M.category_metrics(s, labels, m[masked], masks)
            else:
                masks = None
                res = M.category_metrics(s, labels, None, None)
        if bootstrap is not None:
            with np.errstate(all="ignore"):
                resampled[cat] = category_resamples(s, labels, bootstrap, str(cat),
                                                    *((m[masked], masks, labels[masked]) if masks is not None else ()))
        for w in caught:  # re-issued once, with the category's name, unless the dataset explains it
            text = str(w.message)
            if (no_image and text.startswith("image")) or ((no_pixel or not pixel_metrics) and "pixel" in text):
                continue
            notes.append(f"{cat}: {text}")
            warnings.warn(notes[-1], w.category, stacklevel=2)
        left_out = int((~masked).sum())
        if pixel_metrics and not no_pixel and left_out:
            notes.append(f"{cat}: pixel metrics over the {int(masked.sum())} images with a mask; "
                         f"{left_out} anomalous image{'' if left_out == 1 else 's'} without a mask left out")
        per_cat[cat] = res
        if keep_scores:
            scores[cat] = s
        if keep_maps:
            maps[cat] = m
    if getattr(model, "transductive", False):
        notes.append("transductive: each category's test images were scored together, each against the others "
                     "(its scores depend on the set; not comparable one-to-one with methods that score images alone)")
    mean, mean_notes = M.mean_over_categories(per_cat)
    explained = {k for k in mean if (no_image and k in ("image_auroc", "image_ap"))
                 or ((no_pixel or not pixel_metrics) and k in M.PIXEL_KEYS)}
    notes += [n for n in mean_notes if n.split(":")[0] not in explained]
    intervals = summarize(resampled, bootstrap) if bootstrap is not None else {}
    return EvalResult(per_cat, mean, notes, time.perf_counter() - t0, scores, maps, intervals)
