"""Evaluation metrics of AnomalyCLIP: image and pixel AUROC, AP, F1-max and AUPRO.

Every metric returns a Python float in [0, 1] (a fraction, not a percentage). A metric that is
undefined for its input (one class only, no anomalous pixel, no ground-truth region) returns
``float('nan')`` and emits an :class:`UndefinedMetricWarning`; it never raises for that. Bad
input (mismatched shapes, non-binary labels, NaN scores) raises :class:`AnomclipError`.

Pixel metrics share one engine: all pixel scores are sorted once (as 64-bit keys
``float32 order bits << 32 | region id``, which ``np.sort`` handles much faster than an
``argsort``), and cumulative sums over the descending order give the exact curves at every
distinct score. Pixel scores are therefore compared at float32 precision.
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from sklearn.metrics import (
    auc,
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
)

from anomclip.errors import AnomclipError

IMAGE_KEYS = ("image_auroc", "image_ap", "image_f1_max")
PIXEL_KEYS = ("pixel_auroc", "pixel_ap", "pixel_f1_max", "pixel_aupro", "pixel_aupro_official")

# 8-connectivity inside each image, none across images of an [N, H, W] stack.
_STRUCTURE = np.zeros((3, 3, 3), dtype=bool)
_STRUCTURE[1] = True


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined for its input and was returned as NaN."""


def _undefined(names: str, why: str) -> None:
    warnings.warn(f"{names} undefined: {why}; returning NaN", UndefinedMetricWarning, stacklevel=3)


# ----------------------------------------------------------------------------- input checks


