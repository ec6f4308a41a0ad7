"""Several training seeds of one experiment: the mean and the sample standard deviation of every metric.

The spread is over seeds (the prompts' initialisation and the shuffling, the recipe's ``seed``),
on fixed data; the bootstrap intervals (:mod:`.intervals`) are over images, for one seed. The
standard deviation is the *sample* one (``ddof=1``: divided by ``n - 1``), NaN for one seed.
"""
from __future__ import annotations

import numpy as np

from ..errors import AnomclipError


def parse_seeds(text) -> tuple[int, ...]:
    """``"0,1,2"`` (or a sequence of ints) → ``(0, 1, 2)``: distinct whole numbers ≥ 0, at least one."""
    items = [t.strip() for t in str(text).split(",") if t.strip()] if isinstance(text, str) else list(text)
    try:
        seeds = tuple(int(t) for t in items)
    except (TypeError, ValueError):
        raise AnomclipError(f"seeds {text!r}: give comma-separated whole numbers, e.g. 0,1,2") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise AnomclipError(f"seeds {text!r}: give distinct whole numbers ≥ 0, e.g. 0,1,2")
    return seeds


def spread(values) -> dict:
    """``{"mean", "std" (ddof=1), "values", "n"}`` over the defined (finite) ``values``."""
    v = np.asarray([np.nan if x is None else x for x in values], dtype=np.float64)
    ok = v[np.isfinite(v)]
    return {"mean": float(ok.mean()) if ok.size else float("nan"),
            "std": float(ok.std(ddof=1)) if ok.size > 1 else float("nan"),
            "values": [float(x) for x in v], "n": int(ok.size)}


def seed_summary(docs: dict) -> dict:
    """The results docs of one evaluation per seed ``{seed: doc}`` → mean ± std per metric.

    ``{"seeds": [...], "std": "sample (ddof=1)", "mean": {metric: spread}, "categories": {cat:
    {metric: spread}}, "intervals": {seed: the seed's interval of each mean}}``; a category or
    metric that a seed lacks counts as undefined there.
    """
    seeds = list(docs)
    metrics = list(dict.fromkeys(k for d in docs.values() for k in d["mean"]))
    cats = list(dict.fromkeys(c for d in docs.values() for c in d["categories"]))
    return {
        "seeds": seeds, "std": "sample standard deviation over seeds (ddof=1)",
        "mean": {k: spread([docs[s]["mean"].get(k) for s in seeds]) for k in metrics},
        "categories": {c: {k: spread([docs[s]["categories"].get(c, {}).get(k) for s in seeds]) for k in metrics}
                       for c in cats},
        "intervals": {str(s): (docs[s].get("intervals") or {}).get("mean", {}) for s in seeds},
    }


def format_spread(entry: dict) -> str:
    """``91.3 ± 0.4`` (percent, one decimal); ``–`` when undefined."""
    m, s = entry["mean"], entry["std"]
    if m is None or m != m:
        return "–"
    return f"{100 * m:.1f}" + ("" if s is None or s != s else f" ± {100 * s:.1f}")
