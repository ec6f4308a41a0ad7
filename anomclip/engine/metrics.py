"""Evaluation metrics of AnomalyCLIP: image and pixel AUROC, AP, F1-max and AUPRO.

Every metric returns a Python float in [0, 1] (a fraction, not a percentage). A metric that is
undefined for its input (one class only, no anomalous pixel, no ground-truth region) returns
``float('nan')`` and emits an :class:`UndefinedMetricWarning`; it never raises for that. Bad
input (mismatched shapes, non-binary labels, NaN scores) raises :class:`AnomclipError`.

Pixel metrics share one engine. The anomalous pixels (few) are sorted by score as 64-bit keys
``float32 order bits << 32 | region id``; the normal pixels are sorted once as float32 (on a few
threads), and binary search counts them at or above every anomalous score. Between two
anomalous scores only normal pixels enter, so these counts give the exact ROC, precision-recall
and PRO curves at every distinct score. AUPRO alone sorts only the normal pixels that can score
above its FPR limit. Pixel scores are compared at float32 precision.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
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
    if m.size and not (np.isfinite(m.min()) and np.isfinite(m.max())):  # NaN propagates to both
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

#: 8-connectivity inside one image
_EIGHT = np.ones((3, 3), dtype=bool)
#: normal scores drawn to place the floor of an AUPRO curve (see :func:`_normal_floor`)
_FLOOR_SAMPLE = 1 << 16


def _order_bits(x: np.ndarray) -> np.ndarray:
    """uint32 keys whose unsigned order is the order of the float32 values (-0.0 == +0.0)."""
    u = (x + np.float32(0.0)).view(np.uint32)
    return np.where(u >> 31 == 1, ~u, u | np.uint32(0x80000000))


def _from_order_bits(k: np.ndarray) -> np.ndarray:
    k = k.astype(np.uint32)
    return np.where(k >> 31 == 1, k & np.uint32(0x7FFFFFFF), ~k).view(np.float32)


def _region_ids(g: np.ndarray) -> tuple[np.ndarray, int]:
    """The ground-truth region (1..R) of every anomalous pixel, in the order of ``g[g]``, and R.

    Regions are the 8-connected components of each image's mask, numbered image by image. Each
    image is labelled on the bounding box of its anomalous pixels only.
    """
    ids, offset = [], 0
    rows = g.any(axis=2)
    for i in np.flatnonzero(rows.any(axis=1)):
        r = np.flatnonzero(rows[i])
        box = g[i, r[0] : r[-1] + 1]
        c = np.flatnonzero(box.any(axis=0))
        box = box[:, c[0] : c[-1] + 1]
        labels, n = ndimage.label(box, structure=_EIGHT)
        ids.append(labels[box].astype(np.int64) + offset)  # row-major in the box = row-major in the image
        offset += n
    return (np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)), offset


def _parts(size: int) -> list[slice]:
    """A few slices covering ``range(size)``: the pixels each thread sorts and counts (one slice
    below a million pixels, where threads cost more than they save)."""
    n = max(1, min(4, os.cpu_count() or 1, size >> 20))
    bounds = np.linspace(0, size, n + 1).astype(int)
    return [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]


def _sorted(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    out = values[keep]
    out.sort()
    return out


def _searchsorted(p: np.ndarray, v: np.ndarray, side: str, block: int = 4096) -> np.ndarray:
    """``np.searchsorted(p, v, side)`` for ascending ``v``, block by block: each block of ``v``
    searches only the stretch of ``p`` between its first and last value (which stays in cache)."""
    out = np.empty(v.size, dtype=np.int64)
    firsts = np.searchsorted(p, v[::block], side).tolist()
    lasts = np.searchsorted(p, v[np.minimum(np.arange(block - 1, v.size + block - 1, block), v.size - 1)],
                            side).tolist()
    for b, (lo, hi) in enumerate(zip(firsts, lasts)):
        s = slice(b * block, (b + 1) * block)
        out[s] = np.searchsorted(p[lo:hi], v[s], side)
        out[s] += lo
    return out


def _at_and_above(p: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per ascending value of ``v``: the values of the sorted ``p`` that are ``>= v`` and ``> v``
    (the second search only for the values of ``v`` that ``p`` holds)."""
    i = _searchsorted(p, v, "left")
    right = i.copy()
    if p.size:
        tied = np.flatnonzero(p[np.minimum(i, p.size - 1)] == v)
        right[tied] = np.searchsorted(p, v[tied], "right")
    return p.size - i, p.size - right