def _binary(x: object, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype == bool:
        return a
    if not ((a == 0) | (a == 1)).all():
        bad = a[(a != 0) & (a != 1)].flat[0]
        raise AnomclipError(f"{name} must be binary (0 or 1), got values such as {bad!r}")
    return a != 0


def _image_inputs(scores: object, labels: object) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = _binary(labels, "image labels").reshape(-1)
    if s.shape != y.shape:
        raise AnomclipError(f"got {s.size} image scores but {y.size} labels")
    if not np.isfinite(s).all():
        raise AnomclipError("image scores contain NaN or infinity")
    return s, y


def _pixel_inputs(maps: object, masks: object) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(maps, dtype=np.float32)
    g = _binary(masks, "masks")
    if m.ndim == 2:
        m = m[None]
    if g.ndim == 2:
        g = g[None]
    if m.ndim != 3 or m.shape != g.shape:
        raise AnomclipError(
            f"anomaly maps {tuple(np.shape(maps))} and masks {tuple(np.shape(masks))} must both be [N, H, W]"
        )
    if not np.isfinite(m).all():
        raise AnomclipError("anomaly maps contain NaN or infinity")
    return m, g


# ----------------------------------------------------------------------------- image metrics


def _image_undefined(y: np.ndarray) -> str | None:
    if y.size == 0:
        return "no images"
    if y.all() or not y.any():
        return f"all {y.size} images have label {int(y[0])}"
    return None


def _image_metric(name: str, fn, scores: object, labels: object) -> float:
    """``fn(labels, scores)`` on image scores, NaN (with a warning named ``name``) when only one
    class is present."""
    s, y = _image_inputs(scores, labels)
    if (why := _image_undefined(y)) is not None:
        _undefined(name, why)
        return float("nan")
    return float(fn(y, s))


def image_auroc(scores: object, labels: object) -> float:
    """Image-level AUROC: ``P(s_pos > s_neg) + 1/2 P(s_pos = s_neg)``.

    ``sklearn.metrics.roc_auc_score(labels, scores)``; NaN when only one class is present.
    """
    return _image_metric("image_auroc", roc_auc_score, scores, labels)


def image_ap(scores: object, labels: object) -> float:
    """Image-level average precision ``sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds.

    ``sklearn.metrics.average_precision_score(labels, scores)``; NaN when only one class is
    present.
    """
    return _image_metric("image_ap", average_precision_score, scores, labels)


def f1_max(scores: object, labels: object) -> float:
    """Maximal F1 over thresholds: ``max_t 2 P(t) R(t) / (P(t) + R(t))`` with 0/0 read as 0.

    Precision and recall come from ``sklearn.metrics.precision_recall_curve`` (a sample is
    predicted anomalous when its score is >= t), as in the AnomalyCLIP reference code. NaN
    when there is no anomalous sample.
    """
    s, y = _image_inputs(scores, labels)
    if not y.any():
        _undefined("f1_max", "no anomalous sample")
        return float("nan")
    precision, recall, _ = precision_recall_curve(y, s)
    return _f1(precision, recall)


def _f1(precision: np.ndarray, recall: np.ndarray) -> float:
    denom = precision + recall
    f1 = np.divide(2.0 * precision * recall, denom, out=np.zeros_like(denom, dtype=float), where=denom > 0)
    return float(f1.max())


def image_metrics(scores: object, labels: object) -> dict[str, float]:
    """``image_auroc``, ``image_ap`` and ``image_f1_max`` (see those functions), one warning at most."""
    s, y = _image_inputs(scores, labels)
    why = _image_undefined(y)
    if why is None:
        precision, recall, _ = precision_recall_curve(y, s)
        return {
            "image_auroc": float(roc_auc_score(y, s)),
            "image_ap": float(average_precision_score(y, s)),
            "image_f1_max": _f1(precision, recall),
        }
    nan = float("nan")
    out = {"image_auroc": nan, "image_ap": nan, "image_f1_max": nan}
    if y.any():  # only anomalous images: F1 is still defined
        precision, recall, _ = precision_recall_curve(y, s)
        out["image_f1_max"] = _f1(precision, recall)
    _undefined(", ".join(k for k, v in out.items() if np.isnan(v)), why)
    return out


# ----------------------------------------------------------------------------- pixel engine


def _order_bits(x: np.ndarray) -> np.ndarray:
    """uint32 keys whose unsigned order is the order of the float32 values (-0.0 == +0.0)."""
    u = (x + np.float32(0.0)).view(np.uint32)
    return np.where(u >> 31 == 1, ~u, u | np.uint32(0x80000000))


def _from_order_bits(k: np.ndarray) -> np.ndarray:
    k = k.astype(np.uint32)
    return np.where(k >> 31 == 1, k & np.uint32(0x7FFFFFFF), ~k).view(np.float32)


@dataclass(frozen=True)
class _Curve:
    """Cumulative counts at every distinct score ``thresholds[k]`` (descending)."""

    thresholds: np.ndarray  # float64, distinct pixel scores, descending
    fp: np.ndarray  # int64, normal pixels with score >= thresholds[k]
    tp: np.ndarray  # int64, anomalous pixels with score >= thresholds[k]
    pro: np.ndarray | None  # float64, mean over regions of the covered fraction

    @property
    def n_pos(self) -> int:
        return int(self.tp[-1])

    @property
    def n_neg(self) -> int:
        return int(self.fp[-1])


def _curve(m: np.ndarray, g: np.ndarray, regions: bool) -> _Curve:
    """Sort all pixels once by descending score and accumulate FP, TP and PRO per pixel.

    A normal pixel adds 1 to FP; a pixel of ground-truth region r adds 1 to TP and
    ``1 / (num_regions * area_r)`` to PRO. Ties are collapsed by keeping the last pixel of
    each group of equal scores, so entry k counts every pixel with score >= thresholds[k].
    """
    if regions:
        labels, n_regions = ndimage.label(g, structure=_STRUCTURE)
        codes = labels.reshape(-1)
        area = np.bincount(codes, minlength=n_regions + 1)
        del labels
    else:
        codes = g.reshape(-1).view(np.uint8)
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
    pro = None
    if regions:
        weight = np.zeros(n_regions + 1)
        weight[1:] = 1.0 / (n_regions * area[1:])
        pro = np.cumsum(weight[code])[last]
    return _Curve(thresholds, fp, tp, pro)


def _pixel_auroc(c: _Curve) -> float:
    fpr = np.concatenate(([0.0], c.fp / c.n_neg))
    tpr = np.concatenate(([0.0], c.tp / c.n_pos))
    return float(np.trapezoid(tpr, fpr))


def _pixel_ap(c: _Curve) -> float:
    recall = c.tp / c.n_pos
    precision = c.tp / (c.tp + c.fp)
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def _pixel_f1(c: _Curve) -> float:
    return _f1(c.tp / (c.tp + c.fp), c.tp / c.n_pos)


def _aupro(c: _Curve, fpr_limit: float) -> float:
    fpr = np.concatenate(([0.0], c.fp / c.n_neg))
    pro = np.concatenate(([0.0], c.pro))
    k = int(np.searchsorted(fpr, fpr_limit, side="right"))  # fpr[:k] <= fpr_limit
    x, y = fpr[:k], pro[:k]
    if k < fpr.size:  # add the point at fpr_limit, linearly between its neighbours
        x0, x1, y0, y1 = fpr[k - 1], fpr[k], pro[k - 1], pro[k]
        x = np.append(x, fpr_limit)
        y = np.append(y, y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0))
    return float(np.trapezoid(y, x) / fpr_limit)


