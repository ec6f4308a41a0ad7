"""Evaluation after every epoch, from one training (the epoch curve of issue #54 of the authors' tracker).

Training is deterministic (a seeded initialisation, a seeded shuffling generator, Adam without a
schedule), so the prompts after epoch k of a longer run *are* the prompts of the same recipe
trained for k epochs. The curve therefore keys epoch k's prompts as everything else is keyed:
the run of ``recipe.with_(epochs=k)`` in the run store. It is trained once: the run of k
epochs starts from the checkpoint of the run of k − 1 epochs (prompts, optimiser, shuffling
generator, :mod:`.train`'s resumable checkpoint) and trains one more epoch. Runs already in the
store are read back, so a chapter asking for the recipe's full schedule (the paper's 15 epochs)
reuses the curve's last point, and the curve reuses such a run.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..io import atomic_write
from ..recipes import Recipe
from .features import FeatureCache
from .runner import DataSpec, Experiment, run_experiment, run_folder, tuned_for
from .store import read_run


@dataclass
class EpochCurve:
    """The runs of one tuning direction, epoch by epoch: ``{k: Experiment}`` (k = 1 … epochs)."""

    train_on: str
    runs: dict

    @property
    def epochs(self) -> int:
        return max(self.runs)

    def frame(self) -> pd.DataFrame:
        """Long table: tuned_on, dataset, epoch, metric, value (the mean over categories)."""
        rows = [{"tuned_on": self.train_on, "dataset": name, "epoch": k, "metric": m, "value": v}
                for k, exp in self.runs.items() for name, doc in exp.results.items()
                for m, v in doc["mean"].items()]
        return pd.DataFrame(rows, columns=["tuned_on", "dataset", "epoch", "metric", "value"])

    def losses(self) -> pd.DataFrame:
        """The training loss of each epoch (the last run's history: every epoch's mean loss)."""
        return pd.DataFrame(self.runs[self.epochs].training["history"]).assign(tuned_on=self.train_on)


def epoch_curve(recipe: Recipe, train_data: DataSpec, eval_data: list[DataSpec], out_dir: str | Path,
                epochs: int | None = None, device: str | None = "auto", cache: FeatureCache | None = None,
                force: bool = False, progress: bool = False, on_epoch=None) -> EpochCurve:
    """Evaluate ``recipe`` tuned on ``train_data`` after each epoch 1 … ``epochs`` (default: the
    recipe's epochs for that tuning set), training ``epochs`` epochs in all (module doc).
    ``force`` retrains the whole curve; ``on_epoch(epoch, epochs)`` is called after each epoch
    trained (none for runs read back)."""
    cache = cache or FeatureCache()
    n = int(epochs if epochs is not None else tuned_for(recipe, train_data.name).epochs)
    runs: dict[int, Experiment] = {}
    previous: Experiment | None = None
    for k in range(1, n + 1):
        r_k = recipe.with_(epochs=k, epochs_by_tuning=())
        folder = run_folder(r_k, train_data, out_dir, cache)
        if force:
            for p in (folder / "prompts.pt", folder / "run.json"):
                p.unlink(missing_ok=True)
        done = (read_run(folder) or {}).get("complete") and (folder / "prompts.pt").is_file()
        if not done and previous is not None and previous.checkpoint is not None:
            # resume from epoch k − 1: the runner continues an interrupted run from its checkpoint
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "run.json").unlink(missing_ok=True)
            atomic_write(folder / "prompts.pt", Path(previous.checkpoint).read_bytes())
        runs[k] = previous = run_experiment(r_k, train_data, eval_data, out_dir, device=device, progress=progress,
                                            cache=cache, on_epoch=on_epoch)
    return EpochCurve(train_data.name, runs)