def _count(parts: tuple[np.ndarray, ...], v: np.ndarray, side: str) -> np.ndarray:
    """Per ascending value of ``v``: the sorted values ``>= v`` (side "left") or ``> v`` ("right")."""
    return sum(p.size - np.searchsorted(p, v, side) for p in parts)


def _float32_below(x: np.ndarray) -> np.ndarray:
    """The largest float32 ``<= x``, so that for a float32 s: ``s > x`` exactly when ``s > result``."""
    f = x.astype(np.float32)
    return np.where(f.astype(np.float64) > x, np.nextafter(f, np.float32(-np.inf)), f)


def _normal_floor(m: np.ndarray, normal: np.ndarray, n_neg: int, fpr_limit: float) -> float:
    """A score ``t`` with more than ``fpr_limit * n_neg`` normal pixels ``>= t``, near that count.

    An AUPRO curve beyond ``fpr_limit`` is never integrated, so only the normal pixels at or above
    such a ``t`` need sorting. ``t`` comes from a seeded sample of the normal scores (a quantile
    two per cent below); the caller checks the count and sorts everything if the sample misled.
    """
    need = _beyond(n_neg, fpr_limit)
    q = 1.0 - need / max(n_neg, 1) - 0.02
    if need > n_neg or q <= 0.0:
        return -np.inf
    idx = np.random.default_rng(0).integers(0, m.size, _FLOOR_SAMPLE)
    sample = np.sort(m[idx][normal[idx]])
    if sample.size < 1000:
        return -np.inf
    return float(sample[int(q * sample.size)])


def _beyond(n_neg: int, fpr_limit: float) -> int:
    """The smallest count c of normal pixels with ``c / n_neg > fpr_limit`` (computed in floats)."""
    c = int(np.floor(fpr_limit * n_neg)) + 1
    while c <= n_neg and c / n_neg <= fpr_limit:
        c += 1
    return c


@dataclass(frozen=True)
class _Curve:
    """Exact cumulative counts at every distinct score ``scores[j]`` of the anomalous pixels.

    Between two of these scores only normal pixels enter, so the ROC, precision-recall and PRO
    curves at every distinct score of all pixels follow from these points. Normal pixels are
    counted exactly at scores ``>= floor``; below ``floor`` (where FPR exceeds the AUPRO limit
    the curve was built for) they are capped at the number of normal pixels ``>= floor``.
    """

    scores: np.ndarray  # float32, distinct anomalous scores, descending
    tp: np.ndarray  # int64, anomalous pixels with score >= scores[j]
    fp: np.ndarray  # int64, normal pixels with score >= scores[j]
    fp_above: np.ndarray  # int64, normal pixels with score > scores[j]
    pro: np.ndarray | None  # float64, mean over regions of the fraction with score >= scores[j]
    n_neg: int
    normal: tuple[np.ndarray, ...]  # float32, the normal scores >= floor, ascending, in parts
    floor: float

    @property
    def n_pos(self) -> int:
        return int(self.tp[-1])

    def normal_above(self, x: np.ndarray) -> np.ndarray:
        """Normal pixels with score ``> x`` for each float64 ``x`` (capped below ``floor``)."""
        order = np.argsort(x)
        out = np.empty(x.size, dtype=np.int64)
        out[order] = _count(self.normal, _float32_below(x[order]), "right")
        return out


