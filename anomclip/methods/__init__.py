"""The methods on one engine: the six of the paper's Tables 1–3 (docs/compared-methods.md) and
those published after AnomalyCLIP (docs/after-anomalyclip.md).

CLIP, CLIP-AC, WinCLIP, VAND (APRIL-GAN), CoOp and AnomalyCLIP are recipes (``get_recipe("clip")``,
…, ``get_recipe("official")``) whose ``method`` field picks the class (:mod:`.registry`). Every
class satisfies the :class:`~anomclip.methods.protocol.Method` protocol, the only interface the
engine uses, so the data index, preprocessing, feature cache, training loop, evaluation, metrics
and results files are the same for all six. Imports the model layer; never the engine.
"""
from ..recipes import METHODS, PAPER_METHODS, MethodInfo
from .protocol import Method
from .registry import (
           CLASSES,
           ZERO_SHOT_METHODS,
           build_method,
           display_name,
           model_class,
           trains,
)

__all__ = ["CLASSES", "METHODS", "PAPER_METHODS", "Method", "MethodInfo", "ZERO_SHOT_METHODS", "build_method", "display_name",
           "model_class", "trains"]
