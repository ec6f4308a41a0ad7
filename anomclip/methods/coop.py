"""CoOp adapted to anomaly detection (AnomalyCLIP, appendix A.2; Zhou et al., IJCV 2022).

Prompts ``[V1]…[VN] normal [cls].`` and ``[V1]…[VN] anomalous [cls].``: one learnable context
of N = 16 word embeddings (CoOp's unified context: the same ``V`` in both prompts, N(0, 0.02)
init), the category name at the end. Trained with CoOp's objective — the image-level
cross-entropy of ``100 · [t_n, t_a]·f`` — on the auxiliary data; probabilities and
segmentation as AnomalyCLIP (docs/anomalyclip.md §4) without DPAM (last block through ``ln_post``/``proj``).
The scale 100 (recipe ``temperature = 0.01``) is CoOp's: its code multiplies the cosines by
CLIP's own ``exp(logit_scale)``, 100 for OpenAI's weights, not by AnomalyCLIP's 1/0.07.

It is an :class:`~anomclip.model.anomalyclip.AnomalyCLIP` whose prompt learner writes CoOp's sentences;
everything else (text encoder, scoring, checkpoints, training loop) is AnomalyCLIP's.
"""
from __future__ import annotations

from ..model.anomalyclip import AnomalyCLIP
from ..model.prompt_learner import PromptLearner
from .prompts import object_words

NORMAL_WORD = "normal"


def coop_sentences(n_ctx: int, cls_name: str, anomalous_word: str = "anomalous") -> tuple[str, str]:
    """``X … X normal [cls].`` / ``X … X anomalous [cls].`` with ``X`` for each learnable token."""
    ctx = " ".join(["X"] * n_ctx)
    name = object_words(cls_name)
    return tuple(f"{ctx} {word} {name}.".strip() for word in (NORMAL_WORD, anomalous_word))


class CoOpPromptLearner(PromptLearner):
    """:class:`PromptLearner` with CoOp's sentences (a state word in *both* prompts)."""

    def _fixed_tokens(self, object_name: str):
        if object_name not in self._fixed:
            ids = self._tokenizer(list(coop_sentences(self.n_ctx, object_name, self.state_word)))
            emb_layer = self._token_embedding[0]
            ids = ids.to(emb_layer.weight.device)
            emb = emb_layer(ids).detach()
            self._fixed[object_name] = (ids, emb)
        return self._fixed[object_name]


class CoOp(AnomalyCLIP):
    """AnomalyCLIP's engine with CoOp's prompts (recipe ``coop``: global loss only, DPAM off)."""

    def __init__(self, clip_model, tokenizer, info, recipe):
        super().__init__(clip_model, tokenizer, info, recipe)
        self.prompt_learner = CoOpPromptLearner(
            self.clip.token_embedding, tokenizer, n_ctx=recipe.n_ctx, shared=recipe.shared_ctx,
            state_word=recipe.state_word, object_aware=True, depth=recipe.prompt_depth,
            length=recipe.prompt_length, text_layers=len(self.clip.transformer.resblocks),
            fp16_quirk=recipe.fp16_quirk, seed=recipe.seed,
        )
