"""anomclip — AnomalyCLIP (ICLR 2024) on open_clip, for a reproducible research book.

The package in layers, lowest first (a layer imports only those before it)::

    errors, io, recipes      the foundation: one-line errors, atomic writes, experiments as data
    data/    model/          the meta.json index, the 17 datasets' readers, preprocessing |
                             the backbone, DPAM, the prompt learner, scoring, losses
    methods/                 AnomalyCLIP and the baselines behind one protocol
    engine/                  feature cache, training, evaluation, metrics, run store, runner
    book/    cli             the book's helpers | the command line

The public API is importable from here: ``from anomclip import AnomalyCLIP, Recipe,
get_recipe, run_experiment``. The engine's names are loaded on first use, so ``import
anomclip`` stays light.
"""
from .errors import AnomclipError
from .model.anomalyclip import AnomalyCLIP, AnomalyOutput
from .model.dpam import VisualFeatures
from .recipes import (
    METHODS,
    OFFICIAL,
    PAPER,
    PAPER_METHODS,
    RECIPES,
    MethodInfo,
    Recipe,
    get_recipe,
    smoke,
)

__version__ = "0.1.0"

#: engine names exported lazily: name → module
_LAZY = {name: "anomclip.engine" for name in (
    "DataSpec", "Experiment", "FeatureCache", "Profile", "RunTable", "build_model", "get_profile", "run_experiment",
    "run_table")}
_LAZY.update({"evaluate": "anomclip.engine.evaluate", "train": "anomclip.engine.train"})
_LAZY.update({"load_index": "anomclip.data", "prepare": "anomclip.data", "make_synthetic": "anomclip.data.synth"})

__all__ = ["AnomalyCLIP", "AnomalyOutput", "AnomclipError", "METHODS", "MethodInfo", "OFFICIAL", "PAPER", "PAPER_METHODS", "RECIPES",
           "Recipe", "VisualFeatures", "get_recipe", "smoke", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'anomclip' has no attribute {name!r}")
