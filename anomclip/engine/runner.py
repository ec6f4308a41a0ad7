"""One runner for every experiment, on a run store keyed by content (docs/run-store.md).

An experiment is ``(recipe, training data or None, evaluation data…)``. The runner

1. computes the experiment's **run key** from what it computes with — the recipe (every
   setting but its display name), the weights identity, the training data's content
   fingerprint, the initial prompts' content, the feature dtype — and each evaluation's key
   from the run key, the evaluation data's fingerprint and the ``skip_unreadable`` choice;
2. re-uses the results files under those keys (unless ``force``); a trained run whose
   checkpoint is complete is never trained again, an interrupted one resumes;
3. otherwise loads the backbone once per process, reads the frozen visual features from the
   :class:`~anomclip.engine.features.FeatureCache`, trains, evaluates and writes
   ``<out>/runs/<run key>/eval-<eval key>.json`` atomically.

Display labels are not part of any key: :func:`run_table` attaches them. Notebooks and the
CLI call :func:`run_experiment` / :func:`run_table` and read what they return; an
:class:`Experiment` rebuilds its model (:meth:`Experiment.model`) or recomputes maps from the
cached features (:meth:`Experiment.predict`) on demand, so nothing needs copying.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ..data.catalogue import named
from ..data.dataset import load_index
from ..data.fingerprint import content_key
from ..data.index import is_synthetic
from ..errors import AnomclipError
from ..methods import Method, trains
from ..recipes import Recipe
from .evaluate import EvalResult, evaluate
from .intervals import Bootstrap
from .seeds import parse_seeds, seed_summary
from .features import FeatureCache, FeatureSet, extract_features
from .loading import build_model, resolve_device
from .results import DamagedEntry, provenance, read_results, write_results
from .store import (
    UNTRAINED,
    eval_key,
    init_identity,
    notice,
    prompts_intact,
    read_run,
    run_lock,
    run_material,
    write_run,
)
from .train import TrainResult, train


@dataclass(frozen=True)
class DataSpec:
    """A dataset root (with ``meta.json`` or a known layout), the split and the name it is shown by."""

    root: str
    name: str
    split: str = "test"  # the authors tune on the test split of the auxiliary dataset
    categories: tuple[str, ...] | None = None

    @property
    def synthetic(self) -> bool:
        """Whether the dataset says it was generated (``"synthetic": true`` in its ``meta.json``)."""
        return is_synthetic(self.root)

    def samples(self) -> list:
        return [s for v in load_index(self.root, self.split, self.categories).values() for s in v]


@dataclass
class Experiment:
    """One run: its key, its results per evaluation dataset, and what rebuilds its model."""

    key: str
    recipe: Recipe
    folder: Path
    results: dict = field(default_factory=dict)  # {dataset name: results doc}
    training: dict | None = None
    reused: bool = False  # every result came from the store
    checkpoint: Path | None = None  # trained prompts (None when untrained)
    init: str = UNTRAINED
    device: str = "cpu"
    cache: FeatureCache = field(default_factory=FeatureCache)
    data: dict = field(default_factory=dict)  # {dataset name: DataSpec}
    _authors_checkpoint: str | None = None
    _init_prompts: str | None = None

    def model(self) -> Method:
        """The model with this run's prompts (trained, imported or initial)."""
        model = build_model(self.recipe, self.device)
        if self.checkpoint is not None:
            model.load_prompts(self.checkpoint)
        elif self._authors_checkpoint:
            model.load_authors_checkpoint(self._authors_checkpoint)
        elif self._init_prompts:
            model.load_prompts(self._init_prompts)
        model.prompt_learner.eval()
        return model

    def features(self, name: str, model: Method | None = None) -> FeatureSet:
        """The cached visual features of evaluation dataset ``name``."""
        spec = self.data[name]
        return extract_features(model or build_model(self.recipe, self.device), spec.samples(), self.cache,
                                progress=False, desc=f"features {name}")

    def predict(self, name: str, batch_size: int = 16) -> EvalResult:
        """Scores, maps and metrics on ``name``, recomputed from the cached features (maps kept; the
        intervals are in ``results[name]``, not recomputed here)."""
        model = self.model()
        return evaluate(model, self.features(name, model), batch_size=batch_size, progress=False,
                        keep_maps=True, dataset=self.data[name].name, bootstrap=None)


