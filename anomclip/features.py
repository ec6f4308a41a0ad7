"""Frozen visual features, computed once and reused (SPEC §6).

The visual encoder is frozen and there is no augmentation, so the global feature and the
patch features of every requested layer are the same at every epoch and in every run that
shares the backbone, weights, image size, DPAM modes/start and layers. They are computed
once per dataset and stored on disk as ``.npy`` memory maps, written batch by batch during
extraction and read batch by batch during training, so a dataset larger than memory is
extracted and trained on with one batch in memory.

Cache folder: ``$ANOMCLIP_CACHE`` or ``.cache/features`` in the working directory; one
sub-folder per key (a hash of everything the features depend on, including the dataset's
fingerprint). A folder is written under a temporary name and renamed when complete.

Patch features are stored as float32 (exact). ``$ANOMCLIP_CACHE_DTYPE=float16`` halves their
size on disk (ViT-L at 518 px: ~2 MB instead of ~4 MB per image and layer) at the cost of
rounding every feature to half precision; the dtype is part of the cache key and of every
results file's provenance, and results are only re-used under the same dtype.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .data import AnomalyDataset, Sample, dataset_fingerprint
from .errors import AnomclipError

CACHE_VERSION = 1
CACHE_DTYPES = ("float32", "float16")


def cache_root() -> Path:
    return Path(os.environ.get("ANOMCLIP_CACHE", ".cache/features"))


def cache_dtype() -> str:
    """Storage type of cached patch features: ``$ANOMCLIP_CACHE_DTYPE``, float32 by default."""
    value = os.environ.get("ANOMCLIP_CACHE_DTYPE", "float32")
    if value not in CACHE_DTYPES:
        raise AnomclipError(f"ANOMCLIP_CACHE_DTYPE={value!r} is not a cache type: use float32 or float16")
    return value


@dataclass
class FeatureSet:
    """Visual features and labels of a list of samples, in the samples' order."""

    global_feats: np.ndarray  # [N, D]
    patches: dict  # {mode: {layer: [N, P, D]}} (memory maps when loaded from the cache)
    labels: np.ndarray  # [N] 0/1
    masks: np.ndarray  # [N, S, S] uint8 0/1
    cls_names: list
    specie_names: list
    paths: list
    has_mask: np.ndarray  # [N] bool: an anomalous image with a pixel mask (or a normal one)
    skipped: list = field(default_factory=list)  # [(path, reason)] unreadable files left out
    seconds: float = 0.0  # extraction time (0 when read from the cache)
    from_cache: bool = False
    key: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, idx, device="cpu"):
        """``(global, {mode: {layer: tensor}}, labels, masks, cls_names)`` for indices ``idx``."""
        idx = np.sort(np.asarray(idx))  # memory maps read faster in order
        g = torch.from_numpy(np.ascontiguousarray(self.global_feats[idx])).to(device)
        feats = {m: {l: torch.from_numpy(np.ascontiguousarray(a[idx])).to(device).float() for l, a in d.items()}
                 for m, d in self.patches.items()}
        labels = torch.from_numpy(self.labels[idx]).long().to(device)
        masks = torch.from_numpy(self.masks[idx].astype(np.float32)).to(device)
        return g, feats, labels, masks, [self.cls_names[i] for i in idx], idx

    def categories(self) -> dict[str, np.ndarray]:
        """Indices of each category, in first-seen order."""
        out: dict[str, list] = {}
        for i, c in enumerate(self.cls_names):
            out.setdefault(c, []).append(i)
        return {c: np.asarray(v) for c, v in out.items()}


