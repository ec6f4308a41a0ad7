"""Profiles: where the data is, which backbone, which protocol.

* ``smoke`` (default): the tiny random backbone at 96 px on the synthetic embedded data, on
  CPU, in minutes. Its two domains stand in for the paper's two tuning sets: prompts tuned on
  ``textures`` are evaluated on ``objects`` and vice versa. Every number is labelled as
  coming from an **untrained tiny backbone on synthetic data**.
* ``paper``: ViT-L-14-336 with the ``openai`` weights at 518 px on the real datasets under a
  data root, on a GPU, with the paper's protocol: tune on the MVTec AD test split and evaluate
  every other dataset; tune on the VisA test split and evaluate MVTec AD; tune on Table 3's
  medical auxiliary set (``medical_aux``, when built) and evaluate the medical datasets. The
  17 datasets, their folders under DATA_ROOT and where each is published are
  :data:`anomclip.data.catalogue.DATASETS` (docs/datasets.md); whichever are present are used, the others are
  listed in :attr:`Profile.missing`.

A chapter that tunes many settings asks for a named **schedule** (:data:`SMOKE_SCHEDULES`):
``ch.recipe("paper", schedule="ablation")`` is the recipe with the smoke profile's shorter
schedule on the smoke profile, and the recipe's own (the paper's) on the paper profile.
"""
from __future__ import annotations

import fcntl
from dataclasses import dataclass, field
from pathlib import Path

from ..data.catalogue import DATASETS, MEDICAL_AUX, MEDICAL_AUX_SOURCES, Dataset
from ..errors import AnomclipError
from ..recipes import Recipe, get_recipe, smoke
from .features import FeatureCache
from .runner import DataSpec

#: The smoke profile's named tuning schedules: {name: the recipe settings it sets}. A chapter asks
#: for one by name (:meth:`Profile.recipe`); the paper profile has none, so there the same
#: chapter tunes with the recipe's own schedule. A name is part of no key: the settings it sets
#: are (the run store keys a run by its recipe), and the provenance box and the chapters' tables
#: of rows show the epochs every run used.
#:
#: ``ablation`` (chapters 6–9, whose workbench tunes a new setting in both directions while the
#: reader waits): 2 epochs instead of 15, i.e. 20 Adam steps of batch 8 on the 80 images of a
#: synthetic domain: 2–3 s per new setting instead of 16–18 on 2 CPU cores (``anomclip bench workbench``).
#: It keeps what these chapters show on the smoke profile: the local loss is what trains the
#: maps (chapter 8: pixel AUROC of "global only" stays near the untrained prompts' while "local
#: only" rises to the full model's), and every module, loss term and DPAM mode trains and runs.
#:
#: ``epoch-curve`` (chapter 16's evaluation after every epoch, :mod:`.epochs`): 3 epochs, whose
#: second is the ``ablation`` run (read back from the store); the paper profile's curve runs the
#: recipe's 15.
SMOKE_SCHEDULES: dict[str, dict] = {
    "ablation": {"epochs": 2},
    "epoch-curve": {"epochs": 3},
}


@dataclass
class Profile:
    name: str
    base: Recipe
    datasets: dict  # {name: DataSpec}
    #: tuning dataset → datasets evaluated with those prompts
    protocol: dict = field(default_factory=dict)
    results_dir: Path = Path("results")
    synthetic: bool = False
    #: datasets of the profile that were not found: {name: one line naming the folder and source}
    missing: dict = field(default_factory=dict)
    #: one line per dataset whose test counts differ from the paper's Table 6 (from ``prepare``)
    notes: list = field(default_factory=list)
    #: where frozen features are cached (from $ANOMCLIP_CACHE / $ANOMCLIP_CACHE_DTYPE)
    cache: FeatureCache = field(default_factory=FeatureCache.from_env)
    #: the profile's named tuning schedules, {name: recipe settings} (smoke: :data:`SMOKE_SCHEDULES`;
    #: a name it lacks is the recipe's own schedule)
    schedules: dict = field(default_factory=dict)

    def train_for(self, dataset: str) -> DataSpec:
        """The dataset whose prompts are used to evaluate ``dataset`` (zero-shot protocol)."""
        for src, targets in self.protocol.items():
            if dataset in targets:
                return self.datasets[src]
        raise AnomclipError(f"profile {self.name}: no tuning dataset for {dataset}")

    def recipe(self, name: str = "official", schedule: str | None = None, **overrides) -> Recipe:
        """The named recipe on this profile's backbone, size and epochs, except (real data only)
        the settings its own paper fixes. Epochs set here (the smoke profile's, or an override)
        replace the recipe's epochs per tuning dataset (:meth:`Recipe.for_tuning`).

        ``schedule``: a name of :data:`SMOKE_SCHEDULES`; the profile's settings of that name
        (:attr:`schedules`) apply, under ``overrides`` (an explicit setting wins)."""
        if schedule is not None:
            if schedule not in SMOKE_SCHEDULES:
                raise AnomclipError(f"unknown schedule {schedule!r} (choose from {', '.join(SMOKE_SCHEDULES)})")
            overrides = {**self.schedules.get(schedule, {}), **overrides}
        r = get_recipe(name)
        keep = dict(backbone=self.base.backbone, pretrained=self.base.pretrained,
                    image_size=self.base.image_size, epochs=self.base.epochs)
        if not self.synthetic:  # a baseline keeps what its own paper fixes (WinCLIP's backbone, VAND's size…)
            keep = {k: v for k, v in keep.items() if k not in r.own_settings}
        keep.update(overrides)
        if "epochs" in keep and "epochs_by_tuning" not in overrides:
            keep["epochs_by_tuning"] = ()
        return r.with_(**keep)

    @property
    def out(self) -> Path:
        return self.results_dir / self.name


