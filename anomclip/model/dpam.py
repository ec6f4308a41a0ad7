"""DPAM: the diagonally prominent attention map, as a dual-path visual encoder (docs/anomalyclip.md §2).

CLIP's own tokens ``x_o`` run through the ViT untouched (the **original path**). From block
``s0`` on, a **surrogate path** ``x_s`` adds, block by block, a second attention computed from
the *same* ``ln_1(x_o)`` but with a diagonally prominent attention map::

    a_s^(l) = out_proj( softmax(v vᵀ · d^-½) v )      # V-V mode (Q-Q: q qᵀ, K-K: k kᵀ, Q-K: q kᵀ)
    x_s^(s0) = x_o^(s0-1) + a_s^(s0),   x_s^(l) = x_s^(l-1) + a_s^(l)

The surrogate path has no MLP and no ``ln_2``. Its attention input is always the original
path's ``ln_1`` output, so one ``in_proj`` per block serves both paths: the extra cost of DPAM
is one more attention product and one ``out_proj`` per block and mode.

Outputs: the global feature ``x_o^(L)[CLS] @ proj`` (``ln_post`` optional, authors: off) and,
for each requested block m, the patch features ``ln_post(x_s^(m)) @ proj`` without the CLS
token. With ``modes=()`` (DPAM off) patch features come from the original path.

Built on open_clip's modules, through public attributes only (:mod:`anomclip.model.blocks`,
which holds for open_clip 2.26 to its development branch): it reads each block's ``ln_1``,
``attn.in_proj_*``, ``attn.out_proj``, ``ln_2`` and ``mlp``, and runs blocks before ``s0`` as
:func:`blocks.forward_block` (open_clip's block written out, ~15 % faster than its
``nn.MultiheadAttention`` at ViT-L size). The last block's original path computes the class
token only: its patch tokens are the surrogate path's (DPAM on) and its attention rows and MLP
for them would be thrown away. Attention products use
``torch.nn.functional.scaled_dot_product_attention``.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AnomclipError
from . import blocks


class VisualFeatures(NamedTuple):
    """What the dual-path encoder returns for a batch, whatever the recipe (all L2-normalised).

    ``patches`` is always nested by DPAM mode, then by block: ``{"vv": {24: [B, N, D]}}``;
    an ensemble has several modes, DPAM off has the single mode ``"none"``. Unpacks as
    ``g, patches = features``.
    """

    global_feature: torch.Tensor  # [B, D]
    patches: dict  # {mode: {layer: [B, N, D]}}

    def by_layer(self, mode: str | None = None) -> dict:
        """``{layer: [B, N, D]}`` of one mode: ``mode``, or the only one there is."""
        if mode is None:
            if len(self.patches) != 1:
                raise AnomclipError(f"the features hold several DPAM modes ({', '.join(self.patches)}): name one")
            mode = next(iter(self.patches))
        if mode not in self.patches:
            raise AnomclipError(f"no DPAM mode {mode!r} in these features (have {', '.join(self.patches)})")
        return self.patches[mode]


def attention_pair(mode: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
    """The (query, key) tensors whose product gives the attention map of a DPAM ``mode``."""
    return {"vv": (v, v), "qq": (q, q), "kk": (k, k), "qk": (q, k)}[mode]


#: Crane's E-Attn (docs/after-anomalyclip.md): the surrogate attention is the **sum** of the three
#: self-correlation maps, ``(softmax(q qᵀ s) + softmax(k kᵀ s) + softmax(v vᵀ s)) v`` (rows sum to 3),
#: one ``out_proj`` (its bias added once). Not an ensemble: one surrogate path.
EATTN = "eattn"


class DualPathEncoder(nn.Module):
    """DPAM around an open_clip ``VisionTransformer`` (frozen; no parameters of its own).

    Args:
        visual: ``clip_model.visual`` (open_clip ViT, ``pool_type='tok'``).
        modes: DPAM modes of the surrogate path(s), e.g. ``("vv",)``; ``()`` = DPAM off.
        start: first block (1-based) of the surrogate path (authors: 6 of 24).
        layers: blocks (1-based) whose patch features are returned.
        global_ln_post: apply ``ln_post`` to the global feature (open_clip: yes; authors: no).
    """

    def __init__(self, visual: nn.Module, modes=("vv",), start: int = 6, layers=(24,),
                 global_ln_post: bool = False):
        super().__init__()
        self.visual = visual
        self.depth = len(visual.transformer.resblocks)
        self.modes = tuple(modes)
        self.start = int(start)
        self.layers = tuple(sorted(set(int(m) for m in layers)))
        self.global_ln_post = global_ln_post
        if not 1 <= self.start <= self.depth:
            raise AnomclipError(f"DPAM start block {self.start} is outside 1..{self.depth}")
        for m in self.layers:
            if not 1 <= m <= self.depth:
                raise AnomclipError(f"feature layer {m} is outside 1..{self.depth}")
            if self.modes and m < self.start:
                raise AnomclipError(f"feature layer {m} comes before the DPAM start block {self.start}")
        if getattr(visual, "attn_pool", None) is not None or getattr(visual, "pool_type", "tok") != "tok":
            raise AnomclipError("DPAM needs a ViT with a class token (pool_type 'tok', no attentional pooler)")

    # ---------------------------------------------------------------- building blocks (public: the
    # baselines run the frozen ViT block by block with them)
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The token sequence entering block 1: patch embedding, class token, positions, ``ln_pre``."""
        return blocks.embed_tokens(self.visual, images)

    def run_block(self, blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """One of open_clip's residual blocks on batch-first tokens ``[B, N+1, W]``, unchanged."""
        return blocks.run_block(blk, x)

    def project(self, tokens: torch.Tensor) -> torch.Tensor:
        """``ln_post(tokens) @ proj``, L2-normalised."""
        return F.normalize(self.visual.ln_post(tokens) @ self.visual.proj, dim=-1)

    # ---------------------------------------------------------------- forward
    def forward(self, images: torch.Tensor) -> VisualFeatures:
        """Encode images: the global feature and the patch features of every mode and layer.

        With DPAM off the patches are keyed by the mode ``"none"`` (the original path).
        """
        x = self.embed(images)  # [B, N+1, W]
        surrogate: dict[str, torch.Tensor] = {}
        feats: dict[str, dict[int, torch.Tensor]] = {m: {} for m in (self.modes or ("none",))}
        last_needed = max(self.layers)
        for l, blk in enumerate(self.visual.transformer.resblocks, start=1):
            # the last block's patch tokens on the original path are read only as DPAM-off features
            cls_only = l == self.depth and (bool(self.modes) or l not in self.layers)
            if not (self.modes and self.start <= l <= last_needed):
                x = blocks.forward_block(blk, x, cls_only=cls_only)
            else:
                x_prev = x
                x, a_s = self._dual_block(blk, x, self.modes, cls_only=cls_only)
                for mode, a in a_s.items():  # x_s^(s0) = x_o^(s0-1) + a_s; then x_s += a_s
                    surrogate[mode] = surrogate.get(mode, x_prev) + a
            if l in self.layers:
                for mode in feats:
                    tokens = x if mode == "none" else surrogate[mode]
                    feats[mode][l] = self.project(tokens[:, 1:])
        cls = x[:, 0]
        if self.global_ln_post:
            cls = self.visual.ln_post(cls)
        return VisualFeatures(F.normalize(cls @ self.visual.proj, dim=-1), feats)

    def attention_maps(self, images: torch.Tensor, block: int) -> dict[str, torch.Tensor]:
        """The attention maps of ``block`` (1-based) for plotting: ``{mode: [B, heads, N+1, N+1]}``.

        All four products are returned, ``"qk"`` being CLIP's ordinary attention; only the
        original path up to ``block`` is run (the maps do not depend on the surrogate path).
        """
        if not 1 <= int(block) <= self.depth:
            raise AnomclipError(f"block {block} is outside 1..{self.depth}")
        x = self.embed(images)
        resblocks = self.visual.transformer.resblocks
        for blk in list(resblocks)[: int(block) - 1]:
            x = self.run_block(blk, x)
        blk = resblocks[int(block) - 1]
        q, k, v = blocks.qkv_heads(blk, x)
        scale = q.shape[-1] ** -0.5
        maps = {}
        for mode in ("qk", "qq", "kk", "vv"):
            a, b = attention_pair(mode, q, k, v)
            maps[mode] = torch.softmax(a @ b.transpose(-2, -1) * scale, dim=-1)
        return maps

    def _dual_block(self, blk: nn.Module, x: torch.Tensor, modes, cls_only: bool = False):
        """One block on both paths. Returns (x_o^(l), {mode: a_s^(l)}); with ``cls_only`` the
        original path's output is its class token alone (``[B, 1, W]``: the last block, whose
        patch tokens the surrogate path replaces)."""
        q, k, v = blocks.qkv_heads(blk, x)

        def eattn():  # Crane: Σ over the three maps of A(E) v, then one out_proj
            return blocks.project_heads(blk, sum(F.scaled_dot_product_attention(e, e, v) for e in (q, k, v)))

        if cls_only:
            x_new = x[:, :1] + blocks.attention_output(blk, q[:, :, :1], k, v)
        else:
            x_new = x + blocks.attention_output(blk, q, k, v)
        return blocks.mlp_residual(blk, x_new), {
            mode: eattn() if mode == EATTN else blocks.attention_output(blk, *attention_pair(mode, q, k, v), v)
            for mode in modes}
