"""What content fingerprints cost on a large tree: first hash, re-check by stat, full verify.

Writes ``files`` random files totalling ``gib`` GiB under ``folder`` (a temporary folder by
default, removed afterwards), then times :func:`anomclip.data.fingerprint.dataset_fingerprint`
three ways: the first call (every file read and hashed), a second call in a new index (``stat``
per file, digests read from the SQLite index), and ``verify=True`` (every file re-read). The
first and the verify timings read from the page cache when the files were just written;
``drop_caches`` (root) drops it first, for a cold-disk figure.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ..data.fingerprint import DigestIndex, dataset_fingerprint
from ..data.index import Sample
from ..errors import AnomclipError
from .timing import machine


def drop_caches() -> bool:
    """Drop the page cache (root only); whether it was dropped."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def bench_fingerprint(gib: float = 5.0, files: int = 5000, folder=None, drop: bool = False) -> dict:
    """Seconds of writing the tree, the first hash, the re-check by stat and the full verify."""
    base = Path(folder or tempfile.mkdtemp(prefix="anomclip-fp-"))
    size = int(gib * 2**30 / files)
    rng = np.random.default_rng(0)
    try:
        samples = []
        t0 = time.perf_counter()
        for i in range(files):
            f = base / f"{i // 500:03d}" / f"{i:06d}.png"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(rng.bytes(size))
            samples.append(Sample(f, None, "c", "good", 0))
        write_s = time.perf_counter() - t0
        cold = drop_caches() if drop else False
        index = DigestIndex(base / "index.sqlite")
        t0 = time.perf_counter()
        fp = dataset_fingerprint(samples, index)
        first = time.perf_counter() - t0
        index.close()
        again = DigestIndex(base / "index.sqlite")
        t0 = time.perf_counter()
        same = dataset_fingerprint(samples, again) == fp
        recheck = time.perf_counter() - t0
        if drop:
            drop_caches()
        t0 = time.perf_counter()
        same &= dataset_fingerprint(samples, again, verify=True) == fp
        verify = time.perf_counter() - t0
        again.close()
    finally:
        if not folder:
            shutil.rmtree(base, ignore_errors=True)
    if not same:
        raise AnomclipError(f"the fingerprint of {base} changed between calls (is something writing there?)")
    total = size * files
    m = machine()
    return {"files": files, "bytes": total, "write_s": write_s, "first_hash_s": first, "recheck_by_stat_s": recheck,
            "verify_s": verify, "first_hash_gib_per_s": total / 2**30 / first, "page_cache_dropped": cold,
            "cpu": m["cpu"], "cores": m["cores"]}


def summary(row: dict) -> list[str]:
    return [f"{k:24s} {v:.3f}" if isinstance(v, float) else f"{k:24s} {v}" for k, v in row.items()]
