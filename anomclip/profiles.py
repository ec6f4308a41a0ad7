"""Profiles: where the data is, which backbone, which protocol.

* ``smoke`` (default): the tiny random backbone at 96 px on the synthetic embedded data, on
  CPU, in minutes. Its two domains stand in for the paper's two tuning sets: prompts tuned on
  ``textures`` are evaluated on ``objects`` and vice versa. Every number is labelled as
  coming from an **untrained tiny backbone on synthetic data**.
* ``paper``: ViT-L-14-336 with the ``openai`` weights at 518 px on the real datasets under a
  data root, on a GPU, with the paper's protocol: tune on the MVTec AD test split and evaluate
  every other dataset; tune on the VisA test split and evaluate MVTec AD.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .errors import AnomclipError
from .recipes import Recipe, get_recipe, smoke
from .runner import DataSpec

#: Folder names under DATA_ROOT for the paper profile, and their names in the paper's tables.
PAPER_DATASETS = {
    "mvtec": "MVTec AD", "visa": "VisA", "mpdd": "MPDD", "btad": "BTAD", "sdd": "SDD", "dagm": "DAGM",
    "dtd": "DTD-Synthetic",
}
MEDICAL_DATASETS = {
    "headct": "HeadCT", "brainmri": "BrainMRI", "br35h": "Br35H", "covid": "COVID-19", "isic": "ISIC",
    "clinicdb": "CVC-ClinicDB", "colondb": "CVC-ColonDB", "kvasir": "Kvasir", "endo": "Endo", "tn3k": "TN3K",
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

    def train_for(self, dataset: str) -> DataSpec:
        """The dataset whose prompts are used to evaluate ``dataset`` (zero-shot protocol)."""
        for src, targets in self.protocol.items():
            if dataset in targets:
                return self.datasets[src]
        raise AnomclipError(f"profile {self.name}: no tuning dataset for {dataset}")

    def recipe(self, name: str = "official", **overrides) -> Recipe:
        r = get_recipe(name)
        keep = dict(backbone=self.base.backbone, pretrained=self.base.pretrained,
                    image_size=self.base.image_size, epochs=self.base.epochs)
        keep.update(overrides)
        return r.with_(**keep)

    @property
    def out(self) -> Path:
        return self.results_dir / self.name


def ensure_synthetic(root: str | Path) -> dict[str, Path]:
    """The synthetic data under ``root/synthetic`` (generated once, deterministically)."""
    from .synth import make_synthetic

    base = Path(root) / "synthetic"
    domains = {"textures": base / "textures", "objects": base / "objects"}
    if not all((p / "meta.json").is_file() for p in domains.values()):
        domains = make_synthetic(base)
    return domains


def get_profile(name: str = "smoke", data_root: str | Path = "data", results_dir: str | Path = "results") -> Profile:
    if name == "smoke":
        domains = ensure_synthetic(data_root)
        ds = {d: DataSpec(str(p), d, synthetic=True) for d, p in domains.items()}
        return Profile("smoke", smoke("official"), ds, {"textures": ["objects"], "objects": ["textures"]},
                       Path(results_dir), synthetic=True)
    if name == "paper":
        root = Path(data_root)
        ds = {label: DataSpec(str(root / folder), label) for folder, label in PAPER_DATASETS.items()
              if (root / folder).is_dir()}
        ds.update({label: DataSpec(str(root / folder), label) for folder, label in MEDICAL_DATASETS.items()
                   if (root / folder).is_dir()})
        for needed in ("mvtec", "visa"):
            if PAPER_DATASETS[needed] not in ds:
                raise AnomclipError(
                    f"paper profile: {root / needed} not found; put MVTec AD in {root / 'mvtec'} and VisA in "
                    f"{root / 'visa'} (then `anomclip prepare {root / 'mvtec'}`), see README"
                )
        others = [n for n in ds if n not in ("MVTec AD",)]
        return Profile("paper", get_recipe("official"), ds, {"MVTec AD": others, "VisA": ["MVTec AD"]},
                       Path(results_dir))
    raise AnomclipError(f"unknown profile {name!r} (smoke or paper)")
