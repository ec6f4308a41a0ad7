"""The anomclip command line: synth, prepare, train, eval, predict, bench, recipes, book.

Defaults run on the synthetic data and the tiny random backbone on CPU. Every recipe setting
is a flag (--layers 6,12,18,24, --dpam qq+kk+vv, --lam 1, --object-aware, ...), generated
from the Recipe dataclass; --recipe NAME|file.json and --method NAME choose the recipe they
change. The paper's setting: --recipe official --backbone ViT-L-14-336 --pretrained openai
--image-size 518 --device cuda.

A user's mistake ends with exit code 2 and one line on stderr naming the file or setting,
checked before any expensive work where it can be; outputs are written atomically, so an
earlier result is never half-overwritten.
"""
from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import os
import re
import sys
import time
import typing
import warnings
from pathlib import Path

from .errors import AnomclipError

DEFAULT_DATA = "data"

#: Recipe fields with a flag of their own meaning: --method picks a baseline's named recipe.
_SPECIAL_FIELDS = ("method",)
#: Settings compared when a checkpoint meets --recipe: all but the label and what the backbone
#: flags (and the smoke defaults) set.
_NOT_COMPARED = ("name", "backbone", "pretrained", "image_size")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (exit code 2), like every other mistake."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ----------------------------------------------------------------------------- recipe flags
def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse_number(text: str) -> float | int:
    """``6`` → int (a block number), ``0.25`` / ``1.0`` / ``1e-3`` → float."""
    text = text.strip()
    return int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)


