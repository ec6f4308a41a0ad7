"""Tables of runs for the book: every ``(label, recipe)`` row under a profile's protocol."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..methods import trains
from .runner import Experiment, run_experiment


@dataclass
class RunTable:
    """What :func:`run_table` ran: a long table of dataset means and the experiments themselves."""

    frame: pd.DataFrame  # label, dataset, metric, value, source, tuned_on, provenance
    experiments: dict  # {(label, tuned_on or None): Experiment}

    def experiment(self, label: str, tuned_on: str | None = None) -> Experiment:
        if (label, tuned_on) in self.experiments:
            return self.experiments[(label, tuned_on)]
        matches = [e for (l, _), e in self.experiments.items() if l == label]
        if len(matches) != 1:
            raise KeyError(f"no single experiment labelled {label!r} (tuned on {tuned_on!r})")
        return matches[0]


def run_table(profile, rows, datasets=None, train: bool = True, force: bool = False, device: str = "auto",
              progress: bool = False, seeds=None, **kwargs) -> RunTable:
    """Run every ``(label, recipe)`` row under the profile's protocol.

    Each row is trained on every tuning dataset of ``profile.protocol`` and evaluated zero-shot
    on the datasets tuned elsewhere (``datasets`` restricts the targets); ``train=False``
    evaluates the untrained prompts. Labels are display names only: two rows with the same
    recipe are one experiment, run once. A recipe with epochs per tuning dataset
    (``epochs_by_tuning``, VAND's script) runs each direction with its own entry.

    Every row carries ``low`` and ``high``, the bootstrap interval of its value (:mod:`.intervals`).
    With ``seeds`` (e.g. ``(0, 1, 2)``) each experiment runs once per seed: ``value`` is the mean
    over seeds, ``std`` their sample standard deviation (ddof=1), ``seeds`` how many defined it,
    ``low``/``high`` the interval of the first seed's run; the experiments are
    :class:`~anomclip.engine.runner.SeededExperiment`.
    """
    out, exps = [], {}
    cache = getattr(profile, "cache", None)
    wanted = [(src, [t for t in targets if (datasets is None or t in datasets) and t in profile.datasets])
              for src, targets in profile.protocol.items() if src in profile.datasets]
    # untrained prompts and zero-shot methods do not depend on a tuning dataset: one run, all targets
    untrained_plan = [(None, list(dict.fromkeys(t for _, ts in wanted for t in ts)))]
    if not train:
        wanted = untrained_plan
    for label, recipe in rows:
        plan = wanted if trains(recipe) else untrained_plan
        for src, targets in plan:
            if not targets:
                continue
            tuned = recipe.for_tuning(profile.datasets[src].name) if src is not None else recipe
            exp = run_experiment(tuned, profile.datasets[src] if src is not None else None,
                                 [profile.datasets[t] for t in targets], profile.out, device=device,
                                 force=force, progress=progress, cache=cache, seeds=seeds, **kwargs)
            exps[(label, src)] = exp
            for t in targets:
                doc = exp.results[t] if seeds is None else next(iter(exp.experiments.values())).results[t]
                interval = (doc.get("intervals") or {}).get("mean", {})
                for metric, value in doc["mean"].items():
                    low, high = interval.get(metric) or (float("nan"), float("nan"))
                    row = {"label": label, "dataset": t, "metric": metric, "value": value,
                           "source": "ours", "tuned_on": src,
                           "provenance": doc["provenance"].get("label", ""), "low": low, "high": high}
                    if seeds is not None:
                        s = exp.summary[t]["mean"][metric]
                        row.update(value=s["mean"], std=s["std"], seeds=s["n"])
                    out.append(row)
    return RunTable(pd.DataFrame(out), exps)
