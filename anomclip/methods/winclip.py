"""WinCLIP, zero-shot (Jeong et al., CVPR 2023): window embeddings and harmonic aggregation.

* Backbone of the paper: open_clip ``ViT-B-16-plus-240`` (LAION-400M, epoch 31) at 240 px: a
  15 × 15 grid of 16-px patches.
* **Window embeddings**: for every k × k window of patches (k ∈ {2, 3}, i.e. 32 and 48 px,
  stride one patch) the ViT is run on the class token plus the window's patch tokens only (each
  keeps its positional embedding); the window's embedding is ``ln_post(x[CLS]) @ proj``. The
  whole image's embedding is CLIP's ordinary one.
* **Scores**: ``s = softmax([t_n, t_a]·f / 0.07)[1]`` for the image and for every window, with
  the text features of the compositional prompt ensemble (:mod:`.prompts`).
* **Harmonic aggregation**: the score of patch j at scale k is ``n_j / Σ_{w ∋ j} 1/s_w`` over
  the ``n_j`` windows that contain it; the zero-shot map is the harmonic mean of the image score
  (broadcast to every patch) and the per-scale maps, ``(K + 1) / (1/s_img + Σ_k 1/M_k)``, then
  bilinearly upsampled to the input size. No smoothing (``sigma = 0`` in the recipe).
* Image score: the whole image's ``s``.

The cached features are the global embedding and, per window size, the window embeddings
``{"win2": {L: [B, n_windows, D]}, "win3": …}``; everything after that is :meth:`score_features`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import AnomclipError
from ..model.anomalyclip import AnomalyOutput
from ..model.scoring import gaussian_blur, similarity_logits
from .frozen import FrozenClipMethod
from .prompts import compositional_sentences

#: windows encoded per forward call of the transformer (bounds memory at any input size)
WINDOW_CHUNK = 4096


def window_indices(grid: int, k: int) -> torch.Tensor:
    """``[n_windows, k·k]`` row-major patch indices of every k × k window (stride 1), row-major order."""
    if not 1 <= k <= grid:
        raise ValueError(f"window of {k} patches does not fit a {grid}×{grid} grid")
    rows = torch.arange(grid - k + 1)
    top_left = (rows[:, None] * grid + rows[None, :]).reshape(-1)  # [n_windows]
    offsets = (torch.arange(k)[:, None] * grid + torch.arange(k)[None, :]).reshape(-1)  # [k·k]
    return top_left[:, None] + offsets[None, :]


def cover_matrix(grid: int, k: int) -> torch.Tensor:
    """``[n_windows, grid·grid]``: 1 where a window contains a patch."""
    idx = window_indices(grid, k)
    cover = torch.zeros(idx.shape[0], grid * grid)
    cover.scatter_(1, idx, 1.0)
    return cover


def harmonic_aggregation(window_scores: torch.Tensor, cover: torch.Tensor) -> torch.Tensor:
    """``[B, n_windows]`` → ``[B, P]``: per patch, the harmonic mean of the windows containing it."""
    cover = cover.to(window_scores)
    return cover.sum(0) / ((1.0 / window_scores) @ cover)


class WinCLIP(FrozenClipMethod):
    """WinCLIP's zero-shot classification and segmentation on a frozen open_clip ViT."""

    def __init__(self, clip_model, tokenizer, info, recipe):
        super().__init__(clip_model, tokenizer, info, recipe)
        self.windows = tuple(int(k) for k in recipe.windows)
        self.modes = tuple(f"win{k}" for k in self.windows)
        self.layers = (info.vision_layers,)
        grid = info.grid
        for k in self.windows:
            if not 1 <= k <= grid:
                raise AnomclipError(f"recipe {recipe.name!r}: window of {k} patches does not fit the "
                                    f"{grid}×{grid} patch grid of {info.name} at {info.image_size} px")
        self._covers = {k: cover_matrix(grid, k) for k in self.windows}

    def sentences(self, cls_name: str):
        return compositional_sentences(cls_name)

    def feature_spec(self) -> dict:
        return {"encoder": "winclip-windows", **self._backbone_spec(), "windows": list(self.windows),
                "stride": 1, "global_ln_post": True}

    def _run(self, tokens: torch.Tensor) -> torch.Tensor:
        for blk in self.clip.visual.transformer.resblocks:
            tokens = self.vit.run_block(blk, tokens)
        return tokens

    def _encode(self, images: torch.Tensor):
        """``(image embedding [B, D], {"win<k>": {L: [B, n_windows, D]}})``, L2-normalised."""
        x = self.vit.embed(images)  # [B, 1 + P, W]; ln_pre acts per token, so selecting after it is exact
        g = self.global_feature(self._run(x))
        b, _, w = x.shape
        feats = {}
        for k, mode in zip(self.windows, self.modes):
            idx = window_indices(self.info.grid, k).to(x.device) + 1  # token 0 is the class token
            idx = torch.cat([torch.zeros_like(idx[:, :1]), idx], dim=1)  # [n_windows, 1 + k·k]
            seqs = x[:, idx].reshape(-1, idx.shape[1], w)  # [B·n_windows, 1 + k·k, W]
            out = torch.cat([self.global_feature(self._run(seqs[i:i + WINDOW_CHUNK]))
                             for i in range(0, len(seqs), WINDOW_CHUNK)])
            feats[mode] = {self.layers[0]: out.reshape(b, idx.shape[0], -1)}
        return g, feats

    def score_features(self, g: torch.Tensor, feats: dict, text: torch.Tensor, with_map: bool = True,
                       sigma: float | None = None) -> AnomalyOutput:
        t = self.recipe.temperature
        image_logits = similarity_logits(g, text, t)
        s_img = image_logits.softmax(-1)[:, 1]
        amap = None
        if with_map:
            layer = self.layers[0]
            inverse = (1.0 / s_img)[:, None].expand(-1, self.info.grid ** 2)
            for k, mode in zip(self.windows, self.modes):
                s_win = similarity_logits(feats[mode][layer], text, t).softmax(-1)[..., 1]
                inverse = inverse + 1.0 / harmonic_aggregation(s_win, self._covers[k])
            grid = self.info.grid
            multiscale = ((len(self.windows) + 1) / inverse).reshape(-1, 1, grid, grid)
            amap = F.interpolate(multiscale, size=(self.image_size, self.image_size), mode="bilinear",
                                 align_corners=False)[:, 0]
            sigma = self.recipe.sigma if sigma is None else sigma
            amap = gaussian_blur(amap, sigma) if sigma and sigma > 0 else amap
        return AnomalyOutput(s_img, amap, image_logits, {})
