"""The run store: what a run's key is made of, its ``run.json`` record, and its lock.

A run's key is the hash of everything its prompts depend on (:func:`run_material`): the
recipe without its display name, the weights identity, the training data's fingerprint, the
initial prompts' content, the feature dtype and the store and feature-cache versions. An
evaluation's key adds the evaluation data's fingerprint and the ``skip_unreadable`` choice.
Labels are never part of a key (docs/run-store.md).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

from ..data.fingerprint import content_key
from ..io import atomic_write_text
from ..recipes import Recipe
from .features import CACHE_VERSION, FeatureCache

#: Bumped when the meaning of a key, the layout of the run store, or what evaluation computes
#: from the same features changes (2: pixel metrics over the images that have masks). The
#: preprocessing is versioned by the feature cache's own ``CACHE_VERSION``, also in every key.
STORE_VERSION = 2


UNTRAINED = "untrained prompts (N(0, 0.02) init)"


def weights_identity(recipe: Recipe, cache: FeatureCache) -> str | None:
    """The weights a recipe names: an open_clip tag, a local file by content, or None (random)."""
    p = recipe.pretrained
    if p is not None and os.path.isfile(p):
        return f"file:{cache.digests.digest(p)}"
    return p


def init_identity(authors_checkpoint, init_prompts, cache: FeatureCache) -> dict | None:
    if authors_checkpoint:
        return {"authors": cache.digests.digest(authors_checkpoint), "file": Path(authors_checkpoint).name}
    if init_prompts:
        return {"prompts": cache.digests.digest(init_prompts), "file": Path(init_prompts).name}
    return None


def run_material(recipe: Recipe, train_fp: str | None, init: dict | None, cache: FeatureCache) -> dict:
    """Everything a run's prompts depend on (its key is the hash of this)."""
    settings = recipe.to_dict()
    settings.pop("name")  # a display name, not a setting
    return {"store": STORE_VERSION, "features": CACHE_VERSION, "recipe": settings, "weights": weights_identity(recipe, cache),
            "train_data": train_fp, "init": {k: v for k, v in init.items() if k != "file"} if init else None,
            "feature_dtype": cache.dtype}


def eval_key(run_key: str, eval_fp: str, skip_unreadable: bool) -> str:
    return content_key({"run": run_key, "data": eval_fp, "skip_unreadable": bool(skip_unreadable)})


@contextlib.contextmanager
def run_lock(folder: Path):
    """One process at a time trains or evaluates a given run."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_run(folder: Path) -> dict | None:
    p = folder / "run.json"
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # a damaged record is recomputed


def write_run(folder: Path, material: dict, training: dict | None, complete: bool = True) -> None:
    atomic_write_text(folder / "run.json", json.dumps(
        {"key": folder.name, "material": material, "training": training, "complete": complete}, indent=1) + "\n")
