"""Results files with provenance, written atomically.

A results file is JSON::

    {"categories": {name: {metric: value}}, "mean": {metric: value}, "notes": [...],
     "provenance": {recipe, backbone, weights, data, commit, versions, device, durations, ...}}

Metric values are fractions in [0, 1]; undefined ones are ``null`` (NaN) with a note.

Like git's objects, every file of the run store carries the digest of its content
(:func:`json_digest`: ``"sha256:"`` + the SHA-256 of the document without its ``"digest"``
entry, serialised as canonical JSON — keys sorted, separators ``,`` and ``:``, UTF-8, no
NaN), checked when it is read: an edited, truncated or otherwise damaged file is a
:class:`DamagedEntry`, which the runner recomputes (docs/run-store.md).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import platform
import subprocess
from pathlib import Path

from ..errors import AnomclipError
from ..io import atomic_write_text

PACKAGES = ("anomclip", "torch", "torchvision", "open_clip_torch", "numpy", "scipy", "scikit-learn")


def package_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> str | None:
    """The commit of the anomclip checkout (with ``+dirty`` when it has changes), if any."""
    here = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        if not sha:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def device_name(device) -> str:
    import torch

    d = torch.device(device)
    if d.type == "cuda" and torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(d)}"
    return f"cpu: {platform.processor() or platform.machine()} ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def provenance(model=None, recipe=None, data: dict | None = None, device="cpu", durations: dict | None = None,
               **extra) -> dict:
    """Everything needed to tell where a number came from."""
    recipe = recipe or (model.recipe if model is not None else None)
    prov = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "recipe": recipe.to_dict() if recipe is not None else None,
        "commit": git_commit(),
        "versions": package_versions(),
        "device": device_name(device),
        "durations": durations or {},
        "data": data or {},
    }
    if model is not None:
        info = model.info
        prov["backbone"] = {"name": info.name, "weights": info.weights, "trained": info.trained,
                            "image_size": info.image_size, "layers": list(model.layers),
                            "dpam_start": model.dpam_start}
        prov["label"] = label_for(info.trained, (data or {}).get("synthetic", False), info.name)
    prov.update(extra)
    return prov


def label_for(trained_backbone: bool, synthetic: bool, backbone: str = "tiny-random") -> str:
    """The honest one-line label of where numbers come from."""
    data = "synthetic data" if synthetic else "real data"
    if not trained_backbone:
        what = "untrained tiny backbone" if backbone == "tiny-random" else f"untrained {backbone} (random weights)"
        return f"{what}, {data} — not a reproduction of the paper"
    if synthetic:
        return f"pretrained {backbone}, synthetic data — not a reproduction of the paper"
    return f"pretrained {backbone}, {data}"


def _clean(x):
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "item") and getattr(x, "ndim", 1) == 0:
        return _clean(x.item())
    return x


#: The entry of a stored JSON document that holds the digest of the rest of it.
DIGEST_KEY = "digest"


class DamagedEntry(AnomclipError):
    """A stored file that is not what was written: truncated, edited, or without its digest."""


def json_digest(doc: dict) -> str:
    """``"sha256:<hex>"`` of ``doc`` without its ``"digest"`` entry, as canonical JSON (keys
    sorted, no spaces, UTF-8, NaN refused: documents are cleaned to ``null`` before)."""
    body = {k: v for k, v in doc.items() if k != DIGEST_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def stamped_json(doc: dict) -> str:
    """The text of ``doc`` (cleaned: NaN → null) with its digest, as the run store writes it."""
    doc = _clean({k: v for k, v in doc.items() if k != DIGEST_KEY})
    doc[DIGEST_KEY] = json_digest(doc)
    return json.dumps(doc, indent=1, sort_keys=False, ensure_ascii=False) + "\n"


def read_stamped(path, what: str) -> dict:
    """The JSON document of ``path`` after checking its digest; :class:`DamagedEntry` (one line,
    naming the file and what is wrong) when it cannot be read, is not JSON, or does not match."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AnomclipError(f"{what} {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DamagedEntry(f"{what} {path} is not valid JSON (truncated or damaged)") from None
    if not isinstance(doc, dict) or DIGEST_KEY not in doc:
        raise DamagedEntry(f"{what} {path} carries no digest of its content (damaged, or written by an "
                           "older anomclip)")
    if doc[DIGEST_KEY] != json_digest(doc):
        raise DamagedEntry(f"{what} {path} does not match its digest (edited or damaged)")
    return doc


def write_results(path, categories: dict, mean: dict, provenance: dict, notes=(), **extra) -> Path:
    """Write a results file (NaN → null) atomically, with the digest of its content."""
    doc = {"categories": categories, "mean": mean, "notes": list(notes), "provenance": provenance}
    doc.update(extra)
    return atomic_write_text(path, stamped_json(doc))


def read_results(path) -> dict:
    """A results file, its digest checked (:class:`DamagedEntry` when it does not match)."""
    path = Path(path)
    doc = read_stamped(path, "results file")
    for key in ("categories", "mean", "provenance"):
        if key not in doc:
            raise DamagedEntry(f"results file {path} has no {key!r} entry")
    nan = float("nan")
    doc["mean"] = {k: (nan if v is None else v) for k, v in doc["mean"].items()}
    doc["categories"] = {c: {k: (nan if v is None else v) for k, v in d.items()} for c, d in doc["categories"].items()}
    return doc
