"""Benchmarks: they measure, print and write JSON; they never assert a time.

``anomclip bench`` (or ``python -m anomclip.engine.bench``) times, on the current device:

* plain open_clip ``encode_image`` vs our DPAM forward vs a naive reference that runs the
  surrogate path as a second full pass (images/s per batch size; DPAM/plain ratio; with
  ``--bf16`` on a GPU also bf16 autocast and the max |Δ score| against fp32);
* the text side: first call vs cached call (text features are computed once per model);
* training seconds per epoch with the feature cache vs recomputing the visual features every
  epoch (what the cache saves);
* AUPRO on ``--aupro-maps`` maps of ``--aupro-size``² against a straightforward per-threshold
  implementation (extrapolated).
"""
from __future__ import annotations

import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..io import atomic_write_text
from .results import device_name, package_versions


def sync(device) -> None:
    """Wait for the device's queued work (timings on a GPU are asynchronous otherwise)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def median_seconds(fn, repeats: int, device) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def naive_dual_path(model, images):
    """Reference: the original path by open_clip, then the surrogate path as a *second* full pass
    that recomputes every block's input and its q/k/v from scratch."""
    visual = model.clip.visual
    g = model.clip.encode_image(images)  # pass 1: the plain CLIP forward
    x = visual._embeds(images)  # pass 2: recompute everything for the surrogate
    xs = None
    for l, blk in enumerate(visual.transformer.resblocks, start=1):
        if l >= model.dpam_start:
            h = blk.ln_1(x)
            q, k, v = F.linear(h, blk.attn.in_proj_weight, blk.attn.in_proj_bias).chunk(3, dim=-1)
            b, n, w = v.shape
            heads = blk.attn.num_heads
            v = v.view(b, n, heads, w // heads).transpose(1, 2)
            a = F.scaled_dot_product_attention(v, v, v).transpose(1, 2).reshape(b, n, w)
            xs = (x if xs is None else xs) + blk.attn.out_proj(a)
        x = blk(x)
    return g, xs


def bench_forward(model, batch_sizes, repeats, device, bf16=False) -> list[dict]:
    rows = []
    size = model.image_size
    for bs in batch_sizes:
        x = torch.randn(bs, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
        with torch.no_grad():
            plain = median_seconds(lambda: model.clip.encode_image(x), repeats, device)
            dpam = median_seconds(lambda: model.encode_image(x), repeats, device)
            naive = median_seconds(lambda: naive_dual_path(model, x), repeats, device)
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
        print(f"batch {bs:3d}: plain {bs / plain:8.2f} img/s | DPAM {bs / dpam:8.2f} img/s "
              f"({dpam / plain:.3f}× plain) | naive {bs / naive:8.2f} img/s ({naive / plain:.3f}× plain)")
    return rows


def bench_text(model, device) -> dict:
    model._text_cache.clear()
    with torch.no_grad():
        t0 = time.perf_counter()
        model.encode_text()
        sync(device)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(100):
            model.encode_text()
        cached = (time.perf_counter() - t0) / 100
    print(f"text features: first call {first * 1e3:.1f} ms, cached call {cached * 1e6:.1f} µs")
    return {"text_first_s": first, "text_cached_s": cached}


def bench_training(model, device) -> dict:
    """Seconds per epoch with cached features vs extracting the features every epoch."""
    from .features import extract_features
    from .profiles import ensure_synthetic
    from .runner import DataSpec
    from .train import train

    root = ensure_synthetic("data")["textures"]
    samples = DataSpec(str(root), "textures").samples()
    t0 = time.perf_counter()
    feats = extract_features(model, samples, progress=False)
    extract = time.perf_counter() - t0
    res = train(model, feats, epochs=2, progress=False)
    epoch = float(np.mean([h["seconds"] for h in res.history]))
    out = {"train_images": len(samples), "extract_features_s": extract, "epoch_with_cache_s": epoch,
           "epoch_without_cache_s": epoch + extract, "cache_speedup": (epoch + extract) / epoch}
    print(f"training on {len(samples)} images: {epoch:.2f} s/epoch with cached features, "
          f"{epoch + extract:.2f} s/epoch recomputing them ({out['cache_speedup']:.1f}×)")
    return out


def run_bench(recipe, device: str, out, batch_sizes=(1, 4), repeats: int = 3, bf16: bool = False,
              skip_train: bool = False, aupro_maps: int = 100, aupro_size: int = 518) -> dict:
    """Time ``recipe``'s model (forward, text, training, AUPRO) on ``device``; write JSON to ``out``."""
    from .metrics import bench_aupro
    from .models import build_model

    model = build_model(recipe, device)
    info = model.info
    print(f"device: {device_name(device)}; backbone {info.name} ({info.weights}) at {info.image_size} px, "
          f"DPAM {','.join(model.modes) or 'off'} from block {model.dpam_start}, layers {model.layers}")
    report = {"device": device_name(device), "versions": package_versions(), "backbone": info.name,
              "weights": info.weights, "image_size": info.image_size, "recipe": recipe.name,
              "threads": torch.get_num_threads()}
    report["forward"] = bench_forward(model, list(batch_sizes), repeats, device, bf16)
    report["text"] = bench_text(model, device)
    if not skip_train:
        report["training"] = bench_training(model, device)
    if aupro_maps > 0:
        a = bench_aupro(n=aupro_maps, size=aupro_size)
        report["aupro"] = a
        print("AUPRO: " + ", ".join(f"{k} {v:.3g}" for k, v in a.items() if isinstance(v, (int, float))))
    atomic_write_text(out, json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")
    return report