def parse_setting(hint, text: str):
    """Parse the command-line text of a recipe setting of type ``hint`` (the field's annotation).

    ``none`` is ``None`` where the type allows it; ``int | float`` keeps ``6`` an int (a block)
    and ``0.25`` a float (a fraction of the depth); tuples are comma-separated; a type the CLI
    does not know is read as JSON.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if type(None) in args and text.strip().lower() in ("none", "null", "random"):
            return None
        rest = tuple(a for a in args if a is not type(None))
        if set(rest) <= {int, float}:
            return _parse_number(text)
        return parse_setting(rest[0], text) if len(rest) == 1 else json.loads(text)
    if origin is tuple:
        items = [t for t in text.split(",") if t.strip()]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(parse_setting(args[0], t) for t in items)
        if len(items) != len(args):
            raise ValueError(f"expected {len(args)} comma-separated values")
        return tuple(parse_setting(a, t) for a, t in zip(args, items))
    if hint is int:
        return int(text)
    if hint is float:
        return float(text)
    if hint is str:
        return text
    return json.loads(text)


class _SettingType:
    """argparse ``type=`` for one recipe setting (its error message names the expected form)."""

    def __init__(self, name: str, hint):
        self.name, self.hint = name, hint
        self.__name__ = str(hint).replace("typing.", "")

    def __call__(self, text: str):
        try:
            return parse_setting(self.hint, text)
        except (ValueError, TypeError) as e:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {self.name} ({e})") from None


def recipe_fields() -> list[tuple[str, object]]:
    """``(name, type)`` of every :class:`Recipe` field, in declaration order."""
    from .recipes import Recipe

    hints = typing.get_type_hints(Recipe)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(Recipe)]


def _shown(value) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) or "none"
    return "none" if value is None else str(value)


def add_recipe_args(p: argparse.ArgumentParser) -> None:
    """--recipe, --method, --device and one flag per recipe setting (help from ``DESCRIPTIONS``)."""
    from .recipes import DESCRIPTIONS, OFFICIAL, RECIPES

    g = p.add_argument_group("recipe", "the experiment: a named recipe (or JSON file) and the settings changed")
    g.add_argument("--recipe", default=None, metavar="NAME|FILE.json",
                   help=f"recipe to start from: {', '.join(RECIPES)}, or a JSON file of settings "
                        "(default: official; with a checkpoint: the checkpoint's)")
    g.add_argument("--method", default=None, metavar="NAME",
                   help="a baseline's recipe instead of --recipe: clip, clip-ac, winclip, vand, coop")
    g.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    s = p.add_argument_group("recipe settings", "each replaces one setting of the recipe "
                                                "(shown: its value in the official recipe)")
    for name, hint in recipe_fields():
        if name in _SPECIAL_FIELDS:
            continue
        desc = DESCRIPTIONS.get(name, f"recipe setting {name}")
        default = getattr(OFFICIAL, name, None)
        if hint is bool:
            s.add_argument(_flag(name), dest=f"set_{name}", action=argparse.BooleanOptionalAction,
                           default=argparse.SUPPRESS, help=f"{desc} [official: {'yes' if default else 'no'}]")
        else:
            s.add_argument(_flag(name), dest=f"set_{name}", type=_SettingType(name, hint),
                           default=argparse.SUPPRESS, metavar=name.upper(),
                           help=f"{desc} [official: {_shown(default)}]".replace("%", "%%"))


def explicit_settings(args) -> dict:
    """The recipe settings given on the command line: ``{field: value}``."""
    return {k[4:]: v for k, v in vars(args).items() if k.startswith("set_")}


def _recipe_spec(args) -> str | None:
    recipe, method = getattr(args, "recipe", None), getattr(args, "method", None)
    if method == "anomalyclip":
        method = "official"
    if recipe and method:
        raise AnomclipError(f"--recipe {recipe} and --method {method}: give one of them (a baseline is a recipe)")
    return recipe or method


def _named_or_file(spec: str):
    """``(Recipe, names_backbone)``: a recipe name, or a JSON file (that may name its backbone)."""
    from .recipes import RECIPES, Recipe, get_recipe

    if spec in RECIPES:
        return get_recipe(spec), False
    if spec.endswith(".json") or os.sep in spec or os.path.isfile(spec):
        path = Path(spec)
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise AnomclipError(f"recipe file {spec} does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise AnomclipError(f"recipe file {spec} is not valid JSON ({type(e).__name__})") from None
        if not isinstance(doc, dict):
            raise AnomclipError(f"recipe file {spec} must hold a JSON object of settings")
        try:  # a file naming no backbone gets the CLI's default one, as a recipe name does
            return Recipe.from_dict(doc), "backbone" in doc
        except TypeError as e:
            raise AnomclipError(f"recipe file {spec}: {e}") from None
        except AnomclipError as e:
            raise AnomclipError(f"recipe file {spec}: {e}") from None
    return get_recipe(spec), False  # the unknown-recipe error lists the names


def recipe_from_args(args, checkpoint: dict | None = None, checkpoint_path=None):
    """The recipe the command line describes.

    Without a checkpoint: ``--recipe``/``--method`` (default ``official``), on the tiny
    random backbone unless ``--backbone`` (or a recipe file) names another, then every
    setting flag. With a checkpoint: the recipe stored in it, then the setting flags; a
    ``--recipe``/``--method`` naming other settings is an error (never a silent choice).
    """
    from .recipes import TINY_BACKBONE, Recipe, smoke

    given = explicit_settings(args)
    spec = _recipe_spec(args)
    if checkpoint is not None:
        try:
            stored = Recipe.from_dict(checkpoint["recipe"])
        except (AnomclipError, TypeError) as e:
            raise AnomclipError(f"checkpoint {checkpoint_path}: its recipe cannot be read ({e})") from None
        if spec:
            chosen, _ = _named_or_file(spec)
            compared = [f.name for f in dataclasses.fields(Recipe) if f.name not in _NOT_COMPARED + ("epochs",)]
            differ = [k for k in compared if getattr(chosen, k) != getattr(stored, k)]
            if differ:
                flag = "--recipe" if getattr(args, "recipe", None) else "--method"
                raise AnomclipError(
                    f"{flag} {spec} is not the recipe {checkpoint_path} was made with ({stored.name!r}; "
                    f"they differ in {', '.join(differ)}): leave out {flag} to use the checkpoint's")
        if "backbone" in given and given["backbone"] != stored.backbone:
            raise AnomclipError(f"{checkpoint_path} was trained on {stored.backbone}, not {given['backbone']}")
        return stored.with_(**given) if given else stored
    base, names_backbone = _named_or_file(spec or "official")
    if not names_backbone and given.get("backbone", TINY_BACKBONE) == TINY_BACKBONE:
        base = smoke(base)  # the default: tiny random backbone at 96 px
    return base.with_(**given) if given else base


# ----------------------------------------------------------------------------- helpers
def _progress() -> bool:
    """Progress bars only on a terminal (no carriage-return junk in logs or captured errors)."""
    return sys.stderr.isatty()


def _data_spec(root: str | None, default_domain: str):
    from .engine.profiles import ensure_synthetic
    from .engine.runner import DataSpec

    if root is None:
        domains = ensure_synthetic(DEFAULT_DATA)
        return DataSpec(str(domains[default_domain]), default_domain)
    path = Path(root)
    if not path.exists():
        raise AnomclipError(f"dataset folder {root} does not exist")
    if not path.is_dir():
        raise AnomclipError(f"dataset folder {root} is a file, not a folder")
    return DataSpec(str(path), path.name)


def _samples(spec, categories=None):
    from .data.dataset import load_index

    index = load_index(spec.root, spec.split, categories)
    return [s for v in index.values() for s in v]


def _read_own_checkpoint(path) -> dict:
    from .io import read_checkpoint

    ckpt = read_checkpoint(path)
    if "recipe" not in ckpt:
        if isinstance(ckpt.get("prompt_learner"), dict):
            raise AnomclipError(f"{path} is not an anomclip prompt checkpoint (use --authors-checkpoint for the "
                                "authors' files)")
        raise AnomclipError(f"{path} is not an anomclip prompt checkpoint")
    return ckpt


# ----------------------------------------------------------------------------- commands
def cmd_synth(args) -> None:
    from .data.mock_releases import WRITERS, write_all, write_mock_release
    from .data.synth import make_synthetic

    t0 = time.perf_counter()
    if args.layout is None:  # meta.json says "synthetic": true (make_synthetic)
        roots = make_synthetic(args.out, seed=args.seed, size=128 if args.size is None else args.size)
        for name, root in roots.items():
            print(f"{name}: {root}")
    elif args.layout == "all":
        for key, s in write_all(args.out, seed=args.seed, size=64 if args.size is None else args.size).items():
            print(f"{key}: {s.root} (mock release: synthetic images in the release layout)")
    elif args.layout in WRITERS:
        s = write_mock_release(args.layout, args.out, seed=args.seed, size=64 if args.size is None else args.size)
        print(f"{args.layout}: {s.root} (mock release: synthetic images in the release layout)")
    else:
        raise AnomclipError(f"unknown --layout {args.layout!r} (choose from all, {', '.join(WRITERS)})")
    print(f"synthetic data written in {time.perf_counter() - t0:.1f} s")


def cmd_prepare(args) -> None:
    from .data.releases import prepare

    prepared = prepare(args.root, layout=args.layout)
    for line in prepared.summary():
        print(line)
    print(f"wrote {prepared.path}" if prepared.layout != "meta" else f"kept {prepared.path}")


def cmd_train(args) -> None:
    from .engine.features import extract_features
    from .engine.loading import build_model, resolve_device
    from .engine.runner import tuned_for
    from .engine.train import train
    from .io import check_writable

    out = Path(args.out)
    check_writable(out, "file")
    if out.exists() and not (args.resume or args.force):
        raise AnomclipError(f"{out} exists: --resume to continue its training, --force to start over and replace it")
    resuming = args.resume and out.exists()
    if args.resume and not resuming:
        print(f"nothing to resume at {out} yet: a new training starts")
    ckpt = _read_own_checkpoint(out) if resuming else None
    if resuming and "optimizer" not in ckpt:
        raise AnomclipError(f"{out} holds finished prompts without a training state: nothing to resume")
    device = resolve_device(args.device)
    recipe = recipe_from_args(args, ckpt, out)
    if resuming:
        from .recipes import KEYED_WHEN_SET, Recipe

        defaults = Recipe().to_dict()  # settings added later are absent from older checkpoints
        stored = {**{k: defaults[k] for k in KEYED_WHEN_SET}, **ckpt["recipe"]}
        differ = [k for k, v in recipe.to_dict().items()
                  if k not in ("name", "epochs") and json.dumps(v) != json.dumps(stored.get(k))]
        if differ:
            raise AnomclipError(f"{out} was trained with another recipe (other {', '.join(differ)}): "
                                "resume without changing them, or --force to start over")
    _refuse_training_free(recipe)
    if recipe.epochs < 1:
        raise AnomclipError(f"epochs = {recipe.epochs}: training needs at least one epoch (--epochs)")
    spec = _data_spec(args.data, "textures")
    if not resuming and "epochs" not in explicit_settings(args):
        tuned = tuned_for(recipe, spec.name)  # VAND: 3 epochs on MVTec AD, 15 on VisA
        if tuned.epochs != recipe.epochs:
            print(f"{tuned.epochs} epochs: recipe {recipe.name!r} sets them for tuning on {spec.name} "
                  "(epochs_by_tuning; --epochs to choose)")
        recipe = tuned
    samples = _samples(spec, args.categories)
    model = build_model(recipe, device)  # weights and image size are checked before the data is hashed
    if not model.trainable_parameters():
        raise AnomclipError(f"recipe {recipe.name!r} (method {getattr(recipe, 'method', 'anomalyclip')}) has no "
                            "learnable prompts: there is nothing to train, evaluate it with anomclip eval")
    cache = feature_cache(args)
    fingerprint = cache.fingerprint(samples, verify=args.verify)
    if resuming:
        before = (ckpt.get("train_data") or {}).get("fingerprint")
        if before is None:
            raise AnomclipError(f"{out} does not record its training data, so resuming cannot be checked: "
                                "--force to start over")
        if before != fingerprint:
            raise AnomclipError(f"{out} was trained on other data than {spec.root} (fingerprint {before[:12]} vs "
                                f"{fingerprint[:12]}): resume with the same --data and --categories, or --force")
    feats = extract_features(model, samples, cache, desc=f"features {spec.name}", progress=_progress(),
                             fingerprint=fingerprint)
    train_data = {"name": spec.name, "root": str(spec.root), "images": len(samples), "fingerprint": fingerprint}
    res = train(model, feats, checkpoint=out, resume=resuming, progress=_progress(),
                checkpoint_extra={"train_data": train_data})
    for h in res.history:
        print(f"epoch {h['epoch']:3d}  loss {h['loss']:.4f}  global {h['global']:.4f}  local {h['local']:.4f}"
              f"  {h['seconds']:.1f}s")
    print(f"prompts saved to {out} ({model.info.weights}; {len(samples)} images of {spec.name})")


def _refuse_training_free(recipe) -> None:
    """A transductive, training-free method (MuSc) has nothing to train: one line saying so."""
    from .methods.registry import display_name, model_class

    if getattr(model_class(recipe.method), "transductive", False):
        raise AnomclipError(f"{display_name(recipe)} is training-free (it scores each test image against the "
                            f"other images of its category): nothing to train, run anomclip eval --method "
                            f"{recipe.method} --data DIR")


def _eval_recipe(args):
    """``(recipe, checkpoint dict or None)`` of eval / predict: checked before any data is read."""
    ckpt = _read_own_checkpoint(args.checkpoint) if args.checkpoint else None
    if ckpt is not None and args.authors_checkpoint:
        raise AnomclipError("--checkpoint and --authors-checkpoint: give one of them")
    return recipe_from_args(args, ckpt, args.checkpoint), ckpt


def _load_for_eval(args, recipe, device):
    """The model of ``recipe`` with the prompts of ``--checkpoint`` / ``--authors-checkpoint``."""
    from .engine.loading import build_model

    model = build_model(recipe, device)
    init = "untrained prompts (N(0, 0.02) init)"
    if args.checkpoint:
        model.load_prompts(args.checkpoint)
        init = f"checkpoint {args.checkpoint}"
    elif args.authors_checkpoint:
        model.load_authors_checkpoint(args.authors_checkpoint)
        init = f"authors' checkpoint {args.authors_checkpoint}"
    return model, init


def cmd_eval(args) -> None:
    from .engine.loading import resolve_device
    from .engine.runner import evaluate_dataset
    from .io import check_writable

    check_writable(args.out, "file")
    if args.train_data is not None or args.seeds is not None:
        return _eval_trained(args)
    device = resolve_device(args.device)
    recipe, _ = _eval_recipe(args)
    spec = _data_spec(args.data, "objects")
    samples = _samples(spec, args.categories)
    _check_metrics(args.metrics, samples, spec.root)
    model, init = _load_for_eval(args, recipe, device)
    doc, res = evaluate_dataset(model, spec, samples, args.out, device, init=init, experiment="cli eval",
                                cache=feature_cache(args), progress=_progress(),
                                skip_unreadable=args.skip_unreadable, verify=args.verify,
                                pixel_metrics=args.metrics != "image")
    _print_results(doc)
    for note in doc["notes"]:
        print(f"note: {note}")
    for path, reason in doc["provenance"].get("skipped", []):
        print(f"skipped: {reason}")
    print(f"[{doc['provenance']['label']}] results written to {args.out}")


_SHOWN = ("image_auroc", "image_ap", "pixel_auroc", "pixel_aupro")


def _check_metrics(metrics: str, samples, root) -> None:
    """``--metrics pixel`` on data whose anomalous images have no mask: one line, before any work."""
    if metrics == "pixel" and not any(s.anomaly and s.mask_path for s in samples):
        raise AnomclipError(f"--metrics pixel: {root} has no masks (no anomalous image has one), so pixel metrics "
                            "cannot be computed; add <category>/masks/<stem>_mask.png and prepare again, "
                            "or use --metrics image")


def _print_results(doc: dict) -> None:
    """Each category's and the mean's metrics in %, with their bootstrap interval: ``91.3 [90.6, 92.0]``."""
    from .engine.intervals import format_interval

    iv = doc.get("intervals") or {}
    print("category".ljust(16) + "".join(k.rjust(20) for k in _SHOWN))
    rows = [(c, m, (iv.get("categories") or {}).get(c, {})) for c, m in doc["categories"].items()]
    for cat, m, ci in rows + [("mean", doc["mean"], iv.get("mean", {}))]:
        print(cat[:16].ljust(16) + "".join(format_interval(m.get(k), ci.get(k)).rjust(20) for k in _SHOWN))
    if iv.get("bootstrap"):
        b = iv["bootstrap"]
        print(f"[brackets: {100 * b['level']:g} % percentile bootstrap intervals over images, stratified by label; "
              f"{b['resamples']} resamples ({b['pixel_resamples']} for pixel metrics), seed {b['seed']}]")


def _eval_trained(args) -> None:
    """``eval --train-data DIR [--seeds 0,1,2]``: train (per seed) through the run store, evaluate ``--data``."""
    from .engine.loading import resolve_device
    from .engine.results import stamped_json
    from .engine.runner import DataSpec, run_experiment
    from .engine.seeds import format_spread, parse_seeds
    from .io import atomic_write_text

    if args.train_data is None:
        raise AnomclipError("--seeds needs --train-data DIR: the seeds are those of the training")
    if args.checkpoint or args.authors_checkpoint:
        raise AnomclipError("--train-data trains the prompts: give it or --checkpoint/--authors-checkpoint, not both")
    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    device = resolve_device(args.device)
    recipe = recipe_from_args(args)
    train = _data_spec(args.train_data, "textures")
    spec = _data_spec(args.data, "objects")
    _check_metrics(args.metrics, _samples(spec, args.categories), spec.root)
    if spec.name == train.name:
        spec = DataSpec(spec.root, spec.name + " (evaluated)")
    if args.categories:
        spec = DataSpec(spec.root, spec.name, categories=tuple(c for c in args.categories.split(",") if c))
    run = run_experiment(recipe, train, [spec], args.store, device=device, cache=feature_cache(args),
                         progress=_progress(), skip_unreadable=args.skip_unreadable, verify=args.verify, seeds=seeds)
    if seeds is None:
        doc = run.results[spec.name]
        _print_results(doc)
        notes = doc["notes"]
    else:
        summary = run.summary[spec.name]
        runs = {str(s): e.results[spec.name] for s, e in run.experiments.items()}
        first = next(iter(runs.values()))
        doc = {"categories": {c: {k: v["mean"] for k, v in d.items()} for c, d in summary["categories"].items()},
               "mean": {k: v["mean"] for k, v in summary["mean"].items()},
               "notes": list(dict.fromkeys(n for d in runs.values() for n in d["notes"])),
               "provenance": {**first["provenance"], "seeds": list(seeds)},
               "seeds": summary, "per_seed": runs}
        print(f"mean ± sample std (ddof=1) over seeds {', '.join(map(str, seeds))}; "
              "[interval]: each seed's bootstrap interval")
        print("category".ljust(16) + "".join(k.rjust(20) for k in _SHOWN))
        for cat, d in list(summary["categories"].items()) + [("mean", summary["mean"])]:
            print(cat[:16].ljust(16) + "".join(format_spread(d[k]).rjust(20) if k in d else "–".rjust(20)
                                               for k in _SHOWN))
        for s, d in runs.items():
            _print_seed(s, d)
        notes = doc["notes"]
    atomic_write_text(args.out, stamped_json(doc))
    for note in notes:
        print(f"note: {note}")
    print(f"[{doc['provenance']['label']}] results written to {args.out} (runs in {args.store})")


def _print_seed(seed, doc: dict) -> None:
    from .engine.intervals import format_interval

    iv = (doc.get("intervals") or {}).get("mean", {})
    print(f"seed {seed}".ljust(16) + "".join(format_interval(doc["mean"].get(k), iv.get(k)).rjust(20)
                                           for k in _SHOWN))


def _percent(value) -> str:
    """A metric in % with one decimal, or "–" when it is undefined (the notes say why)."""
    return "–" if value is None or value != value else f"{100 * value:.1f}"


def cmd_predict(args) -> None:
    from .engine.loading import resolve_device
    from .engine.predict import ThresholdPlan, predict_images
    from .engine.thresholds import parse_rule
    from .io import check_writable

    rule = parse_rule(args.threshold) if args.threshold is not None else None
    if rule is None and (args.normal or args.labelled):
        raise AnomclipError("--normal/--labelled choose a threshold: give --threshold max-normal, quantile:Q or f1")
    plan = ThresholdPlan(rule, args.threshold_scope, args.normal, args.labelled) if rule is not None else None
    out = Path(args.out)
    check_writable(out, "folder")
    if args.batch_size < 1:
        raise AnomclipError(f"--batch-size {args.batch_size} must be ≥ 1")
    recipe, _ = _eval_recipe(args)
    device = resolve_device(args.device)
    predict_images(lambda: _load_for_eval(args, recipe, device)[0], args.images, out,
                   rule.value if rule is not None and rule.kind == "value" else None,
                   args.class_name, echo=print, batch_size=args.batch_size, progress=_progress(), plan=plan)


def _whole_numbers(flag: str, text: str) -> list[int]:
    """Comma-separated whole numbers ≥ 1, or an error naming ``flag``."""
    items = [b.strip() for b in str(text).split(",") if b.strip()]
    if not items or not all(b.isdigit() and int(b) > 0 for b in items):
        raise AnomclipError(f"{flag} {text!r}: give comma-separated whole numbers ≥ 1")
    return [int(b) for b in items]


def _at_least(*checks) -> None:
    """``(flag, value, low)`` triples: each value must be ≥ its low."""
    for flag, value, low in checks:
        if value < low:
            raise AnomclipError(f"{flag} {value} must be ≥ {low}")


def _report(out, report: dict, lines=()) -> None:
    """Print ``lines`` and write ``report`` as JSON to ``out`` (atomically)."""
    from .io import atomic_write_text

    for line in lines:
        print(line, flush=True)
    atomic_write_text(out, json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")


def cmd_bench(args) -> None:
    """``anomclip bench`` without a sub-choice: one recipe's model (forward, text, training, AUPRO)."""
    from .engine.loading import resolve_device
    from .io import check_writable

    check_writable(args.out, "file")
    sizes = _whole_numbers("--batch-sizes", args.batch_sizes)
    _at_least(("--repeats", args.repeats, 1), ("--aupro-maps", args.aupro_maps, 0),
              ("--aupro-size", args.aupro_size, 1))
    from .bench import model

    report = model.bench_model(recipe_from_args(args), resolve_device(args.device), sizes, args.repeats, args.bf16,
                               args.skip_train, args.aupro_maps, args.aupro_size)
    _report(args.out, report, model.summary(report))


