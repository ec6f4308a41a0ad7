"""AnomalyCLIP: a frozen open_clip model + DPAM + the object-agnostic prompt learner.

>>> model = AnomalyCLIP.create(backbone="ViT-L-14-336", pretrained="openai", image_size=518)
>>> out = model(images)            # out.image_score [B], out.anomaly_map [B, H, W]

The only trainable tensors are the prompt learner's (docs/anomalyclip.md §3). Scoring (docs/anomalyclip.md §4) is a pure
function of the visual features and the two text features, so training can reuse cached
visual features (:meth:`AnomalyCLIP.score_features`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import AnomclipError
from ..io import read_checkpoint
from ..recipes import Recipe, get_recipe, resolve_block
from . import backbone as bb
from .checkpoint import TrainedState, check_tensors, tensor_digest
from .dpam import DualPathEncoder, VisualFeatures
from .losses import glocal_loss
from .prompt_learner import PromptLearner, encode_prompts
from .scoring import anomaly_map, probability_maps, similarity_logits

CHECKPOINT_FORMAT = "anomclip-prompts/1"


@dataclass
class AnomalyOutput:
    """What the model says about a batch of images."""

    image_score: torch.Tensor  # [B] probability of "anomalous" from the global feature
    anomaly_map: torch.Tensor | None  # [B, H, W] smoothed map (None when not asked for)
    image_logits: torch.Tensor  # [B, 2] cosine / T against (normal, abnormal)
    layer_probs: dict[int, torch.Tensor] = field(default_factory=dict)  # {layer: [B, 2, H, W]}


class AnomalyCLIP(bb.OnBackbone, TrainedState, nn.Module):
    """AnomalyCLIP around an open_clip model. Build with :meth:`create` or :meth:`from_open_clip`."""

    def __init__(self, clip_model: nn.Module, tokenizer, info: bb.BackboneInfo, recipe: Recipe):
        super().__init__()
        self.clip = clip_model.eval()
        for p in self.clip.parameters():
            p.requires_grad_(False)
        self.info, self.recipe = info, recipe
        depth = info.vision_layers
        self.layers = tuple(sorted({resolve_block(m, depth) for m in recipe.layers}))
        self.dpam_start = resolve_block(recipe.dpam_start, depth)
        self.modes = () if recipe.dpam == "none" else recipe.dpam_modes
        self.encoder = DualPathEncoder(self.clip.visual, self.modes, self.dpam_start, self.layers,
                                       recipe.global_ln_post)
        self.prompt_learner = PromptLearner(
            self.clip.token_embedding, tokenizer, n_ctx=recipe.n_ctx, shared=recipe.shared_ctx,
            state_word=recipe.state_word, object_aware=recipe.object_aware, depth=recipe.prompt_depth,
            length=recipe.prompt_length, text_layers=len(self.clip.transformer.resblocks),
            fp16_quirk=recipe.fp16_quirk, seed=recipe.seed,
        )
        self._text_cache: dict = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(cls, recipe: str | Recipe = "official", device: str | torch.device = "cpu",
               cache_dir: str | None = None, **settings) -> "AnomalyCLIP":
        """The model a recipe describes: its backbone and weights loaded through open_clip.

        ``recipe`` is a name (``official``, ``paper``, …) or a :class:`Recipe`; ``settings``
        replace recipe fields as given, ``None`` included (``pretrained=None``: random weights)::

            AnomalyCLIP.create("paper", backbone="ViT-L-14-336", pretrained="openai", image_size=518)
        """
        r = get_recipe(recipe)
        r = r.with_(**settings) if settings else r
        clip_model, tokenizer, info = bb.load_clip(
            r.backbone, r.pretrained, r.image_size, r.pos_interpolation, device=device, cache_dir=cache_dir
        )
        return cls(clip_model, tokenizer, info, r).to(device)

    @classmethod
    def from_open_clip(cls, clip_model: nn.Module, image_size: int | None = None, tokenizer=None,
                       recipe: str | Recipe = "official", name: str = "custom", weights: str = "unknown",
                       pos_interpolation: str = "bilinear", **overrides) -> "AnomalyCLIP":
        """Wrap an open_clip model built elsewhere (its visual tower is resized in place)."""
        open_clip = bb.open_clip_module()

        if image_size:
            bb.set_image_size(clip_model.visual, int(image_size), pos_interpolation)
        info = bb.describe(clip_model, name=name, weights=weights, pos_interpolation=pos_interpolation)
        r = get_recipe(recipe, backbone=name, pretrained=weights, image_size=info.image_size,
                       pos_interpolation=pos_interpolation, **overrides)
        device = next(clip_model.parameters()).device
        return cls(clip_model, tokenizer or open_clip.tokenizer.SimpleTokenizer(), info, r).to(device)

    # ------------------------------------------------------------------ encoders
    def feature_spec(self) -> dict:
        """Everything the frozen visual features depend on, except the data and storage dtype.

        The feature cache keys its entries by this (plus the dataset fingerprint), so two
        recipes that differ only in prompts, losses or training share one extraction.
        """
        return {"encoder": "dual-path", "backbone": self.info.name, "weights": self.info.weights,
                "image_size": self.info.image_size, "pos": self.info.pos_interpolation,
                "modes": list(self.modes) or ["none"], "start": self.dpam_start, "layers": list(self.layers),
                "global_ln_post": self.recipe.global_ln_post}

    def encode_image(self, images: torch.Tensor) -> VisualFeatures:
        """``VisualFeatures(global_feature [B, D], patches {mode: {layer: [B, N, D]}})``.

        L2-normalised, without gradients (the visual side is frozen); ``.by_layer()`` gives
        ``{layer: [B, N, D]}`` of a single-mode recipe.
        """
        with torch.no_grad():
            return self.encoder(images.to(self.device))

    def encode_text(self, cls_name: str | None = None) -> torch.Tensor:
        """The normal/abnormal text features ``[2, D]`` (row 0 normal, row 1 abnormal).

        Without gradients the result is cached until a prompt tensor changes, so evaluation
        computes the text side once per model (per category for object-aware prompts).
        """
        name = self.prompt_learner.object_name(cls_name)
        if torch.is_grad_enabled():
            return self._encode_text(name)
        version = self._prompt_digest()
        key = (name, version, id(self.prompt_learner))
        if key not in self._text_cache:
            self._text_cache = {k: v for k, v in self._text_cache.items() if k[1] == version}
            self._text_cache[key] = self._encode_text(name)
        return self._text_cache[key]

    def _prompt_digest(self) -> str:
        """A digest of the prompt tensors' values: the text cache's key (a changed value recomputes)."""
        return tensor_digest(self.prompt_learner.parameters())

    def clear_text_cache(self) -> None:
        """Forget the cached text features: the next :meth:`encode_text` computes them again."""
        self._text_cache.clear()

    def _encode_text(self, object_name: str) -> torch.Tensor:
        return self._encode_texts([object_name])[0]

    def _encode_texts(self, object_names: list) -> torch.Tensor:
        """``[len(object_names), 2, D]``: the prompts of every name through the text tower in one
        pass (the rows do not interact: the same features as one pass per name, to round-off)."""
        aware = self.prompt_learner.object_aware
        pairs = [self.prompt_learner(n if aware else None) for n in object_names]
        emb, ids = (torch.cat(t) if len(pairs) > 1 else t[0] for t in zip(*pairs))
        return encode_prompts(self.clip, emb, ids, self.prompt_learner).view(len(pairs), 2, -1)

    def text_for(self, cls_names=None) -> torch.Tensor:
        """``[2, D]`` for object-agnostic prompts, ``[B, 2, D]`` for object-aware ones."""
        if not self.prompt_learner.object_aware:
            return self.encode_text()
        if cls_names is None:
            raise AnomclipError("object-aware prompts need the category name of every image")
        names = list(dict.fromkeys(cls_names))
        if torch.is_grad_enabled():  # training: the batch's categories in one pass
            per = dict(zip(names, self._encode_texts([self.prompt_learner.object_name(n) for n in names])))
        else:
            per = {n: self.encode_text(n) for n in names}
        return torch.stack([per[n] for n in cls_names])

    # ------------------------------------------------------------------ scoring
    def score_features(self, g: torch.Tensor, feats: dict, text: torch.Tensor, with_map: bool = True,
                       sigma: float | None = None) -> AnomalyOutput:
        """Scores from (cached) visual features: docs/anomalyclip.md §4. Ensembles average per-mode logits."""
        t = self.recipe.temperature
        image_logits = similarity_logits(g, text, t)
        layer_probs = {}
        for layer in self.layers:
            logits = torch.stack([similarity_logits(feats[m][layer], text, t) for m in feats]).mean(0)
            layer_probs[layer] = probability_maps(logits, self.image_size)
        amap = None
        if with_map:
            amap = anomaly_map(list(layer_probs.values()), self.recipe.sigma if sigma is None else sigma)
        return AnomalyOutput(image_logits.softmax(-1)[:, 1], amap, image_logits, layer_probs)

    def forward(self, images: torch.Tensor, cls_names=None) -> AnomalyOutput:
        g, feats = self.encode_image(images)
        return self.score_features(g, feats, self.text_for(cls_names))

    def training_loss(self, g: torch.Tensor, feats: dict, labels: torch.Tensor, masks: torch.Tensor,
                      cls_names=None) -> dict:
        """One batch's glocal loss (docs/anomalyclip.md §5) with the recipe's λ and switched-on terms."""
        r = self.recipe
        out = self.score_features(g, feats, self.text_for(cls_names), with_map=False)
        return glocal_loss(out.image_logits, list(out.layer_probs.values()), labels, masks, lam=r.lam,
                           use_global=r.use_global_loss, use_focal=r.use_focal_loss, use_dice=r.use_dice_loss)

    # ------------------------------------------------------------------ parameters & checkpoints
    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.prompt_learner.parameters() if p.requires_grad]

    def checkpoint(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "recipe": self.recipe.to_dict(),
            "backbone": {"name": self.info.name, "weights": self.info.weights,
                         "text_width": self.info.text_width},
            "prompt_learner": {k: v.detach().cpu() for k, v in self.prompt_learner.state_dict().items()},
        }

    def restore(self, ckpt: dict, path) -> None:
        """Check a checkpoint of :meth:`checkpoint` against this backbone and recipe, and load it."""
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            if isinstance(ckpt.get("prompt_learner"), dict) and "ctx_pos" in ckpt["prompt_learner"]:
                raise AnomclipError(f"{path} is an authors' checkpoint: load it with --authors-checkpoint")
            raise AnomclipError(f"{path} is not an anomclip prompt checkpoint")
        width = ckpt["backbone"].get("text_width")
        if width != self.info.text_width or ckpt["backbone"]["name"] != self.info.name:
            raise AnomclipError(
                f"{path} was trained on backbone {ckpt['backbone']['name']} (text width {width}), "
                f"not on {self.info.name} (text width {self.info.text_width})"
            )
        check_tensors(self.prompt_learner.state_dict(), ckpt["prompt_learner"], path,
                      "prompt tensors do not fit this recipe (E, shared, depth or length differ)")
        self.prompt_learner.load_state_dict(ckpt["prompt_learner"])

    def load_authors_checkpoint(self, path: str | os.PathLike) -> None:
        """Import the authors' released prompts (docs/anomalyclip.md §9) into the prompt learner."""
        ckpt = read_checkpoint(path)
        sd = ckpt.get("prompt_learner") if isinstance(ckpt, dict) else None
        if not isinstance(sd, dict):
            raise AnomclipError(f"{path} has no 'prompt_learner' entry (not an AnomalyCLIP checkpoint)")
        self.prompt_learner.load_authors_state(sd, source=str(path))

