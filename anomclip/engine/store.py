"""The run store: what a run's key is made of, its ``run.json`` record, and its lock.

A run's key is the hash of everything its prompts depend on (:func:`run_material`): the
recipe without its display name, the weights identity, the training data's fingerprint, the
initial prompts' content, the feature dtype and the store and feature-cache versions. An
evaluation's key adds the evaluation data's fingerprint and the ``skip_unreadable`` choice.
Labels are never part of a key (docs/run-store.md).

Every file of a run carries the digest of its content, checked when it is read: ``run.json``
its own (and that of ``prompts.pt``), each ``eval-*.json`` its own (:mod:`.results`). What
does not match is recomputed, and :func:`notice` says so in one line.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sys
from pathlib import Path

from ..data.fingerprint import content_key
from ..errors import AnomclipError
from ..io import atomic_write_text
from ..recipes import KEYED_WHEN_SET, Recipe
from .features import CACHE_VERSION, FeatureCache
from .results import DamagedEntry, read_stamped, stamped_json

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
    defaults = Recipe().to_dict()
    for k in KEYED_WHEN_SET:  # settings added later: keyed only where set, so earlier keys stay
        if json.dumps(settings.get(k)) == json.dumps(defaults[k]):
            settings.pop(k, None)
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


def notice(message: str) -> None:
    """One line on stderr: the run store repairs something (never an error, never silent)."""
    print(f"anomclip: run store: {message}", file=sys.stderr, flush=True)


def file_digest(path: Path) -> str:
    """``"sha256:<hex>"`` of a file's bytes (``prompts.pt``'s digest in ``run.json``)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def read_run(folder: Path) -> dict | None:
    """``run.json`` of ``folder`` with its digest checked; None when absent or damaged (a damaged
    record is recomputed: :func:`notice` says so)."""
    p = folder / "run.json"
    if not p.is_file():
        return None
    try:
        return read_stamped(p, "run record")
    except DamagedEntry as e:
        notice(f"{e}: the run is recomputed")
        return None
    except AnomclipError:  # gone meanwhile
        return None


def prompts_intact(folder: Path, run_doc: dict) -> bool:
    """Whether ``prompts.pt`` is the file whose digest ``run.json`` records (said when it is not)."""
    p = folder / "prompts.pt"
    want = run_doc.get("prompts_digest")
    if want is not None and p.is_file() and file_digest(p) == want:
        return True
    notice(f"{p} does not match the digest in {folder / 'run.json'} (edited, damaged or missing): "
           "the run is trained again")
    return False


def write_run(folder: Path, material: dict, training: dict | None, complete: bool = True) -> None:
    """Write ``run.json`` with its digest (and that of ``prompts.pt`` when the run has one)."""
    prompts = folder / "prompts.pt"
    doc = {"key": folder.name, "material": material, "training": training, "complete": complete,
           "prompts_digest": file_digest(prompts) if training is not None and prompts.is_file() else None}
    atomic_write_text(folder / "run.json", stamped_json(doc))
