"""One runner for every experiment: train the prompts (or not), evaluate, write results.

An experiment is ``(recipe, training data or None, evaluation data…)``. The runner

1. re-uses a results file whose recipe and data fingerprints match (unless ``force``);
2. loads the backbone once per (name, weights, size) and the frozen visual features from the
   on-disk cache (:mod:`anomclip.features`);
3. trains the prompts on the training data (checkpoint beside the results), or evaluates the
   untrained prompts / an imported checkpoint;
4. evaluates on each evaluation dataset and writes ``<out>/<experiment>/<dataset>.json``.

Notebooks and the CLI only call :func:`run_experiment` and read what it returns.
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import backbone as bb
from .data import dataset_fingerprint, load_index
from .errors import AnomclipError
from .evaluate import EvalResult, evaluate
from .features import cache_dtype, extract_features
from .model import AnomalyCLIP
from .recipes import Recipe
from .results import provenance, read_results, write_results
from .train import TrainResult, train


@dataclass(frozen=True)
class DataSpec:
    """A dataset root (with ``meta.json`` or a known layout) and how to call it."""

    root: str
    name: str
    split: str = "test"  # the authors tune on the test split of the auxiliary dataset
    categories: tuple[str, ...] | None = None
    synthetic: bool = False


@dataclass
class Experiment:
    """What :func:`run_experiment` returns: results per evaluation dataset, and the training."""

    label: str
    recipe: Recipe
    results: dict = field(default_factory=dict)  # {dataset name: results doc}
    training: dict | None = None
    folder: Path | None = None
    reused: bool = False
    model: AnomalyCLIP | None = None
    evals: dict = field(default_factory=dict)  # {dataset name: EvalResult} (when computed now)


_BACKBONES: dict = {}


def resolve_device(device: str | None) -> str:
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise AnomclipError(f"device {device!r} asked for, but no CUDA GPU is available (use --device cpu)")
    return str(device)


def build_model(recipe: Recipe, device: str = "cpu") -> AnomalyCLIP:
    """An :class:`AnomalyCLIP` for ``recipe``; the frozen backbone is loaded once per process."""
    key = (recipe.backbone, recipe.pretrained, recipe.image_size, recipe.pos_interpolation, device)
    if key not in _BACKBONES:
        _BACKBONES.clear()  # keep one backbone in memory (ViT-L is 1.7 GB)
        _BACKBONES[key] = bb.load_clip(recipe.backbone, recipe.pretrained, recipe.image_size,
                                       recipe.pos_interpolation, device=device)
    clip_model, tokenizer, info = _BACKBONES[key]
    return AnomalyCLIP(clip_model, tokenizer, info, recipe).to(device)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-").lower() or "run"


def _samples(spec: DataSpec):
    return [s for v in load_index(spec.root, spec.split, spec.categories).values() for s in v]


def _data_info(spec: DataSpec, samples) -> dict:
    return {"name": spec.name, "root": str(spec.root), "split": spec.split, "synthetic": spec.synthetic,
            "categories": sorted({s.cls_name for s in samples}), "images": len(samples),
            "fingerprint": dataset_fingerprint(samples)}


def experiment_id(recipe: Recipe, train_data: DataSpec | None, init: str | None) -> str:
    key = json.dumps({"recipe": recipe.to_dict(), "train": train_data.name if train_data else None,
                      "init": init}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:10]


def run_experiment(recipe: Recipe, train_data: DataSpec | None, eval_data: list[DataSpec], out_dir: str | Path,
                   label: str | None = None, device: str | None = "auto", force: bool = False,
                   progress: bool = True, authors_checkpoint: str | None = None, keep_model: bool = False,
                   keep_maps: bool = False, batch_size: int = 16, init_prompts: str | None = None) -> Experiment:
    """Train (if ``train_data``) and evaluate ``recipe``; reuse matching results unless ``force``.

    The prompts start from their N(0, 0.02) initialisation, from the authors' released file
    (``authors_checkpoint``) or from one of our own checkpoints (``init_prompts``, e.g. prompts
    tuned with another template, re-evaluated as in the paper's Fig. 9).
    """
    device = resolve_device(device)
    label = label or recipe.name
    init = None
    if authors_checkpoint:
        init = f"authors:{Path(authors_checkpoint).name}"
    elif init_prompts:
        init = f"prompts:{Path(init_prompts).parent.name}/{Path(init_prompts).name}"
    folder = Path(out_dir) / f"{slug(label)}-{experiment_id(recipe, train_data, init)}"
    exp = Experiment(label, recipe, folder=folder)
    eval_samples = {spec.name: _samples(spec) for spec in eval_data}
    train_samples = _samples(train_data) if train_data else None
    paths = {spec.name: folder / f"{slug(spec.name)}.json" for spec in eval_data}

    if not force and not keep_model and not keep_maps and all(p.is_file() for p in paths.values()):
        docs = {name: read_results(p) for name, p in paths.items()}
        if all(_matches(docs[s.name], recipe, eval_samples[s.name], train_samples) for s in eval_data):
            exp.results, exp.reused = docs, True
            exp.training = next(iter(docs.values()))["provenance"].get("training")
            return exp

    model = build_model(recipe, device)
    durations: dict = {}
    training_info = None
    if authors_checkpoint:
        model.load_authors_checkpoint(authors_checkpoint)
    elif init_prompts:
        model.load_prompts(init_prompts)
    if train_data is not None:
        t0 = time.perf_counter()
        feats = extract_features(model, train_samples, progress=progress, desc=f"features {train_data.name}")
        durations["train_features_s"] = feats.seconds
        ckpt = folder / "prompts.pt"
        if force and ckpt.exists():
            ckpt.unlink()
        tr: TrainResult = train(model, feats, checkpoint=ckpt, resume=True, progress=progress)
        durations["train_s"] = tr.seconds
        durations["train_total_s"] = time.perf_counter() - t0
        training_info = {"data": _data_info(train_data, train_samples), "history": tr.history,
                         "steps": tr.steps, "checkpoint": str(ckpt),
                         "features_from_cache": feats.from_cache}
    exp.training = training_info
    for spec in eval_data:
        doc, res = evaluate_dataset(model, spec, eval_samples[spec.name], paths[spec.name], device, durations,
                                    training_info, init or ("learned" if train_data else UNTRAINED),
                                    experiment=label, progress=progress, keep_maps=keep_maps,
                                    batch_size=batch_size)
        exp.results[spec.name], exp.evals[spec.name] = doc, res
    if keep_model:
        exp.model = model
    return exp


UNTRAINED = "untrained prompts (N(0, 0.02) init)"


def evaluate_dataset(model: AnomalyCLIP, spec: DataSpec, samples, out_path, device: str, durations: dict | None = None,
                     training_info: dict | None = None, init: str = UNTRAINED, experiment: str | None = None,
                     progress: bool = True, keep_maps: bool = False, batch_size: int = 16,
                     skip_unreadable: bool = False):
    """Evaluate ``model`` on ``samples`` and write the results file ``out_path`` (atomically)."""
    t0 = time.perf_counter()
    feats = extract_features(model, samples, progress=progress, desc=f"features {spec.name}",
                             skip_unreadable=skip_unreadable)
    res: EvalResult = evaluate(model, feats, batch_size=batch_size, progress=progress, keep_maps=keep_maps)
    d = dict(durations or {}, eval_features_s=feats.seconds, eval_s=res.seconds,
             eval_total_s=time.perf_counter() - t0)
    prov = provenance(model, data=_data_info(spec, samples), device=device, durations=d, training=training_info,
                      experiment=experiment, init=init, skipped=[list(s) for s in feats.skipped],
                      feature_dtype=cache_dtype())
    cats = feats.categories()
    write_results(out_path, res.categories, res.mean, prov, res.notes,
                  scores={c: [float(x) for x in v] for c, v in res.scores.items()},
                  labels={c: [int(feats.labels[i]) for i in idx] for c, idx in cats.items()},
                  paths_by_category={c: [feats.paths[i] for i in idx] for c, idx in cats.items()})
    return read_results(out_path), res


def _matches(doc: dict, recipe: Recipe, eval_samples, train_samples) -> bool:
    prov = doc["provenance"]
    if prov.get("recipe") != json.loads(json.dumps(recipe.to_dict())):
        return False
    if prov.get("feature_dtype", "float32") != cache_dtype():
        return False
    if prov.get("data", {}).get("fingerprint") != dataset_fingerprint(eval_samples):
        return False
    tr = prov.get("training")
    if train_samples is None:
        return tr is None
    return bool(tr) and tr["data"]["fingerprint"] == dataset_fingerprint(train_samples)
