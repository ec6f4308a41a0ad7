"""Results files with provenance, written atomically.

A results file is JSON::

    {"categories": {name: {metric: value}}, "mean": {metric: value}, "notes": [...],
     "provenance": {recipe, backbone, weights, data, commit, versions, device, durations, ...}}

Metric values are fractions in [0, 1]; undefined ones are ``null`` (NaN) with a note.
"""
from __future__ import annotations

import datetime as _dt
import errno
import json
import math
import os
import platform
import secrets
import subprocess
from pathlib import Path

from .errors import AnomclipError

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
    here = Path(__file__).resolve().parent.parent
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


def atomic_write(path: str | os.PathLike, data) -> Path:
    """Write ``path`` completely or not at all: the one way anomclip writes a file.

    ``data`` is ``bytes``, ``str`` (UTF-8) or a callback ``writer(binary_file)`` (e.g.
    ``lambda f: torch.save(obj, f)``). It goes to a temporary file beside ``path``, created
    with the user's umask (mode ``0o666 & ~umask``, like ``open``; ``tempfile.mkstemp`` would
    make it 0600), flushed to disk, then renamed over ``path``: a reader sees the old file or
    the new one, never half of one. A full disk or a folder that cannot be written is an
    :class:`AnomclipError` naming ``path``; the temporary file is removed and an existing
    ``path`` is left as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AnomclipError(f"cannot create the folder {path.parent} for {path}: {e.strerror}") from None
    if path.is_dir():
        raise AnomclipError(f"{path} is a folder: give a file name to write")
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the kernel applies the umask
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise AnomclipError(f"cannot write {path}: no space left on the device") from None
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise AnomclipError(f"cannot write {path}: {e.strerror} (is {path.parent} read-only?)") from None
        raise
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write` of a text (UTF-8)."""
    return atomic_write(path, text)


def check_writable(path: str | os.PathLike, kind: str = "file") -> Path:
    """Fail now, before any expensive work, if ``path`` (a ``file`` or a ``folder``) cannot be written.

    A file must not be an existing folder and a folder must not be an existing file. A
    temporary file is created and removed in the folder that will hold ``path`` (or, when
    that folder does not exist yet, in its nearest existing parent): the only sure test, as
    permissions, read-only mounts and ACLs all show up. Nothing is left behind, not even a
    created folder.
    """
    path = Path(path)
    if kind == "file" and path.is_dir():
        raise AnomclipError(f"{path} is a folder: give a file name to write")
    if kind == "folder" and path.exists() and not path.is_dir():
        raise AnomclipError(f"{path} is a file, not a folder: give a folder to write into")
    folder = path if kind == "folder" else path.parent
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise AnomclipError(f"cannot write {path}: {existing} is a file, not a folder")
    probe = existing / f".anomclip-write-test.{secrets.token_hex(4)}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    except OSError as e:
        raise AnomclipError(f"cannot write {path}: {e.strerror} ({existing})") from None
    probe.unlink()
    return path


def write_results(path, categories: dict, mean: dict, provenance: dict, notes=(), **extra) -> Path:
    """Write a results file (NaN → null) atomically."""
    doc = {"categories": categories, "mean": mean, "notes": list(notes), "provenance": provenance}
    doc.update(extra)
    return atomic_write_text(path, json.dumps(_clean(doc), indent=1, sort_keys=False) + "\n")


def read_results(path) -> dict:
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise AnomclipError(f"results file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise AnomclipError(f"results file {path} is not valid JSON") from None
    for key in ("categories", "mean", "provenance"):
        if key not in doc:
            raise AnomclipError(f"results file {path} has no {key!r} entry")
    nan = float("nan")
    doc["mean"] = {k: (nan if v is None else v) for k, v in doc["mean"].items()}
    doc["categories"] = {c: {k: (nan if v is None else v) for k, v in d.items()} for c, d in doc["categories"].items()}
    return doc
