"""Scores and anomaly maps (docs/anomalyclip.md §4).

* image score: ``softmax([g_n, g_a]·f / 0.07)[anomalous]`` from the global feature ``f``;
* per layer m: ``P_m = softmax(patches_m · [g_n, g_a]ᵀ / 0.07)`` → grid → bilinear upsample
  (``align_corners=False``) **of the probabilities** to H×W → ``S_n, S_a``;
* map: ``G_σ(Σ_m ½(1 − S_n,m) + ½ S_a,m)`` with σ = 4, a Gaussian with scipy's
  ``gaussian_filter`` defaults (mode ``reflect``, truncate 4), computed in torch here.

Ensembles of DPAM modes average the *logits* of each mode before the softmax (Table 10).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def similarity_logits(features: torch.Tensor, text: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """``features · textᵀ / temperature`` (cosine / 0.07; CLIP's logit_scale is not used).

    ``text`` is ``[2, D]`` (shared by the batch) or ``[B, 2, D]`` (one pair per image).
    """
    if text.dim() == 2:
        return features @ text.t() / temperature
    if features.dim() == 2:
        return torch.einsum("bd,bcd->bc", features, text) / temperature
    return torch.einsum("bnd,bcd->bnc", features, text) / temperature


def probability_maps(patch_logits: torch.Tensor, size: int) -> torch.Tensor:
    """``[B, N, 2]`` logits → softmax → ``[B, 2, g, g]`` → bilinear upsample to ``[B, 2, size, size]``."""
    b, n, c = patch_logits.shape
    g = int(round(math.sqrt(n)))
    probs = patch_logits.softmax(dim=-1).transpose(1, 2).reshape(b, c, g, g)
    return F.interpolate(probs, size=(size, size), mode="bilinear", align_corners=False)


def _symmetric_index(n: int, radius: int, device) -> torch.Tensor:
    """Indices of scipy's ``reflect`` extension (d c b a | a b c d | d c b a), any radius."""
    i = torch.arange(-radius, n + radius, device=device)
    m = torch.remainder(i, 2 * n)
    return torch.where(m < n, m, 2 * n - 1 - m)


def gaussian_kernel1d(sigma: float, truncate: float = 4.0, device=None, dtype=torch.float32) -> torch.Tensor:
    """scipy's 1-D Gaussian kernel: radius ``int(truncate·σ + 0.5)``, normalised to sum 1."""
    radius = int(truncate * float(sigma) + 0.5)
    x = torch.arange(-radius, radius + 1, device=device, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).to(dtype)


def gaussian_blur(maps: torch.Tensor, sigma: float = 4.0, truncate: float = 4.0) -> torch.Tensor:
    """Per-image Gaussian smoothing ``[B, H, W]``, equal to ``scipy.ndimage.gaussian_filter``
    with ``mode='reflect'``, ``truncate=4`` applied to each map (up to float round-off)."""
    if sigma <= 0:
        return maps
    k = gaussian_kernel1d(sigma, truncate, maps.device, maps.dtype)
    r = (k.numel() - 1) // 2
    b, h, w = maps.shape
    x = maps[:, _symmetric_index(h, r, maps.device)]  # pad rows
    x = F.conv2d(x.unsqueeze(1), k.view(1, 1, -1, 1)).squeeze(1)
    x = x[:, :, _symmetric_index(w, r, maps.device)]  # pad columns
    return F.conv2d(x.unsqueeze(1), k.view(1, 1, 1, -1)).squeeze(1)


def anomaly_map(layer_probs, sigma: float = 4.0) -> torch.Tensor:
    """``G_σ(Σ_m ½(1 − S_n,m) + ½ S_a,m)`` from per-layer ``[B, 2, H, W]`` probability maps."""
    total = sum(0.5 * (1 - p[:, 0]) + 0.5 * p[:, 1] for p in layer_probs)
    return gaussian_blur(total, sigma)