def feature_key(model, samples: list[Sample], image_size: int) -> str:
    r = model.recipe
    parts = dict(
        version=CACHE_VERSION, backbone=model.info.name, weights=model.info.weights, image_size=image_size,
        pos=model.info.pos_interpolation, modes=list(model.modes) or ["none"], start=model.dpam_start,
        layers=list(model.layers), global_ln_post=r.global_ln_post, data=dataset_fingerprint(samples),
        dtype=cache_dtype(),
    )
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def extract_features(model, samples: list[Sample], batch_size: int = 8, use_cache: bool = True,
                     skip_unreadable: bool = False, progress: bool = True, desc: str = "features",
                     cache_dir: Path | None = None) -> FeatureSet:
    """The :class:`FeatureSet` of ``samples`` under ``model``'s frozen visual encoder.

    With ``use_cache`` the features are written batch by batch into memory-mapped ``.npy``
    files of a temporary folder, renamed into the cache when complete: extraction holds one
    batch in memory, whatever the size of the dataset.
    """
    size = model.image_size
    key = feature_key(model, samples, size)
    folder = (cache_dir or cache_root()) / key
    if use_cache and (folder / "index.json").is_file():
        return _load(folder, key)
    ds = AnomalyDataset(samples, size, skip_unreadable=skip_unreadable)
    t0 = time.perf_counter()
    if not use_cache:
        fs = _compute(model, ds, batch_size, progress, desc, _Arrays(len(ds)))
        fs.seconds, fs.key = time.perf_counter() - t0, key
        return fs
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        arrays = _Arrays(len(ds), tmp)
        fs = _compute(model, ds, batch_size, progress, desc, arrays)
        fs.seconds = time.perf_counter() - t0
        arrays.flush()
        _save(fs, tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    fs = _load(folder, key, seconds=fs.seconds, skipped=fs.skipped)
    fs.from_cache = False
    return fs


class _Arrays:
    """Arrays of ``n`` rows filled batch by batch: in memory, or ``.npy`` memory maps in ``folder``."""

    def __init__(self, n: int, folder: Path | None = None):
        self.n, self.folder, self.arrays = n, folder, {}

    def get(self, name: str, row_shape: tuple, dtype) -> np.ndarray:
        """The array ``name`` of shape ``(n, *row_shape)``, allocated on first use."""
        if name not in self.arrays:
            shape = (self.n, *row_shape)
            self.arrays[name] = (np.empty(shape, dtype) if self.folder is None else
                                 np.lib.format.open_memmap(self.folder / f"{name}.npy", mode="w+",
                                                           dtype=dtype, shape=shape))
        return self.arrays[name]

    def put(self, name: str, start: int, block: np.ndarray) -> None:
        self.get(name, block.shape[1:], block.dtype)[start:start + len(block)] = block

    def flush(self) -> None:
        for a in self.arrays.values():
            if isinstance(a, np.memmap):
                a.flush()


def _patch_name(mode: str, layer: int) -> str:
    """File stem of the patch features of one DPAM mode and layer in a cache folder."""
    return f"patches_{mode}_{layer}"


def _compute(model, ds: AnomalyDataset, batch_size: int, progress: bool, desc: str, out: _Arrays) -> FeatureSet:
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0)
    dtype = getattr(torch, cache_dtype())
    labels, cls, species, paths = [], [], [], []
    seen: dict = {}  # {mode: {layer}} of the patch features written
    start = 0
    for item in tqdm(loader, desc=desc, disable=not progress, leave=False):
        g, feats = model.encode_image_modes(item["image"])
        out.put("global", start, g.float().cpu().numpy())
        for m, d in feats.items():
            for l, t in d.items():
                seen.setdefault(m, set()).add(l)
                out.put(_patch_name(m, l), start, t.to(dtype).cpu().numpy())
        out.put("masks", start, item["mask"].numpy().astype(np.uint8))
        labels.append(item["label"].numpy())
        cls += list(item["cls_name"])
        species += list(item["specie_name"])
        paths += list(item["path"])
        start += len(g)
    has_mask = [bool(getattr(s, "mask_path", None)) or not s.anomaly for s in getattr(ds, "samples", [])]
    n = len(paths)
    return FeatureSet(
        global_feats=out.get("global", (model.info.embed_dim,), np.float32),
        patches={m: {l: out.arrays[_patch_name(m, l)] for l in sorted(ls)} for m, ls in seen.items()},
        labels=np.concatenate(labels) if labels else np.zeros(0, np.int64),
        masks=out.get("masks", (ds.image_size, ds.image_size), np.uint8),
        cls_names=cls, specie_names=species, paths=paths,
        has_mask=np.asarray(has_mask if len(has_mask) == n else [True] * n, dtype=bool),
        skipped=list(getattr(ds, "skipped", [])),
    )


def _save(fs: FeatureSet, tmp: Path, folder: Path) -> None:
    """Complete the cache folder ``tmp`` (its memory maps are already written) and rename it."""
    np.save(tmp / "labels.npy", fs.labels)
    np.save(tmp / "has_mask.npy", fs.has_mask)
    files = {f"{_patch_name(m, l)}.npy": [m, l] for m, d in fs.patches.items() for l in d}
    index = dict(cls_names=fs.cls_names, specie_names=fs.specie_names, paths=fs.paths,
                 skipped=fs.skipped, patch_files=files, seconds=fs.seconds)
    (tmp / "index.json").write_text(json.dumps(index))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)


def _load(folder: Path, key: str, seconds: float = 0.0, skipped=None) -> FeatureSet:
    index = json.loads((folder / "index.json").read_text())
    patches: dict = {}
    for name, (m, l) in index["patch_files"].items():
        patches.setdefault(m, {})[int(l)] = np.load(folder / name, mmap_mode="r")
    return FeatureSet(
        global_feats=np.load(folder / "global.npy"), patches=patches,
        labels=np.load(folder / "labels.npy"), masks=np.load(folder / "masks.npy", mmap_mode="r"),
        cls_names=index["cls_names"], specie_names=index["specie_names"], paths=index["paths"],
        has_mask=np.load(folder / "has_mask.npy"),
        skipped=[tuple(s) for s in (skipped if skipped is not None else index["skipped"])],
        seconds=seconds, from_cache=True, key=key,
    )
