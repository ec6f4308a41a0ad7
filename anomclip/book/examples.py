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
    from ..data.dataset import load_index

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
    from ..data.dataset import load_index

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
    from ..data.dataset import AnomalyDataset
    from ..data.preprocess import denormalize

    ds = AnomalyDataset(samples, image_size)
    items = [ds[i] for i in range(len(ds))]
    images = torch.stack([it["image"] for it in items])
    masks = torch.stack([it["mask"] for it in items])
    rgb = np.stack([denormalize(im) for im in images])
    return images, masks, [it["cls_name"] for it in items], rgb


def method_maps(model, images: torch.Tensor, cls_names, size: int | None = None) -> np.ndarray:
    """A method's final anomaly maps ``[B, size, size]`` (float32, in [0, 1]) of preprocessed
    ``images``, for drawing methods side by side on one image (``draw_maps(sigma=0)``): the
    model's own ``score_features`` (its smoothing included) on its own image features, divided
    by the number of layers the map sums (AnomalyCLIP and VAND add one probability map per layer,
    so their maps lie in [0, L]; ÷ L is the mean over layers, on [0, 1] for every method and
    ranked exactly as the map), resized bilinearly to ``size`` when the method runs at another
    input size (WinCLIP at 240 px; images are resized bicubically to the method's size)."""
    import torch.nn.functional as F

    with torch.no_grad():
        x = images.to(model.device)
        if x.shape[-1] != model.image_size:
            x = F.interpolate(x, size=(model.image_size, model.image_size), mode="bicubic", align_corners=False)
        g, feats = model.encode_image(x)
        m = model.score_features(g, feats, model.text_for(list(cls_names))).anomaly_map.float() / len(model.layers)
        if size is not None and m.shape[-1] != size:
            m = F.interpolate(m[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    return m.cpu().numpy()
