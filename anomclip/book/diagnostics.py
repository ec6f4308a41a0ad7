"""What a defect changes in the frozen visual features: the global token vs the patch tokens.

AnomalyCLIP scores an image from its global feature alone and draws its map from the patch
features (docs/anomalyclip.md §4). Prompts tuned on one dataset can only transfer to another through a
feature that moves when a defect appears — by more than it moves between two normal images of
the same category. :func:`defect_shift` measures both on pairs of images that differ by the
defect alone (:func:`anomclip.data.synth.defect_pairs`):

* ``shift`` — the cosine distance ``1 − cos`` between the feature of an image and of the same
  image with the defect. Global: the global feature. Patch: the patch cell the defect covers
  most, in the last layer the maps use (first DPAM mode);
* ``spread`` — the same distance between two different normal images of the category (patch:
  at the same patch position);
* ``ratio = shift / spread`` — above 1 the defect stands out of normal variation.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from PIL import Image

from ..data.preprocess import image_to_tensor


def _features(model, images, batch_size: int):
    """Global [N, D] and patch [N, P, D] features (last layer, first mode) of uint8 RGB arrays."""
    gs, ps = [], []
    for i in range(0, len(images), batch_size):
        x = torch.stack([image_to_tensor(Image.fromarray(a), model.image_size) for a in images[i:i + batch_size]])
        g, feats = model.encode_image(x)
        patches = next(iter(feats.values()))
        gs.append(g.float().cpu())
        ps.append(patches[max(patches)].float().cpu())
    return torch.cat(gs), torch.cat(ps)


def _cell_coverage(mask: np.ndarray, grid: int) -> np.ndarray:
    """Fraction of each of the ``grid × grid`` patch cells covered by ``mask`` (resized to the grid)."""
    m = torch.from_numpy(mask.astype(np.float32))[None, None]
    return torch.nn.functional.adaptive_avg_pool2d(m, grid).flatten().numpy()


def _cos_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 1 - torch.nn.functional.cosine_similarity(a, b, dim=-1)


def defect_shift(model, pairs: list[dict], batch_size: int = 16) -> pd.DataFrame:
    """One row per (domain, category, feature): ``shift``, ``spread`` and their ``ratio``.

    ``pairs`` as returned by :func:`anomclip.data.synth.defect_pairs`; at least two per category
    (the spread compares each normal image with the next one of its category, cyclically).
    """
    g_n, p_n = _features(model, [p["normal"] for p in pairs], batch_size)
    g_d, p_d = _features(model, [p["defective"] for p in pairs], batch_size)
    grid = int(round(p_n.shape[1] ** 0.5))
    frame = pd.DataFrame([{k: p[k] for k in ("domain", "category", "defect")} for p in pairs])
    rows = []
    for (domain, category), group in frame.groupby(["domain", "category"], sort=False):
        idx = np.array(group.index)
        if len(idx) < 2:
            raise ValueError(f"defect_shift needs at least two pairs of category {category}")
        nxt = np.roll(idx, -1)
        cell = np.array([int(np.argmax(_cell_coverage(pairs[i]["mask"], grid))) for i in idx])
        values = {
            "global": (_cos_dist(g_n[idx], g_d[idx]), _cos_dist(g_n[idx], g_n[nxt])),
            "patch": (_cos_dist(p_n[idx, cell], p_d[idx, cell]), _cos_dist(p_n[idx, cell], p_n[nxt, cell])),
        }
        for feature, (shift, spread) in values.items():
            s, n = float(shift.mean()), float(spread.mean())
            rows.append(dict(domain=domain, category=category, feature=feature, shift=s, spread=n,
                             ratio=s / n if n > 0 else float("inf")))
    return pd.DataFrame(rows)


def prompt_stats(model) -> tuple[dict, dict]:
    """What a model's learnable prompts look like: ``(summary, deep)``.

    ``summary``: the mean L2 norm over tokens of the normal and of the abnormal context vectors
    (the shared tensor twice when they are shared) and the cosine similarity of the two text
    features (row 0 normal, row 1 damaged); ``deep``: ``{"block k": mean token norm}`` of the
    deep prompts inserted at text block k = 2, 3, ….
    """
    pl = model.prompt_learner
    with torch.no_grad():
        text = model.encode_text().float()
        cos = torch.nn.functional.cosine_similarity(text[0:1], text[1:2]).item()
        abnormal = pl.ctx_abnormal if pl.ctx_abnormal is not None else pl.ctx_normal
        summary = {"‖ctx normal‖": pl.ctx_normal.float().norm(dim=-1).mean().item(),
                   "‖ctx damaged‖": abnormal.float().norm(dim=-1).mean().item(),
                   "cos(normal text, damaged text)": cos}
        deep = {f"block {i + 2}": t.float().norm(dim=-1).mean().item() for i, t in enumerate(pl.deep_prompts)}
    return summary, deep