def cmd_bench_aupro(args) -> None:
    from .io import check_writable

    check_writable(args.out, "file")
    _at_least(("--maps", args.maps, 1), ("--size", args.size, 1), ("--repeats", args.repeats, 1))
    from .bench import metrics

    report = metrics.bench_aupro(args.maps, args.size, repeats=args.repeats, baseline=not args.no_baseline,
                                 naive=args.naive)
    _report(args.out, report, metrics.summary(report))


def cmd_bench_methods(args) -> None:
    from .engine.loading import resolve_device
    from .io import check_writable

    check_writable(args.out, "file")
    _at_least(("--images", args.images, 1), ("--repeats", args.repeats, 1), ("--paper-images", args.paper_images, 1))
    from .bench import methods

    report = methods.bench_methods(resolve_device(args.device), args.images, args.repeats, args.paper,
                                   args.paper_images, on_row=lambda *row: print(methods.row_summary(*row), flush=True))
    _report(args.out, report)


def cmd_bench_workbench(args) -> None:
    from .engine.loading import resolve_device
    from .io import check_writable

    check_writable(args.out, "file")
    from .bench import workbench

    chapters = [c for c in (args.chapters or ",".join(workbench.CHAPTERS)).split(",") if c]
    unknown = [c for c in chapters if c not in workbench.CHAPTERS]
    if unknown:
        raise AnomclipError(f"--chapters: unknown {', '.join(unknown)} (choose among {', '.join(workbench.CHAPTERS)})")
    report = workbench.bench_workbench(args.profile, args.data_root, resolve_device(args.device), chapters,
                                       on_row=lambda row: print(workbench.row_summary(row), flush=True))
    _report(args.out, report)


