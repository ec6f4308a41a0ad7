"""Content fingerprints of datasets and files: what every cache and results key is made from.

A dataset's fingerprint changes whenever any byte of any image or mask it lists changes, or
a file's relative path, category, defect type or label changes. Every file is hashed whole
(BLAKE2b, 128-bit digests). Re-hashing a large unchanged tree would cost a full read of it at
every run, so digests are remembered in a :class:`DigestIndex` under the file's
``(size, mtime_ns, inode)``: an unchanged file is re-checked with one ``stat``. An editor that
rewrites a file changes its ``mtime_ns`` (and usually its inode); ``verify=True`` re-hashes
every file anyway, for the paranoid or for file systems with coarse timestamps.

The index is a small SQLite file (safe for concurrent processes) in the feature cache folder;
without one, digests are remembered for the life of the process only.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Iterable

from ..errors import AnomclipError

#: Read size when hashing a file.
CHUNK = 1 << 20


def file_digest(path: str | os.PathLike) -> str:
    """Hex BLAKE2b-128 of the whole file."""
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb", buffering=0) as fh:
            while chunk := fh.read(CHUNK):
                h.update(chunk)
    except FileNotFoundError:
        raise AnomclipError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise AnomclipError(f"{path} is a directory, not a file") from None
    except PermissionError:
        raise AnomclipError(f"{path} cannot be read (permission denied)") from None
    return h.hexdigest()


class DigestIndex:
    """``(path, size, mtime_ns, inode) → digest``, in memory or in a SQLite file."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path else None
        self._memory: dict = {}
        self._lock = threading.Lock()
        self._db = None
        self._pending = 0
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")  # readers don't wait for a writer
            self._db.execute("CREATE TABLE IF NOT EXISTS digests (path TEXT PRIMARY KEY, size INTEGER, "
                             "mtime_ns INTEGER, inode INTEGER, digest TEXT)")
            self._db.commit()

    def digest(self, path: str | os.PathLike, verify: bool = False) -> str:
        """The digest of ``path``: remembered when its stat is unchanged, computed otherwise."""
        p = os.path.abspath(path)
        try:
            st = os.stat(p)
        except FileNotFoundError:
            kind = "a dangling symbolic link" if os.path.islink(p) else "missing"
            raise AnomclipError(f"{path} is {kind}") from None
        stat_key = (st.st_size, st.st_mtime_ns, st.st_ino)
        if not verify:
            known = self._get(p)
            if known is not None and known[0] == stat_key:
                return known[1]
        d = file_digest(p)
        self._put(p, stat_key, d)
        return d

    def _get(self, p: str):
        with self._lock:
            if p in self._memory:
                return self._memory[p]
            if self._db is None:
                return None
            row = self._db.execute("SELECT size, mtime_ns, inode, digest FROM digests WHERE path = ?",
                                   (p,)).fetchone()
        return None if row is None else (tuple(row[:3]), row[3])

    def _put(self, p: str, stat_key: tuple, digest: str) -> None:
        with self._lock:
            self._memory[p] = (stat_key, digest)
            if self._db is not None:
                self._db.execute("INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?)", (p, *stat_key, digest))
                self._pending += 1
                if self._pending >= 256:
                    self._commit()

    def _commit(self) -> None:
        if self._db is not None and self._pending:
            self._db.commit()
        self._pending = 0

    def flush(self) -> None:
        """Write the digests computed so far to the index file."""
        with self._lock:
            self._commit()

    def close(self) -> None:
        self.flush()
        if self._db is not None:
            self._db.close()
            self._db = None


_PROCESS_INDEX = DigestIndex()


def dataset_fingerprint(samples: Iterable, index: DigestIndex | None = None, verify: bool = False,
                        missing_ok: bool = False) -> str:
    """Hex SHA-256 identifying a list of samples by content.

    Per sample (sorted by path): its image and mask paths *relative to the common folder of
    all files* (a moved dataset keeps its fingerprint), its category, defect type and label,
    and the whole-file digest of the image and of the mask. ``missing_ok`` (for evaluations
    that skip unreadable files): a missing file counts as the word "missing" instead of
    being an error.
    """
    index = index or _PROCESS_INDEX

    def digest(path):
        try:
            return index.digest(path, verify)
        except AnomclipError:
            if missing_ok:
                return "missing"
            raise

    samples = list(samples)
    files = [s.img_path for s in samples] + [s.mask_path for s in samples if s.mask_path]
    if not files:
        return hashlib.sha256(b"").hexdigest()
    base = os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in files])
    rows = []
    for s in samples:
        img = os.path.abspath(s.img_path)
        mask = os.path.abspath(s.mask_path) if s.mask_path else None
        rows.append((os.path.relpath(img, base), os.path.relpath(mask, base) if mask else "", s, img, mask))
    h = hashlib.sha256()
    for img_rel, mask_rel, s, img, mask in sorted(rows, key=lambda r: (r[0], r[1])):
        row = [Path(img_rel).as_posix(), Path(mask_rel).as_posix() if mask_rel else "", s.cls_name,
               s.specie_name, int(s.anomaly), digest(img), digest(mask) if mask else ""]
        h.update(json.dumps(row).encode() + b"\n")
    index.flush()
    return h.hexdigest()


def content_key(parts: dict, n: int = 20) -> str:
    """A short hex key of a JSON-able dict (sorted keys): the name of a run or cache entry."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:n]
