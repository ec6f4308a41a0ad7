"""What the baselines share: hand-written text features per category, and a frozen-CLIP base.

The engine (feature cache, training loop, evaluation, runner) talks to every method through the
same interface as :class:`~anomclip.model.AnomalyCLIP`: ``recipe``, ``info``, ``image_size``,
``device``, ``layers``, ``feature_spec()``, ``encode_image(images)``, ``text_for(cls_names)``,
``score_features(g, feats, text)``, ``trainable_parameters()``, ``prompt_learner`` (the module that
holds what a method trains: prompts, or VAND's projections; an empty module when nothing is
trained) and ``save_prompts`` / ``load_prompts`` for its checkpoint.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..dpam import DualPathEncoder, VisualFeatures
from ..errors import AnomclipError
from ..model import AnomalyCLIP, atomic_torch_save, read_checkpoint
from ..recipes import Recipe, resolve_block
from .prompts import ensemble_text

METHOD_CHECKPOINT_FORMAT = "anomclip-method/1"


class FixedText:
    """Hand-written prompts: ``[2, D]`` text features per category, computed once (frozen).

    A subclass sets ``sentences(cls_name) -> (normal sentences, anomalous sentences)`` and has
    ``clip``, ``tokenizer``, ``recipe``, ``device`` and a ``_fixed_text`` dict.
    """

    def sentences(self, cls_name: str) -> tuple[list[str], list[str]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def class_text(self, cls_name: str) -> torch.Tensor:
        """``[2, D]`` text features of one category (row 0 normal, row 1 anomalous)."""
        key = (cls_name, str(self.device))
        if key not in self._fixed_text:
            self._fixed_text[key] = ensemble_text(self.clip, self.tokenizer, *self.sentences(cls_name))
        return self._fixed_text[key]

    def encode_text(self, cls_name: str | None = None) -> torch.Tensor:
        if cls_name is None:
            raise AnomclipError(f"{self.recipe.method}: its prompts name the category; give cls_name")
        return self.class_text(cls_name)

    def text_for(self, cls_names=None) -> torch.Tensor:
        """``[B, 2, D]``: the text features of each image's category."""
        if cls_names is None:
            raise AnomclipError(f"{self.recipe.method} needs the category name of every image")
        return torch.stack([self.class_text(n) for n in cls_names])


class FrozenClipMethod(FixedText, nn.Module):
    """A frozen open_clip model, a recipe, and (optionally) a small trainable module.

    Subclasses implement ``_encode(images) -> (global, {mode: {layer: tensor}})``,
    ``score_features``, ``feature_spec`` and ``sentences``; those that train set
    ``self.learner`` and implement ``training_loss``.
    """

    def __init__(self, clip_model: nn.Module, tokenizer, info, recipe: Recipe):
        super().__init__()
        self.clip = clip_model.eval()
        for p in self.clip.parameters():
            p.requires_grad_(False)
        self.tokenizer, self.info, self.recipe = tokenizer, info, recipe
        depth = info.vision_layers
        self.layers = tuple(sorted({resolve_block(m, depth) for m in recipe.layers}))
        self.dpam_start = None  # no DPAM in the baselines
        self.modes: tuple[str, ...] = ()
        # the frozen ViT run block by block (DPAM off): embedding and blocks exactly as open_clip's
        self.vit = DualPathEncoder(self.clip.visual, (), 1, (depth,), global_ln_post=True)
        self.learner = nn.Module()  # what the method trains (nothing by default)
        self._fixed_text: dict = {}

    # ------------------------------------------------------------------ engine interface
    @property
    def device(self) -> torch.device:
        return self.clip.visual.proj.device

    @property
    def image_size(self) -> int:
        return self.info.image_size

    @property
    def prompt_learner(self) -> nn.Module:
        """The trainable part (the engine's name for it, whatever the method trains)."""
        return self.learner

    def _backbone_spec(self) -> dict:
        return {"backbone": self.info.name, "weights": self.info.weights, "image_size": self.info.image_size,
                "pos": self.info.pos_interpolation}

    def global_feature(self, x: torch.Tensor) -> torch.Tensor:
        """CLIP's image embedding from the last block's tokens: ``ln_post(x[CLS]) @ proj``, normalised."""
        return self.vit.project(x[:, 0])

    def encode_image(self, images: torch.Tensor) -> VisualFeatures:
        """``VisualFeatures(global_feature [B, D], {mode: {layer: [B, N, ·]}})`` (what the cache stores)."""
        with torch.no_grad():
            return VisualFeatures(*self._encode(images.to(self.device)))

    def forward(self, images: torch.Tensor, cls_names=None):
        g, feats = self.encode_image(images)
        return self.score_features(g, feats, self.text_for(cls_names))

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.learner.parameters() if p.requires_grad]

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self) -> dict:
        return {
            "format": METHOD_CHECKPOINT_FORMAT, "method": self.recipe.method, "recipe": self.recipe.to_dict(),
            "backbone": {"name": self.info.name, "weights": self.info.weights, "text_width": self.info.text_width,
                         "vision_width": self.info.vision_width},
            "prompt_learner": {k: v.detach().cpu() for k, v in self.learner.state_dict().items()},
        }

    def save_prompts(self, path: str | os.PathLike, extra: dict | None = None) -> Path:
        """Write the trained state (and the recipe) atomically to ``path``."""
        ckpt = self.checkpoint()
        ckpt.update(extra or {})
        return atomic_torch_save(ckpt, path)

    def load_prompts(self, path: str | os.PathLike) -> dict:
        """Load a checkpoint written by :meth:`save_prompts` for the same method and backbone."""
        ckpt = read_checkpoint(path)
        if ckpt.get("format") != METHOD_CHECKPOINT_FORMAT or ckpt.get("method") != self.recipe.method:
            raise AnomclipError(f"{path} is not a {self.recipe.method} checkpoint")
        if ckpt["backbone"]["name"] != self.info.name:
            raise AnomclipError(f"{path} was trained on backbone {ckpt['backbone']['name']}, not {self.info.name}")
        own, sd = self.learner.state_dict(), ckpt["prompt_learner"]
        if set(own) != set(sd) or any(tuple(sd[k].shape) != tuple(own[k].shape) for k in own):
            raise AnomclipError(f"{path}: its tensors do not fit this recipe (layers or widths differ)")
        self.learner.load_state_dict(sd)
        return ckpt


class FixedTextAnomalyCLIP(FixedText, AnomalyCLIP):
    """AnomalyCLIP's encoder and scoring with hand-written prompts instead of learned ones.

    The unused prompt learner is built with ``n_ctx = 0`` and no deep prompts (no parameters).
    """

    def __init__(self, clip_model: nn.Module, tokenizer, info, recipe: Recipe):
        super().__init__(clip_model, tokenizer, info, recipe)
        self.tokenizer = tokenizer
        self._fixed_text = {}

    def trainable_parameters(self) -> list[nn.Parameter]:
        return []
