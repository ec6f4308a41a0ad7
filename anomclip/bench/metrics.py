"""Exact AUPRO and the pixel metrics on many large maps: the engine against its baseline.

On ``n`` random maps of ``size``² (disks as ground truth, noisy scores that favour them) this
times :func:`anomclip.engine.metrics.aupro`, :func:`~anomclip.engine.metrics.aupro_official` and
:func:`~anomclip.engine.metrics.pixel_metrics` beside the implementation they replaced
(:mod:`.metrics_baseline`), reports the largest difference of each metric between the two, and
extrapolates what a naive exact AUPRO (binarising the maps at every distinct score) would cost.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from scipy import ndimage

from ..engine import metrics
from .metrics_baseline import _STRUCTURE, baseline_aupro, baseline_pixel_metrics


def blob_data(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random disks as masks (a quarter of the images normal) and noisy maps that favour them."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    masks = np.zeros((n, size, size), dtype=bool)
    for i in range(n):
        if rng.random() < 0.25:
            continue
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.integers(0, size, 2)
            r = rng.uniform(0.02, 0.12) * size
            masks[i] |= (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
    maps = rng.random((n, size, size), dtype=np.float32) * 0.7 + masks * np.float32(0.3)
    return maps, masks


def _timed(fn, repeats: int):
    """(result, median seconds over ``repeats`` calls)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, float(np.median(times))


def naive_aupro_cost(maps: np.ndarray, masks: np.ndarray, thresholds: int = 50) -> dict:
    """A naive exact AUPRO binarises the maps at every distinct score: one such step (threshold,
    count FP, count covered pixels per region) timed over ``thresholds`` scores, extrapolated."""
    labels, n_regions = ndimage.label(masks, structure=_STRUCTURE)
    area = np.bincount(labels.ravel(), minlength=n_regions + 1)[1:]
    normal = ~masks
    distinct = np.unique(maps)
    ths = distinct[np.linspace(0, distinct.size - 1, thresholds).astype(int)]
    t0 = time.perf_counter()
    for th in ths:
        pred = maps >= th
        _fpr = np.count_nonzero(pred & normal) / normal.sum()
        _pro = np.mean(np.bincount(labels[pred], minlength=n_regions + 1)[1:] / area)
    per_threshold = (time.perf_counter() - t0) / ths.size
    return {"n_distinct_scores": int(distinct.size), "naive_per_threshold_s": per_threshold,
            "naive_extrapolated_s": per_threshold * distinct.size}


def bench_aupro(n: int = 100, size: int = 518, seed: int = 0, repeats: int = 1, baseline: bool = True,
                naive: bool = True) -> dict:
    """Seconds (medians of ``repeats``) of AUPRO, the official AUPRO and all pixel metrics on
    :func:`blob_data`; with ``baseline`` the same for the implementation they replaced and the
    largest |difference| of each metric; with ``naive`` the extrapolated naive cost."""
    maps, masks = blob_data(n, size, seed)
    out: dict = {"n_images": n, "size": size, "n_pixels": int(maps.size),
                 "anomalous_fraction": float(masks.mean()), "threads": torch.get_num_threads(), "repeats": repeats}
    values, out["aupro_s"] = _timed(lambda: metrics.aupro(maps, masks), repeats)
    _, out["aupro_official_s"] = _timed(lambda: metrics.aupro_official(maps, masks), repeats)
    together, out["pixel_metrics_s"] = _timed(lambda: metrics.pixel_metrics(maps, masks), repeats)
    out["pixel_metrics"] = together
    if baseline:
        old_aupro, out["baseline_aupro_s"] = _timed(lambda: baseline_aupro(maps, masks), repeats)
        old, out["baseline_pixel_metrics_s"] = _timed(lambda: baseline_pixel_metrics(maps, masks), repeats)
        diffs = {k: abs(together[k] - old[k]) for k in together}
        diffs["aupro"] = abs(values - old_aupro)
        out["max_abs_diff"] = diffs
        out["largest_abs_diff"] = max(diffs.values())
        out["aupro_speedup"] = out["baseline_aupro_s"] / out["aupro_s"]
        out["pixel_metrics_speedup"] = out["baseline_pixel_metrics_s"] / out["pixel_metrics_s"]
    if naive:
        out.update(naive_aupro_cost(maps, masks))
    return out


def summary(row: dict) -> list[str]:
    lines = [f"AUPRO on {row['n_images']} maps of {row['size']}² ({row['threads']} threads): "
             f"aupro {row['aupro_s']:.3f} s, aupro_official {row['aupro_official_s']:.3f} s, "
             f"pixel_metrics (all five) {row['pixel_metrics_s']:.3f} s"]
    if "baseline_aupro_s" in row:
        lines.append(f"  before issue 27: aupro {row['baseline_aupro_s']:.3f} s "
                     f"({row['aupro_speedup']:.1f}× the new time), pixel_metrics {row['baseline_pixel_metrics_s']:.3f} s; largest |difference| "
                     f"{row['largest_abs_diff']:.2g}")
    if "naive_extrapolated_s" in row:
        lines.append(f"  a naive exact AUPRO over {row['n_distinct_scores']} distinct scores: "
                     f"≈ {row['naive_extrapolated_s']:.0f} s")
    return lines
