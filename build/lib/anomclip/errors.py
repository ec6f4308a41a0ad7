"""User-facing errors.

Every mistake a user can make (a missing file, a corrupt image, an unknown dataset layout,
a checkpoint for another backbone…) raises :class:`AnomclipError` with a one-line message
that names the file or setting. The CLI prints that line and exits non-zero, without a
traceback; library users catch it like any other exception.
"""
from __future__ import annotations


class AnomclipError(Exception):
    """A user's mistake, described in one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
