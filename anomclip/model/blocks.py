"""What anomclip reads of open_clip's transformers, through public attributes only.

DPAM, the deep text prompts and the baselines run open_clip's towers block by block. Three
things about a tower differ between open_clip releases, and are read here, the same way for
all of them:

* **The token layout a block expects.** Up to 2.25 every block ran sequence-first; 2.26 to 3.x
  build ``nn.MultiheadAttention`` with ``batch_first`` (True by default); the development
  branch (4.2.0.dev0) replaced it with open_clip's own ``Attention``, always batch-first. A
  block's layout is therefore read from its attention module: torch's public
  ``nn.MultiheadAttention.batch_first`` where it is one, batch-first otherwise.
* **The query/key/value projection.** Both attention modules hold one packed ``in_proj_weight``
  ``[3W, W]`` (and ``in_proj_bias``), ``num_heads`` and ``out_proj``. Variants that change the
  attention product (q/k normalisation, scaled cosine attention, per-head scales, separate
  projections) are refused with one line rather than silently computed as plain attention.
* **A block's arithmetic**, written out (:func:`forward_block`): ``ln_1``, the packed q/k/v
  projection, ``scaled_dot_product_attention``, ``out_proj``, ``ls_1``; ``ln_2``, ``mlp``,
  ``ls_2``: the operations open_clip's block performs, without ``nn.MultiheadAttention``'s
  argument handling (a quarter of the text tower's time in training, where the result is bit
  for bit open_clip's; at inference its fused fast path differs by float round-off), and, for
  the last block of a ViT whose patch tokens nobody reads, for the class token alone.
* **The token sequence entering block 1** (patch embedding, class token, positions, patch
  dropout, ``ln_pre``), written out from the public modules of open_clip's ``VisionTransformer``
  instead of calling its private ``_embeds``; tests check the whole tower against open_clip's
  own ``encode_image``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AnomclipError


def is_batch_first(block: nn.Module) -> bool:
    """Whether ``block`` (an open_clip residual attention block) takes ``[B, N, W]`` tokens."""
    attn = getattr(block, "attn", None)
    if isinstance(attn, nn.MultiheadAttention):
        return bool(attn.batch_first)
    return True  # open_clip's own Attention (development branch): batch-first only


def run_block(block: nn.Module, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """One of open_clip's blocks on batch-first tokens ``[B, N, W]``, whatever layout it expects."""
    kwargs = {} if attn_mask is None else {"attn_mask": attn_mask}
    if is_batch_first(block):
        return block(x, **kwargs)
    return block(x.transpose(0, 1), **kwargs).transpose(0, 1)


def qkv_heads(block: nn.Module, x: torch.Tensor):
    """Per-head ``q, k, v`` ``[B, h, N, d]`` of a block from one packed projection of ``ln_1(x)``."""
    weight, bias, heads = qkv_projection(block)
    b, n, w = x.shape
    q, k, v = F.linear(block.ln_1(x), weight, bias).chunk(3, dim=-1)
    return tuple(t.view(b, n, heads, w // heads).transpose(1, 2) for t in (q, k, v))


def project_heads(block: nn.Module, a: torch.Tensor) -> torch.Tensor:
    """Per-head attention outputs ``[B, h, n, d]`` merged and projected: ``ls_1(out_proj(·))``, ``[B, n, W]``."""
    b, h, n, d = a.shape
    return getattr(block, "ls_1", nn.Identity())(block.attn.out_proj(a.transpose(1, 2).reshape(b, n, h * d)))


def attention_output(block: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """``ls_1(out_proj(softmax(q kᵀ/√d + mask) v))`` with the heads merged: ``[B, n_q, W]``."""
    return project_heads(block, F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask))


def mlp_residual(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The block's second half: ``x + ls_2(mlp(ln_2(x)))``."""
    return x + getattr(block, "ls_2", nn.Identity())(block.mlp(block.ln_2(x)))


def forward_block(block: nn.Module, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                  cls_only: bool = False) -> torch.Tensor:
    """open_clip's residual block on batch-first tokens ``[B, N, W]``, its operations written out:
    ``x + ls_1(out_proj(softmax(q kᵀ/√d + mask) v))``, then ``x + ls_2(mlp(ln_2(x)))``, with q, k, v
    from one packed projection of ``ln_1(x)``. ``cls_only``: the output of the first token only
    (``[B, 1, W]``; its attention still reads every token), for a last block whose other tokens
    are not used. A block whose attention is not plain (:func:`qkv_projection` refuses it), or
    has dropout while training, runs as open_clip's own."""
    attn = block.attn
    try:
        q, k, v = qkv_heads(block, x)
        plain = True
    except AnomclipError:
        plain = False
    drop = max(float(getattr(attn, "dropout", 0.0) or 0.0),  # nn.MultiheadAttention; open_clip's own Attention:
               *(float(getattr(getattr(attn, name, None), "p", 0.0)) for name in ("attn_drop", "out_drop")))
    if not plain or (block.training and drop > 0):
        y = run_block(block, x, attn_mask)
        return y[:, :1] if cls_only else y
    if attn_mask is not None:
        attn_mask = attn_mask.to(x.dtype)
    if cls_only:
        x, q = x[:, :1], q[:, :, :1]
        attn_mask = None if attn_mask is None else attn_mask[:1]
    return mlp_residual(block, x + attention_output(block, q, k, v, attn_mask))


def qkv_projection(block: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """``(in_proj_weight [3W, W], in_proj_bias [3W] or None, heads)`` of a block's plain attention."""
    attn = block.attn
    for owner, name in ((attn, "ln_q"), (attn, "ln_k"), (attn, "logit_scale"), (attn, "head_scale"),
                        (attn, "ln_inner"), (block, "ln_attn")):
        part = getattr(owner, name, None)
        if part is not None and not isinstance(part, nn.Identity):
            raise AnomclipError(f"this backbone's attention uses {name} (not plain softmax(q kᵀ/√d) v): "
                                "DPAM and the prompt-learning baselines need a plain CLIP ViT")
    weight = getattr(attn, "in_proj_weight", None)
    if weight is None or getattr(attn, "num_heads", None) is None:
        raise AnomclipError("this backbone's attention has no packed q/k/v projection (in_proj_weight): "
                            "DPAM needs a CLIP ViT whose q, k and v share the token width")
    return weight, getattr(attn, "in_proj_bias", None), int(attn.num_heads)


def embed_tokens(visual: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The tokens entering block 1 of an open_clip ``VisionTransformer``: ``[B, 1 + N, W]``."""
    x = visual.conv1(images).flatten(2).transpose(1, 2)  # [B, N, W]
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
    x = getattr(visual, "patch_dropout", nn.Identity())(x)
    return visual.ln_pre(x)
