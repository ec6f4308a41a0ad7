"""Bootstrap intervals of every metric: stratified by label, over images, reproducible (docs/intervals.md).

**The resamples.** One resample of a set of images draws, with replacement, as many normal
images from the normal ones and as many anomalous images from the anomalous ones as the set
holds (stratified by label: every resample keeps the counts of both classes). The draws are
exactly::

    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])   # name: the category
    normal_draws = normal_idx[rng.integers(0, n_normal, (resamples, n_normal))]
    anomalous_draws = anomalous_idx[rng.integers(0, n_anomalous, (resamples, n_anomalous))]

(:func:`resample_indices`). Pixel metrics resample *images*, not pixels: an image drawn twice
counts all its pixels twice. Their resamples are drawn the same way over the images that have a
mask, under the name ``name + "/pixel"``.

**Exact, without copying.** A resample is its multiplicity weights (how often each image was
drawn). Image metrics are weighted curves over one sort of the scores, pixel metrics
weighted counts per image at every distinct anomalous pixel score (one sort per image): each
resample's metric is the number the metric gives on the resampled data, to round-off.

**The interval** is the percentile interval of the resampled values: the ``(1 - level) / 2``
and ``(1 + level) / 2`` quantiles (``np.quantile``, linear). A dataset's mean over categories
gets the interval of the per-resample means (categories resampled independently).
"""
from __future__ import annotations

import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np

from .metrics import IMAGE_KEYS, PIXEL_KEYS, _region_ids

#: Pixel metrics the bootstrap covers (the authors' 200-threshold AUPRO is left without interval).
PIXEL_BOOTSTRAPPED = ("pixel_auroc", "pixel_ap", "pixel_f1_max", "pixel_aupro")
#: Thresholds of the pixel curve handled at a time for 64 maps, 100 resamples and one thread (fewer for more:
#: it bounds the memory, a few arrays [resamples, thresholds] per thread).
_CHUNK = 1 << 15


@dataclass(frozen=True)
class Bootstrap:
    """How intervals are made: percentile bootstrap, stratified by label, over images.

    ``resamples`` for image metrics, ``pixel_resamples`` for pixel metrics (each resample of
    those weighs every pixel of every map, hence fewer), ``level`` the coverage, ``seed`` the
    generator's seed.
    """

    resamples: int = 1000
    pixel_resamples: int = 100
    level: float = 0.95
    seed: int = 0
    method: str = "bootstrap"

    def __post_init__(self):
        from ..errors import AnomclipError

        if not 0.0 < self.level < 1.0:
            raise AnomclipError(f"bootstrap level {self.level} must lie in (0, 1)")
        if self.resamples < 1 or self.pixel_resamples < 1:
            raise AnomclipError("bootstrap resamples must be ≥ 1")

    def record(self) -> dict:
        """How the intervals were made, as the results file records it."""
        return {**asdict(self), "interval": "percentile", "stratified": "by image label",
                "pixel": "images resampled, each drawn image counts all its pixels"}


# ----------------------------------------------------------------------------- resamples


def resample_indices(labels, resamples: int, seed: int, name: str = "") -> np.ndarray:
    """``[resamples, n]`` indices into ``labels``: normal draws first, then anomalous (module doc)."""
    y = np.asarray(labels).astype(bool).reshape(-1)
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    parts = []
    for idx in (np.flatnonzero(~y), np.flatnonzero(y)):
        parts.append(idx[rng.integers(0, idx.size, (resamples, idx.size))] if idx.size else
                     np.zeros((resamples, 0), dtype=np.int64))
    return np.concatenate(parts, axis=1)


