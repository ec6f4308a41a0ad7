"""VAND / APRIL-GAN (Chen et al., 2023; CVPR 2023 VAND challenge, zero-shot track).

* Frozen ViT-L-14-336 (``openai``) at 518 px. Patch features: the **raw tokens** (residual
  stream, no ``ln_post``, no ``proj``) after blocks 6, 12, 18, 24 (¼, ½, ¾, 1 of depth), class
  token dropped, each mapped into the joint space by its own **learnable linear layer**
  ``width → D`` (with bias).
* Text: per category, the compositional ensemble of 7 normal / 5 anomalous states × 35
  templates (:func:`~.prompts.vand_sentences`), averaged after normalisation.
* Per layer m: logits ``100 · norm(W_m x + b_m) · [t_n, t_a]ᵀ`` → grid → bilinear upsample **of
  the logits** (``align_corners=True``) → softmax over the two states; the map is the sum over
  layers of the anomalous probability. No smoothing in their code (``sigma = 0``).
* Image score: ``softmax(100 · f · [t_n, t_a]ᵀ)[1]`` with CLIP's image embedding f (zero-shot).
* Training (their ``train.py``): only the linear layers; per layer focal loss (γ = 2) + dice
  loss of the anomalous channel against the mask; Adam lr 1e-3, betas (0.5, 0.999).

The cached features are the raw tokens ``{"raw": {m: [B, N, width]}}``: the linear layers are
applied in :meth:`score_features`, so training runs on cached features.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..model.anomalyclip import AnomalyOutput
from ..model.losses import dice_loss, focal_loss
from ..model.scoring import gaussian_blur, similarity_logits
from .frozen import FrozenClipMethod
from .prompts import vand_sentences

RAW = "raw"


class VAND(FrozenClipMethod):
    """APRIL-GAN's zero-shot model: linear projections of four layers' patch tokens."""

    def __init__(self, clip_model, tokenizer, info, recipe):
        super().__init__(clip_model, tokenizer, info, recipe)
        self.modes = (RAW,)
        with torch.random.fork_rng(devices=[]):  # PyTorch's default Linear init, seeded by the recipe
            torch.manual_seed(recipe.seed)
            self.learner = nn.ModuleList([nn.Linear(info.vision_width, info.embed_dim) for _ in self.layers])
        self.learner.to(self.device)

    def sentences(self, cls_name: str):
        return vand_sentences(cls_name)

    def feature_spec(self) -> dict:
        return {"encoder": "raw-tokens", **self._backbone_spec(), "layers": list(self.layers),
                "global_ln_post": True}

    def _encode(self, images: torch.Tensor):
        """``(image embedding [B, D], {"raw": {m: [B, N, width]}})``; tokens are not normalised."""
        feats = {}
        x = self.vit.embed(images)
        for l, blk in enumerate(self.clip.visual.transformer.resblocks, start=1):
            x = self.vit.run_block(blk, x)
            if l in self.layers:
                feats[l] = x[:, 1:]
        return self.global_feature(x), {RAW: feats}

    def score_features(self, g: torch.Tensor, feats: dict, text: torch.Tensor, with_map: bool = True,
                       sigma: float | None = None) -> AnomalyOutput:
        t = self.recipe.temperature
        image_logits = similarity_logits(g, text, t)
        layer_probs = {}
        size = (self.image_size, self.image_size)
        for fc, layer in zip(self.learner, self.layers):
            patches = F.normalize(fc(feats[RAW][layer]), dim=-1)
            logits = similarity_logits(patches, text, t)  # [B, N, 2]
            b, n, c = logits.shape
            grid = int(round(math.sqrt(n)))
            logits = logits.transpose(1, 2).reshape(b, c, grid, grid)
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=True)
            layer_probs[layer] = logits.softmax(dim=1)
        amap = None
        if with_map:
            amap = sum(p[:, 1] for p in layer_probs.values())
            sigma = self.recipe.sigma if sigma is None else sigma
            amap = gaussian_blur(amap, sigma) if sigma and sigma > 0 else amap
        return AnomalyOutput(image_logits.softmax(-1)[:, 1], amap, image_logits, layer_probs)

    def training_loss(self, g, feats, labels, masks, cls_names) -> dict:
        """Σ_m focal(P_m, mask) + dice(P_m[anomalous], mask) (their ``train.py``; no image term)."""
        out = self.score_features(g, feats, self.text_for(cls_names), with_map=False)
        local = sum(focal_loss(p, masks) + dice_loss(p[:, 1], masks) for p in out.layer_probs.values())
        glob = F.cross_entropy(out.image_logits, labels) if self.recipe.use_global_loss else local * 0.0
        return {"total": glob + self.recipe.lam * local, "global": glob, "local": local}
