"""Saving and loading what a method trains: one implementation for AnomalyCLIP and the baselines.

A class using :class:`TrainedState` says what its checkpoint holds (:meth:`checkpoint`) and how
to check and load one (:meth:`restore`); saving is always atomic (:func:`anomclip.io.atomic_torch_save`)
and reading always gives one-line errors (:func:`anomclip.io.read_checkpoint`).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from ..errors import AnomclipError
from ..io import atomic_torch_save, read_checkpoint


class TrainedState:
    """``save_prompts`` / ``load_prompts`` over a class's ``checkpoint()`` and ``restore()``."""

    def checkpoint(self) -> dict:  # pragma: no cover - implemented by the class
        raise NotImplementedError

    def restore(self, ckpt: dict, path: str | os.PathLike) -> None:  # pragma: no cover
        raise NotImplementedError

    def save_prompts(self, path: str | os.PathLike, extra: dict | None = None) -> Path:
        """Write the trained state (and the recipe) atomically to ``path``; ``extra`` entries too."""
        return atomic_torch_save({**self.checkpoint(), **(extra or {})}, path)

    def load_prompts(self, path: str | os.PathLike) -> dict:
        """Load a checkpoint written by :meth:`save_prompts`, checked against this model."""
        ckpt = read_checkpoint(path)
        self.restore(ckpt, path)
        return ckpt


def check_tensors(own: dict, stored: dict, path, what: str) -> None:
    """Refuse a state dict whose tensor names or shapes differ from the model's (one line)."""
    if set(own) != set(stored) or any(tuple(stored[k].shape) != tuple(own[k].shape) for k in own):
        raise AnomclipError(f"{path}: {what}")


def tensor_digest(tensors) -> str:
    """A digest of tensors' values, dtypes and shapes, in order: the key of an in-memory cache of
    what they determine (text features of prompts or of a frozen text tower)."""
    h = hashlib.blake2b(digest_size=16)
    for t in tensors:
        h.update(f"{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
