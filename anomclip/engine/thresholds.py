"""Turning an image score into normal / anomalous: the threshold rules of ``anomclip predict --threshold``.

An image is judged **anomalous when its score is ≥ the threshold** (as the masks: map ≥
threshold). The threshold is a number, or chosen from reference images (docs/intervals.md):

* ``max-normal`` — just above the largest score of images known to be normal
  (``np.nextafter(max, inf)``): every one of them is judged normal;
* ``quantile:Q`` — ``np.quantile(normal scores, Q)`` (linear interpolation), Q in [0, 1]: about
  a fraction 1 − Q of normal images is flagged;
* ``f1`` — on a labelled set, the score t that maximises F1 of ``score ≥ t`` over every cut
  point (every distinct score); the smallest such t among ties.

With the ``category`` scope each category of the reference images gets its own threshold.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import AnomclipError

RULES = ("max-normal", "quantile:Q", "f1", "a number in [0, 1]")
SCOPES = ("global", "category")


@dataclass(frozen=True)
class Rule:
    """A threshold rule: ``kind`` in max-normal, quantile, f1, value; ``q`` or ``value`` as needed."""

    kind: str
    q: float | None = None
    value: float | None = None

    @property
    def needs(self) -> str | None:
        """``"normal"`` (normal scores), ``"labelled"`` (scores and labels) or None (a number)."""
        return {"max-normal": "normal", "quantile": "normal", "f1": "labelled"}.get(self.kind)

    def __str__(self) -> str:
        if self.kind == "quantile":
            return f"quantile:{self.q:g}"
        return f"{self.value:g}" if self.kind == "value" else self.kind


def parse_rule(text: str) -> Rule:
    """``--threshold`` text → :class:`Rule`; a one-line :class:`AnomclipError` for anything else."""
    t = str(text).strip().lower()
    if t in ("max-normal", "f1"):
        return Rule(t)
    if m := re.fullmatch(r"quantile:(.*)", t):
        try:
            q = float(m.group(1))
        except ValueError:
            q = float("nan")
        if not 0.0 <= q <= 1.0:
            raise AnomclipError(f"--threshold {text}: the quantile must be a number in [0, 1], e.g. quantile:0.99")
        return Rule("quantile", q=q)
    try:
        value = float(t)
    except ValueError:
        raise AnomclipError(f"--threshold {text!r}: give {', '.join(RULES)}") from None
    if not 0.0 <= value <= 1.0:
        raise AnomclipError(f"--threshold {text} must lie in [0, 1] (anomaly maps are probabilities)")
    return Rule("value", value=value)


def max_normal(scores) -> float:
    """The smallest float above the largest normal score: every given normal image scores below it."""
    s = _scores(scores, "normal")
    return float(np.nextafter(s.max(), np.inf))


def quantile(scores, q: float) -> float:
    """``np.quantile(scores, q)`` (linear interpolation)."""
    return float(np.quantile(_scores(scores, "normal"), q))


def f1_optimal(scores, labels) -> float:
    """The t maximising F1 of ``score ≥ t`` (anomalous) over every distinct score; smallest among ties."""
    s = _scores(scores, "labelled")
    y = np.asarray(labels).astype(bool).reshape(-1)
    if y.all() or not y.any():
        raise AnomclipError(f"f1 needs normal and anomalous images, got {int(y.sum())} anomalous of {y.size}")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.append(np.flatnonzero(s[1:] != s[:-1]), s.size - 1)  # cut after each group of equal scores
    tp = np.cumsum(y)[last]
    fp = np.cumsum(~y)[last]
    f1 = 2 * tp / (y.sum() + tp + fp)
    best = np.flatnonzero(f1 == f1.max())
    return float(s[last[best[-1]]])  # the lowest cut point among the best: the smallest t


def _scores(scores, what: str) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.size == 0:
        raise AnomclipError(f"no {what} images to choose the threshold from")
    return s


def choose(rule: Rule, scores, labels=None) -> float:
    """The threshold of ``rule`` on reference ``scores`` (and ``labels`` for f1)."""
    if rule.kind == "value":
        return float(rule.value)
    if rule.kind == "max-normal":
        return max_normal(scores)
    if rule.kind == "quantile":
        return quantile(scores, rule.q)
    return f1_optimal(scores, labels)


@dataclass
class Reference:
    """The images a threshold is chosen from: paths, labels (0 normal, 1 anomalous), categories."""

    kind: str  # "normal" (a folder of normal images) or "labelled" (a labelled dataset)
    root: str
    paths: list
    labels: np.ndarray
    categories: list

    def digest(self, used=None) -> str:
        """``sha256:`` of the images' (``used`` ones') relative paths, labels and bytes, in path order."""
        h = hashlib.sha256()
        root = Path(self.root).resolve()
        used = np.ones(len(self.paths), bool) if used is None else np.asarray(used, bool)
        for p, y in sorted((str(p), y) for p, y, u in zip(self.paths, self.labels.tolist(), used) if u):
            rel = Path(p).resolve()
            rel = rel.relative_to(root) if rel.is_relative_to(root) else rel
            h.update(f"{rel.as_posix()}\0{int(y)}\0".encode())
            h.update(hashlib.sha256(Path(p).read_bytes()).digest())
        return "sha256:" + h.hexdigest()


def thresholds(rule: Rule, scope: str, ref: Reference | None, scores=None) -> dict:
    """``{category or "*": threshold}`` of ``rule`` on ``ref``'s ``scores`` (one per category
    with the ``category`` scope, else one under ``"*"``)."""
    if scope not in SCOPES:
        raise AnomclipError(f"--threshold-scope {scope!r}: choose global or category")
    if ref is None:
        return {"*": choose(rule, [])}
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(ref.labels).astype(bool)
    use = ~y if rule.needs == "normal" else np.ones_like(y)
    if scope == "global":
        return {"*": choose(rule, s[use], y[use])}
    cats = np.asarray(ref.categories, dtype=object)
    out = {}
    for c in dict.fromkeys(ref.categories):
        sel = use & (cats == c)
        try:
            out[c] = choose(rule, s[sel], y[sel])
        except AnomclipError as e:
            raise AnomclipError(f"category {c}: {e}") from None
    return out


def record(rule: Rule, scope: str, values: dict, ref: Reference | None) -> dict:
    """How the threshold was chosen and from which images, as ``scores.json`` records it."""
    doc = {"rule": str(rule), "scope": scope, "verdict": "anomalous when the image score is ≥ the threshold",
           "thresholds": values}
    if rule.kind == "value":
        doc["masks"] = "anomaly map (mean over layers) ≥ the threshold"
    if ref is not None:
        used = ~ref.labels.astype(bool) if rule.needs == "normal" else np.ones(len(ref.paths), bool)
        doc["from"] = {"kind": ref.kind, "root": str(ref.root), "images": int(used.sum()),
                       "normal": int((~ref.labels.astype(bool) & used).sum()),
                       "anomalous": int((ref.labels.astype(bool) & used).sum()),
                       "digest": ref.digest(used),
                       "paths": [str(p) for p, u in zip(ref.paths, used) if u]}
    return doc