@dataclass
class SeededExperiment:
    """One experiment run once per seed: the runs, and per evaluation dataset the summary over seeds."""

    experiments: dict  # {seed: Experiment}
    summary: dict  # {dataset name: seeds.seed_summary(...)}: mean, std (ddof=1), per-seed values

    @property
    def seeds(self) -> tuple:
        return tuple(self.experiments)

    @property
    def reused(self) -> bool:
        return all(e.reused for e in self.experiments.values())


def tuned_for(recipe: Recipe, dataset: str) -> Recipe:
    """``recipe`` as run when tuned on the dataset named ``dataset`` — its table name or its
    folder (``data/visa`` tunes with the ``VisA=…`` entry of ``epochs_by_tuning``)."""
    known = named(dataset)
    return recipe.for_tuning(known.name if known is not None else dataset)


def run_experiment(recipe: Recipe, train_data: DataSpec | None, eval_data: list[DataSpec], out_dir: str | Path,
                   device: str | None = "auto", force: bool = False, progress: bool = True,
                   authors_checkpoint: str | None = None, init_prompts: str | None = None, batch_size: int = 16,
                   cache: FeatureCache | None = None, skip_unreadable: bool = False,
                   verify: bool = False, on_epoch=None, seeds=None) -> Experiment:
    """Train (if ``train_data``) and evaluate ``recipe``; re-use what the store holds unless ``force``.

    The prompts start from their N(0, 0.02) initialisation, from the authors' released file
    (``authors_checkpoint``) or from one of our own checkpoints (``init_prompts``, e.g. prompts
    tuned with another template, re-evaluated as in the paper's Fig. 9). ``verify`` re-hashes
    every data file even when its size and modification time are unchanged. A recipe with
    epochs per tuning dataset (``epochs_by_tuning``: VAND's 3 on MVTec AD, 15 on VisA) runs the
    entry of ``train_data`` (:func:`tuned_for`). ``on_epoch(epoch, epochs)`` is called after
    each training epoch (a progress bar's hook; a stored run trains none). ``seeds`` (e.g.
    ``(0, 1, 2)``): one run per seed (the recipe's ``seed``, part of the run key), returned as
    a :class:`SeededExperiment` (mean ± sample std per metric, :mod:`.seeds`).
    """
    if seeds is not None:
        runs = {s: run_experiment(recipe.with_(seed=s), train_data, eval_data, out_dir, device, force, progress,
                                  authors_checkpoint, init_prompts, batch_size, cache, skip_unreadable, verify,
                                  on_epoch) for s in parse_seeds(seeds)}
        return SeededExperiment(runs, {spec.name: seed_summary({s: e.results[spec.name] for s, e in runs.items()})
                                       for spec in eval_data})
    device = resolve_device(device)
    cache = cache or FeatureCache()
    if authors_checkpoint and init_prompts:
        raise AnomclipError("give either authors_checkpoint or init_prompts, not both")
    eval_samples = {spec.name: spec.samples() for spec in eval_data}
    init = init_identity(authors_checkpoint, init_prompts, cache)
    recipe, train_data, train_samples, train_fp, material = _run_identity(recipe, train_data, init, cache, verify)
    key = content_key(material)
    folder = Path(out_dir) / "runs" / key
    exp = Experiment(key, recipe, folder, device=device, cache=cache, data={s.name: s for s in eval_data},
                     _authors_checkpoint=authors_checkpoint, _init_prompts=init_prompts)
    exp.init = (f"authors' checkpoint {init['file']}" if authors_checkpoint else
                f"prompts {init['file']} ({init['prompts'][:8]})" if init_prompts else
                "learned" if train_data else UNTRAINED)
    eval_fps = {spec.name: cache.fingerprint(eval_samples[spec.name], verify, missing_ok=skip_unreadable)
                for spec in eval_data}
    eval_keys = {name: eval_key(key, fp, skip_unreadable) for name, fp in eval_fps.items()}
    paths = {name: folder / f"eval-{k}.json" for name, k in eval_keys.items()}

    with run_lock(folder):
        if force:
            for p in [folder / "prompts.pt", folder / "run.json", *paths.values()]:
                p.unlink(missing_ok=True)
        damaged_run = (folder / "run.json").is_file()
        run_doc = read_run(folder)  # None when absent or damaged (said so)
        damaged_run = damaged_run and run_doc is None
        if train_data is not None:
            exp.checkpoint = folder / "prompts.pt"
            # a finished run's prompts must be there too: a deleted prompts.pt is said, as a damaged one
            if (run_doc is not None and (exp.checkpoint.is_file() or run_doc.get("complete"))
                    and not prompts_intact(folder, run_doc)):
                run_doc, damaged_run = None, True
            if damaged_run:  # prompts that cannot be checked are not resumed from: trained anew
                exp.checkpoint.unlink(missing_ok=True)
            elif run_doc and run_doc.get("complete") and exp.checkpoint.is_file():
                exp.training = run_doc["training"]
        retrain = train_data is not None and exp.training is None
        todo = []
        for s in eval_data:
            if force or retrain or not paths[s.name].is_file():
                todo.append(s)  # (new prompts: every evaluation of the run is recomputed)
                continue
            doc = _stored_results(paths[s.name], eval_keys[s.name])
            if doc is None:
                todo.append(s)
            else:
                exp.results[s.name] = doc
        if train_data is None and damaged_run:
            write_run(folder, material, training=None)
            run_doc = read_run(folder)
        if not todo and (train_data is None or exp.training is not None):
            exp.reused = True
            return exp

        model = exp.model() if train_data is None else build_model(recipe, device)
        if train_data is not None and exp.training is None:
            exp.training = _train(model, exp, train_data, train_samples, train_fp, material, progress, on_epoch)
        elif train_data is not None:
            model.load_prompts(exp.checkpoint)
        elif run_doc is None:
            write_run(folder, material, training=None)
        for spec in todo:
            doc, _ = evaluate_dataset(model, spec, eval_samples[spec.name], paths[spec.name], device,
                                      training_info=exp.training, init=exp.init, progress=progress,
                                      batch_size=batch_size, cache=cache, skip_unreadable=skip_unreadable,
                                      keys={"run": key, "eval": eval_keys[spec.name]},
                                      fingerprint=eval_fps[spec.name])
            exp.results[spec.name] = doc
    return exp


