"""The toy chapter of the workbench tests: a chapter whose runs are a known function of the
recipe (no training, no model), shared by tests/test_workbench.py and the notebook that
tests/test_widgets_kernel.py executes in a real kernel."""
from __future__ import annotations

from types import SimpleNamespace

import pandas as pd

METRICS = ("pixel_auroc", "image_auroc")
DPAM_SHIFT = {"vv": 0.0, "qq": 0.04, "kk": 0.06, "qk": 0.08, "none": 0.1}


def toy_value(recipe, dataset: str, metric: str) -> float:
    """The toy's number (a fraction) for a recipe: it depends on λ, the focal loss, the prompt
    depth, the number of feature layers, the DPAM mode, the dataset and the metric, so that
    every control of a workbench changes it."""
    v = (0.4 + 0.02 * recipe.lam + 0.05 * recipe.use_focal_loss + 0.01 * recipe.prompt_depth
         + 0.03 * len(recipe.layers) + DPAM_SHIFT.get(recipe.dpam, 0.12))
    return min(v + (0.01 if metric == "image_auroc" else 0) + (0.02 if dataset == "objects" else 0), 0.99)


class ToyChapter:
    """What a workbench uses of a :class:`anomclip.book.chapter.Chapter` — its profile's
    protocol and datasets, its device, ``smoke``, ``ours`` and ``run`` — with runs that
    compute :func:`toy_value` instead of training. ``calls`` records every run: (labels,
    datasets, train); ``recipes`` every recipe run."""

    smoke = True
    ours = "ours (smoke)"

    def __init__(self, device: str = "cpu"):
        self.profile = SimpleNamespace(protocol={"textures": ["objects"], "objects": ["textures"]},
                                       datasets={"textures": 1, "objects": 2})
        self.device = device
        self.calls: list = []
        self.recipes: list = []

    def run(self, rows, datasets=None, train: bool = True, on_epoch=None):
        self.calls.append(([label for label, _ in rows], datasets, train))
        self.recipes.extend(recipe for _, recipe in rows)
        for epoch in (1, 2):  # the progress bar's hook, as a two-epoch training calls it
            if train and on_epoch is not None:
                on_epoch(epoch, 2)
        targets = datasets or ["objects", "textures"]
        frame = pd.DataFrame([{"label": label, "dataset": t, "metric": m, "value": toy_value(recipe, t, m)}
                              for label, recipe in rows for t in targets for m in METRICS])
        return SimpleNamespace(frame=frame)
