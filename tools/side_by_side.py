"""What the side-by-side tools share (tools/*_side_by_side.py): identical random weights, and the
largest difference of two results.

Each tool builds one random open_clip CLIP, copies the same weights into the authors' model and
ours, and reports :func:`rel` of every compared quantity (docs/after-anomalyclip.md).
"""
from __future__ import annotations

import torch


def random_clip(vision_width: int, text_width: int = 768, embed_dim: int = 768, seed: int = 0):
    """An open_clip CLIP (QuickGELU) with every parameter randomised (biases and norms too)."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(seed)
    model = CLIP(embed_dim, CLIPVisionCfg(layers=24, width=vision_width, head_width=64, patch_size=14, image_size=336),
                 CLIPTextCfg(context_length=77, vocab_size=49408, width=text_width, heads=text_width // 64, layers=12),
                 quick_gelu=True)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "logit_scale":
                continue
            scale = 0.1 if (name.endswith("bias") or ".ln" in name or name.startswith("ln")) else 0.02
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return model.eval()


def rel(a, b) -> tuple[float, float]:
    """``(largest |a − b|, that divided by the largest |b|)``, in float64."""
    a, b = torch.as_tensor(a).detach().double(), torch.as_tensor(b).detach().double()
    return float((a - b).abs().max()), float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))
