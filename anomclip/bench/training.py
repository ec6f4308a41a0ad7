"""Training with the feature cache against recomputing the frozen visual features every epoch."""
from __future__ import annotations

import time

import numpy as np


def bench_training(model, data_root: str = "data", epochs: int = 2) -> dict:
    """Seconds per epoch on cached features, the one-off extraction, and their ratio, on the
    synthetic 'textures' domain (written under ``data_root`` if missing)."""
    from ..engine.features import extract_features
    from ..engine.profiles import ensure_synthetic
    from ..engine.runner import DataSpec
    from ..engine.train import train

    root = ensure_synthetic(data_root)["textures"]
    samples = DataSpec(str(root), "textures").samples()
    t0 = time.perf_counter()
    feats = extract_features(model, samples, progress=False)
    extract = time.perf_counter() - t0
    res = train(model, feats, epochs=epochs, progress=False)
    epoch = float(np.mean([h["seconds"] for h in res.history]))
    return {"train_images": len(samples), "extract_features_s": extract, "epoch_with_cache_s": epoch,
            "epoch_without_cache_s": epoch + extract, "cache_speedup": (epoch + extract) / epoch}


def summary(row: dict) -> list[str]:
    return [f"training on {row['train_images']} images: {row['epoch_with_cache_s']:.2f} s/epoch with cached "
            f"features, {row['epoch_without_cache_s']:.2f} s/epoch recomputing them ({row['cache_speedup']:.1f}×)"]