def _curve(m: np.ndarray, g: np.ndarray, regions: bool, fpr_limit: float | None = None) -> _Curve:
    """Sort the anomalous pixels (few) and count the normal pixels at each of their scores.

    Anomalous pixels are sorted by descending score as 64-bit keys ``float32 order bits << 32 |
    region id`` (ties: descending region id); a pixel of region r adds ``1 / (R * area_r)`` to
    PRO. The normal scores are sorted once (all of them, or with ``fpr_limit`` only those at or
    above a floor past which the curve's FPR exceeds the limit) and counted at or above each
    anomalous score by binary search.
    """
    flat, labels = m.reshape(-1), g.reshape(-1)
    normal = ~labels
    n_neg = int(np.count_nonzero(normal))
    floor, keep = -np.inf, normal
    if fpr_limit is not None:
        floor = _normal_floor(flat, normal, n_neg, fpr_limit)
    if floor > -np.inf:
        keep = flat >= np.float32(floor)
        keep &= normal
        if np.count_nonzero(keep) < _beyond(n_neg, fpr_limit):  # the sample misled: sort them all
            floor, keep = -np.inf, normal
    slices = _parts(flat.size)
    if len(slices) == 1:
        scores, tp, pro = _anomalous_side(flat[labels], g, regions)
        parts = (_sorted(flat, keep),)
        counts = [_at_and_above(parts[0], np.ascontiguousarray(scores[::-1]))]
    else:
        with ThreadPoolExecutor(len(slices)) as pool:  # numpy sorts and searches without the GIL
            sorting = [pool.submit(_sorted, flat[s], keep[s]) for s in slices]
            scores, tp, pro = _anomalous_side(flat[labels], g, regions)  # meanwhile, on this thread
            ascending = np.ascontiguousarray(scores[::-1])
            parts = tuple(f.result() for f in sorting)
            counts = list(pool.map(lambda p: _at_and_above(p, ascending), parts))
    fp = sum(c[0] for c in counts)[::-1]
    fp_above = sum(c[1] for c in counts)[::-1]
    return _Curve(scores, tp, fp, fp_above, pro, n_neg, parts, floor)


def _anomalous_side(pos: np.ndarray, g: np.ndarray, regions: bool):
    """The distinct scores of the anomalous pixels ``pos`` (descending), how many score at or above
    each, and with ``regions`` the PRO there."""
    if regions:
        code, n_regions = _region_ids(g)
        area = np.bincount(code, minlength=n_regions + 1)
    else:
        code = np.zeros(pos.size, dtype=np.int64)
    keys = _order_bits(pos).astype(np.uint64)
    keys <<= np.uint64(32)
    keys |= code.astype(np.uint64)
    keys.sort()
    keys = keys[::-1]  # descending score
    hi = keys >> np.uint64(32)
    last = np.append(np.flatnonzero(hi[1:] != hi[:-1]), hi.size - 1)
    scores = _from_order_bits(hi[last])
    pro = None
    if regions:
        weight = np.zeros(n_regions + 1)
        weight[1:] = 1.0 / (n_regions * area[1:])
        pro = np.cumsum(weight[(keys & np.uint64(0xFFFFFFFF)).astype(np.int64)])[last]
    return scores, last + 1, pro


def _pixel_auroc(c: _Curve) -> float:
    """Area under the ROC curve from the anomalous side: each step up of TPR at score v covers
    the normal pixels below v, and half of those equal to v (the trapezoid rule)."""
    rise = np.diff(c.tp, prepend=0) / c.n_pos
    below = (c.n_neg - c.fp) + 0.5 * (c.fp - c.fp_above)
    return float(np.sum(rise * below) / c.n_neg)


def _pixel_ap(c: _Curve) -> float:
    """``sum (R_n - R_{n-1}) P_n``: recall changes only at anomalous scores."""
    recall = c.tp / c.n_pos
    precision = c.tp / (c.tp + c.fp)
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def _pixel_f1(c: _Curve) -> float:
    """F1 only rises where recall does (at an anomalous score), so the maximum is at one of them."""
    return _f1(c.tp / (c.tp + c.fp), c.tp / c.n_pos)