def cmd_bench_predict(args) -> None:
    from .io import check_writable

    check_writable(args.out, "file")
    counts = _whole_numbers("--counts", args.counts)
    _at_least(("--size", args.size, 1), ("--batch-size", args.batch_size, 1))
    from .bench import predict

    report = predict.bench_predict(counts, args.size, args.batch_size, args.predict_args, args.work,
                                   on_row=lambda r: print(predict.row_summary(r, args.size), flush=True))
    _report(args.out, report)


def cmd_bench_musc(args) -> None:
    from .bench import musc

    counts = _whole_numbers("--counts", args.counts)
    _at_least(("--counts", min(counts), 2), ("--patches", args.patches, 1), ("--width", args.width, 1),
              ("--size", args.size, 1), ("--block", args.block, 1))
    report = musc.bench_musc(counts, args.patches, args.width, args.size, block=args.block, device=args.device,
                             on_row=lambda r: print(musc.row_summary(r), flush=True))
    p = report["paper"]
    _report(args.out, report, [f"paper setting ({p['n']} images, {p['patches']} patches, C {p['width']}, "
                               f"{p['size']} px, block {p['block']}): {p['formula_gib']['total']:.2f} GiB by formula; "
                               f"~{p['seconds_per_image_extrapolated_here']:.0f} s per image extrapolated here"])


