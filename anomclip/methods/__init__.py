"""The methods compared in the paper's Tables 1–3, on one engine (docs/methods.md).

CLIP, CLIP-AC, WinCLIP, VAND (APRIL-GAN), CoOp and AnomalyCLIP are recipes (``get_recipe("clip")``,
…, ``get_recipe("official")``) whose ``method`` field picks the model class; every model has the
interface of :class:`~anomclip.model.AnomalyCLIP`, so the data index, preprocessing, feature
cache, training loop, evaluation, metrics and results files are the same for all six.
"""
from .registry import METHODS, ZERO_SHOT_METHODS, MethodInfo, build_method, display_name, model_class, trains

__all__ = ["METHODS", "ZERO_SHOT_METHODS", "MethodInfo", "build_method", "display_name", "model_class", "trains"]
