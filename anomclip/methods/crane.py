"""Crane (Salehy et al., 2025; code AlirezaSalehy/Crane at 39181f9, a fork of AnomalyCLIP's code).

AnomalyCLIP's engine with three changes (docs/after-anomalyclip.md, ``## Crane``):

* **E-Attn** on the surrogate path (dpam mode ``eattn``, blocks 6..24 as DPAM): per head
  ``(softmax(q qᵀ s) + softmax(k kᵀ s) + softmax(v vᵀ s)) v``, then one ``out_proj``
  (:mod:`anomclip.model.dpam`). The global feature takes ``ln_post`` (``global_ln_post=True``).
* **Image-context prompts** (training only, as their ``test.py`` defaults): the unit global
  feature ``g`` (no learnable projection) is written into the token sequence after the 12
  context tokens, ``[SOT, X1..X12, g, (damaged) object, ., EOT, …]``; the last padding slot
  is dropped, so the end-of-text token moves one position. Text features are per image,
  ``[B, 2, D]``. ``context_at_test=True`` uses them at evaluation too.
* **Score-based pooling** (SBP) for the image score: ``w_p = σ(mean_m L_m(p))[1]``,
  ``z = normalize(Σ_p w_p · mean_m P_m(p))``, ``g' = normalize(α z + (1 − α) g)`` with α = ½,
  ``score = σ(g'·Tᵀ / τ)[1]``.

Map at test (``test.sh``: ``--soft_mean True``): ``G_σ(mean_m up_bilinear(σ(L_m))[1])``.
Training loss (their ``train.py``): per layer the probabilities upsampled **nearest** to the mask,
``λ·Σ_m (focal_m + dice(½(1 − S_n + S_a), mask)) + 0.2·CE(g'·Tᵀ / 0.01, y)``; λ = 2 per distinct
layer, 8 for the ``crane`` recipe's single layer 24 (their four copies of it).
"""
from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F

from ..errors import AnomclipError
from ..io import read_checkpoint
from ..model.anomalyclip import AnomalyCLIP, AnomalyOutput
from ..model.losses import dice_loss, focal_loss
from ..model.prompt_learner import encode_prompts
from ..model.scoring import gaussian_blur, probability_maps, similarity_logits

#: weight α of the pooled patch feature in the fused image feature (their code: fixed 0.5)
SBP_ALPHA = 0.5
#: temperature of the image-level cross-entropy in training (their train.py; 0.07 at test)
TRAIN_IMAGE_TEMPERATURE = 0.01
#: weight of the image-level cross-entropy in the total loss
GLOBAL_WEIGHT = 0.2
#: the buffers Crane's prompt learner saves besides its parameters (state-dict keys of their code)
AUTHORS_BUFFERS = ("token_prefix_pos", "token_suffix_pos", "token_prefix_neg", "token_suffix_neg",
                   "tokenized_prompts_pos", "tokenized_prompts_neg")


def score_based_pooling(patches: list[torch.Tensor], logits: list[torch.Tensor], g: torch.Tensor,
                        alpha: float = SBP_ALPHA) -> torch.Tensor:
    """The fused image feature ``g'`` ``[B, D]`` from the patch features ``[B, N, D]`` and logits
    ``[B, N, 2]`` of every layer and the unit global feature ``g``."""
    w = torch.stack(logits).mean(0).softmax(-1)[..., 1:]  # [B, N, 1]: mean of logits, then softmax
    z = F.normalize((torch.stack(patches).mean(0) * w).sum(1), dim=-1)
    return F.normalize(alpha * z + (1 - alpha) * g, dim=-1)