def _run_identity(recipe: Recipe, train_data: DataSpec | None, init: dict | None, cache: FeatureCache,
                  verify: bool = False):
    """What a run is: ``(recipe as tuned, train_data, its samples, their fingerprint, key material)``.

    A zero-shot method takes no training data (CLIP, CLIP-AC, WinCLIP: nothing to tune); a recipe
    with epochs per tuning dataset runs the entry of ``train_data`` (:func:`tuned_for`). The
    material is :func:`.store.run_material`, plus how images without masks train.
    """
    if train_data is not None and not trains(recipe):
        train_data = None
    if train_data is not None:
        recipe = tuned_for(recipe, train_data.name)
    samples = train_data.samples() if train_data else None
    fp = cache.fingerprint(samples, verify) if train_data else None
    material = run_material(recipe, fp, init, cache)
    if samples and any(s.anomaly and not getattr(s, "mask_path", None) for s in samples):
        # anomalous training images without masks train with the image-level loss alone (engine.train);
        # keyed, so that a run trained before that rule is not reused (data with masks keeps its keys)
        material["without_masks"] = "image-level loss"
    return recipe, train_data, samples, fp, material


def run_folder(recipe: Recipe, train_data: DataSpec | None, out_dir: str | Path, cache: FeatureCache | None = None,
               verify: bool = False) -> Path:
    """The run-store folder :func:`run_experiment` uses for ``recipe`` tuned on ``train_data`` from
    its initial prompts (nothing is trained or evaluated)."""
    material = _run_identity(recipe, train_data, None, cache or FeatureCache(), verify)[-1]
    return Path(out_dir) / "runs" / content_key(material)