def _aupro_official(c: _Curve, steps: int = 200, fpr_below: float = 0.3) -> float | None:
    lo, hi = c.thresholds[-1], c.thresholds[0]
    if hi == lo:
        return None
    ths = lo + np.arange(steps) * ((hi - lo) / steps)
    ascending = c.thresholds[::-1]
    above = c.thresholds.size - np.searchsorted(ascending, ths, side="right")  # scores > th
    fpr = np.concatenate(([0], c.fp))[above] / c.n_neg
    pro = np.concatenate(([0.0], c.pro))[above]
    keep = fpr < fpr_below
    f = fpr[keep]
    if f.size < 2 or f.max() == f.min():
        return None
    return float(auc((f - f.min()) / (f.max() - f.min()), pro[keep]))


def _check_limit(fpr_limit: float) -> float:
    if not 0.0 < fpr_limit <= 1.0:
        raise AnomclipError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    return float(fpr_limit)


def _pixel_undefined(g: np.ndarray) -> str | None:
    n_pos = int(np.count_nonzero(g))
    if n_pos == 0:
        return "no anomalous pixel in the masks"
    if n_pos == g.size:
        return "no normal pixel in the masks"
    return None


def _single_pixel_metric(maps: object, masks: object, name: str, regions: bool, fn) -> float:
    m, g = _pixel_inputs(maps, masks)
    why = _pixel_undefined(g)
    if why is not None and not (name == "pixel_f1_max" and g.any()):
        _undefined(name, why)
        return float("nan")
    return fn(_curve(m, g, regions))


# ----------------------------------------------------------------------------- pixel metrics


def pixel_auroc(maps: object, masks: object) -> float:
    """Pixel-level AUROC over all pixels of maps [N, H, W] against binary masks [N, H, W].

    Exact ROC area as ``sklearn.metrics.roc_auc_score``: trapezoid rule over the points
    ``(FP(t)/N_neg, TP(t)/N_pos)`` at every distinct score t (predicted anomalous when
    score >= t), starting from (0, 0). NaN if a class is missing.
    """
    return _single_pixel_metric(maps, masks, "pixel_auroc", False, _pixel_auroc)


def pixel_ap(maps: object, masks: object) -> float:
    """Pixel-level average precision ``sum_n (R_n - R_{n-1}) P_n`` over distinct scores.

    Same step definition as ``sklearn.metrics.average_precision_score`` (R_0 = 0). NaN if a
    class is missing.
    """
    return _single_pixel_metric(maps, masks, "pixel_ap", False, _pixel_ap)


def pixel_f1_max(maps: object, masks: object) -> float:
    """Pixel-level ``max_t 2 P R / (P + R)`` (0/0 read as 0) over every distinct score t.

    Equals the maximum over ``sklearn.metrics.precision_recall_curve``. NaN if no pixel is
    anomalous.
    """
    return _single_pixel_metric(maps, masks, "pixel_f1_max", False, _pixel_f1)