class Crane(AnomalyCLIP):
    """Crane on a frozen open_clip model (the ``crane`` and ``crane-paper`` recipes)."""

    #: use the image-context prompts at evaluation as well (their code: no)
    context_at_test: bool = False

    def __init__(self, clip_model, tokenizer, info, recipe):
        super().__init__(clip_model, tokenizer, info, recipe)
        if info.embed_dim != info.text_width:
            raise AnomclipError(
                f"Crane writes the image feature (width {info.embed_dim}) into the text tokens (width "
                f"{info.text_width}): backbone {info.name} has different widths")

    # ------------------------------------------------------------------ text
    def context_text(self, g: torch.Tensor) -> torch.Tensor:
        """Text features ``[B, 2, D]`` of the prompts with each image's global feature ``g`` inserted."""
        emb, ids = self.prompt_learner(None)  # [2, 77, W], [2, 77]
        e = 1 + self.prompt_learner.n_ctx  # g goes right after SOT and the context tokens
        b, w = g.shape[0], emb.shape[-1]
        tok = g.to(emb.dtype)[:, None, None, :].expand(b, 2, 1, w)
        seq = torch.cat([emb[:, :e].expand(b, -1, -1, -1), tok, emb[:, e:-1].expand(b, -1, -1, -1)], dim=2)
        ids = torch.cat([ids[:, :e], ids[:, e:e + 1], ids[:, e:-1]], dim=1)  # EOT one position later
        text = encode_prompts(self.clip, seq.reshape(2 * b, *seq.shape[2:]), ids.repeat(b, 1), self.prompt_learner)
        return text.view(b, 2, -1)

    def _text(self, g, cls_names, train: bool):
        return self.context_text(g) if (train or self.context_at_test) else self.text_for(cls_names)

    # ------------------------------------------------------------------ scoring
    def _logits(self, feats: dict, text: torch.Tensor, t: float):
        """Per layer: the patch logits ``[B, N, 2]`` (modes averaged) and the patch features (all modes)."""
        logits = [torch.stack([similarity_logits(feats[m][l], text, t) for m in feats]).mean(0) for l in self.layers]
        patches = [feats[m][l] for l in self.layers for m in feats]
        return logits, patches

    def score_features(self, g: torch.Tensor, feats: dict, text: torch.Tensor, with_map: bool = True,
                       sigma: float | None = None) -> AnomalyOutput:
        """Scores from cached features: SBP image score and the soft mean of the layers' maps."""
        t = self.recipe.temperature
        logits, patches = self._logits(feats, text, t)
        image_logits = similarity_logits(score_based_pooling(patches, logits, g), text, t)
        layer_probs = {l: probability_maps(lg, self.image_size) for l, lg in zip(self.layers, logits)}
        amap = None
        if with_map:
            s = torch.stack(list(layer_probs.values())).mean(0)[:, 1]
            amap = gaussian_blur(s, self.recipe.sigma if sigma is None else sigma)
        return AnomalyOutput(image_logits.softmax(-1)[:, 1], amap, image_logits, layer_probs)

    def forward(self, images: torch.Tensor, cls_names=None) -> AnomalyOutput:
        g, feats = self.encode_image(images)
        return self.score_features(g, feats, self._text(g, cls_names, train=False))

    def training_loss(self, g: torch.Tensor, feats: dict, labels: torch.Tensor, masks: torch.Tensor,
                      cls_names=None) -> dict:
        """``λ·Σ_m (focal_m + dice_m) + 0.2·CE(τ = 0.01)`` with image-context prompts, nearest maps."""
        r = self.recipe
        text = self._text(g, cls_names, train=True)
        logits, patches = self._logits(feats, text, r.temperature)
        local = text.sum() * 0.0  # on the graph even with both terms off
        m = masks.to(text.dtype)
        for lg in logits:
            b, n, c = lg.shape
            side = int(round(math.sqrt(n)))
            probs = lg.softmax(-1).transpose(1, 2).reshape(b, c, side, side)
            probs = F.interpolate(probs, size=tuple(m.shape[-2:]), mode="nearest")
            if r.use_focal_loss:
                local = local + focal_loss(probs, m)
            if r.use_dice_loss:
                local = local + dice_loss((1 - probs[:, 0] + probs[:, 1]) / 2, m)
        fused = score_based_pooling(patches, logits, g)
        image_logits = similarity_logits(fused, text, TRAIN_IMAGE_TEMPERATURE)
        glob = (F.cross_entropy(image_logits, labels.reshape(-1).long()) if r.use_global_loss
                else image_logits.sum() * 0.0)
        return {"total": GLOBAL_WEIGHT * glob + r.lam * local, "global": glob, "local": local}

    # ------------------------------------------------------------------ the authors' checkpoints
    def load_authors_checkpoint(self, path: str | os.PathLike) -> None:
        """Import Crane's released prompts (``checkpoints/trained_on_*_crane/epoch_5.pth``): the
        context and deep prompts, and the token prefix/suffix embeddings saved with them."""
        ckpt = read_checkpoint(path)
        sd = ckpt.get("prompt_learner")
        if not isinstance(sd, dict) or "ctx_pos" not in sd:
            raise AnomclipError(f"{path} has no 'prompt_learner' entry with ctx_pos (not a Crane checkpoint)")
        missing = [k for k in AUTHORS_BUFFERS if k not in sd]
        if missing:
            raise AnomclipError(f"{path}: key {missing[0]!r} missing (not a Crane prompt_learner checkpoint)")
        self.prompt_learner.load_authors_state(sd, source=str(path))
        ids = torch.cat([sd["tokenized_prompts_pos"].reshape(1, -1), sd["tokenized_prompts_neg"].reshape(1, -1)])
        e, w = self.prompt_learner.n_ctx, self.prompt_learner.width
        rows = []
        for kind in ("pos", "neg"):
            prefix = sd[f"token_prefix_{kind}"].reshape(-1, w)
            suffix = sd[f"token_suffix_{kind}"].reshape(-1, w)
            rows.append(torch.cat([prefix, torch.zeros(e, w, dtype=prefix.dtype), suffix]))
        emb = torch.stack(rows).float()
        if tuple(emb.shape[:2]) != tuple(ids.shape):
            raise AnomclipError(f"{path}: token buffers of {tuple(emb.shape[:2])} positions do not fit its token "
                                f"ids {tuple(ids.shape)} (n_ctx {e}?)")
        self.prompt_learner.set_fixed_tokens(ids.long(), emb)
        self.clear_text_cache()
