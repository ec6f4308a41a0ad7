"""Chapter 15 (After AnomalyCLIP): the methods of the registry, and the sentences its numbers say.

* :func:`methods_present` — every method of :data:`anomclip.recipes.METHODS` that the registry
  implements, in its order, with whether it trains and whether it is *transductive* (MuSc: it
  scores a category's test images jointly, so it is tabulated apart and never ranked). A method
  registered later (AdaptCLIP) appears here, and in the chapter, without an edit.
* :func:`gains` — one method's numbers against a reference method's on every (dataset, metric)
  both have: how many are higher, the mean difference, the largest and smallest.
* :func:`gains_sentence`, :func:`cost_sentence` — the chapter's sentences, generated from the
  numbers (never typed), one case per situation (tested case by case).
"""
from __future__ import annotations

import pandas as pd

from ..methods.registry import CLASSES
from ..recipes import METHODS
from .conclusions import Conclusion
from .labels import SMOKE_ANCHOR, fmt, fmt_sig, metric_name, plural

REFERENCE = "AnomalyCLIP"


def methods_present(recipes=None) -> pd.DataFrame:
    """One row per method of the registry (``recipes``: keep those recipe names, in their
    order): recipe, label (its name in the tables), trains, transductive, in_paper (a column of
    AnomalyCLIP's Tables 1–3; False: published after it)."""
    infos = [m for m in METHODS.values() if m.key in CLASSES]
    if recipes is not None:
        by_recipe = {m.recipe: m for m in infos}
        infos = [by_recipe[r] for r in recipes if r in by_recipe]
    return pd.DataFrame([{"recipe": m.recipe, "label": m.display, "trains": bool(m.trains),
                          "transductive": bool(getattr(CLASSES[m.key], "transductive", False)),
                          "in_paper": bool(m.in_paper)} for m in infos],
                        columns=["recipe", "label", "trains", "transductive", "in_paper"])


def gains(frame: pd.DataFrame, method: str, reference: str = REFERENCE) -> dict:
    """``method``'s values minus ``reference``'s (long frame: label, dataset, metric, value, in
    the same unit) on every (dataset, metric) both have: ``pairs``, ``higher`` (how many are
    strictly higher), ``mean`` (mean difference), ``most`` and ``least`` ((dataset, metric,
    difference) of the largest and smallest; None without pairs), ``datasets`` (those compared)."""
    def values(label):
        d = frame[(frame["label"] == label) & frame["value"].notna()]
        return d.groupby(["dataset", "metric"], sort=False)["value"].first()

    mine = values(method)
    diff = (mine - values(reference)).dropna()
    if diff.empty:
        return {"pairs": 0, "higher": 0, "mean": float("nan"), "most": None, "least": None, "datasets": [],
                "values": int(len(mine))}
    hi, lo = diff.idxmax(), diff.idxmin()
    return {"pairs": int(len(diff)), "higher": int((diff > 0).sum()), "mean": float(diff.mean()),
            "most": (*hi, float(diff[hi])), "least": (*lo, float(diff[lo])),
            "datasets": list(dict.fromkeys(d for d, _ in diff.index)), "values": int(len(mine))}


def _signed(v: float) -> str:
    return ("+" if v > 0 else "") + fmt(v)


