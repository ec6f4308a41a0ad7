"""Cost of every method on one engine: images/s and what the shared feature cache saves.

* per method on the tiny random backbone: images/s of the visual encoder (what extraction
  costs), of scoring from cached features (text + maps), and of both (encode + score);
* with ``paper`` the same for each method's own paper setting with random weights
  (ViT-L-14-336 at 518 px, WinCLIP's ViT-B-16-plus-240 at 240 px) on a couple of images;
* the feature cache: evaluating every method on one synthetic dataset with an empty cache,
  the number of extractions and their seconds against extracting once per method (CLIP,
  CLIP-AC and CoOp share one extraction), and a second pass that reads everything from the cache.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from ..engine.loading import build_model
from ..engine.results import device_name, package_versions
from ..recipes import METHODS, get_recipe, smoke
from .timing import median_seconds, sync

CLASS_NAME = "object"
#: the recipe of each method, in the order of the paper's tables
RECIPE_NAMES = [m.recipe for m in METHODS.values()]


def throughput(recipe, n_images: int, repeats: int, device: str) -> dict:
    """images/s of encoding, of scoring cached features, and of both, for one recipe."""
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
    """Evaluate every method on one synthetic dataset, twice, with one (initially empty) cache."""
    from ..data.dataset import load_index
    from ..data.synth import make_synthetic
    from ..engine.evaluate import evaluate
    from ..engine.features import FeatureCache, extract_features

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


def bench_methods(device: str = "cpu", images: int = 8, repeats: int = 3, paper: bool = False,
                  paper_images: int = 2, on_row=None) -> dict:
    """:func:`throughput` of every method (``tiny``; with ``paper`` also ``paper``) and
    :func:`cache_savings` (``cache``). ``on_row(part, name, row)`` is called after each measurement."""
    torch.manual_seed(0)
    doc = {"what": "images/s of each method's visual encoder and scoring; feature-cache savings",
           "label": "random-weight backbones, synthetic data — costs only, no accuracy",
           "device": device_name(device), "threads": torch.get_num_threads(), "versions": package_versions(),
           "tiny": {}, "paper": {}}
    report = on_row or (lambda part, name, row: None)
    for name in RECIPE_NAMES:
        doc["tiny"][name] = throughput(smoke(name), images, repeats, device)
        report("tiny", name, doc["tiny"][name])
    doc["cache"] = cache_savings(device)
    report("cache", "all", doc["cache"])
    if paper:
        for name in RECIPE_NAMES:
            doc["paper"][name] = throughput(get_recipe(name).with_(pretrained=None), paper_images, 0, device)
            report("paper", name, doc["paper"][name])
    return doc


def row_summary(part: str, name: str, row: dict) -> str:
    """One line for a measurement of :func:`bench_methods`."""
    if part == "cache":
        return "cache " + str({k: v for k, v in row.items() if not isinstance(v, dict)})
    digits = 1 if part == "tiny" else 3
    return f"{name} {part} " + str({k: round(v, digits) for k, v in row.items() if k.endswith("_per_s")})
