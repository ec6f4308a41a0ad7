"""The chapter template: every chapter opens with the same parameters and gets the same things.

Every chapter's ``parameters`` cell has ``profile``, ``data_root``, ``device``, ``force``,
``backbone``, ``pretrained`` and ``live``; :func:`open_chapter` turns them into a
:class:`Chapter`, so that any chapter — ablations included — re-runs on another backbone
through papermill parameters::

    ch = open_chapter(profile, data_root, device, force, backbone, pretrained)
    table = ch.run([("AnomalyCLIP", ch.recipe("official"))])      # a RunTable
    exp = ch.experiment(ch.recipe("official"), "textures", ["objects"])

Every run goes to the profile's one run store (``ch.profile.out``) with the profile's feature cache, so
the same experiment asked for by several chapters is trained once for the whole book. Opening
a chapter also applies the book's figure style and keeps the library's undefined-metric
warnings out of the page (the results files record them as notes, which chapters show).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..engine.metrics import UndefinedMetricWarning
from ..engine.loading import resolve_device
from ..engine.profiles import Profile, get_profile
from ..engine.run_table import run_table
from ..engine.runner import run_experiment
from . import figcheck
from .labels import NOT_RUN, caveat, is_smoke, ours_label, paper_dataset
from .plots import book_style


@dataclass
class Chapter:
    """A chapter's profile, device and backbone overrides, and the runner calls it makes."""

    profile: Profile
    device: str
    force: bool = False
    overrides: dict = field(default_factory=dict)

    def recipe(self, name: str = "official", **settings):
        """The profile's recipe ``name`` on this chapter's backbone, with ``settings`` changed."""
        return self.profile.recipe(name, **{**self.overrides, **settings})

    def run(self, rows, datasets=None, train: bool = True, **kwargs):
        """:func:`anomclip.engine.run_table.run_table` of ``rows`` (``[(label, recipe)]``) under the profile."""
        return run_table(self.profile, rows, datasets=datasets, train=train, force=self.force, device=self.device,
                         progress=False, **kwargs)

    def experiment(self, recipe, train_on: str | None, evaluate_on, **kwargs):
        """:func:`anomclip.engine.runner.run_experiment` on the profile's datasets (names), in its store."""
        return run_experiment(recipe, self.profile.datasets[train_on] if train_on else None,
                              [self.profile.datasets[t] for t in evaluate_on], self.profile.out, device=self.device,
                              force=self.force, progress=False, cache=self.profile.cache, **kwargs)

    @property
    def smoke(self) -> bool:
        return is_smoke(self.profile)

    @property
    def ours(self) -> str:
        """The column label of this chapter's numbers."""
        return ours_label(self.profile)

    def caveat(self, what: str = "numbers"):
        return caveat(self.profile, what)

    @property
    def ablation_datasets(self):
        """Evaluation datasets of the ablation tables: the paper reports MVTec AD and VisA only
        (None = every target of the protocol, as in the smoke profile)."""
        return None if self.smoke else ["MVTec AD", "VisA"]

    def not_run(self, paper_datasets) -> dict:
        """{paper dataset: why this run has no number for it} for the paper datasets it lacks."""
        have = {paper_dataset(d, self.smoke) for d in self.profile.datasets}
        why = "not in the smoke run" if self.smoke else NOT_RUN
        return {d: why for d in paper_datasets if d not in have}


def run_from_checkout(cwd: str | Path | None = None) -> Path:
    """Make the working directory the repository root when it is the checkout's ``notebooks/``
    folder (Jupyter starts a notebook's kernel there; papermill and ``make book`` start it at the
    root), so that ``data``, ``results`` and ``.cache`` mean the same folders in JupyterLab as in
    the book. Returns the working directory."""
    from .build import find_checkout

    here = Path(cwd or os.getcwd()).resolve()
    repo = find_checkout()
    if repo is not None and here == (repo / "notebooks").resolve():
        os.chdir(repo)
        return repo
    return here


def open_chapter(profile: str = "smoke", data_root: str = "data", device: str = "auto", force: bool = False,
                 backbone: str | None = None, pretrained: str | None = None, results_dir: str = "results") -> Chapter:
    """The :class:`Chapter` of a notebook's parameters (``None`` backbone/weights: the profile's).
    Relative ``data_root``/``results_dir`` are folders of the repository root, also when the
    kernel runs in ``notebooks/`` (:func:`run_from_checkout`)."""
    run_from_checkout()
    book_style()
    figcheck.install()  # every figure shown carries its legend check (tools/check_book.py reads it)
    warnings.simplefilter("ignore", UndefinedMetricWarning)  # recorded as notes in the results files
    P = get_profile(profile, data_root, results_dir=results_dir)
    overrides = {k: v for k, v in {"backbone": backbone, "pretrained": pretrained}.items() if v is not None}
    return Chapter(P, resolve_device(device), bool(force), overrides)
