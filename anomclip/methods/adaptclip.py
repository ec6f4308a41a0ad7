"""AdaptCLIP (Gao et al., AAAI 2026; code gaobb/AdaptCLIP at 354d9e3), zero-shot: two small adapters
on a frozen CLIP (docs/after-anomalyclip.md, ``## AdaptCLIP``; SPEC §11.2).

Written from the equations of the authors' code; nothing is copied.

* **Frozen encoder**: DPAM in V-V mode on blocks 6..24 (¼ of the depth on), as AnomalyCLIP's. The
  global feature is ``g = x_o^(L)[CLS] @ proj`` (no ``ln_post``), the patch features
  ``P = ln_post(x_s^(L)) @ proj`` with the class token **kept at index 0**; neither is normalised
  (the adapters see the raw vectors). The cache stores exactly these (:meth:`AdaptCLIP.feature_spec`).
* **Visual adapter** (VA): ``R(x) = x + W₂ ReLU(BN(W₁ x))``, W₁ D→D/4 and W₂ D/4→D without biases,
  a BatchNorm1d in between; one copy for ``g`` and one for the tokens of ``P`` (applied token-wise,
  the batch statistics taken over all B·(N+1) tokens). Compared with **fixed** text ``T_static``:
  7 normal and 4 abnormal states of "object" × 21 templates (147 and 84 sentences), their text
  features averaged **unnormalised**, then normalised.
* **Textual adapter** (TA): 12 learnable context vectors per state, ``[SOT, X₁..X₁₂, ".", EOT]`` (no
  state, no object word), through the frozen text tower → ``T_learn`` (unit). Compared with the
  **un-adapted** ``g`` and ``P``.
* Per branch b: ``logit_b = norm(global)·Tᵀ/0.07``; ``M_b = up_bilinear(σ(norm(patches)·Tᵀ/0.07))``
  with the class token dropped after the softmax.
* Test: ``M = G_σ(½(M_VA[1] + M_TA[1]))`` (σ = 4), ``score = (σ(logit_VA)[1] + σ(logit_TA)[1] + max M) / 3``,
  NaN/inf → 0.
* Training ("alternating" in their code: each adapter against the other modality's frozen original,
  both in the same step with one Adam): ``Σ_b CE(logit_b, y) + focal(M_b, S) + dice(M_b[1], S) +
  dice(M_b[0], 1 − S)``, the mask thresholded at ½.

BatchNorm: :meth:`training_loss` uses the batch statistics while :attr:`learner` is in training mode
(the engine's loop sets it; a fresh model is) and updates the running ones; :meth:`score_features`
always uses the running statistics (their ``eval()`` at test). A training batch of one image
normalises with the running statistics (BatchNorm cannot take the statistics of one value; their
code would stop there). The few-shot prompt-query adapter is not implemented.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AnomclipError
from ..io import read_checkpoint
from ..model import blocks
from ..model.anomalyclip import AnomalyOutput
from ..model.checkpoint import tensor_digest
from ..model.dpam import DualPathEncoder, VisualFeatures
from ..model.losses import dice_loss, focal_loss
from ..model.prompt_learner import encode_prompts
from ..model.scoring import gaussian_blur, probability_maps
from ..recipes import resolve_block
from .frozen import FrozenClipMethod

#: W₁ maps D to D / REDUCTION (their ``--vl_reduction 4``, scripts/train_adaptclip.sh)
REDUCTION = 4
#: the states of the fixed text (their TextualAdapter's static lists), "{}" standing for "object"
NORMAL_STATES = ("{}", "flawless {}", "perfect {}", "unblemished {}", "{} without flaw", "{} without defect",
                 "{} without damage")
ABNORMAL_STATES = ("damaged {}", "{} with flaw", "{} with defect", "{} with damage")
#: their 21 templates (the jpeg one twice, as in their list)
TEMPLATES = tuple(f"a {t}." for t in (
    "cropped photo of the {}", "close-up photo of a {}", "close-up photo of the {}", "bright photo of a {}",
    "bright photo of the {}", "dark photo of the {}", "dark photo of a {}", "jpeg corrupted photo of the {}",
    "jpeg corrupted photo of the {}", "blurry photo of the {}", "blurry photo of a {}", "photo of a {}",
    "photo of the {}", "photo of a small {}", "photo of the small {}", "photo of a large {}",
    "photo of the large {}", "photo of the {} for visual inspection", "photo of a {} for visual inspection",
    "photo of the {} for anomaly detection", "photo of a {} for anomaly detection"))


def static_sentences(object_name: str = "object") -> tuple[list[str], list[str]]:
    """The 147 normal and 84 abnormal sentences of ``T_static`` (state-major order)."""
    def expand(states):
        return [t.format(s.format(object_name)) for s in states for t in TEMPLATES]
    return expand(NORMAL_STATES), expand(ABNORMAL_STATES)


def raw_text_features(clip_model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """open_clip's ``encode_text(ids, normalize=False)`` ``[n, D]``, run on the positions up to the last
    end-of-text token only (under the causal mask the rest cannot reach it: equal up to round-off,
    about 5× faster for these short sentences)."""
    x = clip_model.token_embedding(ids) + clip_model.positional_embedding
    mask = clip_model.attn_mask
    if mask is not None:
        n = int(ids.argmax(dim=-1).max()) + 1
        x, mask = x[:, :n], mask[:n, :n]
    for blk in clip_model.transformer.resblocks:
        x = blocks.run_block(blk, x, attn_mask=mask)
    x = clip_model.ln_final(x)[torch.arange(x.shape[0], device=x.device), ids.argmax(dim=-1)]
    proj = clip_model.text_projection
    return proj(x) if isinstance(proj, nn.Linear) else x @ proj


class ResidualAdapter(nn.Module):
    """``x + W₂ ReLU(BN(W₁ x))`` over the last dimension (any leading shape; BN over all rows)."""

    def __init__(self, dim: int, reduction: int = REDUCTION):
        super().__init__()
        self.down = nn.Linear(dim, dim // reduction, bias=False)
        self.bn = nn.BatchNorm1d(dim // reduction)
        self.up = nn.Linear(dim // reduction, dim, bias=False)

    def forward(self, x: torch.Tensor, batch_stats: bool = False) -> torch.Tensor:
        h = self.down(x.reshape(-1, x.shape[-1]))
        bn = self.bn
        use_batch = batch_stats and h.shape[0] > 1
        if use_batch:
            bn.num_batches_tracked.add_(1)
        h = F.batch_norm(h, bn.running_mean, bn.running_var, bn.weight, bn.bias, training=use_batch,
                         momentum=bn.momentum, eps=bn.eps)
        return x + self.up(F.relu(h)).reshape(x.shape)


class TextualAdapter(nn.Module):
    """Learnable contexts ``[2, n_ctx, W]`` (row 0 normal, 1 abnormal) in ``[SOT, X…, ".", EOT]``."""

    def __init__(self, token_embedding: nn.Embedding, tokenizer, n_ctx: int):
        super().__init__()
        width = token_embedding.weight.shape[1]
        self.n_ctx = n_ctx
        self.ctx_pos = nn.Parameter(torch.empty(n_ctx, width).normal_(std=0.02))
        self.ctx_neg = nn.Parameter(torch.empty(n_ctx, width).normal_(std=0.02))
        ids = tokenizer([" ".join(["X"] * n_ctx) + "."]).to(token_embedding.weight.device)
        with torch.no_grad():
            emb = token_embedding(ids)
        # computed from the frozen CLIP: not saved with the learned state
        self.register_buffer("ids", ids.repeat(2, 1), persistent=False)
        self.register_buffer("prefix", emb[:, :1].clone(), persistent=False)
        self.register_buffer("suffix", emb[:, 1 + n_ctx:].clone(), persistent=False)

    def forward(self):
        """``(embeddings [2, 77, W], ids [2, 77])`` of the normal and the abnormal prompt."""
        rows = [torch.cat([self.prefix[0], c.to(self.prefix.dtype), self.suffix[0]]) for c in (self.ctx_pos, self.ctx_neg)]
        return torch.stack(rows), self.ids


class AdaptCLIP(FrozenClipMethod):
    """AdaptCLIP's zero-shot model: visual and textual adapters on a frozen DPAM CLIP."""

    def __init__(self, clip_model, tokenizer, info, recipe):
        super().__init__(clip_model, tokenizer, info, recipe)
        if recipe.dpam_modes != ("vv",):
            raise AnomclipError(f"recipe {recipe.name!r}: AdaptCLIP's encoder is DPAM in V-V mode (dpam vv)")
        self.dpam_start = resolve_block(recipe.dpam_start, info.vision_layers)
        self.modes = ("vv",)
        self.encoder = DualPathEncoder(self.clip.visual, self.modes, self.dpam_start, self.layers,
                                       recipe.global_ln_post)
        with torch.random.fork_rng(devices=[]):  # their order: the two contexts, then local, then global
            torch.manual_seed(recipe.seed)
            textual = TextualAdapter(self.clip.token_embedding, tokenizer, recipe.n_ctx)
            local, glob = ResidualAdapter(info.embed_dim), ResidualAdapter(info.embed_dim)
        self.learner = nn.ModuleDict({"textual": textual, "visual_local": local, "visual_global": glob})
        self.learner.to(self.device)
        self._text_cache: dict = {}

    # ------------------------------------------------------------------ features
    def feature_spec(self) -> dict:
        return {"encoder": "adaptclip-raw", **self._backbone_spec(), "modes": ["vv"], "start": self.dpam_start,
                "layers": list(self.layers), "global_ln_post": self.recipe.global_ln_post,
                "normalised": False, "cls_token": True}

    def _encode(self, images: torch.Tensor):
        """``(g [B, D], {"vv": {m: [B, 1+N, D]}})``: raw projections, class token first."""
        enc, visual = self.encoder, self.clip.visual
        x = enc.embed(images)
        xs, feats = None, {}
        for l, blk in enumerate(visual.transformer.resblocks, start=1):
            if l < self.dpam_start:
                x = enc.run_block(blk, x)
            else:
                x_prev = x
                x, a = enc._dual_block(blk, x, self.modes)
                xs = (x_prev if xs is None else xs) + a["vv"]  # a copy each block: layers stay distinct
            if l in self.layers:
                feats[l] = visual.ln_post(x if xs is None else xs) @ visual.proj
        cls = visual.ln_post(x[:, 0]) if self.recipe.global_ln_post else x[:, 0]
        return cls @ visual.proj, {"vv": feats}

    def encode_image(self, images: torch.Tensor) -> VisualFeatures:
        with torch.no_grad():
            return VisualFeatures(*self._encode(images.to(self.device)))

    # ------------------------------------------------------------------ text
    def static_text(self) -> torch.Tensor:
        """``T_static`` ``[2, D]``: per state the mean of the unnormalised features, normalised."""
        key = ("static", str(self.device))
        if key not in self._text_cache:
            rows = []
            with torch.no_grad():
                for sentences in static_sentences():
                    ids = self.tokenizer(sentences).to(self.device)
                    rows.append(raw_text_features(self.clip, ids).float().mean(0))
            self._text_cache[key] = F.normalize(torch.stack(rows), dim=-1)
        return self._text_cache[key]

    def learned_text(self) -> torch.Tensor:
        """``T_learn`` ``[2, D]`` (unit), with gradients when enabled; cached per context value otherwise."""
        textual = self.learner["textual"]
        if torch.is_grad_enabled():
            return encode_prompts(self.clip, *textual())
        key = ("learned", tensor_digest((textual.ctx_pos, textual.ctx_neg)), str(self.device))
        if key not in self._text_cache:
            self._text_cache = {k: v for k, v in self._text_cache.items() if k[0] != "learned"}
            self._text_cache[key] = encode_prompts(self.clip, *textual())
        return self._text_cache[key]

    def clear_text_cache(self) -> None:
        self._text_cache.clear()

    def text_for(self, cls_names=None) -> torch.Tensor:
        """``[2, 2, D]``: ``T_static`` (the visual adapter's) and ``T_learn`` (the textual adapter's);
        object-agnostic, so the category names are not used."""
        return torch.stack([self.static_text(), self.learned_text()])

    def encode_text(self, cls_name: str | None = None) -> torch.Tensor:
        return self.text_for()

    # ------------------------------------------------------------------ scoring
    def branches(self, g: torch.Tensor, feats: dict, text: torch.Tensor, batch_stats: bool = False):
        """``{"va": (logits [B, 2], maps [B, 2, S, S]), "ta": (…)}`` of the two adapters."""
        t = self.recipe.temperature
        patches = feats["vv"][self.layers[-1]]  # the last layer (theirs: features_list[-1])
        adapted = {"va": (self.learner["visual_global"](g, batch_stats), self.learner["visual_local"](patches, batch_stats),
                          text[0]),
                   "ta": (g, patches, text[1])}
        out = {}
        for name, (gl, pa, tx) in adapted.items():
            logits = F.normalize(gl, dim=-1) @ tx.t() / t
            patch_logits = F.normalize(pa, dim=-1) @ tx.t() / t
            out[name] = (logits, probability_maps(patch_logits[:, 1:], self.image_size))  # class token dropped
        return out

    def score_features(self, g: torch.Tensor, feats: dict, text: torch.Tensor, with_map: bool = True,
                       sigma: float | None = None) -> AnomalyOutput:
        br = self.branches(g, feats, text)
        (lv, mv), (lt, mt) = br["va"], br["ta"]
        sigma = self.recipe.sigma if sigma is None else sigma
        amap = gaussian_blur(0.5 * (mv[:, 1] + mt[:, 1]), sigma)
        pv, pt = lv.softmax(-1), lt.softmax(-1)
        score = (pv[:, 1] + pt[:, 1] + amap.flatten(1).max(1).values) / 3
        # their test.py L312–313: NaN and ±inf to 0 in the map and the score, after the score is formed
        amap = torch.nan_to_num(amap, nan=0.0, posinf=0.0, neginf=0.0)
        score = torch.nan_to_num(score, nan=0.0, posinf=0.0, neginf=0.0)
        image_logits = (0.5 * (pv + pt)).log()  # softmax of these = the mean of the two branches' probabilities
        return AnomalyOutput(score, amap if with_map else None, image_logits, {self.layers[-1]: 0.5 * (mv + mt)})

    def training_loss(self, g: torch.Tensor, feats: dict, labels: torch.Tensor, masks: torch.Tensor,
                      cls_names=None) -> dict:
        """Σ over VA and TA of ``CE + focal + dice(anomalous, S) + dice(normal, 1 − S)`` (weights 1)."""
        r = self.recipe
        text = torch.stack([self.static_text(), self.learned_text()])
        br = self.branches(g, feats, text, batch_stats=self.learner.training)
        s = (masks > 0.5).to(g.dtype)
        y = labels.reshape(-1).long().to(g.device)
        glob = local = text.sum() * 0.0
        for logits, maps in br.values():
            if r.use_global_loss:
                glob = glob + F.cross_entropy(logits, y)
            if r.use_focal_loss:
                local = local + focal_loss(maps, s)
            if r.use_dice_loss:
                local = local + dice_loss(maps[:, 1], s) + dice_loss(maps[:, 0], 1 - s)
        return {"total": glob + r.lam * local, "global": glob, "local": local}

    # ------------------------------------------------------------------ the authors' checkpoints
    def load_authors_checkpoint(self, path: str | os.PathLike) -> None:
        """Import their ``epoch_15.pth`` (HuggingFace csgaobb/AdaptCLIP): the ``textual_learner``
        contexts and the ``visual_learner`` adapters (BatchNorm statistics included); ``pq_learner``
        is ignored (zero-shot)."""
        ckpt = read_checkpoint(path)
        tl, vl = (ckpt.get(k) if isinstance(ckpt, dict) else None for k in ("textual_learner", "visual_learner"))
        if not isinstance(tl, dict) or not isinstance(vl, dict) or "ctx_pos" not in tl:
            raise AnomclipError(f"{path} has no 'textual_learner' and 'visual_learner' entries (not an AdaptCLIP "
                                "checkpoint)")
        sd = {f"textual.{k}": tl[k].reshape(-1, tl[k].shape[-1]) for k in ("ctx_pos", "ctx_neg")}
        theirs = {"visual_local": "local_adater", "visual_global": "global_adapter"}
        ours = {"down.weight": "fc.0.weight", "bn.weight": "fc.1.weight", "bn.bias": "fc.1.bias",
                "bn.running_mean": "fc.1.running_mean", "bn.running_var": "fc.1.running_var",
                "bn.num_batches_tracked": "fc.1.num_batches_tracked", "up.weight": "fc.3.weight"}
        for mine, their in theirs.items():
            for a, b in ours.items():
                key = f"{their}.{b}"
                if key not in vl:
                    raise AnomclipError(f"{path}: visual_learner key {key!r} missing (not an AdaptCLIP checkpoint)")
                sd[f"{mine}.{a}"] = vl[key]
        own = self.learner.state_dict()
        for k, v in sd.items():
            if tuple(v.shape) != tuple(own[k].shape):
                raise AnomclipError(f"{path}: {k} has shape {tuple(v.shape)}, this backbone needs {tuple(own[k].shape)}")
        self.learner.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()})
        self.clear_text_cache()
