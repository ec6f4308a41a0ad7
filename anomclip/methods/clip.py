"""CLIP and CLIP-AC: CLIP's own prompts against AnomalyCLIP's scoring, without DPAM (appendix A.2).

Both are :class:`~anomclip.model.anomalyclip.AnomalyCLIP` with DPAM off (the patch features of the last block
through ``ln_post`` and ``proj`` — the encoder's ``"none"`` path, so their cached features are
shared with each other and with CoOp), CLIP's image embedding (``ln_post`` on the class token),
and hand-written text features instead of the prompt learner:

* CLIP: ``"A photo of a normal [cls]."`` / ``"A photo of an anomalous [cls]."``;
* CLIP-AC: the 80 ImageNet templates, each state's sentence features averaged.

Image score ``softmax([t_n, t_a]·f / 0.07)[1]``; map ``G_σ(S_a)`` from the last block (docs/anomalyclip.md §4).
"""
from __future__ import annotations

from .frozen import FixedTextAnomalyCLIP
from .prompts import clip_ac_sentences, clip_sentences


class CLIPBaseline(FixedTextAnomalyCLIP):
    """CLIP with one sentence per state."""

    def sentences(self, cls_name: str):
        return clip_sentences(cls_name)


class CLIPAC(FixedTextAnomalyCLIP):
    """CLIP with the ImageNet prompt-template ensemble (80 sentences per state)."""

    def sentences(self, cls_name: str):
        return clip_ac_sentences(cls_name)
