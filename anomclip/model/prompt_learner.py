"""The object-agnostic prompt learner and the text encoder with deep prompts (docs/anomalyclip.md §3).

Two prompts, written with ``E`` learnable word embeddings ``X``::

    normal:    "X X … X object."
    abnormal:  "X X … X damaged object."

(object-aware variant: the category name instead of ``object``; other state words instead of
``damaged``). The ``X`` positions (token indices 1..E, right after the start-of-text token) are
replaced by learnable ``[E, D_text]`` tensors — one per prompt (``unshared``, the default) or
one for both (``shared``). **Deep prompts** ("textual prompt tuning"): ``depth − 1`` learnable
``[length, D_text]`` tensors, shared by both prompts, *overwrite* token positions 1..length at
the input of text blocks 2..depth. The text feature is ``ln_final(x)[EOT] @ text_projection``,
L2-normalised; row 0 is normal, row 1 abnormal.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AnomclipError
from . import blocks


def prompt_sentences(n_ctx: int, state_word: str = "damaged", object_name: str = "object") -> tuple[str, str]:
    """The normal and abnormal template sentences, with ``X`` for each learnable token."""
    ctx = " ".join(["X"] * n_ctx)
    name = object_name.replace("_", " ")
    normal = f"{ctx} {name}." if ctx else f"{name}."
    abnormal = f"{ctx} {state_word} {name}." if ctx else f"{state_word} {name}."
    return normal, abnormal


class PromptLearner(nn.Module):
    """Learnable context (``ctx``) and deep text prompts; produces the two prompts' embeddings.

    Trainable parameters: ``E·D·2`` (unshared) or ``E·D`` (shared) plus ``(depth−1)·length·D``;
    43,008 for ViT-L/14 (D = 768, E = 12, depth 9, length 4).
    """

    def __init__(self, token_embedding: nn.Embedding, tokenizer, n_ctx: int = 12, shared: bool = False,
                 state_word: str = "damaged", object_aware: bool = False, depth: int = 9,
                 length: int = 4, text_layers: int = 12, fp16_quirk: bool = False, seed: int | None = 0):
        super().__init__()
        if depth > text_layers:
            raise AnomclipError(f"prompt depth {depth} exceeds the text tower's {text_layers} blocks")
        width = token_embedding.weight.shape[1]
        self.n_ctx, self.shared, self.state_word = n_ctx, shared, state_word
        self.object_aware, self.depth, self.length, self.fp16_quirk = object_aware, depth, length, fp16_quirk
        self.width = width
        gen = torch.Generator().manual_seed(seed) if seed is not None else None

        def init(*shape):  # N(0, 0.02), as the authors
            return nn.Parameter(torch.randn(*shape, generator=gen) * 0.02)

        dev = token_embedding.weight.device
        self.ctx_normal = init(n_ctx, width)
        self.ctx_abnormal = None if shared else init(n_ctx, width)
        n_deep = max(depth - 1, 0) if length > 0 else 0
        self.deep_prompts = nn.ParameterList([init(length, width) for _ in range(n_deep)])
        self.to(dev)
        # frozen pieces: not registered as modules/buffers so they never enter state_dict
        self._token_embedding = [token_embedding]
        self._tokenizer = tokenizer
        self._fixed: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    # ------------------------------------------------------------------ prompts
    def _fixed_tokens(self, object_name: str):
        """Token ids [2, 77] and their frozen embeddings [2, 77, D] for one object name."""
        if object_name not in self._fixed:
            ids = self._tokenizer(list(prompt_sentences(self.n_ctx, self.state_word, object_name)))
            emb_layer = self._token_embedding[0]
            ids = ids.to(emb_layer.weight.device)
            with torch.no_grad():
                emb = emb_layer(ids)
            self._fixed[object_name] = (ids, emb)
        return self._fixed[object_name]

    def set_fixed_tokens(self, ids: torch.Tensor, embeddings: torch.Tensor, object_name: str = "object") -> None:
        """Use given token ids ``[2, 77]`` and frozen embeddings ``[2, 77, D]`` for ``object_name``
        (an imported checkpoint's own buffers, e.g. Crane's token prefix/suffix) instead of
        computing them from the loaded token embedding. The context positions are ignored."""
        ref_ids, ref_emb = self._fixed_tokens(object_name)
        if tuple(ids.shape) != tuple(ref_ids.shape) or tuple(embeddings.shape) != tuple(ref_emb.shape):
            raise AnomclipError(f"fixed tokens {tuple(ids.shape)} / {tuple(embeddings.shape)} do not fit the "
                                f"prompts {tuple(ref_ids.shape)} / {tuple(ref_emb.shape)}")
        self._fixed[object_name] = (ids.to(ref_ids), embeddings.to(ref_emb))

    def object_name(self, cls_name: str | None) -> str:
        if self.object_aware:
            if not cls_name:
                raise AnomclipError("object-aware prompts need a category name")
            return cls_name
        return "object"

    def forward(self, cls_name: str | None = None):
        """Returns ``(embeddings [2, 77, D], token ids [2, 77])`` of the normal/abnormal prompts."""
        ids, emb = self._fixed_tokens(self.object_name(cls_name))
        ctx_n = self.ctx_normal
        ctx_a = self.ctx_normal if self.ctx_abnormal is None else self.ctx_abnormal
        ctx = torch.stack([ctx_n, ctx_a]).to(emb.dtype)
        e = self.n_ctx
        return torch.cat([emb[:, :1], ctx, emb[:, 1 + e:]], dim=1), ids

    def deep(self, i: int) -> torch.Tensor:
        """Deep prompt inserted at the input of text block ``i + 2`` (1-based)."""
        t = self.deep_prompts[i]
        return t.half().float() if self.fp16_quirk else t  # authors' fp16 rounding quirk

    # ------------------------------------------------------------------ import
    def load_authors_state(self, sd: dict, source: str = "checkpoint") -> None:
        """Load the authors' ``prompt_learner`` dict (docs/anomalyclip.md §9): ctx_pos/ctx_neg, compound_prompts_text.*"""
        def get(key):
            if key not in sd:
                raise AnomclipError(f"{source}: key {key!r} missing (not an AnomalyCLIP prompt_learner checkpoint)")
            return sd[key]

        pos, neg = get("ctx_pos"), get("ctx_neg")
        deep = sorted((k for k in sd if k.startswith("compound_prompts_text.")), key=lambda k: int(k.split(".")[-1]))
        pos = pos.reshape(-1, pos.shape[-1])
        neg = neg.reshape(-1, neg.shape[-1])
        want = (self.n_ctx, self.width)
        if tuple(pos.shape) != want or tuple(neg.shape) != want:
            raise AnomclipError(
                f"{source}: context is {tuple(pos.shape)} but this backbone/recipe needs {want} "
                f"(E={self.n_ctx}, text width {self.width}): checkpoint for another backbone?"
            )
        if self.shared:
            raise AnomclipError(f"{source}: the authors' checkpoint has unshared prompts; use shared_ctx=False")
        if len(deep) != len(self.deep_prompts):
            raise AnomclipError(f"{source}: {len(deep)} deep prompts but the recipe has depth {self.depth} "
                                f"({len(self.deep_prompts)} tensors)")
        for k, p in zip(deep, self.deep_prompts):
            if tuple(sd[k].shape) != tuple(p.shape):
                raise AnomclipError(f"{source}: {k} is {tuple(sd[k].shape)}, expected {tuple(p.shape)}")
        with torch.no_grad():
            self.ctx_normal.copy_(pos)
            self.ctx_abnormal.copy_(neg)
            for k, p in zip(deep, self.deep_prompts):
                p.copy_(sd[k])