def aupro(maps: object, masks: object, fpr_limit: float = 0.3) -> float:
    """Normalised area under the per-region-overlap curve up to ``fpr_limit`` (MVTec AD AUPRO).

    For every distinct score t (a pixel is predicted anomalous when score >= t)::

        PRO(t) = mean over ground-truth regions r of |{p in r : score_p >= t}| / |r|
        FPR(t) = |{normal p : score_p >= t}| / |normal pixels|

    Regions are the 8-connected components of each image's mask (``scipy.ndimage.label``
    with a 3x3 ones structure); PRO averages over all regions of all images, FPR counts over
    all images. The exact curve, starting at (0, 0), is integrated with the trapezoid rule
    from FPR 0 to ``fpr_limit`` (the point at ``fpr_limit`` interpolated linearly between its
    neighbours) and divided by ``fpr_limit``, as in Bergmann et al., IJCV 2021. Computed from
    one sort of all pixels. NaN if there is no region or no normal pixel.
    """
    limit = _check_limit(fpr_limit)
    return _single_pixel_metric(maps, masks, "pixel_aupro", True, lambda c: _aupro(c, limit))


def aupro_official(maps: object, masks: object) -> float:
    """AUPRO as computed by the AnomalyCLIP authors' ``cal_pro_score`` (from CFlow-AD).

    Thresholds ``th_k = min + k * (max - min) / 200`` for k = 0..199 (min, max over all pixel
    scores); at each, pixels with score > th_k are predicted anomalous, PRO is the mean over
    8-connected ground-truth regions of the covered fraction, FPR = FP / normal pixels. Points
    with FPR < 0.3 are kept, their FPRs rescaled min-max to [0, 1], and the result is
    ``sklearn.metrics.auc`` of PRO against the rescaled FPR. (The authors build the thresholds
    with ``np.arange``, which can yield 201 of them through rounding; this uses exactly 200.)
    NaN if there is no region, no normal pixel, constant maps, or fewer than two distinct
    FPRs below 0.3.
    """
    m, g = _pixel_inputs(maps, masks)
    why = _pixel_undefined(g)
    value = None if why is not None else _aupro_official(_curve(m, g, True))
    if value is None:
        _undefined("pixel_aupro_official", why or "fewer than two distinct FPRs below 0.3")
        return float("nan")
    return value


def pixel_metrics(maps: object, masks: object, fpr_limit: float = 0.3) -> dict[str, float]:
    """All pixel metrics from a single sort of the pixels.

    Returns ``pixel_auroc``, ``pixel_ap``, ``pixel_f1_max``, ``pixel_aupro`` (with
    ``fpr_limit``) and ``pixel_aupro_official``, each as defined by the function of that
    name; undefined entries are NaN, announced by one warning.
    """
    limit = _check_limit(fpr_limit)
    m, g = _pixel_inputs(maps, masks)
    out = dict.fromkeys(PIXEL_KEYS, float("nan"))
    why = _pixel_undefined(g)
    if why is not None:
        if g.any():  # only anomalous pixels: F1 is still defined
            out["pixel_f1_max"] = _pixel_f1(_curve(m, g, False))
        _undefined(", ".join(k for k, v in out.items() if np.isnan(v)), why)
        return out
    c = _curve(m, g, True)
    out.update(
        pixel_auroc=_pixel_auroc(c), pixel_ap=_pixel_ap(c), pixel_f1_max=_pixel_f1(c), pixel_aupro=_aupro(c, limit)
    )
    official = _aupro_official(c)
    if official is None:
        _undefined("pixel_aupro_official", "fewer than two distinct FPRs below 0.3")
    else:
        out["pixel_aupro_official"] = official
    return out


# ----------------------------------------------------------------------------- per category


def category_metrics(scores: object, labels: object, maps: object | None, masks: object | None) -> dict[str, float]:
    """Image and pixel metrics of one category: keys ``IMAGE_KEYS + PIXEL_KEYS``.

    ``scores`` [N] and ``labels`` [N] feed :func:`image_metrics`; ``maps`` and ``masks``
    [N, H, W] feed :func:`pixel_metrics`. Without masks (image-only datasets) every pixel
    metric is NaN, announced by a single warning.
    """
    out = image_metrics(scores, labels)
    if maps is None or masks is None:
        _undefined("pixel metrics", "no ground-truth masks")
        out.update(dict.fromkeys(PIXEL_KEYS, float("nan")))
    else:
        out.update(pixel_metrics(maps, masks))
    return out


