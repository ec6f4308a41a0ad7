"""Frozen visual features, computed once and reused (docs/anomalyclip.md §6).

The visual encoder is frozen and there is no augmentation, so the global feature and the
patch features of every requested layer are the same at every epoch and in every run that
shares the model's :meth:`feature_spec` (backbone, weights, image size, DPAM modes/start,
layers…). They are computed once per dataset and stored on disk as ``.npy`` memory maps,
written batch by batch during extraction and read batch by batch during training, so a
dataset larger than memory is extracted and trained on with one batch in memory.

A :class:`FeatureCache` names the folder and the storage dtype explicitly (the CLI and the
profiles build it from ``$ANOMCLIP_CACHE`` / ``$ANOMCLIP_CACHE_DTYPE``). One sub-folder per
key: a hash of the feature spec, the dataset's content fingerprint
(:mod:`anomclip.data.fingerprint`), the dtype and the ``skip_unreadable`` choice. The cache is
safe to share:

* **concurrent writers** — extraction of one key holds an exclusive ``flock`` on
  ``.<key>.lock``; a second process waits, then reads what the first wrote;
* **kill -9** — a folder is written under a temporary name ``.<key>.*`` and renamed when
  complete; temporary folders whose lock is free are left-overs and are removed;
* **a full disk** — a memory map on a full disk kills the process with SIGBUS, so before the
  first row is written the sizes of all memory maps are known (from the first batch), the free
  space is checked against them plus a margin scaled to the job (:func:`disk_margin`, named
  in the message), and every file is reserved with ``posix_fallocate``: a disk that fills up
  meanwhile is an ``OSError`` at reservation, never a signal. Either way the user gets one line
  (:class:`AnomclipError`) and the temporary folder is removed.

Patch features are stored as float32 (exact) by default; ``dtype="float16"`` halves their
size on disk (ViT-L at 518 px: ~2 MB instead of ~4 MB per image and layer) at the cost of
rounding every feature to half precision; the dtype is part of the key and of every results
file's provenance.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.dataset import AnomalyDataset
from ..data.fingerprint import DigestIndex, content_key, dataset_fingerprint
from ..data.index import Sample
from ..errors import AnomclipError

CACHE_VERSION = 4  # 3: masks resized with PIL bilinear, as the authors do (data.mask_to_tensor); 4: the
# visual blocks written out (model.blocks.forward_block): features differ from 3's by float round-off
CACHE_DTYPES = ("float32", "float16")
DEFAULT_CACHE = Path(".cache/features")
#: Upper bound of the free space kept in reserve on top of the memory maps' size (see :func:`disk_margin`).
DISK_MARGIN = 64 << 20
#: Lower bound of that reserve (the index, labels and lock files of a small job).
DISK_MARGIN_MIN = 1 << 20


def disk_margin(need: int) -> int:
    """Free space kept in reserve beyond ``need`` bytes of features: a tenth of the job, between
    :data:`DISK_MARGIN_MIN` (1 MiB) and :data:`DISK_MARGIN` (64 MiB)."""
    return int(min(DISK_MARGIN, max(DISK_MARGIN_MIN, need // 10)))


def _size(n: int) -> str:
    """Bytes for a person: ``0.31 MiB``, ``2.40 GiB``."""
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.2f} MiB"


@dataclass(frozen=True)
class FeatureCache:
    """Where frozen features are stored, and in which dtype."""

    root: Path = DEFAULT_CACHE
    dtype: str = "float32"

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))
        if self.dtype not in CACHE_DTYPES:
            raise AnomclipError(f"feature cache dtype {self.dtype!r} is not one of {', '.join(CACHE_DTYPES)}")

    @classmethod
    def from_env(cls, environ=os.environ) -> "FeatureCache":
        """``$ANOMCLIP_CACHE`` (default ``.cache/features``) and ``$ANOMCLIP_CACHE_DTYPE`` (float32)."""
        dtype = environ.get("ANOMCLIP_CACHE_DTYPE", "float32")
        if dtype not in CACHE_DTYPES:
            raise AnomclipError(f"ANOMCLIP_CACHE_DTYPE={dtype!r} is not a cache type: use float32 or float16")
        return cls(Path(environ.get("ANOMCLIP_CACHE", str(DEFAULT_CACHE))), dtype)

    @property
    def digests(self) -> DigestIndex:
        """The per-file digest index kept beside the features (``file-digests.sqlite``)."""
        return _digest_index(self.root)

    def fingerprint(self, samples, verify: bool = False, missing_ok: bool = False) -> str:
        return dataset_fingerprint(samples, self.digests, verify=verify, missing_ok=missing_ok)


_INDEXES: dict = {}


def _digest_index(root: Path) -> DigestIndex:
    key = str(root.resolve())
    if key not in _INDEXES:
        _INDEXES[key] = DigestIndex(root / "file-digests.sqlite")
    return _INDEXES[key]


class Batch(NamedTuple):
    """One batch of cached features, on a device."""

    global_feats: torch.Tensor  # [B, D]
    patches: dict  # {mode: {layer: [B, P, D] float32}}
    labels: torch.Tensor  # [B] long
    masks: torch.Tensor  # [B, S, S] float 0/1
    cls_names: list
    idx: np.ndarray  # the (sorted) sample indices


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
    dtype: str = "float32"
    fingerprint: str = ""  # the content fingerprint of the samples (empty without a cache)

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, idx, device="cpu") -> Batch:
        """The features of the samples ``idx`` (sorted: memory maps read faster in order)."""
        idx = np.sort(np.asarray(idx))
        g = torch.from_numpy(np.ascontiguousarray(self.global_feats[idx])).to(device)
        feats = {m: {l: torch.from_numpy(np.ascontiguousarray(a[idx])).to(device).float() for l, a in d.items()}
                 for m, d in self.patches.items()}
        labels = torch.from_numpy(self.labels[idx]).long().to(device)
        masks = torch.from_numpy(self.masks[idx].astype(np.float32)).to(device)
        return Batch(g, feats, labels, masks, [self.cls_names[i] for i in idx], idx)

    def categories(self) -> dict[str, np.ndarray]:
        """Indices of each category, in first-seen order."""
        out: dict[str, list] = {}
        for i, c in enumerate(self.cls_names):
            out.setdefault(c, []).append(i)
        return {c: np.asarray(v) for c, v in out.items()}


def feature_key(model, fingerprint: str, dtype: str, skip_unreadable: bool = False) -> str:
    """The cache key: the model's feature spec, the data's content, the dtype, the skip choice."""
    return content_key(dict(version=CACHE_VERSION, spec=model.feature_spec(), data=fingerprint, dtype=dtype,
                            skip_unreadable=bool(skip_unreadable)), n=24)


def extract_features(model, samples: list[Sample], cache: FeatureCache | None = None, batch_size: int = 8,
                     skip_unreadable: bool = False, progress: bool = True, desc: str = "features",
                     verify: bool = False, fingerprint: str | None = None) -> FeatureSet:
    """The :class:`FeatureSet` of ``samples`` under ``model``'s frozen visual encoder.

    With a ``cache`` the features are written batch by batch into memory-mapped ``.npy`` files
    of a temporary folder, renamed into the cache when complete (extraction holds one batch in
    memory, whatever the size of the dataset), and read back from there next time. Without
    one they are computed in memory, in float32. ``fingerprint``: the samples' content
    fingerprint when the caller already has it (it is computed otherwise).
    """
    if cache is None:
        ds = AnomalyDataset(samples, model.image_size, skip_unreadable=skip_unreadable)
        t0 = time.perf_counter()
        fs = _compute(model, ds, batch_size, progress, desc, _Arrays(len(ds)), "float32")
        fs.seconds = time.perf_counter() - t0
        return fs
    if fingerprint is None:
        fingerprint = cache.fingerprint(samples, verify=verify, missing_ok=skip_unreadable)
    key = feature_key(model, fingerprint, cache.dtype, skip_unreadable)
    root = cache.root
    folder = root / key
    if (folder / "index.json").is_file():
        return _load(folder, key, cache.dtype, fingerprint)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f".{key}.lock"):
        if (folder / "index.json").is_file():  # another process wrote it while we waited
            return _load(folder, key, cache.dtype, fingerprint)
        remove_leftovers(root, own_key=key)
        ds = AnomalyDataset(samples, model.image_size, skip_unreadable=skip_unreadable)
        t0 = time.perf_counter()
        tmp = None
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
            tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; the cache is shared like any folder
            arrays = _Arrays(len(ds), tmp)
            fs = _compute(model, ds, batch_size, progress, desc, arrays, cache.dtype)
            fs.seconds = time.perf_counter() - t0
            arrays.flush()
            _save(fs, tmp, folder)
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise AnomclipError(f"no space left on the device for the feature cache in {root} (free some, or "
                                "point ANOMCLIP_CACHE / --cache-dir at another disk)") from None
        finally:
            if tmp is not None and tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    fs = _load(folder, key, cache.dtype, fingerprint, seconds=fs.seconds, skipped=fs.skipped)
    fs.from_cache = False
    return fs


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive ``flock`` on ``path`` for the duration of the block."""
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def remove_leftovers(root: Path, own_key: str | None = None) -> list[Path]:
    """Remove temporary folders of interrupted extractions (their key's lock is free).

    ``own_key``: a key whose lock the caller holds, so its temporary folders are left-overs too.
    """
    removed = []
    for tmp in root.glob(".*.*"):
        if not tmp.is_dir():
            continue
        key = tmp.name[1:].split(".", 1)[0]
        if key == own_key:
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
            continue
        lock = root / f".{key}.lock"
        with open(lock, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                # held: by us (we are extracting this key and the folder is ours) or by another
                # process still writing it; either way not a left-over.
                continue
            try:
                shutil.rmtree(tmp, ignore_errors=True)
                removed.append(tmp)
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    return removed


class _Arrays:
    """Arrays of ``n`` rows filled batch by batch: in memory, or ``.npy`` memory maps in ``folder``."""

    def __init__(self, n: int, folder: Path | None = None):
        self.n, self.folder, self.arrays = n, folder, {}

    def get(self, name: str, row_shape: tuple, dtype) -> np.ndarray:
        """The array ``name`` of shape ``(n, *row_shape)``, allocated on first use.

        On disk the ``.npy`` file is reserved in full (``posix_fallocate``) before the memory
        map is opened, so writing rows into it cannot meet a full disk (SIGBUS).
        """
        if name not in self.arrays:
            shape = (self.n, *row_shape)
            if self.folder is None:
                self.arrays[name] = np.empty(shape, dtype)
            else:
                path = self.folder / f"{name}.npy"
                with open(path, "wb") as f:  # the header, then the whole data part reserved
                    np.lib.format.write_array_header_1_0(
                        f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                            "shape": shape})
                    header = f.tell()
                    size = header + int(np.prod(shape)) * np.dtype(dtype).itemsize
                    f.flush()
                    try:
                        os.posix_fallocate(f.fileno(), 0, size)
                    except OSError as e:  # a file system without reservation: sparse, as checked by reserve()
                        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                            raise
                        f.truncate(size)
                self.arrays[name] = np.memmap(path, dtype=dtype, mode="r+", offset=header, shape=shape)
        return self.arrays[name]

    def put(self, name: str, start: int, block: np.ndarray) -> None:
        self.get(name, block.shape[1:], block.dtype)[start:start + len(block)] = block

    def reserve(self, blocks: dict) -> None:
        """Allocate every array of a first batch ``{name: block}`` (rows of the final arrays),
        after checking that the disk holds them all plus :func:`disk_margin`: nothing is written
        into a memory map before its whole file is reserved."""
        if self.folder is not None:
            need = sum(self.n * b[0].nbytes if len(b) else 0 for b in blocks.values())
            margin = disk_margin(need)
            free = shutil.disk_usage(self.folder).free
            if free < need + margin:
                raise AnomclipError(
                    f"not enough free space for the feature cache in {self.folder.parent}: the features need "
                    f"{_size(need)} plus a reserve of {_size(margin)} (a tenth of the job, 1–64 MiB), "
                    f"{_size(free)} are free (free some, or point ANOMCLIP_CACHE / --cache-dir at another disk)")
        for name, b in blocks.items():
            self.get(name, b.shape[1:], b.dtype)

    def flush(self) -> None:
        for a in self.arrays.values():
            if isinstance(a, np.memmap):
                a.flush()


