"""Writing files safely and reading checkpoints: the package's one I/O module.

Every file anomclip writes goes through :func:`atomic_write` (complete or not at all); every
checkpoint is read through :func:`read_checkpoint` (one-line errors for a missing or junk file).
Nothing here knows about models, data or runs.
"""
from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

import torch

from .errors import AnomclipError


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


def read_checkpoint(path: str | os.PathLike) -> dict:
    """``torch.load`` with one-line errors for a missing or junk file."""
    path = Path(path)
    if not path.is_file():
        raise AnomclipError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise AnomclipError(f"checkpoint {path} cannot be read ({type(e).__name__}): not a torch checkpoint?") from None
    if not isinstance(ckpt, dict):
        raise AnomclipError(f"checkpoint {path} does not hold a dict")
    return ckpt


def atomic_torch_save(obj, path: str | os.PathLike) -> Path:
    """``torch.save`` through :func:`atomic_write` (never a half-written file)."""
    return atomic_write(path, lambda f: torch.save(obj, f))
