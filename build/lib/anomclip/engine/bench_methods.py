"""Cost of the six methods on one engine: images/s and what the shared feature cache saves.

``python -m anomclip.engine.bench_methods --out results/methods-bench.json`` measures, on the current
device (it prints and writes JSON; it asserts nothing):

* per method on the tiny random backbone: images/s of the visual encoder (what extraction
  costs), of scoring from cached features (text + maps), and of both (encode + score);
* with ``--paper`` the same for each method's own paper setting with random weights
  (``--pretrained none``: ViT-L-14-336 at 518 px, WinCLIP's ViT-B-16-plus-240 at 240 px) on a
  couple of images;
* the feature cache: evaluating all six methods on one synthetic dataset with an empty cache,
  the number of extractions and their seconds against extracting once per method (CLIP,
  CLIP-AC and CoOp share one extraction), and a second pass that reads everything from the cache.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from ..io import atomic_write_text
from ..recipes import METHODS, get_recipe, smoke
from .bench import median_seconds, sync
from .results import device_name, package_versions

CLASS_NAME = "object"
#: the recipe of each method, in the order of the paper's tables
RECIPE_NAMES = [m.recipe for m in METHODS.values()]


def throughput(recipe, n_images: int, repeats: int, device: str) -> dict:
    """images/s of encoding, of scoring cached features, and of both, for one recipe."""
    from .models import build_model

    model = build_model(recipe, device)
    images = torch.randn(n_images, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(0))
    images = images.to(device)
    names = [CLASS_NAME] * n_images
    with torch.no_grad():
        t0 = time.perf_counter()
        g, feats = model.encode_image(images)
        sync(device)
        first = time.perf_counter() - t0
        # repeats = 0: the first (cold) pass is the measurement (big backbones on a CPU)
        enc = first if repeats == 0 else median_seconds(lambda: model.encode_image(images), repeats, device)
        score = median_seconds(lambda: model.score_features(g, feats, model.text_for(names)), max(repeats, 1),
                                device)
    per_image = sum(t.numel() for d in feats.values() for t in d.values()) / n_images
    return {"backbone": model.info.name, "weights": model.info.weights, "image_size": model.image_size,
            "images": n_images, "encode_images_per_s": n_images / enc, "score_images_per_s": n_images / score,
            "forward_images_per_s": n_images / (enc + score), "cached_floats_per_image": int(per_image + g.shape[1])}


def cache_savings(device: str, data_root: Path | None = None) -> dict:
    """Evaluate all six methods on one synthetic dataset, twice, with one (initially empty) cache."""
    from ..data.dataset import load_index
    from ..data.synth import make_synthetic
    from .evaluate import evaluate
    from .features import FeatureCache, extract_features
    from .models import build_model

    with tempfile.TemporaryDirectory() as tmp:
        root = data_root or make_synthetic(Path(tmp) / "data")["objects"]
        samples = [s for v in load_index(root).values() for s in v]
        cache = FeatureCache(Path(tmp) / "features")
        passes = []
        for _ in range(2):
            rows = {}
            for name in RECIPE_NAMES:
                model = build_model(smoke(name), device)
                t0 = time.perf_counter()
                fs = extract_features(model, samples, cache, progress=False)
                t_feat = time.perf_counter() - t0
                res = evaluate(model, fs, progress=False)
                rows[name] = {"feature_key": fs.key, "from_cache": fs.from_cache, "features_s": t_feat,
                              "extraction_s": fs.seconds, "evaluate_s": res.seconds}
            passes.append(rows)
        first = passes[0]
        seconds_of = {r["feature_key"]: r["extraction_s"] for r in first.values() if not r["from_cache"]}
        alone_s = sum(seconds_of[r["feature_key"]] for r in first.values())  # one extraction per method
        shared_s = sum(r["features_s"] for r in first.values())  # extractions + cache reads, as run
        return {"dataset": "synthetic objects", "images": len(samples), "methods": list(RECIPE_NAMES),
                "first_pass": first, "second_pass": passes[1],
                "extractions_shared": len(seconds_of), "extractions_one_per_method": len(first),
                "features_seconds_shared": shared_s, "features_seconds_one_per_method": alone_s,
                "features_seconds_second_pass": sum(r["features_s"] for r in passes[1].values())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/methods-bench.json")
    p.add_argument("--device", default="cpu")
    p.add_argument("--images", type=int, default=8, help="images per batch on the tiny backbone")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--paper", action="store_true", help="also each method's paper backbone, random weights")
    p.add_argument("--paper-images", type=int, default=2)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    doc = {"what": "images/s of each method's visual encoder and scoring; feature-cache savings",
           "label": "random-weight backbones, synthetic data — costs only, no accuracy",
           "device": device_name(args.device), "threads": torch.get_num_threads(), "versions": package_versions(),
           "tiny": {}, "paper": {}}
    for name in RECIPE_NAMES:
        doc["tiny"][name] = throughput(smoke(name), args.images, args.repeats, args.device)
        print(name, "tiny", {k: round(v, 1) for k, v in doc["tiny"][name].items() if k.endswith("_per_s")},
              flush=True)
    doc["cache"] = cache_savings(args.device)
    print("cache", {k: v for k, v in doc["cache"].items() if not isinstance(v, dict)}, flush=True)
    if args.paper:
        for name in RECIPE_NAMES:
            r = get_recipe(name).with_(pretrained=None)
            doc["paper"][name] = throughput(r, args.paper_images, 0, args.device)
            print(name, "paper", {k: round(v, 3) for k, v in doc["paper"][name].items() if k.endswith("_per_s")},
                  flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