def _patch_name(mode: str, layer: int) -> str:
    """File stem of the patch features of one DPAM mode and layer in a cache folder."""
    return f"patches_{mode}_{layer}"


def _compute(model, ds: AnomalyDataset, batch_size: int, progress: bool, desc: str, out: _Arrays,
             dtype_name: str) -> FeatureSet:
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0)
    dtype = getattr(torch, dtype_name)
    labels, cls, species, paths = [], [], [], []
    seen: dict = {}  # {mode: {layer}} of the patch features written
    start = 0
    for item in tqdm(loader, desc=desc, disable=not progress, leave=False):
        g, feats = model.encode_image(item["image"])
        blocks = {"global": g.float().cpu().numpy()}
        for m, d in feats.items():
            for l, t in d.items():
                seen.setdefault(m, set()).add(l)
                blocks[_patch_name(m, l)] = t.to(dtype).cpu().numpy()
        blocks["masks"] = item["mask"].numpy().astype(np.uint8)
        if start == 0:
            out.reserve(blocks)  # checked and reserved before the first row is written
        for name, block in blocks.items():
            out.put(name, start, block)
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
        skipped=list(getattr(ds, "skipped", [])), dtype=dtype_name,
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


def _load(folder: Path, key: str, dtype: str, fingerprint: str, seconds: float = 0.0, skipped=None) -> FeatureSet:
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
        seconds=seconds, from_cache=True, key=key, dtype=dtype, fingerprint=fingerprint,
    )