def multiplicities(indices: np.ndarray, n: int) -> np.ndarray:
    """``[resamples, n]`` float64: how many times each of the ``n`` items each resample drew."""
    b = indices.shape[0]
    flat = (indices + n * np.arange(b)[:, None]).reshape(-1)
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def percentile_interval(values: np.ndarray, level: float) -> list | None:
    """``[low, high]`` of the finite ``values`` (None when none is finite)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    lo, hi = np.quantile(v, [(1 - level) / 2, (1 + level) / 2])
    return [float(lo), float(hi)]


# ----------------------------------------------------------------------------- image metrics


def weighted_image_metrics(scores, labels, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Image AUROC, AP and F1-max of each row of ``weights`` ``[B, n]`` (multiplicities).

    One descending sort of the scores; per resample the weighted true and false positives at
    every distinct score (a score no drawn image has adds a repeated point, which changes none
    of the three). AUROC: trapezoid rule from (0, 0); AP: ``sum (R_n - R_{n-1}) P_n``; F1-max:
    ``max 2 TP / (P + TP + FP)`` — as sklearn computes them on the resampled data. NaN where a
    class has no weight.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).astype(bool).reshape(-1)
    weights = np.asarray(weights, dtype=np.float64)
    rows = max(1, (1 << 22) // max(1, s.size))  # resamples at a time: a few arrays of 32 MiB at most
    if len(weights) > rows:
        parts = [weighted_image_metrics(s, y, weights[i:i + rows]) for i in range(0, len(weights), rows)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.argsort(-s, kind="stable")
    s, y, w = s[order], y[order], np.asarray(weights, dtype=np.float64)[:, order]
    last = np.append(np.flatnonzero(s[1:] != s[:-1]), s.size - 1)  # end of each group of equal scores
    tp = np.cumsum(w * y, axis=1)[:, last]
    fp = np.cumsum(w * ~y, axis=1)[:, last]
    n_pos, n_neg = tp[:, -1:], fp[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr, fpr = tp / n_pos, fp / n_neg
        tpr0 = np.concatenate([np.zeros_like(tpr[:, :1]), tpr], axis=1)
        fpr0 = np.concatenate([np.zeros_like(fpr[:, :1]), fpr], axis=1)
        auroc = np.sum(np.diff(fpr0, axis=1) * (tpr0[:, 1:] + tpr0[:, :-1]) / 2, axis=1)
        precision = np.where(tp + fp > 0, tp / np.where(tp + fp > 0, tp + fp, 1), 0.0)
        ap = np.sum(np.diff(tpr0, axis=1) * precision, axis=1)
        f1 = np.max(2 * tp / (n_pos + tp + fp), axis=1)
    defined = (n_pos[:, 0] > 0) & (n_neg[:, 0] > 0)
    nan = np.full(len(w), np.nan)
    return {"image_auroc": np.where(defined, auroc, nan), "image_ap": np.where(defined, ap, nan),
            "image_f1_max": np.where(n_pos[:, 0] > 0, f1, nan)}


# ----------------------------------------------------------------------------- pixel metrics


def _image_tables(m: np.ndarray, g: np.ndarray):
    """Per image: its normal scores sorted ascending, its anomalous scores sorted ascending with the
    cumulative PRO weight (``1 / area`` of the pixel's region, summed from the top), its region count."""
    codes, _ = _region_ids(g)
    flat_g = g.reshape(len(g), -1)
    counts = flat_g.sum(axis=1)
    starts = np.concatenate([[0], np.cumsum(counts)])
    normal, anomalous, pro_w, regions = [], [], [], []
    for i in range(len(m)):
        v, gi = m[i].reshape(-1), flat_g[i]
        normal.append(np.sort(v[~gi]))
        code = codes[starts[i]:starts[i + 1]]
        if code.size:
            uniq, inv, area = np.unique(code, return_inverse=True, return_counts=True)
            a = v[gi]
            o = np.argsort(a, kind="stable")
            anomalous.append(a[o])
            pro_w.append(np.cumsum((1.0 / area[inv])[o][::-1])[::-1])  # weight of pixels >= a[o][k]
            regions.append(uniq.size)
        else:
            anomalous.append(np.zeros(0, np.float32))
            pro_w.append(np.zeros(0))
            regions.append(0)
    return normal, anomalous, pro_w, np.asarray(regions, dtype=np.float64)


def _at_or_above(sorted_asc: np.ndarray, v: np.ndarray, side: str) -> np.ndarray:
    return sorted_asc.size - np.searchsorted(sorted_asc, v, side)


def weighted_pixel_metrics(maps, masks, weights: np.ndarray, fpr_limit: float = 0.3) -> dict[str, np.ndarray]:
    """Pixel AUROC, AP, F1-max and AUPRO (to ``fpr_limit``) of each row of ``weights`` ``[B, N]``
    (multiplicities of the N maps), exact.

    The curves change only at the distinct anomalous pixel scores ``v_j`` (between two, only
    normal pixels enter). Per image i: its normal pixels ``>= v_j`` and ``> v_j``, its anomalous
    pixels ``>= v_j`` and their PRO weight; per resample these are summed with the image's
    multiplicity (a matrix product). The thresholds are taken in chunks, on a few threads: each
    chunk also counts at the threshold before it, so the chunks are independent. Definitions as
    :mod:`anomclip.engine.metrics` (PRO: the mean over the drawn regions, a region drawn twice
    counted twice). NaN where a class of pixels has no weight.
    """
    m = np.asarray(maps, dtype=np.float32)
    g = np.asarray(masks).astype(bool)
    w = np.asarray(weights, dtype=np.float64)
    normal, anomalous, pro_w, regions = _image_tables(m, g)
    v_all = np.concatenate(anomalous) if anomalous else np.zeros(0, np.float32)
    v_all = np.unique(v_all)[::-1]  # distinct anomalous scores, descending
    b = len(w)
    n_neg = w @ np.array([x.size for x in normal], dtype=np.float64)
    n_pos = w @ np.array([x.size for x in anomalous], dtype=np.float64)
    n_reg = w @ regions
    lesions = [i for i, a in enumerate(anomalous) if a.size]  # the maps with anomalous pixels
    ctx = (v_all, normal, [anomalous[i] for i in lesions], [pro_w[i] for i in lesions], w, w[:, lesions],
           n_neg, n_pos, n_reg, fpr_limit)
    workers = max(1, min(4, os.cpu_count() or 1))
    chunk = max(1, int(_CHUNK * 64 * 100 / (max(64, len(m)) * max(100, b) * workers)))
    bounds = [(lo, min(lo + chunk, v_all.size)) for lo in range(0, v_all.size, chunk)]
    with np.errstate(invalid="ignore", divide="ignore"):
        if workers > 1 and len(bounds) > 1:
            with ThreadPoolExecutor(workers) as pool:  # numpy searches, multiplies and sums without the GIL
                parts = list(pool.map(lambda lh: _pixel_chunk(ctx, *lh), bounds))
        else:
            parts = [_pixel_chunk(ctx, lo, hi) for lo, hi in bounds]
        auroc = sum((p[0] for p in parts), np.zeros(b))
        ap = sum((p[1] for p in parts), np.zeros(b))
        f1 = np.max([p[2] for p in parts], axis=0) if parts else np.zeros(b)
        area = sum((p[3] for p in parts), np.zeros(b))
        x_last, y_last = (parts[-1][4], parts[-1][5]) if parts else (np.zeros(b), np.zeros(b))
        area += _clipped_area(np.stack([x_last, np.ones(b)], axis=1), np.stack([y_last, y_last], axis=1), fpr_limit)
        defined = (n_pos > 0) & (n_neg > 0)
        nan = np.full(b, np.nan)
        return {"pixel_auroc": np.where(defined, auroc / (n_pos * n_neg), nan),
                "pixel_ap": np.where(defined, ap / n_pos, nan),
                "pixel_f1_max": np.where(n_pos > 0, f1, nan),
                "pixel_aupro": np.where(defined & (n_reg > 0), area / fpr_limit, nan)}


def _pixel_chunk(ctx, lo: int, hi: int):
    """The sums of the thresholds ``v_all[lo:hi]``: AUROC, AP, F1-max, AUPRO area, and the last
    point of the PRO curve. Column 0 is the threshold before ``lo`` (zeros for the first chunk)."""
    v_all, normal, anomalous, pro_w, w, w_les, n_neg, n_pos, n_reg, limit = ctx
    v = np.ascontiguousarray(v_all[max(lo - 1, 0):hi])
    asc = v[::-1]
    ge = np.empty((len(normal), v.size))
    eq = None  # normal pixels equal to v_j (ties), searched only where there are some
    for i, x in enumerate(normal):
        left = np.searchsorted(x, asc, "left")
        ge[i] = (x.size - left)[::-1]
        tied = np.flatnonzero(x[np.minimum(left, x.size - 1)] == asc) if x.size else left[:0]
        if tied.size:
            eq = np.zeros_like(ge) if eq is None else eq
            eq[i, v.size - 1 - tied] = np.searchsorted(x, asc[tied], "right") - left[tied]
    tpi, proi = [], []
    for a, pw in zip(anomalous, pro_w):
        k = np.searchsorted(a, v, "left")  # first anomalous pixel >= v
        tpi.append(a.size - k)
        proi.append(np.concatenate([pw, [0.0]])[k])
    tp, fp = _count_product(w_les, np.stack(tpi)), _count_product(w, ge)
    tied = None if eq is None else _count_product(w, eq)  # fp - tied: normal pixels > v_j
    proi = np.stack(proi)
    if lo == 0:  # before the first threshold: nothing is predicted anomalous
        tp, fp, proi = (np.concatenate([np.zeros((len(x), 1)), x], axis=1) for x in (tp, fp, proi))
        tied = None if tied is None else np.concatenate([np.zeros((len(tied), 1)), tied], axis=1)
    rise = np.diff(tp, axis=1)
    tp, fp_all, fp = tp[:, 1:], fp, fp[:, 1:]
    # AUROC: each rise of TP at v_j covers the normal pixels below v_j and half of those equal
    auroc = rise.sum(axis=1) * n_neg - _rowdot(rise, fp) + (0.0 if tied is None else 0.5 * _rowdot(rise, tied[:, 1:]))
    denom = tp + fp
    ap = _rowdot(rise, np.divide(tp, denom, out=np.zeros_like(tp), where=denom > 0))
    denom += n_pos[:, None]
    f1 = 2 * np.max(np.divide(tp, denom, out=denom), axis=1)
    # AUPRO: the polyline through, per v_j, (FPR(> v_j), PRO_{j-1}) and (FPR(>= v_j), PRO_j), from the point of
    # the threshold before, as far as the first column where every resample's FPR(> v_j) is past the limit
    x_prev = fp_all[:, 0] / n_neg
    last = fp_all[:, -1] / n_neg, (w_les @ proi[:, -1]) / n_reg
    if np.all(x_prev >= limit):
        return auroc, ap, f1, np.zeros(len(w)), *last
    fpa = fp if tied is None else fp - tied[:, 1:]
    cut = min(fp.shape[1], 1 + max(int(np.searchsorted(row, lim, "left")) for row, lim in zip(fpa, limit * n_neg)))
    pro = (w_les @ proi[:, :cut + 1]) / n_reg[:, None]  # column 0: PRO at the threshold before
    if tied is None:  # no ties: the curve is flat at PRO_{j-1} from FPR(>= v_{j-1}) to FPR(>= v_j)
        x = np.minimum(fp_all[:, :cut + 1] / n_neg[:, None], limit)
        return auroc, ap, f1, _rowdot(np.diff(x, axis=1), pro[:, :-1]), *last
    xs = np.empty((len(w), 2 * cut + 1))
    ys = np.empty((len(w), 2 * cut + 1))
    xs[:, 0], ys[:, 0] = x_prev, pro[:, 0]
    xs[:, 1::2], xs[:, 2::2] = fpa[:, :cut] / n_neg[:, None], fp[:, :cut] / n_neg[:, None]
    ys[:, 1::2], ys[:, 2::2] = pro[:, :-1], pro[:, 1:]
    return auroc, ap, f1, _clipped_area(xs, ys, limit), *last


def _count_product(w: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``w @ counts`` (multiplicities times pixel counts) exactly, in float32 where that is exact.

    float32 holds every integer below 2**24; the images are cut into groups whose weighted
    count stays below it in every resample, each group's product is taken in float32 (every
    partial sum an exact integer) and the groups are added in float64.
    """
    bound = w.max(axis=0, initial=0) * counts.max(axis=1, initial=0)  # per image: its largest weighted count
    if bound.max(initial=0) >= 1 << 24:
        return w @ counts.astype(np.float64)
    cuts, acc = [0], 0.0
    for i, x in enumerate(bound.tolist()):
        if acc + x >= 1 << 24:
            cuts.append(i)
            acc = 0.0
        acc += x
    cuts.append(len(bound))
    out = np.zeros((w.shape[0], counts.shape[1]))
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        out += w[:, lo:hi].astype(np.float32) @ counts[lo:hi].astype(np.float32)
    return out


def _rowdot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, b)


def _clipped_area(x: np.ndarray, y: np.ndarray, limit: float) -> np.ndarray:
    """Per row, the trapezoid area of the polyline ``(x, y)`` (x ascending) on ``[0, limit]``,
    the point at ``limit`` interpolated linearly."""
    inside = x <= limit  # a prefix of each row
    area = np.einsum("ij,ij->i", np.where(inside[:, 1:], np.diff(x, axis=1), 0.0), y[:, 1:] + y[:, :-1]) / 2
    k = inside.sum(axis=1)
    rows = np.flatnonzero((k > 0) & (k < x.shape[1]))  # the segment that crosses the limit
    if rows.size:
        j = k[rows] - 1
        x0, x1, y0, y1 = x[rows, j], x[rows, j + 1], y[rows, j], y[rows, j + 1]
        y_lim = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
        area[rows] += (limit - x0) * (y0 + y_lim) / 2
    return area


# ----------------------------------------------------------------------------- per category, per dataset


def category_resamples(scores, labels, boot: Bootstrap, name: str, maps=None, masks=None,
                       pixel_labels=None) -> dict[str, np.ndarray]:
    """Every metric of one category on each resample: ``{metric: [resamples]}``.

    Pixel metrics only with ``maps`` and ``masks`` (the images that have a mask, normal ones
    all-zero), stratified by ``pixel_labels`` (those images' labels; default: whether the mask
    has an anomalous pixel).
    """
    y = np.asarray(labels).astype(bool)
    idx = resample_indices(y, boot.resamples, boot.seed, name)
    out = weighted_image_metrics(scores, y, multiplicities(idx, y.size))
    if maps is not None and masks is not None and len(masks):
        g = np.asarray(masks).astype(bool)
        py = g.reshape(len(g), -1).any(axis=1) if pixel_labels is None else np.asarray(pixel_labels).astype(bool)
        pidx = resample_indices(py, boot.pixel_resamples, boot.seed, name + "/pixel")
        out.update(weighted_pixel_metrics(maps, g, multiplicities(pidx, len(g))))
    return out


def summarize(per_category: dict[str, dict[str, np.ndarray]], boot: Bootstrap) -> dict:
    """Intervals per category and for the mean over categories (per resample, NaN left out).

    Returns ``{"bootstrap": how, "categories": {cat: {metric: [lo, hi] | None}}, "mean": {...}}``.
    """
    cats = {c: {k: percentile_interval(v, boot.level) for k, v in d.items()} for c, d in per_category.items()}
    mean = {}
    for k in IMAGE_KEYS + PIXEL_KEYS:
        rows = [d[k] for d in per_category.values() if k in d]
        rows = [r for r in rows if np.isfinite(r).any()]
        if not rows or len({r.size for r in rows}) != 1:
            continue
        with np.errstate(invalid="ignore"):
            stacked = np.stack(rows)
            n = np.sum(np.isfinite(stacked), axis=0)
            means = np.where(n > 0, np.nansum(stacked, axis=0) / np.maximum(n, 1), np.nan)
        mean[k] = percentile_interval(means, boot.level)
    return {"bootstrap": boot.record(), "categories": cats, "mean": mean}


def format_interval(value, interval) -> str:
    """``91.3 [90.6, 92.0]`` (percent, one decimal); ``–`` when undefined."""
    if value is None or value != value:
        return "–"
    text = f"{100 * value:.1f}"
    if interval:
        text += f" [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]"
    return text
