"""Fig. 3 of the paper, measured: the attention maps of each DPAM mode and what they give.

* :func:`attention_by_block` — the head-averaged Q-K, Q-Q, K-K and V-V attention maps of every
  block of the visual encoder, and their diagonal prominence;
* :func:`diagonal_prominence` — how much weight a token puts on itself compared with one other
  token (1 = no preference);
* :func:`raw_maps_by_mode` — the unsmoothed anomaly map each mode's patch features give;
* :func:`pixel_auroc_by_mode` — the pixel AUROC of those maps after smoothing;
  :func:`per_image_auroc` and :func:`noise_margin` — whether a difference between modes is
  larger than the noise of the few images it is measured on.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..engine.metrics import auroc_or_nan
from ..model.scoring import gaussian_blur
from .labels import MODE_NAMES

MODES = ("qk", "qq", "kk", "vv")


@torch.no_grad()
def attention_by_block(model, images: torch.Tensor, keep=None):
    """Attention of Q-K, Q-Q, K-K and V-V in every block: ``(maps, prominence)``.

    ``maps``: ``{block: {mode: [B, N+1, N+1]}}`` head-averaged softmax maps of the blocks in
    ``keep`` (default: every block for small models, else the blocks at ¼, ½, ¾ and all of the
    depth, so that ViT-L at 518 px stays within memory). ``prominence``: the diagonal
    prominence of every block (:func:`diagonal_prominence`).
    """
    depth = model.encoder.depth
    n_tokens = model.encoder.visual.positional_embedding.shape[0]
    if keep is None:
        keep = range(1, depth + 1) if n_tokens <= 600 else {max(1, round(f * depth)) for f in (0.25, 0.5, 0.75, 1.0)}
    keep = set(int(b) for b in keep)
    kept, rows = {}, []
    for b in range(1, depth + 1):
        maps = model.encoder.attention_maps(images.to(model.device), b)
        avg = {m: maps[m].float().mean(1) for m in MODES}  # averaged over heads
        rows.append(diagonal_prominence({b: avg}))
        if b in keep:
            kept[b] = {m: a.cpu() for m, a in avg.items()}
    return kept, pd.concat(rows, ignore_index=True)


def diagonal_prominence(attn: dict) -> pd.DataFrame:
    """Mean attention weight a token puts on itself vs. on one other token, per mode and block.

    ``attn``: ``{block: {mode: [B, T, T]}}`` attention maps whose rows sum to 1. For token i:
    ``self_i = a[i, i]``, ``other_i = (Σ_j a[i, j] − a[i, i]) / (T − 1)``; the row reports
    ``self`` and ``other`` averaged over tokens and images, and ``ratio`` = mean of
    ``self_i / other_i`` (1 = no diagonal preference). ``mode`` is the display name.
    """
    rows = []
    for block, maps in attn.items():
        for mode, a in maps.items():
            a = a.float()
            n = a.shape[-1]
            diag = torch.diagonal(a, dim1=-2, dim2=-1)  # [B, T]
            other = (a.sum(-1) - diag) / (n - 1)
            rows.append({"block": block, "mode": MODE_NAMES.get(mode, mode), "self": float(diag.mean()),
                         "other": float(other.mean()), "ratio": float((diag / other).mean())})
    return pd.DataFrame(rows)


@torch.no_grad()
def raw_maps_by_mode(model, images: torch.Tensor, text: torch.Tensor, modes=MODES) -> dict:
    """Unsmoothed anomaly maps ``{mode: [B, H, W]}`` of one model whose encoder computes ``modes``.

    ``model`` must be built with an ensemble recipe covering ``modes`` (e.g. ``qk+qq+kk+vv``);
    each mode's map uses only that mode's patch features, ensembles (``"a+b"``) average the
    logits, exactly as :meth:`~anomclip.model.anomalyclip.AnomalyCLIP.score_features` does.
    """
    g, feats = model.encoder(images.to(model.device))
    out = {}
    for key in modes:
        sub = {m: feats[m] for m in key.split("+")}
        o = model.score_features(g, sub, text, sigma=0.0)
        out[key] = o.anomaly_map.detach().cpu()
    return out


def pixel_auroc_by_mode(maps: dict, masks, sigma: float = 4.0) -> dict:
    """Pixel AUROC of each mode's maps smoothed with σ, pooled over the given images (NaN
    without anomalous pixels)."""
    y = (np.asarray(masks) > 0.5).ravel().astype(int)
    return {m: auroc_or_nan(gaussian_blur(torch.as_tensor(v).float(), sigma).numpy().ravel(), y)
            for m, v in maps.items()}


def per_image_auroc(maps: dict, masks, sigma: float = 4.0) -> pd.DataFrame:
    """Pixel AUROC of each mode's smoothed map on each image on its own: rows = images, columns =
    modes (NaN for an image without anomalous pixels)."""
    return pd.DataFrame({m: [auroc_or_nan(gaussian_blur(torch.as_tensor(v[i:i + 1]).float(), sigma).numpy().ravel(),
                                          (np.asarray(masks[i]) > 0.5).ravel().astype(int)) for i in range(len(v))]
                         for m, v in maps.items()})


def noise_margin(per_image: pd.DataFrame, a, b) -> float:
    """Twice the standard error of the per-image differences ``a − b`` (columns of
    :func:`per_image_auroc`): a pooled difference smaller than this is within the noise of so
    few images. NaN with fewer than two images that have anomalous pixels."""
    d = (per_image[a] - per_image[b]).dropna().to_numpy()
    if len(d) < 2:
        return float("nan")
    return float(2 * d.std(ddof=1) / np.sqrt(len(d)))


def mask_centre(mask) -> tuple[float, float]:
    """(row, column) of the centre of mass of a mask, as fractions of its size (centre if empty)."""
    m = np.asarray(mask) > 0.5
    if not m.any():
        return 0.5, 0.5
    r, c = np.nonzero(m)
    return (r.mean() + 0.5) / m.shape[0], (c.mean() + 0.5) / m.shape[1]