def cmd_bench_intervals(args) -> None:
    from .bench import intervals

    _at_least(("--images", args.images, 2), ("--resamples", args.resamples, 1), ("--maps", args.maps, 0),
              ("--size", args.size, 8), ("--pixel-resamples", args.pixel_resamples, 1))
    report = intervals.bench_intervals(args.images, args.resamples, args.maps, args.size, args.pixel_resamples)
    _report(args.out, report, intervals.summary(report))


def cmd_bench_fingerprint(args) -> None:
    from .io import check_writable

    check_writable(args.out, "file")
    _at_least(("--files", args.files, 1))
    if not args.gib > 0:
        raise AnomclipError(f"--gib {args.gib} must be > 0")
    from .bench import fingerprint

    report = fingerprint.bench_fingerprint(args.gib, args.files, args.dir, args.drop_caches)
    _report(args.out, report, fingerprint.summary(report))


def cmd_recipes(args) -> None:
    from .recipes import RECIPES, get_recipe

    if args.name:
        print(json.dumps(get_recipe(args.name).to_dict(), indent=1))
        return
    width = max(len(n) for n in RECIPES)
    for name, r in RECIPES.items():
        layers = ",".join(str(x) for x in r.layers)
        print(f"{name.ljust(width)}  method {getattr(r, 'method', 'anomalyclip')}, {r.backbone} "
              f"({r.pretrained or 'random weights'}) at {r.image_size} px, DPAM {r.dpam}, layers {layers}, "
              f"λ {r.lam:g}, {r.epochs} epochs")
    print("(anomclip recipes NAME prints one as JSON; the CLI runs them on tiny-random unless --backbone is given)")


