"""Zero-shot evaluation: scores and maps for every image, metrics per category (SPEC §4, §8).

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

from . import metrics as M
from .features import FeatureSet
from .model import AnomalyCLIP


@dataclass
class EvalResult:
    categories: dict  # {category: {metric: value}}
    mean: dict  # {metric: value}
    notes: list = field(default_factory=list)
    seconds: float = 0.0
    scores: dict = field(default_factory=dict)  # {category: [n] image scores}
    maps: dict = field(default_factory=dict)  # {category: [n, S, S]} (only with keep_maps)


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


def evaluate(model: AnomalyCLIP, features: FeatureSet, batch_size: int = 16, progress: bool = True,
             keep_maps: bool = False, keep_scores: bool = True, sigma: float | None = None,
             pixel_metrics: bool = True) -> EvalResult:
    """Metrics of ``model`` on ``features``, per category and their unweighted mean."""
    t0 = time.perf_counter()
    model.prompt_learner.eval()
    per_cat, scores, maps, notes = {}, {}, {}, []
    cats = features.categories()
    for cat, idx in tqdm(cats.items(), desc="evaluate", disable=not progress, leave=False):
        idx = np.sort(idx)
        s, m = predict_features(model, features, idx, batch_size, sigma)
        labels = features.labels[idx]
        masks = np.asarray(features.masks[idx])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if pixel_metrics and features.has_mask[idx].all():
                res = M.category_metrics(s, labels, m, masks)
            else:
                res = M.category_metrics(s, labels, None, None)
        for w in caught:  # re-issued once, with the category's name
            notes.append(f"{cat}: {w.message}")
            warnings.warn(notes[-1], w.category, stacklevel=2)
        per_cat[cat] = res
        if keep_scores:
            scores[cat] = s
        if keep_maps:
            maps[cat] = m
    mean, mean_notes = M.mean_over_categories(per_cat)
    notes += mean_notes
    return EvalResult(per_cat, mean, notes, time.perf_counter() - t0, scores, maps)
