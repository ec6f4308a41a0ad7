"""What the baselines share: hand-written text features per category, and a frozen-CLIP base.

Every method satisfies :class:`~anomclip.methods.protocol.Method`, the interface the engine
uses; the classes here supply it for a frozen CLIP with hand-written prompts.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from ..errors import AnomclipError
from ..model.anomalyclip import AnomalyCLIP
from ..model.backbone import OnBackbone
from ..model.checkpoint import TrainedState, check_tensors
from ..model.dpam import DualPathEncoder, VisualFeatures
from ..recipes import Recipe, resolve_block
from .prompts import ensemble_text, text_tower_digest

METHOD_CHECKPOINT_FORMAT = "anomclip-method/1"


class FixedText:
    """Hand-written prompts: ``[2, D]`` text features per category, computed once (frozen).

    A subclass sets ``sentences(cls_name) -> (normal sentences, anomalous sentences)`` and has
    ``clip``, ``tokenizer``, ``recipe``, ``device`` and a ``_fixed_text`` dict.
    """

    def sentences(self, cls_name: str) -> tuple[list[str], list[str]]:  # pragma: no cover - abstract
        raise NotImplementedError

    @functools.cached_property
    def text_tower(self) -> str:
        """The frozen text tower's digest (:func:`.prompts.text_tower_digest`), taken once per model."""
        return text_tower_digest(self.clip)

    def class_text(self, cls_name: str) -> torch.Tensor:
        """``[2, D]`` text features of one category (row 0 normal, row 1 anomalous)."""
        key = (cls_name, str(self.device))
        if key not in self._fixed_text:
            self._fixed_text[key] = ensemble_text(self.clip, self.tokenizer, *self.sentences(cls_name),
                                                  tower=self.text_tower)
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


class FrozenClipMethod(FixedText, OnBackbone, TrainedState, nn.Module):
    """A frozen open_clip model, a recipe, and (optionally) a small trainable module.

    Subclasses implement ``_encode(images) -> (global, {mode: {layer: tensor}})``,
    ``score_features``, ``feature_spec`` and ``sentences``; those that train set
    ``self.learner`` and override ``training_loss``.
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

    def restore(self, ckpt: dict, path) -> None:
        """Check a checkpoint of :meth:`checkpoint` (same method, backbone and shapes) and load it."""
        if ckpt.get("format") != METHOD_CHECKPOINT_FORMAT or ckpt.get("method") != self.recipe.method:
            raise AnomclipError(f"{path} is not a {self.recipe.method} checkpoint")
        if ckpt["backbone"]["name"] != self.info.name:
            raise AnomclipError(f"{path} was trained on backbone {ckpt['backbone']['name']}, not {self.info.name}")
        check_tensors(self.learner.state_dict(), ckpt["prompt_learner"], path,
                      "its tensors do not fit this recipe (layers or widths differ)")
        self.learner.load_state_dict(ckpt["prompt_learner"])

    def training_loss(self, g, feats, labels, masks, cls_names=None) -> dict:
        """A method with nothing to train has no objective (VAND overrides this)."""
        raise AnomclipError(f"{self.recipe.method} has nothing to train")


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
