"""Example images for the book's figures, read and preprocessed exactly as evaluation reads them.

Figures show images, masks and maps at the model's input size through
:class:`anomclip.data.AnomalyDataset` (the same resizing of images and masks as evaluation),
so a figure never disagrees with a metric about where a defect is.
"""
from __future__ import annotations

import numpy as np
import torch


def anomalous_samples(P, dataset: str, n: int = 4, per_category: int = 1):
    """``n`` anomalous samples with masks, taken in turn from the (sorted) categories of ``dataset``."""
    from .data import load_index

    idx = load_index(P.datasets[dataset].root, P.datasets[dataset].split)
    out = []
    for k in range(per_category * 100):
        for cat in sorted(idx):
            bad = [s for s in idx[cat] if s.anomaly and s.mask_path is not None]
            if k < len(bad):
                out.append(bad[k])
            if len(out) == n:
                return out
    return out


def overview_samples(P, dataset: str, per_category: int = 3, max_categories: int = 4):
    """Per category (at most ``max_categories``): one normal image, then one anomalous image per
    defect type in turn (the first category starts with its first defect type, the next one with
    the next type), ``per_category`` images in all."""
    from .data import load_index

    idx = load_index(P.datasets[dataset].root, P.datasets[dataset].split)
    picks = []
    for cat in list(idx)[:max_categories]:
        samples = idx[cat]
        normal = [s for s in samples if not s.anomaly][:1]
        by_kind = {}
        for s in samples:
            if s.anomaly:
                by_kind.setdefault(s.specie_name, s)
        kinds = list(by_kind)
        k0 = len(picks) % max(1, len(kinds))
        bad = [by_kind[kinds[(k0 + i) % len(kinds)]] for i in range(min(per_category - len(normal), len(kinds)))]
        picks += normal + bad
    return picks


def batch_of(samples, image_size: int):
    """Stacked ``(images [B,3,S,S], masks [B,S,S], cls_names, rgb [B,S,S,3] uint8)`` of samples,
    preprocessed by :class:`anomclip.data.AnomalyDataset` (masks all-zero for normal images)."""
    from .data import AnomalyDataset, denormalize

    ds = AnomalyDataset(samples, image_size)
    items = [ds[i] for i in range(len(ds))]
    images = torch.stack([it["image"] for it in items])
    masks = torch.stack([it["mask"] for it in items])
    rgb = np.stack([denormalize(im) for im in images])
    return images, masks, [it["cls_name"] for it in items], rgb
