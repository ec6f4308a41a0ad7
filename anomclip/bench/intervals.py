"""What the bootstrap intervals cost: image metrics over many resamples, pixel metrics over large maps.

``anomclip bench intervals [--out FILE]`` prints a summary and writes JSON. Times are
measured, never asserted. The point metrics (one evaluation without intervals) are timed beside
them, on the same data (:func:`anomclip.bench.metrics.blob_data`: noisy maps, every pixel score
distinct: the most thresholds a pixel curve can have).
"""
from __future__ import annotations

import time

import numpy as np

from ..engine import intervals, metrics
from .metrics import blob_data
from .timing import machine


def _time(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def bench_intervals(images: int = 200, resamples: int = 1000, maps: int = 100, size: int = 518,
                    pixel_resamples: int = 100, seed: int = 0) -> dict:
    """Seconds of the image-metric bootstrap (``images`` scores, ``resamples``) and of the pixel
    one (``maps`` maps of ``size``², ``pixel_resamples``), beside the point metrics."""
    rng = np.random.default_rng(seed)
    y = rng.random(images) < 0.5
    s = rng.random(images) + 0.5 * y
    _, point_image = _time(lambda: metrics.image_metrics(s, y))
    idx = intervals.resample_indices(y, resamples, seed)
    _, image_s = _time(lambda: intervals.weighted_image_metrics(s, y, intervals.multiplicities(idx, images)))
    report = {"machine": machine(), "image": {"images": images, "resamples": resamples, "bootstrap_s": image_s,
                                              "point_metrics_s": point_image}}
    if maps:
        m, g = blob_data(maps, size, seed)
        _, point_pixel = _time(lambda: metrics.pixel_metrics(m, g))
        lab = g.reshape(maps, -1).any(axis=1)
        pidx = intervals.resample_indices(lab, pixel_resamples, seed)
        _, pixel_s = _time(lambda: intervals.weighted_pixel_metrics(m, g, intervals.multiplicities(pidx, maps)))
        report["pixel"] = {"maps": maps, "size": size, "resamples": pixel_resamples,
                           "anomalous_pixels": int(g.sum()), "bootstrap_s": pixel_s, "point_metrics_s": point_pixel}
    return report


def summary(report: dict) -> list[str]:
    im = report["image"]
    lines = [f"image metrics, {im['images']} images: {im['resamples']} resamples in {im['bootstrap_s']:.3f} s "
             f"(the point metrics: {im['point_metrics_s']:.4f} s)"]
    if "pixel" in report:
        px = report["pixel"]
        lines.append(f"pixel metrics, {px['maps']} maps of {px['size']}² ({px['anomalous_pixels']} anomalous pixels): "
                     f"{px['resamples']} resamples in {px['bootstrap_s']:.1f} s "
                     f"(the point metrics: {px['point_metrics_s']:.1f} s)")
    return lines

