"""The DPAM forward against plain open_clip and against a naive two-pass reference.

DPAM's surrogate path shares every block's input and q/k/v projection with the original path,
so our encoder runs both in one pass. :func:`naive_dual_path` shows what that saves: it runs
open_clip's plain forward, then the surrogate path as a second full pass.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..model import blocks
from .timing import interleaved_medians, median_seconds


def naive_dual_path(model, images: torch.Tensor):
    """Reference: the original path by open_clip, then the surrogate path (V-V attention) as a
    *second* full pass that recomputes every block's input and its q/k/v from scratch."""
    g = model.clip.encode_image(images)  # pass 1: the plain CLIP forward
    x = model.encoder.embed(images)  # pass 2: recompute everything for the surrogate
    xs = None
    for depth, blk in enumerate(model.clip.visual.transformer.resblocks, start=1):
        if depth >= model.dpam_start:
            weight, bias, heads = blocks.qkv_projection(blk)
            _, _, v = F.linear(blk.ln_1(x), weight, bias).chunk(3, dim=-1)
            b, n, w = v.shape
            v = v.view(b, n, heads, w // heads).transpose(1, 2)
            a = F.scaled_dot_product_attention(v, v, v).transpose(1, 2).reshape(b, n, w)
            xs = (x if xs is None else xs) + blk.attn.out_proj(a)
        x = blocks.run_block(blk, x)
    return g, xs


def bench_forward(model, batch_sizes, repeats: int, device, bf16: bool = False) -> list[dict]:
    """Per batch size: seconds and images/s of plain ``encode_image`` (open_clip's forward), the
    DPAM forward and the naive two-pass reference (medians of ``repeats`` rounds after a warm-up,
    the three timed in turn within each round), and their time ratios to plain. With ``bf16`` on a GPU also the DPAM forward under bf16 autocast and its largest
    score and map differences from fp32."""
    rows = []
    size = model.image_size
    for bs in batch_sizes:
        x = torch.randn(bs, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
        with torch.no_grad():  # interleaved: the three ratios are taken under the same conditions
            t = interleaved_medians({"plain": lambda: model.clip.encode_image(x), "dpam": lambda: model.encode_image(x),
                                     "naive": lambda: naive_dual_path(model, x)}, repeats, device)
        plain, dpam, naive = t["plain"], t["dpam"], t["naive"]
        row = {"batch": bs, "plain_s": plain, "dpam_s": dpam, "naive_s": naive,
               "plain_img_per_s": bs / plain, "dpam_img_per_s": bs / dpam, "naive_img_per_s": bs / naive,
               "dpam_over_plain": dpam / plain, "naive_over_plain": naive / plain}
        if bf16 and torch.device(device).type == "cuda":
            with torch.no_grad():
                ref = model(x)
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    t = median_seconds(lambda: model.encode_image(x), repeats, device)
                    low = model(x)
            row["dpam_bf16_s"] = t
            row["bf16_max_abs_score_diff"] = float((ref.image_score - low.image_score.float()).abs().max())
            row["bf16_max_abs_map_diff"] = float((ref.anomaly_map - low.anomaly_map.float()).abs().max())
        rows.append(row)
    return rows


def summary(rows: list[dict]) -> list[str]:
    """One line per batch size."""
    return [f"batch {r['batch']:3d}: plain {r['plain_img_per_s']:8.2f} img/s | DPAM {r['dpam_img_per_s']:8.2f} img/s "
            f"({r['dpam_over_plain']:.3f}× plain) | naive {r['naive_img_per_s']:8.2f} img/s "
            f"({r['naive_over_plain']:.3f}× plain)" for r in rows]