def cmd_book(args) -> int:
    from .book import build as book

    if book.find_checkout() is None:
        raise AnomclipError(book.NEEDS_CHECKOUT)
    only = [o for x in args.only for o in x.split(",")] if args.only else None
    try:
        book.execute_all(args.profile, args.data_root, args.device, args.force, only)
        if not args.no_html:
            book.build_html(force=args.force)
    except book.ChapterError as e:
        print(f"anomclip book: error: {e}", file=sys.stderr)
        return 1
    return 0


def add_cache_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("feature cache")
    g.add_argument("--cache-dir", default=None,
                   help="folder of the frozen-feature cache (default: $ANOMCLIP_CACHE or .cache/features)")
    g.add_argument("--cache-dtype", default=None, choices=["float32", "float16"],
                   help="storage type of cached patch features (default: $ANOMCLIP_CACHE_DTYPE or float32; "
                        "float16 halves the disk and rounds the features)")
    g.add_argument("--verify", action="store_true",
                   help="re-hash every data file even when its size and modification time are unchanged")


def feature_cache(args):
    """The :class:`~anomclip.engine.features.FeatureCache` of ``--cache-dir``/``--cache-dtype`` or the environment."""
    from .engine.features import FeatureCache

    env = FeatureCache.from_env()
    return FeatureCache(args.cache_dir or env.root, args.cache_dtype or env.dtype)


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="anomclip", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("synth", help="write the synthetic two-domain dataset")
    s.add_argument("--out", default=f"{DEFAULT_DATA}/synthetic", help="folder to write (default: %(default)s)")
    s.add_argument("--seed", type=int, default=0, help="random seed of the generator (default: %(default)s)")
    s.add_argument("--size", type=int, default=None,
                   help="image size in pixels (default: 128; 64 for --layout mock releases)")
    s.add_argument("--layout", default=None,
                   help="instead, write a small mock release of a dataset's release layout: a layout name "
                        "of anomclip prepare, or all (one folder per dataset under --out)")
    s.set_defaults(func=cmd_synth)

    from .data.releases import LAYOUT_NAMES

    s = sub.add_parser("prepare", help="detect a dataset's layout (the paper's 17 datasets or your own "
                                       "folders), write its meta.json and say what was found")
    s.add_argument("root", help="the dataset's folder")
    s.add_argument("--layout", default="auto", choices=["auto", *LAYOUT_NAMES],
                   help="the dataset's layout (default: detected)")
    s.set_defaults(func=cmd_prepare)

    s = sub.add_parser("train", help="train the prompts on a dataset's test split (the auxiliary data)")
    s.add_argument("--data", default=None, help="dataset root (default: the synthetic 'textures' domain)")
    s.add_argument("--out", required=True, help="checkpoint file to write (the prompts, the recipe, the data's "
                                               "fingerprint and the training state)")
    s.add_argument("--categories", default=None, help="comma-separated subset of the categories")
    s.add_argument("--resume", action="store_true", help="continue the interrupted training saved in --out "
                                                         "(same recipe and data)")
    s.add_argument("--force", action="store_true", help="start over and replace an existing --out")
    add_cache_args(s)
    add_recipe_args(s)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("eval", help="evaluate zero-shot on a dataset, write a results JSON")
    s.add_argument("--data", default=None, help="dataset root (default: the synthetic 'objects' domain)")
    s.add_argument("--out", required=True, help="results JSON file to write")
    s.add_argument("--checkpoint", default=None, help="prompts written by anomclip train (default: untrained "
                                                      "prompts); its recipe is used")
    s.add_argument("--authors-checkpoint", default=None, help="the authors' released prompts (epoch_15.pth)")
    s.add_argument("--categories", default=None, help="comma-separated subset of the categories")
    s.add_argument("--skip-unreadable", action="store_true", help="warn about and skip unreadable image files")
    s.add_argument("--train-data", default=None, metavar="DIR",
                   help="train the prompts on DIR first (through the run store --store), then evaluate --data")
    s.add_argument("--seeds", default=None, metavar="0,1,2",
                   help="with --train-data: train once per seed, report mean ± sample std (ddof=1) per metric")
    s.add_argument("--metrics", default="all", choices=["all", "image", "pixel"],
                   help="all: image metrics, and pixel metrics where there are masks (default); image: image "
                        "metrics only; pixel: require masks (refused, in one line, on data without them)")
    s.add_argument("--store", default="results/cli", metavar="DIR",
                   help="run store of --train-data (content-keyed runs, reused; default: %(default)s)")
    add_cache_args(s)
    add_recipe_args(s)
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("predict", help="score images and write heat-map overlays", conflict_handler="resolve")
    s.add_argument("images", nargs="+", help="image files and folders (searched recursively; their "
                                             "sub-folders are mirrored in --out)")
    s.add_argument("--out", required=True, help="folder for the overlays, masks and scores.csv/json "
                                                "(inputs from several folders are mirrored inside it)")
    s.add_argument("--checkpoint", default=None, help="prompts written by anomclip train; its recipe is used")
    s.add_argument("--authors-checkpoint", default=None, help="the authors' released prompts (epoch_15.pth)")
    s.add_argument("--threshold", default=None, metavar="max-normal|quantile:Q|f1|NUMBER",
                   help="judge each image anomalous when its score is ≥ a threshold: the largest score of "
                        "--normal images (max-normal, just above it), their quantile Q, the F1-optimal one on "
                        "--labelled, or a number in [0, 1] (which also writes a binary mask where the anomaly "
                        "map, mean over layers, is ≥ it); scores.json records the choice")
    s.add_argument("--normal", default=None, metavar="DIR",
                   help="images known to be normal (searched recursively; their first sub-folder is their category)")
    s.add_argument("--labelled", default=None, metavar="DIR",
                   help="a labelled set (e.g. <category>/normal, <category>/anomalous) for --threshold f1")
    s.add_argument("--threshold-scope", default="global", choices=["global", "category"],
                   help="one threshold, or one per category of the reference images (an image's category: "
                        "its first sub-folder, else --class-name; default: %(default)s)")
    s.add_argument("--class-name", default="object", help="category name (for object-aware prompts)")
    add_recipe_args(s)
    # replaces the recipe's flag of the same name: predict does not train
    s.add_argument("--batch-size", dest="batch_size", type=int, default=8, metavar="BATCH_SIZE",
                   help="images scored at a time (default: %(default)s); the recipe's training batch size "
                        "(≥ 1) plays no part in predict")
    s.set_defaults(func=cmd_predict)

    add_bench_parser(sub)

    s = sub.add_parser("recipes", help="list the named recipes, or print one as JSON")
    s.add_argument("name", nargs="?", default=None, help="a recipe name: print its settings as JSON")
    s.set_defaults(func=cmd_recipes)

    s = sub.add_parser("book", help="execute every chapter and render the book (what make book runs)")
    s.add_argument("--profile", default="smoke", choices=["smoke", "paper"],
                   help="smoke: tiny random backbone on synthetic data; paper: ViT-L-14-336 on real data")
    s.add_argument("--data-root", default="data", help="folder of the datasets (default: %(default)s)")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    s.add_argument("--force", action="store_true", help="recompute results even when matching ones exist")
    s.add_argument("--only", action="append", default=None,
                   help="chapter number or name prefix (repeatable or comma-separated), e.g. --only 04")
    s.add_argument("--no-html", action="store_true", help="execute the chapters without rendering the HTML")
    s.set_defaults(func=cmd_book)
    return p


