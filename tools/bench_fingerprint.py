"""What content fingerprints cost on a large tree: first hash, re-check by stat, full verify.

    python tools/bench_fingerprint.py --gib 5 --files 5000 --out results/bench_fingerprint.json

Writes ``--files`` random files totalling ``--gib`` GiB under ``--dir`` (a temporary folder by
default, removed afterwards), then times :func:`anomclip.data.fingerprint.dataset_fingerprint`
three ways: the first call (every file read and hashed), a second call in a new index
(``stat`` per file, digests read from the SQLite index), and ``verify=True`` (every file
re-read). The first and the verify timings read from the page cache when the files were just
written; ``--drop-caches`` (root) drops it first, for a cold-disk figure. Prints and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from anomclip.data.fingerprint import DigestIndex, dataset_fingerprint
from anomclip.data.index import Sample
from anomclip.io import atomic_write_text


def drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gib", type=float, default=5.0, help="total size of the tree in GiB")
    p.add_argument("--files", type=int, default=5000, help="number of files")
    p.add_argument("--dir", default=None, help="where to write the tree (default: a temporary folder)")
    p.add_argument("--drop-caches", action="store_true", help="drop the page cache before each full read")
    p.add_argument("--out", default="results/bench_fingerprint.json", help="JSON file to write")
    args = p.parse_args(argv)
    base = Path(args.dir or tempfile.mkdtemp(prefix="anomclip-fp-"))
    size = int(args.gib * 2**30 / args.files)
    rng = np.random.default_rng(0)
    try:
        samples = []
        t0 = time.perf_counter()
        for i in range(args.files):
            f = base / f"{i // 500:03d}" / f"{i:06d}.png"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(rng.bytes(size))
            samples.append(Sample(f, None, "c", "good", 0))
        write_s = time.perf_counter() - t0
        timings = {}
        cold = drop_caches() if args.drop_caches else False
        index = DigestIndex(base / "index.sqlite")
        t0 = time.perf_counter()
        fp = dataset_fingerprint(samples, index)
        timings["first_hash_s"] = time.perf_counter() - t0
        index.close()
        again = DigestIndex(base / "index.sqlite")
        t0 = time.perf_counter()
        assert dataset_fingerprint(samples, again) == fp
        timings["recheck_by_stat_s"] = time.perf_counter() - t0
        if args.drop_caches:
            drop_caches()
        t0 = time.perf_counter()
        assert dataset_fingerprint(samples, again, verify=True) == fp
        timings["verify_s"] = time.perf_counter() - t0
        total = size * args.files
        out = {"files": args.files, "bytes": total, "write_s": write_s, **timings,
               "first_hash_gib_per_s": total / 2**30 / timings["first_hash_s"],
               "page_cache_dropped": cold, "cpu": platform.processor() or platform.machine(),
               "cores": os.cpu_count()}
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    atomic_write_text(args.out, json.dumps(out, indent=1) + "\n")
    for k, v in out.items():
        print(f"{k:24s} {v:.3f}" if isinstance(v, float) else f"{k:24s} {v}")
    return out


if __name__ == "__main__":
    main()
