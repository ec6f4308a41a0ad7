"""What the engine needs from a method: the :class:`Method` protocol.

The feature cache, the training loop, evaluation and the runner talk to AnomalyCLIP and every
baseline through these members and nothing else. The visual side is frozen, so a method is
split in two: :meth:`~Method.encode_image` computes the features the cache stores (keyed by
:meth:`~Method.feature_spec`), and :meth:`~Method.score_features` turns cached features and
text features into scores and maps. What a method trains lives in :attr:`~Method.prompt_learner`
(an empty module when nothing is trained) and is saved by :meth:`~Method.save_prompts`.

A *transductive* method (MuSc) scores a category's images jointly: it sets ``transductive = True``
and has ``score_category(load, n, dataset=None, with_map=True, sigma=None) -> AnomalyOutput``,
which evaluation calls once per category with ``load(rows, layer)`` reading the cached features of
some of its images (``layer=None``: the global features). Not part of the protocol: the engine
looks for the attribute.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from ..model.anomalyclip import AnomalyOutput
from ..model.backbone import BackboneInfo
from ..model.dpam import VisualFeatures
from ..recipes import Recipe


@runtime_checkable
class Method(Protocol):
    """A zero-shot anomaly detector on a frozen CLIP (AnomalyCLIP or a baseline)."""

    recipe: Recipe  # the settings it was built from
    info: BackboneInfo  # the backbone and its weights
    layers: tuple[int, ...]  # 1-based blocks whose patch features make the maps
    dpam_start: int | None  # first block of the DPAM path (None: no DPAM)

    @property
    def device(self) -> torch.device: ...

    @property
    def image_size(self) -> int: ...

    @property
    def prompt_learner(self) -> nn.Module:
        """Everything the method trains (prompts, projections); an empty module when nothing."""
        ...

    def feature_spec(self) -> dict:
        """Everything its frozen visual features depend on, except the data (the cache key)."""
        ...

    def encode_image(self, images: torch.Tensor) -> VisualFeatures:
        """Frozen visual features of preprocessed images ``[B, 3, S, S]`` (what the cache stores)."""
        ...

    def text_for(self, cls_names=None) -> torch.Tensor:
        """Text features ``[2, D]`` (or ``[B, 2, D]`` when they depend on each image's category)."""
        ...

    def score_features(self, g: torch.Tensor, feats: dict, text: torch.Tensor, with_map: bool = True,
                       sigma: float | None = None) -> AnomalyOutput:
        """Image scores and anomaly maps from visual and text features."""
        ...

    def training_loss(self, g: torch.Tensor, feats: dict, labels: torch.Tensor, masks: torch.Tensor,
                      cls_names) -> dict:
        """One batch's objective: ``{"total", "global", "local"}`` (tensors; ``total`` is minimised)."""
        ...

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters the training loop updates (empty: a method that is not trained)."""
        ...

    def checkpoint(self) -> dict:
        """The trained state and the recipe, as saved."""
        ...

    def save_prompts(self, path: str | os.PathLike, extra: dict | None = None) -> Path:
        """Write :meth:`checkpoint` atomically."""
        ...

    def load_prompts(self, path: str | os.PathLike) -> dict:
        """Load a checkpoint written by :meth:`save_prompts` for the same method and backbone."""
        ...