def add_bench_parser(sub) -> None:
    """``anomclip bench`` (one recipe's model) and its sub-choices aupro, methods, workbench, predict, musc,
    intervals, fingerprint."""
    s = sub.add_parser("bench", help="benchmarks: DPAM vs plain CLIP, the feature cache and AUPRO (or a sub-choice); "
                                     "each prints a summary and writes JSON",
                       description="Without a sub-choice: time one recipe's model (DPAM vs plain CLIP vs a naive "
                                   "two-pass forward, the text side, training with the feature cache, AUPRO). "
                                   "Benchmarks measure; they never assert a time.")
    s.add_argument("--out", default="results/bench.json", help="JSON file to write (default: %(default)s)")
    s.add_argument("--batch-sizes", default="1,4", help="comma-separated batch sizes to time (default: %(default)s)")
    s.add_argument("--repeats", type=int, default=3, help="timed repeats per measure; the median is kept")
    s.add_argument("--aupro-maps", type=int, default=100, help="number of maps of the AUPRO timing (0: skip it)")
    s.add_argument("--aupro-size", type=int, default=518, help="side of the AUPRO timing's maps in pixels")
    s.add_argument("--skip-train", action="store_true", help="do not time training epochs")
    s.add_argument("--bf16", action="store_true", help="also time bf16 autocast (GPU)")
    add_recipe_args(s)
    s.set_defaults(func=cmd_bench)
    what = s.add_subparsers(dest="bench", metavar="WHAT", required=False,
                            title="sub-choices (each with its own options; see anomclip bench WHAT --help)",
                            help="what to time instead of one recipe's model")

    b = what.add_parser("aupro", help="exact AUPRO and the pixel metrics on many large maps, beside the "
                                      "implementation they replaced (largest difference of each metric)")
    b.add_argument("--out", default="results/bench_aupro.json", help="JSON file to write (default: %(default)s)")
    b.add_argument("--maps", type=int, default=100, help="number of maps (default: %(default)s)")
    b.add_argument("--size", type=int, default=518, help="side of the maps in pixels (default: %(default)s)")
    b.add_argument("--repeats", type=int, default=1, help="timed repeats; the median is kept (default: %(default)s)")
    b.add_argument("--no-baseline", action="store_true", help="do not time the implementation before issue 27")
    b.add_argument("--naive", action="store_true", help="also extrapolate a naive per-threshold AUPRO")
    b.set_defaults(func=cmd_bench_aupro)

    b = what.add_parser("methods", help="images/s of each method and what the shared feature cache saves")
    b.add_argument("--out", default="results/methods-bench.json", help="JSON file to write (default: %(default)s)")
    b.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    b.add_argument("--images", type=int, default=8, help="images per batch on the tiny backbone (default: %(default)s)")
    b.add_argument("--repeats", type=int, default=3, help="timed repeats; the median is kept (default: %(default)s)")
    b.add_argument("--paper", action="store_true", help="also each method's paper backbone, random weights")
    b.add_argument("--paper-images", type=int, default=2, help="images per batch with --paper (default: %(default)s)")
    b.set_defaults(func=cmd_bench_methods)

    b = what.add_parser("workbench", help="seconds from a workbench's Run to its new row, per ablation chapter "
                                          "(run it from the checkout, alone on the machine)")
    b.add_argument("--out", default="results/bench_workbench.json", help="JSON file to write (default: %(default)s)")
    b.add_argument("--profile", default="smoke", choices=["smoke", "paper"], help="the book's profile")
    b.add_argument("--data-root", default="data", help="folder of the datasets (default: %(default)s)")
    b.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    b.add_argument("--chapters", default=None, help="comma-separated chapter names, e.g. 06_object_aware,09_dpam "
                                                    "(default: all six ablation chapters)")
    b.set_defaults(func=cmd_bench_workbench)

    b = what.add_parser("predict", help="anomclip predict's peak memory and speed on folders of N random images")
    b.add_argument("--out", default="results/bench_predict.json", help="JSON file to write (default: %(default)s)")
    b.add_argument("--counts", default="40,400", help="comma-separated numbers of images (default: %(default)s)")
    b.add_argument("--size", type=int, default=512, help="side of the images in pixels (default: %(default)s)")
    b.add_argument("--batch-size", type=int, default=8, help="anomclip predict's --batch-size (default: %(default)s)")
    b.add_argument("--work", default=None, help="folder for the images and outputs (default: a temporary one)")
    b.add_argument("predict_args", nargs="*", metavar="-- PREDICT_FLAGS",
                   help="after --: flags for anomclip predict, e.g. -- --backbone ViT-L-14-336 --device cuda")
    b.set_defaults(func=cmd_bench_predict)

    b = what.add_parser("musc", help="MuSc's peak memory and time per category of N images (random features)")
    b.add_argument("--out", default="results/bench_musc.json", help="JSON file to write (default: %(default)s)")
    b.add_argument("--counts", default="4,8", help="comma-separated numbers of images (default: %(default)s)")
    b.add_argument("--patches", type=int, default=1369, help="patches per image (default: %(default)s, 37×37)")
    b.add_argument("--width", type=int, default=1024, help="feature width C (default: %(default)s)")
    b.add_argument("--size", type=int, default=518, help="side of the maps in pixels (default: %(default)s)")
    b.add_argument("--block", type=int, default=8, help="images per comparison block (default: %(default)s)")
    b.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: %(default)s)")
    b.set_defaults(func=cmd_bench_musc)

    b = what.add_parser("intervals", help="what the bootstrap intervals of an evaluation cost: image and pixel metrics")
    b.add_argument("--out", default="results/bench_intervals.json", help="JSON file to write (default: %(default)s)")
    b.add_argument("--images", type=int, default=200, help="image scores (default: %(default)s)")
    b.add_argument("--resamples", type=int, default=1000, help="resamples of the image metrics (default: %(default)s)")
    b.add_argument("--maps", type=int, default=100, help="maps of the pixel metrics, 0: skip them (default: %(default)s)")
    b.add_argument("--size", type=int, default=518, help="side of the maps in pixels (default: %(default)s)")
    b.add_argument("--pixel-resamples", type=int, default=100,
                   help="resamples of the pixel metrics (default: %(default)s)")
    b.set_defaults(func=cmd_bench_intervals)

    b = what.add_parser("fingerprint", help="hashing a dataset: first hash, re-check by stat, full verify")
    b.add_argument("--out", default="results/bench_fingerprint.json", help="JSON file to write (default: %(default)s)")
    b.add_argument("--gib", type=float, default=5.0, help="total size of the tree in GiB (default: %(default)s)")
    b.add_argument("--files", type=int, default=5000, help="number of files (default: %(default)s)")
    b.add_argument("--dir", default=None, help="where to write the tree (default: a temporary folder)")
    b.add_argument("--drop-caches", action="store_true", help="drop the page cache before each full read (root)")
    b.set_defaults(func=cmd_bench_fingerprint)


