"""The pixel metrics as computed before issue 27: the baseline that :mod:`.metrics` times.

A verbatim copy of the old engine of :mod:`anomclip.engine.metrics`: every pixel is sorted once
as a 64-bit key ``float32 order bits << 32 | region id`` (regions labelled on the whole
``[N, H, W]`` stack), and cumulative sums over the descending order give the curves at every
distinct score. Kept only to measure the new engine against (speed, and the largest difference
of each metric); nothing else uses it.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from sklearn.metrics import auc

# 8-connectivity inside each image, none across images of an [N, H, W] stack.
_STRUCTURE = np.zeros((3, 3, 3), dtype=bool)
_STRUCTURE[1] = True


def _order_bits(x: np.ndarray) -> np.ndarray:
    u = (x + np.float32(0.0)).view(np.uint32)
    return np.where(u >> 31 == 1, ~u, u | np.uint32(0x80000000))


def _from_order_bits(k: np.ndarray) -> np.ndarray:
    k = k.astype(np.uint32)
    return np.where(k >> 31 == 1, k & np.uint32(0x7FFFFFFF), ~k).view(np.float32)


def baseline_curve(m: np.ndarray, g: np.ndarray) -> dict:
    """thresholds (descending), fp, tp and pro at every distinct score of all pixels."""
    labels, n_regions = ndimage.label(g, structure=_STRUCTURE)
    codes = labels.reshape(-1)
    area = np.bincount(codes, minlength=n_regions + 1)
    del labels
    keys = _order_bits(m.reshape(-1)).astype(np.uint64)
    keys <<= np.uint64(32)
    keys |= codes.astype(np.uint64)
    del codes
    keys.sort()
    keys = keys[::-1]  # descending score
    hi = keys >> np.uint64(32)
    last = np.flatnonzero(hi[1:] != hi[:-1])
    last = np.append(last, hi.size - 1)
    thresholds = _from_order_bits(hi[last]).astype(np.float64)
    del hi
    code = keys & np.uint64(0xFFFFFFFF)
    del keys
    tp = np.cumsum(code != 0, dtype=np.int64)[last]
    fp = last + 1 - tp
    weight = np.zeros(n_regions + 1)
    weight[1:] = 1.0 / (n_regions * area[1:])
    pro = np.cumsum(weight[code])[last]
    return {"thresholds": thresholds, "fp": fp, "tp": tp, "pro": pro}


def _f1(precision: np.ndarray, recall: np.ndarray) -> float:
    denom = precision + recall
    f1 = np.divide(2.0 * precision * recall, denom, out=np.zeros_like(denom, dtype=float), where=denom > 0)
    return float(f1.max())


def _aupro(c: dict, fpr_limit: float) -> float:
    fpr = np.concatenate(([0.0], c["fp"] / c["fp"][-1]))
    pro = np.concatenate(([0.0], c["pro"]))
    k = int(np.searchsorted(fpr, fpr_limit, side="right"))
    x, y = fpr[:k], pro[:k]
    if k < fpr.size:
        x0, x1, y0, y1 = fpr[k - 1], fpr[k], pro[k - 1], pro[k]
        x = np.append(x, fpr_limit)
        y = np.append(y, y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0))
    return float(np.trapezoid(y, x) / fpr_limit)


def _aupro_official(c: dict, steps: int = 200, fpr_below: float = 0.3) -> float:
    lo, hi = c["thresholds"][-1], c["thresholds"][0]
    if hi == lo:
        return float("nan")
    ths = lo + np.arange(steps) * ((hi - lo) / steps)
    ascending = c["thresholds"][::-1]
    above = c["thresholds"].size - np.searchsorted(ascending, ths, side="right")
    fpr = np.concatenate(([0], c["fp"]))[above] / c["fp"][-1]
    pro = np.concatenate(([0.0], c["pro"]))[above]
    keep = fpr < fpr_below
    f = fpr[keep]
    if f.size < 2 or f.max() == f.min():
        return float("nan")
    return float(auc((f - f.min()) / (f.max() - f.min()), pro[keep]))


def baseline_aupro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = 0.3) -> float:
    """The old :func:`anomclip.engine.metrics.aupro` (maps float32, masks bool, both [N, H, W],
    with anomalous and normal pixels)."""
    return _aupro(baseline_curve(maps, masks), fpr_limit)


def baseline_pixel_metrics(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = 0.3) -> dict[str, float]:
    """The old :func:`anomclip.engine.metrics.pixel_metrics`, same keys (same input conditions)."""
    c = baseline_curve(maps, masks)
    n_neg, n_pos = int(c["fp"][-1]), int(c["tp"][-1])
    fpr = np.concatenate(([0.0], c["fp"] / n_neg))
    tpr = np.concatenate(([0.0], c["tp"] / n_pos))
    recall = c["tp"] / n_pos
    precision = c["tp"] / (c["tp"] + c["fp"])
    return {"pixel_auroc": float(np.trapezoid(tpr, fpr)),
            "pixel_ap": float(np.sum(np.diff(recall, prepend=0.0) * precision)),
            "pixel_f1_max": _f1(precision, recall),
            "pixel_aupro": _aupro(c, fpr_limit),
            "pixel_aupro_official": _aupro_official(c)}
