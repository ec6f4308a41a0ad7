"""The paper profile's cost at the paper's scale, on a GPU: a prepared, one-shot measurement.

    python tools/gpu_paper_scale.py --out results/gpu_paper_scale.json
    python tools/gpu_paper_scale.py --device cpu --backbone tiny-random --image-size 96 --per-category 4,6  # dry run

ViT-L-14-336 with *random* weights (the real ones can't be downloaded everywhere; cost does not
depend on them) at 518 px, on a synthetic stand-in with MVTec AD's test-set size (1,724 of its
1,725 images: 4 categories × (117 normal + 314 anomalous)). Measures feature extraction
(images/s, into an empty cache), one training epoch from the cache (s), evaluation from the
cache (s), the peak GPU memory, and the largest bf16-autocast difference in image score and map
against fp32. Writes JSON and prints it. Costs only, no accuracy: random weights, synthetic data.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from anomclip.data.synth import make_synthetic
from anomclip.bench.forward import bench_forward
from anomclip.engine.evaluate import evaluate
from anomclip.engine.features import FeatureCache, extract_features
from anomclip.engine.loading import build_model
from anomclip.engine.results import device_name
from anomclip.engine.runner import DataSpec
from anomclip.engine.train import train
from anomclip.io import atomic_write_text
from anomclip.recipes import get_recipe


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="results/gpu_paper_scale.json", help="JSON file to write")
    p.add_argument("--work", default=None, help="folder for the stand-in and the cache (default: temporary)")
    p.add_argument("--batch-size", type=int, default=8, help="extraction batch size (default 8)")
    p.add_argument("--device", default="cuda", help="torch device (default cuda)")
    p.add_argument("--backbone", default="ViT-L-14-336", help="open_clip model (tiny-random: a CPU dry run)")
    p.add_argument("--image-size", type=int, default=518, help="input size (default 518)")
    p.add_argument("--per-category", default="117,314",
                   help="normal,anomalous test images per category (default 117,314: MVTec AD's 1,724)")
    args = p.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="anomclip-gpu-"))
    t0 = time.perf_counter()
    n_normal, n_anomalous = (int(x) for x in args.per_category.split(","))
    roots = make_synthetic(work / "data", n_normal=n_normal, n_anomalous=n_anomalous, size=256)
    samples = DataSpec(str(roots["objects"]), "objects").samples()
    report = {"images": len(samples), "device": device_name(args.device), "write_data_s": time.perf_counter() - t0,
              "label": "random-weight ViT-L-14-336 at 518 px, synthetic data: costs only"}
    recipe = get_recipe("official").with_(backbone=args.backbone, pretrained=None, image_size=args.image_size,
                                          epochs=1)
    model = build_model(recipe, args.device)
    gpu = torch.device(args.device).type == "cuda"
    peak = (lambda: torch.cuda.max_memory_allocated() / 2**30) if gpu else (lambda: None)
    reset = torch.cuda.reset_peak_memory_stats if gpu else (lambda: None)
    reset()
    cache = FeatureCache(work / "cache")
    t0 = time.perf_counter()
    feats = extract_features(model, samples, cache, batch_size=args.batch_size, progress=False)
    if gpu:
        torch.cuda.synchronize()
    report["extract_s"] = time.perf_counter() - t0
    report["extract_images_per_s"] = len(samples) / report["extract_s"]
    report["extract_peak_gpu_gib"] = peak()
    reset()
    report["train_epoch_s"] = train(model, feats, progress=False).history[-1]["seconds"]
    t0 = time.perf_counter()
    evaluate(model, feats, progress=False)
    report["evaluate_s"] = time.perf_counter() - t0
    report["train_eval_peak_gpu_gib"] = peak()
    report["forward"] = bench_forward(model, [args.batch_size], 2, args.device, bf16=True)
    atomic_write_text(args.out, json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
