"""Computations the tests write out by hand, independently of the code under test."""
from __future__ import annotations

import torch


def tokens_before_ln_pre(v, images: torch.Tensor) -> torch.Tensor:
    """A ViT's input tokens before ``ln_pre``: conv1 as a product over non-overlapping patches
    (CLIP's conv1 has no bias), the class token, the positional embedding."""
    p = v.conv1.kernel_size[0]
    b, c = images.shape[:2]
    patches = images.unfold(2, p, p).unfold(3, p, p)  # [B, C, gh, gw, p, p]
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(b, -1, c * p * p)
    tokens = patches @ v.conv1.weight.reshape(v.conv1.out_channels, -1).T
    return torch.cat([v.class_embedding.expand(b, 1, -1), tokens], dim=1) + v.positional_embedding


def ln(x: torch.Tensor, mod) -> torch.Tensor:
    """LayerNorm ``mod`` over the last dimension, as its formula."""
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + mod.eps) * mod.weight + mod.bias
