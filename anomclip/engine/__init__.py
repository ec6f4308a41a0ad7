"""The engine: the feature cache, training on cached features, evaluation and its metrics, the
run store keyed by content, the runner and the profiles (docs/run-store.md).

Imports the model, the methods and the data; never the book or the CLI.
"""
from .evaluate import EvalResult
from .features import FeatureCache, FeatureSet, extract_features
from .loading import build_model, resolve_device
from .profiles import Profile, get_profile
from .run_table import RunTable, run_table
from .runner import DataSpec, Experiment, evaluate_dataset, run_experiment
from .train import TrainResult

# (the functions ``evaluate`` and ``train`` stay in their modules: exported here they would hide them)
__all__ = ["DataSpec", "EvalResult", "Experiment", "FeatureCache", "FeatureSet", "Profile", "RunTable",
           "TrainResult", "build_model", "evaluate_dataset", "extract_features", "get_profile",
           "resolve_device", "run_experiment", "run_table"]
