"""Metrics checked against brute-force versions written out from their definitions."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from anomclip.engine import metrics
from anomclip.engine.metrics import UndefinedMetricWarning
from anomclip.errors import AnomclipError

# ----------------------------------------------------------------------------- brute force


def bf_auroc(scores, labels) -> float:
    """P(s_pos > s_neg) + 1/2 P(s_pos == s_neg) by counting every pair."""
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    total = 0.0
    for p in pos:
        for n in neg:
            total += 1.0 if p > n else 0.5 if p == n else 0.0
    return total / (len(pos) * len(neg))


def bf_precision_recall(scores, labels):
    """(precision, recall) at every distinct threshold t, descending; predicted = score >= t."""
    n_pos = sum(1 for y in labels if y)
    points = []
    for t in sorted(set(scores), reverse=True):
        tp = sum(1 for s, y in zip(scores, labels) if s >= t and y)
        pred = sum(1 for s in scores if s >= t)
        points.append((tp / pred, tp / n_pos))
    return points


def bf_ap(scores, labels) -> float:
    ap, prev_recall = 0.0, 0.0
    for precision, recall in bf_precision_recall(scores, labels):
        ap += (recall - prev_recall) * precision
        prev_recall = recall
    return ap


def bf_f1_max(scores, labels) -> float:
    return max(0.0 if p + r == 0 else 2 * p * r / (p + r) for p, r in bf_precision_recall(scores, labels))


def bf_regions(mask: np.ndarray, connectivity: int = 8) -> list[list[tuple[int, int]]]:
    """Connected components of a 2-D binary mask by an explicit flood fill."""
    h, w = mask.shape
    steps = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    if connectivity == 4:
        steps = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    seen = np.zeros_like(mask, dtype=bool)
    regions = []
    for y in range(h):
        for x in range(w):
            if not mask[y, x] or seen[y, x]:
                continue
            seen[y, x] = True
            stack, region = [(y, x)], []
            while stack:
                cy, cx = stack.pop()
                region.append((cy, cx))
                for dy, dx in steps:
                    ny, nx = cy + dy, cx + dx
                    if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        stack.append((ny, nx))
            regions.append(region)
    return regions


def bf_pro_fpr(maps, masks, predicted, connectivity=8):
    """PRO and FPR of a boolean prediction stack, regions found per image."""
    fractions = []
    for i in range(maps.shape[0]):
        for region in bf_regions(masks[i], connectivity):
            fractions.append(sum(1 for y, x in region if predicted[i, y, x]) / len(region))
    normal = ~masks
    fpr = np.count_nonzero(predicted & normal) / np.count_nonzero(normal)
    return sum(fractions) / len(fractions), fpr


def bf_aupro(maps, masks, fpr_limit=0.3, connectivity=8) -> float:
    """Exact PRO curve over every distinct score (predicted = score >= t), from (0, 0),
    trapezoid up to fpr_limit with the last point interpolated, divided by fpr_limit."""
    points = [(0.0, 0.0)]
    for t in sorted(set(maps.ravel().tolist()), reverse=True):
        pro, fpr = bf_pro_fpr(maps, masks, maps >= t, connectivity)
        points.append((fpr, pro))
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x1 <= fpr_limit:
            area += (x1 - x0) * (y0 + y1) / 2
        elif x0 < fpr_limit:
            y_at = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
            area += (fpr_limit - x0) * (y0 + y_at) / 2
            break
        else:
            break
    return area / fpr_limit


def bf_aupro_official(maps, masks) -> float:
    """200 thresholds min + k (max - min) / 200, predicted = score > th, keep FPR < 0.3,
    rescale FPR to [0, 1], trapezoid of PRO against it."""
    lo, hi = float(maps.min()), float(maps.max())
    kept = []
    for k in range(200):
        th = lo + k * ((hi - lo) / 200)
        pro, fpr = bf_pro_fpr(maps, masks, maps > th)
        if fpr < 0.3:
            kept.append((fpr, pro))
    f_min, f_max = min(f for f, _ in kept), max(f for f, _ in kept)
    pts = [((f - f_min) / (f_max - f_min), p) for f, p in kept]
    return abs(sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(pts, pts[1:])))


# ----------------------------------------------------------------------------- data


def blob_masks() -> np.ndarray:
    """5 masks of 12x12, with regions that touch only diagonally."""
    m = np.zeros((5, 12, 12), dtype=bool)
    m[0, 1:4, 1:4] = True
    m[0, 4, 4] = True  # diagonal neighbour of the block: same region under 8-connectivity
    m[0, 8:11, 6:10] = True
    for k in range(4):
        m[1, k, k] = True  # a diagonal line: one region, four under 4-connectivity
    m[1, 9:11, 9:11] = True
    # image 2 is normal
    m[3] = np.random.default_rng(3).random((12, 12)) < 0.15
    m[4, 2:7, 3:9] = True
    m[4, 0, 11] = True
    return m


def tied_maps(masks: np.ndarray, seed: int = 0, levels: int = 25) -> np.ndarray:
    """Scores on a coarse grid (many ties), higher on average inside the masks."""
    rng = np.random.default_rng(seed)
    return ((rng.integers(0, levels, masks.shape) + 8 * masks) / levels).astype(np.float32)


# ----------------------------------------------------------------------------- image metrics


@pytest.mark.parametrize("seed", range(5))
def test_image_metrics_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(40) < 0.4
    labels[:2] = [True, False]
    scores = np.round(rng.random(40) + 0.3 * labels, 1)  # ties
    assert metrics.image_auroc(scores, labels) == pytest.approx(bf_auroc(scores, labels), abs=1e-12)
    assert metrics.image_ap(scores, labels) == pytest.approx(bf_ap(scores, labels), abs=1e-12)
    assert metrics.f1_max(scores, labels) == pytest.approx(bf_f1_max(scores, labels), abs=1e-12)
    together = metrics.image_metrics(scores, labels.astype(int))
    assert together["image_auroc"] == pytest.approx(bf_auroc(scores, labels), abs=1e-12)
    assert together["image_ap"] == pytest.approx(bf_ap(scores, labels), abs=1e-12)
    assert together["image_f1_max"] == pytest.approx(bf_f1_max(scores, labels), abs=1e-12)
    assert all(isinstance(v, float) for v in together.values())


def test_image_auroc_hand_example():
    # pairs (pos, neg): (0.8,0.1)=1, (0.8,0.4)=1, (0.4,0.1)=1, (0.4,0.4)=1/2 -> 3.5 / 4
    assert metrics.image_auroc([0.1, 0.4, 0.4, 0.8], [0, 0, 1, 1]) == pytest.approx(0.875)


# ----------------------------------------------------------------------------- pixel metrics


@pytest.mark.parametrize("seed", range(6))
def test_pixel_metrics_match_sklearn_and_brute_force(seed):
    rng = np.random.default_rng(seed)
    masks = rng.random((3, 7, 5)) < 0.3
    maps = (rng.integers(-4, 6, masks.shape) / 4 + 0.5 * masks).astype(np.float32)  # ties, negatives
    y, s = masks.ravel(), maps.ravel()
    expected_auroc = roc_auc_score(y, s)
    expected_ap = average_precision_score(y, s)
    expected_f1 = bf_f1_max(s.tolist(), y.tolist())
    assert expected_auroc == pytest.approx(bf_auroc(s.tolist(), y.tolist()), abs=1e-12)

    assert metrics.pixel_auroc(maps, masks) == pytest.approx(expected_auroc, abs=1e-12)
    assert metrics.pixel_ap(maps, masks) == pytest.approx(expected_ap, abs=1e-12)
    assert metrics.pixel_f1_max(maps, masks.astype(np.float32)) == pytest.approx(expected_f1, abs=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # the official AUPRO may be undefined here
        together = metrics.pixel_metrics(maps, masks.astype(np.uint8))
    assert together["pixel_auroc"] == pytest.approx(expected_auroc, abs=1e-12)
    assert together["pixel_ap"] == pytest.approx(expected_ap, abs=1e-12)
    assert together["pixel_f1_max"] == pytest.approx(expected_f1, abs=1e-12)


def test_pixel_metrics_negative_zero_ties_with_zero():
    maps = np.array([[[-0.0, 0.0, 1.0, -1.0]]], dtype=np.float32)
    masks = np.array([[[1, 0, 1, 0]]])
    assert metrics.pixel_auroc(maps, masks) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()))


# ----------------------------------------------------------------------------- AUPRO


@pytest.mark.parametrize("seed", range(3))
def test_aupro_matches_brute_force_with_8_connectivity(seed):
    masks = blob_masks()
    maps = tied_maps(masks, seed)
    expected = bf_aupro(maps, masks)
    assert metrics.aupro(maps, masks) == pytest.approx(expected, abs=1e-10)
    # the data separate 8- from 4-connectivity, so the check above is sensitive to it
    assert abs(bf_aupro(maps, masks, connectivity=4) - expected) > 1e-4


@pytest.mark.parametrize("limit", [0.05, 0.1, 0.3, 0.5, 1.0])
def test_aupro_fpr_limit(limit):
    masks = blob_masks()
    maps = tied_maps(masks, seed=7)
    assert metrics.aupro(maps, masks, fpr_limit=limit) == pytest.approx(bf_aupro(maps, masks, limit), abs=1e-10)


def test_aupro_continuous_scores_and_pixel_metrics_agree():
    masks = blob_masks()
    rng = np.random.default_rng(11)
    maps = (rng.random(masks.shape) + 0.5 * masks).astype(np.float32)
    expected = bf_aupro(maps, masks)
    assert metrics.aupro(maps, masks) == pytest.approx(expected, abs=1e-10)
    assert metrics.pixel_metrics(maps, masks)["pixel_aupro"] == pytest.approx(expected, abs=1e-10)


def test_aupro_hand_example():
    # one region of 2 pixels (scores 0.9, 0.5), normal pixels 0.8, 0.2.
    # curve: (0,0) -> t=0.9 (0, 1/2) -> t=0.8 (1/2, 1/2) -> t=0.5 (1/2, 1) -> t=0.2 (1, 1)
    maps = np.array([[[0.9, 0.5, 0.8, 0.2]]], dtype=np.float32)
    masks = np.array([[[1, 1, 0, 0]]])
    assert metrics.aupro(maps, masks, fpr_limit=1.0) == pytest.approx(0.5 * 0.5 + 0.5 * 1.0)
    assert metrics.aupro(maps, masks, fpr_limit=0.3) == pytest.approx(0.5)


@pytest.mark.parametrize("seed", range(3))
def test_aupro_official_matches_brute_force(seed):
    masks = blob_masks()
    rng = np.random.default_rng(seed)
    maps = (rng.random(masks.shape) + 0.6 * masks).astype(np.float32)
    assert metrics.aupro_official(maps, masks) == pytest.approx(bf_aupro_official(maps, masks), abs=1e-10)
    assert metrics.pixel_metrics(maps, masks)["pixel_aupro_official"] == pytest.approx(
        bf_aupro_official(maps, masks), abs=1e-10
    )


def test_larger_stack_perfect_inverted_and_random_maps_give_known_values():
    """100 maps of 64x64: perfect, inverted and uninformative maps give known values."""
    rng = np.random.default_rng(0)
    masks = np.zeros((100, 64, 64), dtype=bool)
    for i in range(0, 100, 2):
        y, x = rng.integers(5, 50, 2)
        masks[i, y : y + rng.integers(3, 12), x : x + rng.integers(3, 12)] = True
    noise = rng.random(masks.shape, dtype=np.float32)

    perfect = metrics.pixel_metrics(masks + 0.1 * noise, masks)
    for key in ("pixel_auroc", "pixel_ap", "pixel_f1_max", "pixel_aupro"):
        assert perfect[key] == pytest.approx(1.0, abs=1e-9)
    assert metrics.aupro(-(masks + 0.1 * noise), masks) == pytest.approx(0.0, abs=1e-9)

    # scores independent of the masks: PRO(t) ~ FPR(t), so the area up to 0.3 is ~0.3^2/2/0.3
    random = metrics.pixel_metrics(noise, masks)
    assert random["pixel_aupro"] == pytest.approx(0.15, abs=0.01)
    assert random["pixel_auroc"] == pytest.approx(0.5, abs=0.01)
    for value in random.values():
        assert 0.0 <= value <= 1.0


# ----------------------------------------------------------------------------- undefined cases


def test_only_normal_images_give_nan_with_warning():
    with pytest.warns(UndefinedMetricWarning):
        assert math.isnan(metrics.image_auroc([0.1, 0.5, 0.3], [0, 0, 0]))
    with pytest.warns(UndefinedMetricWarning):
        assert math.isnan(metrics.image_ap([0.1, 0.5, 0.3], [0, 0, 0]))
    with pytest.warns(UndefinedMetricWarning):
        assert math.isnan(metrics.f1_max([0.1, 0.5, 0.3], [0, 0, 0]))
    with pytest.warns(UndefinedMetricWarning) as record:
        out = metrics.image_metrics([0.1, 0.5, 0.3], [0, 0, 0])
    assert len(record) == 1
    assert all(math.isnan(v) for v in out.values())


def test_no_anomalous_pixel_gives_nan():
    maps = np.random.default_rng(0).random((2, 4, 4)).astype(np.float32)
    masks = np.zeros((2, 4, 4))
    for fn in (metrics.pixel_auroc, metrics.pixel_ap, metrics.pixel_f1_max, metrics.aupro, metrics.aupro_official):
        with pytest.warns(UndefinedMetricWarning):
            assert math.isnan(fn(maps, masks))
    with pytest.warns(UndefinedMetricWarning) as record:
        out = metrics.pixel_metrics(maps, masks)
    assert len(record) == 1
    assert set(out) == set(metrics.PIXEL_KEYS) and all(math.isnan(v) for v in out.values())


def test_category_metrics_without_masks_warns_once():
    with pytest.warns(UndefinedMetricWarning) as record:
        out = metrics.category_metrics([0.2, 0.9, 0.4], [0, 1, 0], None, None)
    assert len(record) == 1
    assert list(out) == [
        "image_auroc", "image_ap", "image_f1_max",
        "pixel_auroc", "pixel_ap", "pixel_f1_max", "pixel_aupro", "pixel_aupro_official",
    ]
    assert out["image_auroc"] == 1.0 and out["image_ap"] == 1.0 and out["image_f1_max"] == 1.0
    assert all(math.isnan(out[k]) for k in metrics.PIXEL_KEYS)


def test_category_metrics_with_masks():
    masks = blob_masks()
    maps = (np.random.default_rng(2).random(masks.shape) + 0.6 * masks).astype(np.float32)
    labels = masks.reshape(5, -1).any(1)
    scores = maps.reshape(5, -1).max(1)
    out = metrics.category_metrics(scores, labels, maps, masks)
    assert out["image_auroc"] == pytest.approx(bf_auroc(scores.tolist(), labels.tolist()))
    assert out["pixel_auroc"] == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()))
    assert out["pixel_aupro"] == pytest.approx(bf_aupro(maps, masks), abs=1e-10)


def test_mean_over_categories_skips_nan_and_notes_it():
    nan = float("nan")
    per_cat = {
        "bottle": {"image_auroc": 0.9, "pixel_auroc": 0.8},
        "cable": {"image_auroc": nan, "pixel_auroc": 0.6},
        "grid": {"image_auroc": 0.7, "pixel_auroc": nan},
        "wood": {"image_auroc": nan, "pixel_auroc": 0.7, "pixel_aupro": nan},
    }
    means, notes = metrics.mean_over_categories(per_cat)
    assert means["image_auroc"] == pytest.approx((0.9 + 0.7) / 2)
    assert means["pixel_auroc"] == pytest.approx((0.8 + 0.6 + 0.7) / 3)
    assert math.isnan(means["pixel_aupro"])
    assert "image_auroc: left out of the mean for categories cable, wood (undefined)" in notes
    assert "pixel_auroc: left out of the mean for categories grid (undefined)" in notes
    assert any(n.startswith("pixel_aupro:") for n in notes)
    assert len(notes) == 3


def test_bad_input_raises_user_error():
    with pytest.raises(AnomclipError):
        metrics.image_auroc([0.1, 0.2], [0, 1, 1])
    with pytest.raises(AnomclipError):
        metrics.pixel_auroc(np.zeros((2, 3, 3)), np.zeros((2, 3, 4)))
    with pytest.raises(AnomclipError):
        metrics.pixel_auroc(np.zeros((1, 2, 2)), np.full((1, 2, 2), 0.5))
    with pytest.raises(AnomclipError):
        metrics.aupro(np.full((1, 2, 2), np.nan), np.eye(2)[None])
    with pytest.raises(AnomclipError):
        metrics.aupro(np.zeros((1, 2, 2)), np.eye(2)[None], fpr_limit=0.0)


# ----------------------------------------------------------------------------- one pass, threads, the floor


def test_pixel_metrics_in_one_pass_equal_the_separate_functions():
    masks = blob_masks()
    for maps in (tied_maps(masks, seed=4), (np.random.default_rng(5).random(masks.shape) + 0.4 * masks)):
        together = metrics.pixel_metrics(maps, masks, fpr_limit=0.2)
        separate = {
            "pixel_auroc": metrics.pixel_auroc(maps, masks),
            "pixel_ap": metrics.pixel_ap(maps, masks),
            "pixel_f1_max": metrics.pixel_f1_max(maps, masks),
            "pixel_aupro": metrics.aupro(maps, masks, fpr_limit=0.2),
            "pixel_aupro_official": metrics.aupro_official(maps, masks),
        }
        assert list(together) == list(separate)
        for key, value in separate.items():
            assert together[key] == pytest.approx(value, abs=1e-12), key


def test_a_million_pixels_sorted_on_threads_match_sklearn_and_the_earlier_engine():
    """Above a million pixels the normal scores are sorted in parts on threads."""
    from anomclip.bench.metrics import blob_data
    from anomclip.bench.metrics_baseline import baseline_pixel_metrics

    maps, masks = blob_data(20, 240, seed=1)  # 1,152,000 pixels
    maps[:, :4] = np.round(maps[:, :4], 2)  # and some ties
    out = metrics.pixel_metrics(maps, masks)
    assert out["pixel_auroc"] == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-9)
    assert out["pixel_ap"] == pytest.approx(average_precision_score(masks.ravel(), maps.ravel()), abs=1e-9)
    before = baseline_pixel_metrics(maps, masks)
    for key in metrics.PIXEL_KEYS:
        assert out[key] == pytest.approx(before[key], abs=1e-9), key
    assert metrics.aupro(maps, masks) == pytest.approx(before["pixel_aupro"], abs=1e-9)


@pytest.mark.parametrize("floor", ["highest", "lowest", "median"])
def test_aupro_is_exact_whatever_floor_the_sample_gives(monkeypatch, floor):
    """AUPRO sorts only the normal scores at or above a sampled floor; a floor too high (too
    few normal pixels above it) falls back to all of them, a low one only costs time."""
    masks = blob_masks()
    maps = tied_maps(masks, seed=2)
    normal = maps[~masks]
    value = {"highest": float(normal.max()), "lowest": float(normal.min()), "median": float(np.median(normal))}[floor]
    monkeypatch.setattr(metrics, "_normal_floor", lambda *a: value)
    for limit in (0.05, 0.3, 0.6):
        assert metrics.aupro(maps, masks, fpr_limit=limit) == pytest.approx(bf_aupro(maps, masks, limit), abs=1e-10)
    assert metrics.aupro_official(maps, masks) == pytest.approx(bf_aupro_official(maps, masks), abs=1e-10)