def _stored_results(path: Path, key: str) -> dict | None:
    """The results file of evaluation ``key`` when it is intact and its own; None (said in one
    line) when it is damaged, edited, or belongs to another evaluation: it is recomputed."""
    try:
        doc = read_results(path)
    except DamagedEntry as e:
        notice(f"{e}: recomputed")
        return None
    stored = ((doc.get("provenance") or {}).get("keys") or {}).get("eval")
    if stored != key:
        notice(f"results file {path} belongs to evaluation {stored}, not {key}: recomputed")
        return None
    if (doc.get("intervals") or {}).get("bootstrap") != Bootstrap().record():
        return None  # written before the intervals (or with other settings): recomputed, an upgrade, not a repair
    return doc


def _train(model: Method, exp: Experiment, spec: DataSpec, samples, fingerprint: str, material: dict,
           progress: bool, on_epoch=None) -> dict:
    t0 = time.perf_counter()
    feats = extract_features(model, samples, exp.cache, progress=progress, desc=f"features {spec.name}",
                             fingerprint=fingerprint)
    tr: TrainResult = train(model, feats, checkpoint=exp.checkpoint, resume=True, progress=progress,
                            on_epoch=on_epoch)
    info = {"data": _data_info(spec, samples, fingerprint), "history": tr.history, "steps": tr.steps,
            "checkpoint": str(exp.checkpoint), "features_from_cache": feats.from_cache,
            "durations": {"train_features_s": feats.seconds, "train_s": tr.seconds,
                          "train_total_s": time.perf_counter() - t0}}
    write_run(exp.folder, material, info, complete=len(tr.history) >= model.recipe.epochs)
    return info


def _data_info(spec: DataSpec, samples, fingerprint: str) -> dict:
    return {"name": spec.name, "root": str(spec.root), "split": spec.split, "synthetic": spec.synthetic,
            "categories": sorted({s.cls_name for s in samples}), "images": len(samples),
            "fingerprint": fingerprint}


def evaluate_dataset(model: Method, spec: DataSpec, samples, out_path, device: str,
                     training_info: dict | None = None, init: str = UNTRAINED, progress: bool = True,
                     batch_size: int = 16, cache: FeatureCache | None = None, skip_unreadable: bool = False,
                     keys: dict | None = None, experiment: str | None = None, verify: bool = False,
                     fingerprint: str | None = None, pixel_metrics: bool = True):
    """Evaluate ``model`` on ``samples`` and write the results file ``out_path`` (atomically).

    Returns ``(results doc, EvalResult)``. ``keys``: the run-store keys recorded in provenance;
    ``fingerprint``: the samples' content fingerprint when the caller already computed it.
    ``pixel_metrics=False``: image metrics only.
    """
    t0 = time.perf_counter()
    cache = cache or FeatureCache()
    feats = extract_features(model, samples, cache, progress=progress, desc=f"features {spec.name}",
                             skip_unreadable=skip_unreadable, verify=verify, fingerprint=fingerprint)
    res: EvalResult = evaluate(model, feats, batch_size=batch_size, progress=progress, dataset=spec.name,
                               pixel_metrics=pixel_metrics)
    durations = dict((training_info or {}).get("durations", {}), eval_features_s=feats.seconds,
                     eval_s=res.seconds, eval_total_s=time.perf_counter() - t0)
    prov = provenance(model, data=_data_info(spec, samples, feats.fingerprint), device=device, durations=durations,
                      training=_training_summary(training_info), init=init, keys=keys or {},
                      skip_unreadable=skip_unreadable, skipped=[list(s) for s in feats.skipped],
                      feature_dtype=cache.dtype, experiment=experiment)
    cats = feats.categories()
    write_results(out_path, res.categories, res.mean, prov, res.notes, intervals=res.intervals,
                  scores={c: [float(x) for x in v] for c, v in res.scores.items()},
                  labels={c: [int(feats.labels[i]) for i in idx] for c, idx in cats.items()},
                  paths_by_category={c: [feats.paths[i] for i in idx] for c, idx in cats.items()})
    return read_results(out_path), res


def _training_summary(info: dict | None) -> dict | None:
    """The training record without the per-step losses (they stay in run.json)."""
    if info is None:
        return None
    return {k: v for k, v in info.items() if k != "steps"}