def encode_prompts(clip_model: nn.Module, embeddings: torch.Tensor, ids: torch.Tensor,
                   learner: PromptLearner | None = None) -> torch.Tensor:
    """Run open_clip's text tower on prompt embeddings, inserting deep prompts; → [P, D] normalised.

    At the input of text block ``j`` (1-based, ``2 ≤ j ≤ depth``) token positions
    ``1..length`` are overwritten by deep prompt ``j − 2``. With ``learner=None`` this is
    open_clip's ``encode_text`` on the same embeddings.

    Under CLIP's causal mask a token sees only the tokens before it, so the end-of-text token
    that becomes the text feature never sees the padding after it: the tower runs on the
    positions up to the last end-of-text token of the batch only (about 20 of 77 for
    AnomalyCLIP's prompts). That is the same function; the sums it makes are shorter by exact
    zeros, so it equals the full-length pass to float round-off (tested), at a quarter of the
    cost — training on cached features is mostly this tower. A learner with the authors' fp16
    quirk (the ``official-fp16-quirk`` recipe, which reproduces their arithmetic bit for bit)
    runs all 77 positions, as their code does (tested bit for bit). The blocks run as
    :func:`blocks.forward_block` (open_clip's block written out: bit for bit its result when
    training, a quarter less time), the fp16 quirk's through open_clip's own block.
    """
    transformer = clip_model.transformer
    x = embeddings + clip_model.positional_embedding.to(embeddings.dtype)
    mask = clip_model.attn_mask
    authors_arithmetic = learner is not None and learner.fp16_quirk
    if mask is not None and not authors_arithmetic:  # causal: drop the positions after the last end-of-text token
        n = int(ids.argmax(dim=-1).max()) + 1
        x, mask = x[:, :n], mask[:n, :n]
    n_deep = len(learner.deep_prompts) if learner is not None else 0
    for j, blk in enumerate(transformer.resblocks, start=1):
        if 2 <= j <= n_deep + 1:
            d = learner.deep(j - 2).to(x.dtype)
            x = torch.cat([x[:, :1], d.expand(x.shape[0], -1, -1), x[:, 1 + d.shape[0]:]], dim=1)
        x = blocks.run_block(blk, x, attn_mask=mask) if authors_arithmetic else blocks.forward_block(blk, x, mask)
    x = clip_model.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), ids.argmax(dim=-1)]
    proj = clip_model.text_projection
    x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
    return F.normalize(x, dim=-1)