def mean_over_categories(per_cat: Mapping[str, Mapping[str, float]]) -> tuple[dict[str, float], list[str]]:
    """Unweighted mean of each metric over categories, ignoring NaN.

    ``mean[k] = sum_{c defined} per_cat[c][k] / #defined``; NaN when no category defines
    ``k``. Also returns one note per metric that left categories out, e.g.
    ``"image_auroc: left out of the mean for categories X, Y (undefined)"``.
    """
    keys: list[str] = []
    for values in per_cat.values():
        keys += [k for k in values if k not in keys]
    means: dict[str, float] = {}
    notes: list[str] = []
    for k in keys:
        vals = {cat: per_cat[cat].get(k) for cat in per_cat}
        missing = [cat for cat, v in vals.items() if v is None or np.isnan(v)]
        defined = [float(v) for cat, v in vals.items() if cat not in missing]
        means[k] = float(np.mean(defined)) if defined else float("nan")
        if not defined:
            notes.append(f"{k}: undefined for every category")
        elif missing:
            notes.append(f"{k}: left out of the mean for categories {', '.join(missing)} (undefined)")
    return means, notes


# ----------------------------------------------------------------------------- benchmark


def _blob_data(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
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


def bench_aupro(n: int = 100, size: int = 518, seed: int = 0) -> dict[str, float]:
    """Time :func:`aupro`, :func:`aupro_official` and :func:`pixel_metrics` on random blob maps.

    For comparison, a naive exact AUPRO would binarise the maps at every distinct score; one
    such step (threshold, count FP, count covered pixels per region with ``np.bincount``) is
    timed over 50 thresholds and extrapolated to the number of distinct scores. Returns
    seconds (``*_s``) and the sizes involved.
    """
    maps, masks = _blob_data(n, size, seed)
    out: dict[str, float] = {"n_images": n, "size": size, "n_pixels": maps.size}
    for name, fn in (("aupro", aupro), ("aupro_official", aupro_official), ("pixel_metrics", pixel_metrics)):
        t0 = time.perf_counter()
        fn(maps, masks)
        out[f"{name}_s"] = time.perf_counter() - t0

    labels, n_regions = ndimage.label(masks, structure=_STRUCTURE)
    area = np.bincount(labels.ravel(), minlength=n_regions + 1)[1:]
    normal = ~masks
    distinct = np.unique(maps)
    ths = distinct[np.linspace(0, distinct.size - 1, 50).astype(int)]
    t0 = time.perf_counter()
    for th in ths:
        pred = maps >= th
        _fpr = np.count_nonzero(pred & normal) / normal.sum()
        _pro = np.mean(np.bincount(labels[pred], minlength=n_regions + 1)[1:] / area)
    per_threshold = (time.perf_counter() - t0) / ths.size
    out.update(
        n_distinct_scores=int(distinct.size),
        naive_per_threshold_s=per_threshold,
        naive_extrapolated_s=per_threshold * distinct.size,
    )
    return out


# ----------------------------------------------------------------------------- helpers for figures


def auroc_or_nan(scores: object, labels: object) -> float:
    """AUROC of any scored samples (images or pixels), NaN without a warning when one class is absent.

    The same number as :func:`image_auroc` (``roc_auc_score``) where that is defined. Meant for
    figure titles (one map, one image) where a normal image simply has no pixel AUROC; results
    files use the warning metrics above, which record undefined values in their notes.
    """
    s, y = _image_inputs(scores, labels)
    if _image_undefined(y) is not None:
        return float("nan")
    return float(roc_auc_score(y, s))


def f1_threshold(scores: object, labels: object) -> float:
    """The score threshold ``t`` of the F1-max operating point: ``argmax_t F1(score >= t)``.

    Precision and recall as in :func:`f1_max` (``precision_recall_curve``); the smallest
    threshold among ties. NaN when there is no anomalous sample.
    """
    s, y = _image_inputs(scores, labels)
    if not y.any():
        return float("nan")
    precision, recall, thresholds = precision_recall_curve(y, s)
    p, r = precision[:-1], recall[:-1]  # the last point (recall 0) has no threshold
    denom = p + r
    f1 = np.divide(2.0 * p * r, denom, out=np.zeros_like(denom, dtype=float), where=denom > 0)
    return float(thresholds[int(np.argmax(f1))])