def gains_sentence(g: dict, method: str, reference: str = REFERENCE, whose: str = "published") -> Conclusion:
    """What :func:`gains` says, in one sentence. Cases: ``absent`` (``method`` has no number at
    all), ``none`` (no (dataset, metric) in common), ``all`` (higher everywhere), ``most`` (higher
    on more than half), ``some`` (on half or fewer, at least one), ``never`` (higher nowhere)."""
    if not g.get("values", g["pairs"]):
        return Conclusion("absent", f"{method} has no {whose} number here yet.")
    if not g["pairs"]:
        return Conclusion("none", f"{method} and {reference} have no {whose} number on a common dataset and metric.")
    n, k = g["pairs"], g["higher"]
    ds, m, v = g["most"]
    ds2, m2, v2 = g["least"]
    common = f"in common ({plural(len(g['datasets']), 'dataset')})"
    spread = (f"; the largest difference is {_signed(v)} points ({metric_name(m)} on {ds}), the smallest "
              f"{_signed(v2)} ({metric_name(m2)} on {ds2})") if n > 1 else f" ({metric_name(m)} on {ds})"
    mean = f"{_signed(g['mean'])} points on average{spread}." if n > 1 else f"{_signed(g['mean'])} points{spread}."
    head = f"{whose.capitalize()} numbers: {method} is above {reference}"
    if n == 1:
        case, on = ("all" if k else "never"), f"on the one (dataset, metric) pair {common}"
        head = head if k else head.replace(" is above ", " is not above ")
    elif k == n:
        case, on = "all", f"on each of the {n} (dataset, metric) pairs {common}"
    elif k == 0:
        case, on = "never", f"on none of the {n} (dataset, metric) pairs {common}"
    else:
        case, on = ("most" if 2 * k > n else "some"), f"on {k} of the {n} (dataset, metric) pairs {common}"
    return Conclusion(case, f"{head} {on}: {mean}")


def smoke_ranking_note(smoke: bool) -> Conclusion:
    """Whether this run's numbers may be read as a ranking of the methods. Cases: ``smoke``, ``real``."""
    if smoke:
        return Conclusion("smoke", "This run's numbers rank nothing: an untrained tiny backbone on synthetic data "
                                   f"([what a smoke run can and cannot show]({SMOKE_ANCHOR})). They show that every "
                                   "method runs on the same engine, data and metrics; the published numbers above "
                                   "are the comparison.")
    return Conclusion("real", "This run's numbers use one backbone, one preprocessing and one evaluation for every "
                              "method, so their differences are the methods' own; where they depart from a "
                              "method's published number, docs/after-anomalyclip.md lists the known reasons.")


def cost_sentence(costs: pd.DataFrame, method: str, reference: str = REFERENCE,
                  set_of: int | None = None) -> Conclusion:
    """One method's cost against the reference's (``costs``: index = label, columns
    ``trainable parameters``, ``s/image``, ``peak MB``). Cases: ``missing`` (either row absent),
    ``cheaper`` (fewer seconds per image), ``dearer`` (more), ``same`` (within 5 %)."""
    if method not in costs.index or reference not in costs.index:
        return Conclusion("missing", f"{method} or {reference} was not measured.")
    a, r = costs.loc[method], costs.loc[reference]
    time_ratio = float(a["s/image"]) / float(r["s/image"])
    mem_ratio = float(a["peak MB"]) / float(r["peak MB"]) if float(r["peak MB"]) else float("nan")
    params = int(a["trainable parameters"])
    ref_params = int(r["trainable parameters"])
    trained = (f"{params:,} trainable parameters ({reference}: {ref_params:,})" if params
               else f"nothing trained ({reference}: {ref_params:,} trainable parameters)")
    case = "same" if abs(time_ratio - 1) <= 0.05 else ("cheaper" if time_ratio < 1 else "dearer")
    how = {"same": "about as long as", "cheaper": f"{fmt_sig(time_ratio, 2)}× the time of",
           "dearer": f"{fmt_sig(time_ratio, 2)}× the time of"}[case]
    as_set = f" (scoring the {set_of} images as one set: more images, more time per image)" if set_of else ""
    return Conclusion(case, f"{method} takes {how} {reference} per image{as_set}, with "
                            f"{fmt_sig(mem_ratio, 2)}× its peak "
                            f"memory and {trained}.")


def category_set(samples, n: int) -> list:
    """``n`` samples of one category, anomalous and normal in turn (anomalous first), each kind in
    its listed order; when one kind runs out, the other fills the set (fewer than ``n`` only when
    the category has fewer). The set a transductive method scores together, and the images whose
    maps every method draws."""
    bad = [s for s in samples if s.anomaly]
    good = [s for s in samples if not s.anomaly]
    out = []
    for i in range(max(len(bad), len(good))):
        out += [s for s in (bad[i] if i < len(bad) else None, good[i] if i < len(good) else None) if s is not None]
    return out[:n]