def ensure_synthetic(root: str | Path) -> dict[str, Path]:
    """The synthetic data under ``root/synthetic`` (generated once, deterministically)."""
    from ..data.index import mark_synthetic
    from ..data.synth import make_synthetic

    base = Path(root) / "synthetic"
    domains = {"textures": base / "textures", "objects": base / "objects"}
    if all((p / "meta.json").is_file() for p in domains.values()):
        for path in domains.values():
            mark_synthetic(path)  # data generated before the marker existed
        return domains
    base.mkdir(parents=True, exist_ok=True)
    with open(base / ".lock", "a+") as fh:  # chapters executed side by side generate it once
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            if not all((p / "meta.json").is_file() for p in domains.values()):
                domains = make_synthetic(base)
            for path in domains.values():
                mark_synthetic(path)
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    return domains


def get_profile(name: str = "smoke", data_root: str | Path = "data", results_dir: str | Path = "results") -> Profile:
    if name == "smoke":
        domains = ensure_synthetic(data_root)
        ds = {d: DataSpec(str(p), d) for d, p in domains.items()}
        return Profile("smoke", smoke("official"), ds, {"textures": ["objects"], "objects": ["textures"]},
                       Path(results_dir), synthetic=True, schedules=SMOKE_SCHEDULES)
    if name == "paper":
        return paper_profile(data_root, results_dir)
    raise AnomclipError(f"unknown profile {name!r} (smoke or paper)")


def _paper_spec(root: Path, d: Dataset) -> DataSpec:
    return DataSpec(str(root / d.folder), d.name)


def paper_profile(data_root: str | Path = "data", results_dir: str | Path = "results",
                  prepare: bool = True) -> Profile:
    """The paper's datasets found under ``data_root`` and its protocol (docs/anomalyclip.md §6).

    Prompts tuned on MVTec AD evaluate every other dataset present; prompts tuned on VisA
    evaluate MVTec AD; when ``DATA_ROOT/medical_aux`` exists (Table 3), prompts tuned on it
    evaluate the medical datasets but CVC-ColonDB, the set it is built from (as Table 3). A dataset folder without ``meta.json`` is prepared (its
    layout detected) when ``prepare``; a missing folder is skipped and listed in
    :attr:`Profile.missing` with where the dataset is published, as is a folder whose content
    matches no layout (with the reason). Works with any subset present;
    a tuning set that is absent simply drops its protocol entry.
    """
    from ..data import releases

    root = Path(data_root)
    ds: dict = {}
    missing: dict = {}
    notes: list = []
    for d in DATASETS + (MEDICAL_AUX,):
        path = root / d.folder
        if not path.is_dir():
            if d is not MEDICAL_AUX:
                missing[d.name] = f"{d.name}: {path} not found, skipped (published at {d.source})"
            continue
        if prepare and not (path / "meta.json").is_file():
            try:
                prepared = releases.prepare(path, "auto" if d is not MEDICAL_AUX else "folder")
                if prepared.table6:
                    notes.append(f"{d.name}: {prepared.table6}")
            except OSError:  # a read-only copy: its layout is then read on the fly at each load
                pass
            except AnomclipError as exc:  # unrecognised content: skipped, saying why
                missing[d.name] = f"{d.name}: {path} could not be prepared, skipped ({exc})"
                continue
        ds[d.name] = _paper_spec(root, d)
    protocol: dict = {}
    mvtec, visa = "MVTec AD", "VisA"
    if mvtec in ds:
        others = [n for n in ds if n not in (mvtec, MEDICAL_AUX.name)]
        if others:
            protocol[mvtec] = others
    if visa in ds and mvtec in ds:
        protocol[visa] = [mvtec]
    medical = [d.name for d in DATASETS
               if d.domain == "medical" and d.name in ds and d.key not in MEDICAL_AUX_SOURCES]
    if MEDICAL_AUX.name in ds and medical:
        protocol[MEDICAL_AUX.name] = medical
    synthetic = bool(ds) and all(spec.synthetic for spec in ds.values())
    return Profile("paper", get_recipe("official"), ds, protocol, Path(results_dir), synthetic=synthetic,
                   missing=missing, notes=notes)