def _reissue_warnings(caught, command: str) -> None:
    """Warnings of a successful command, re-issued after it, each shown as one line.

    Third-party deprecation notices (torch, open_clip…) are dropped and repeats said once; on
    an error nothing but the error line is shown. Re-issuing (not
    printing) keeps them visible to callers of :func:`main` (``pytest.warns``, filters).
    """
    seen = set()
    keep = []
    for w in caught:
        ours = "anomclip" in str(w.filename)
        if not ours and issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning)):
            continue
        text = str(w.message).strip()
        if text not in seen:
            seen.add(text)
            keep.append(w)

    def one_line(message, category, filename, lineno, line=None):
        text = str(message).strip()
        return f"anomclip {command}: warning: {text.splitlines()[0] if text else category.__name__}\n"

    previous = warnings.formatwarning
    warnings.formatwarning = one_line
    try:
        for w in keep:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    finally:
        warnings.formatwarning = previous


def main(argv=None) -> int:
    args = build_parser().parse_args(None if argv is None else [str(a) for a in argv])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = args.func(args) or 0
        except AnomclipError as e:
            print(f"anomclip {args.command}: error: {e}", file=sys.stderr)
            return 2
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            where = f" writing {e.filename}" if e.filename else ""
            print(f"anomclip {args.command}: error: no space left on the device{where}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"anomclip {args.command}: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # `anomclip recipes | head`
            sys.stdout = open(os.devnull, "w")
            return 0
    _reissue_warnings(caught, args.command)
    return code


if __name__ == "__main__":
    sys.exit(main())