def _aupro(c: _Curve, fpr_limit: float) -> float:
    """Trapezoid area of the PRO curve up to ``fpr_limit``, divided by it.

    The curve at every distinct score is the polyline through, per anomalous score v_j,
    ``(FPR(> v_j), PRO_{j-1})`` and ``(FPR(>= v_j), PRO_j)``: between anomalous scores PRO is
    flat, so the points of the scores only normal pixels reach add no area.
    """
    j = c.scores.size
    fpr = np.empty(2 * j + 2)
    pro = np.empty(2 * j + 2)
    fpr[0] = pro[0] = 0.0
    fpr[1:-1:2], fpr[2:-1:2], fpr[-1] = c.fp_above / c.n_neg, c.fp / c.n_neg, 1.0
    pro[1], pro[3:-1:2], pro[2:-1:2], pro[-1] = 0.0, c.pro[:-1], c.pro, c.pro[-1]
    k = int(np.searchsorted(fpr, fpr_limit, side="right"))  # fpr[:k] <= fpr_limit
    x, y = fpr[:k], pro[:k]
    if k < fpr.size:  # add the point at fpr_limit, linearly between its neighbours
        x0, x1, y0, y1 = fpr[k - 1], fpr[k], pro[k - 1], pro[k]
        x = np.append(x, fpr_limit)
        y = np.append(y, y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0))
    return float(np.trapezoid(y, x) / fpr_limit)


def _aupro_official(c: _Curve, lo: float, hi: float, steps: int = 200, fpr_below: float = 0.3) -> float | None:
    """The authors' AUPRO (see :func:`aupro_official`) from the scores' range ``[lo, hi]``."""
    if hi == lo:
        return None
    ths = lo + np.arange(steps) * ((hi - lo) / steps)
    above = c.scores.size - np.searchsorted(c.scores[::-1].astype(np.float64), ths, side="right")
    fpr = c.normal_above(ths) / c.n_neg
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


def _single_pixel_metric(maps: object, masks: object, name: str, fn, regions: bool = False,
                         fpr_limit: float | None = None) -> float:
    m, g = _pixel_inputs(maps, masks)
    why = _pixel_undefined(g)
    if why is not None and not (name == "pixel_f1_max" and g.any()):
        _undefined(name, why)
        return float("nan")
    return fn(_curve(m, g, regions, fpr_limit))


# ----------------------------------------------------------------------------- pixel metrics


def pixel_auroc(maps: object, masks: object) -> float:
    """Pixel-level AUROC over all pixels of maps [N, H, W] against binary masks [N, H, W].

    Exact ROC area as ``sklearn.metrics.roc_auc_score``: trapezoid rule over the points
    ``(FP(t)/N_neg, TP(t)/N_pos)`` at every distinct score t (predicted anomalous when
    score >= t), starting from (0, 0). NaN if a class is missing.
    """
    return _single_pixel_metric(maps, masks, "pixel_auroc", _pixel_auroc)


def pixel_ap(maps: object, masks: object) -> float:
    """Pixel-level average precision ``sum_n (R_n - R_{n-1}) P_n`` over distinct scores.

    Same step definition as ``sklearn.metrics.average_precision_score`` (R_0 = 0). NaN if a
    class is missing.
    """
    return _single_pixel_metric(maps, masks, "pixel_ap", _pixel_ap)


def pixel_f1_max(maps: object, masks: object) -> float:
    """Pixel-level ``max_t 2 P R / (P + R)`` (0/0 read as 0) over every distinct score t.

    Equals the maximum over ``sklearn.metrics.precision_recall_curve``. NaN if no pixel is
    anomalous.
    """
    return _single_pixel_metric(maps, masks, "pixel_f1_max", _pixel_f1)


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
    one sort of the anomalous pixels and of the normal pixels that can score above the FPR
    limit. NaN if there is no region or no normal pixel.
    """
    limit = _check_limit(fpr_limit)
    return _single_pixel_metric(maps, masks, "pixel_aupro", lambda c: _aupro(c, limit), True, limit)


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
    value = None if why is not None else _aupro_official(_curve(m, g, True, 0.3), float(m.min()), float(m.max()))
    if value is None:
        _undefined("pixel_aupro_official", why or "fewer than two distinct FPRs below 0.3")
        return float("nan")
    return value


def pixel_metrics(maps: object, masks: object, fpr_limit: float = 0.3) -> dict[str, float]:
    """All pixel metrics from a single sort of the pixels (one curve serves them all).

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
    official = _aupro_official(c, float(m.min()), float(m.max()))
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
