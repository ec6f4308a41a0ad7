"""The model: open_clip's frozen CLIP, the dual-path DPAM encoder, the object-agnostic prompt
learner, scoring and losses, wired together in :class:`AnomalyCLIP` (docs/anomalyclip.md §1–5, §9).

Imports only the foundation (:mod:`anomclip.errors`, :mod:`anomclip.io`, :mod:`anomclip.recipes`).
"""
from .anomalyclip import AnomalyCLIP, AnomalyOutput
from .backbone import BackboneInfo, load_clip
from .dpam import DualPathEncoder, VisualFeatures
from .prompt_learner import PromptLearner

__all__ = ["AnomalyCLIP", "AnomalyOutput", "BackboneInfo", "DualPathEncoder", "PromptLearner", "VisualFeatures",
           "load_clip"]
