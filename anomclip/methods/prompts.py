"""Hand-written prompt ensembles of the baselines, and how an ensemble becomes two text features.

* CLIP: one sentence per state, ``"A photo of a normal [cls]."`` / ``"A photo of an anomalous [cls]."``
  (AnomalyCLIP, appendix A.2).
* CLIP-AC: the 80 ImageNet templates of the CLIP paper (``Prompt_Engineering_for_ImageNet``),
  each filled with ``"normal [cls]"`` / ``"anomalous [cls]"``.
* WinCLIP: the *compositional prompt ensemble* — state words × templates (WinCLIP paper,
  supplementary): 7 normal states, 4 anomalous states, 22 templates.
* VAND / APRIL-GAN: the same states plus ``broken [cls]``, with the 35 templates of its
  ``prompt_ensemble.py``.

Every ensemble is reduced the same way (CLIP's notebook, APRIL-GAN's code): encode each sentence
with the frozen text tower, L2-normalise, average the sentences of a state, L2-normalise again.
The result is ``[2, D]``: row 0 normal, row 1 anomalous, as AnomalyCLIP's text features.

An ensemble is computed once per process for given text-tower weights (:func:`ensemble_text`
keeps it under a digest of those weights, the sentences and the tokenizer): a baseline built
again, as every run, test and chapter cell builds one, does not re-encode its hundreds of
sentences (VAND: 420 per category).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F

from ..model.checkpoint import tensor_digest
from ..model.prompt_learner import encode_prompts

#: CLIP's 80 ImageNet prompt templates (CLIP paper, notebook ``Prompt_Engineering_for_ImageNet``).
IMAGENET_TEMPLATES = (
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
    "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
    "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
    "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
    "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.",
    "a painting of a {}.", "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
    "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
    "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.",
    "a photo of a {}.", "the origami {}.", "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.",
    "a origami {}.", "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
    "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.", "a sketch of the {}.",
    "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.", "a photo of the small {}.",
    "a photo of the weird {}.", "the cartoon {}.", "art of the {}.", "a drawing of the {}.",
    "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.", "a dark photo of a {}.",
    "itap of a {}.", "graffiti of the {}.", "a toy {}.", "itap of my {}.", "a photo of a cool {}.",
    "a photo of a small {}.", "a tattoo of the {}.",
)

#: State words of WinCLIP's compositional prompt ensemble: 7 normal, 4 anomalous (paper, Fig. 6).
NORMAL_STATES = ("{}", "flawless {}", "perfect {}", "unblemished {}", "{} without flaw", "{} without defect",
                 "{} without damage")
ANOMALOUS_STATES = ("damaged {}", "{} with flaw", "{} with defect", "{} with damage")
#: VAND / APRIL-GAN adds "broken {}" to the anomalous states (``prompt_ensemble.py``).
VAND_ANOMALOUS_STATES = ("damaged {}", "broken {}", "{} with flaw", "{} with defect", "{} with damage")

#: WinCLIP's 22 templates as we take them from the paper's supplementary (not verified against its
#: text here). The AnomalyCLIP authors' WinCLIP-pytorch and anomalib share another list of 21 (20
#: distinct): without "a cropped photo of a {}." and "a jpeg corrupted photo of a {}.", with "a jpeg
#: corrupted photo of the {}." twice (docs/compared-methods.md, WinCLIP).
WINCLIP_TEMPLATES = (
    "a cropped photo of the {}.", "a cropped photo of a {}.", "a close-up photo of a {}.",
    "a close-up photo of the {}.", "a bright photo of a {}.", "a bright photo of the {}.", "a dark photo of the {}.",
    "a dark photo of a {}.", "a jpeg corrupted photo of a {}.", "a jpeg corrupted photo of the {}.",
    "a blurry photo of the {}.", "a blurry photo of a {}.", "a photo of a {}.", "a photo of the {}.",
    "a photo of a small {}.", "a photo of the small {}.", "a photo of a large {}.", "a photo of the large {}.",
    "a photo of the {} for visual inspection.", "a photo of a {} for visual inspection.",
    "a photo of the {} for anomaly detection.", "a photo of a {} for anomaly detection.",
)

#: VAND / APRIL-GAN's 35 templates (``prompt_ensemble.py``).
VAND_TEMPLATES = (
    "a bad photo of a {}.", "a low resolution photo of the {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a bright photo of a {}.", "a dark photo of the {}.", "a photo of my {}.",
    "a photo of the cool {}.", "a close-up photo of a {}.", "a black and white photo of the {}.",
    "a bright photo of the {}.", "a cropped photo of a {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.", "a photo of one {}.",
    "a close-up photo of the {}.", "a photo of a {}.", "a low resolution photo of a {}.", "a photo of a large {}.",
    "a blurry photo of a {}.", "a jpeg corrupted photo of the {}.", "a good photo of a {}.",
    "a photo of the small {}.", "a photo of the large {}.", "a black and white photo of a {}.",
    "a dark photo of a {}.", "a photo of a cool {}.", "a photo of a small {}.", "there is a {} in the scene.",
    "there is the {} in the scene.", "this is a {} in the scene.", "this is the {} in the scene.",
    "this is one {} in the scene.",
)


def object_words(cls_name: str) -> str:
    """A category name as it is written in a sentence (``metal_nut`` → ``metal nut``)."""
    return str(cls_name).replace("_", " ")


def clip_sentences(cls_name: str) -> tuple[list[str], list[str]]:
    """CLIP: ``A photo of a normal [cls].`` / ``A photo of an anomalous [cls].``"""
    name = object_words(cls_name)
    return [f"A photo of a normal {name}."], [f"A photo of an anomalous {name}."]


def clip_ac_sentences(cls_name: str) -> tuple[list[str], list[str]]:
    """CLIP-AC: the 80 ImageNet templates filled with ``normal [cls]`` / ``anomalous [cls]``."""
    name = object_words(cls_name)
    return ([t.format(f"normal {name}") for t in IMAGENET_TEMPLATES],
            [t.format(f"anomalous {name}") for t in IMAGENET_TEMPLATES])


def compositional_sentences(cls_name: str, templates=WINCLIP_TEMPLATES,
                            anomalous_states=ANOMALOUS_STATES) -> tuple[list[str], list[str]]:
    """State words × templates: WinCLIP's compositional ensemble (7·22 + 4·22 sentences)."""
    name = object_words(cls_name)
    return tuple([t.format(s.format(name)) for s in states for t in templates]
                 for states in (NORMAL_STATES, anomalous_states))


def vand_sentences(cls_name: str) -> tuple[list[str], list[str]]:
    """VAND / APRIL-GAN: its 5 anomalous states and 35 templates (7·35 + 5·35 sentences)."""
    return compositional_sentences(cls_name, VAND_TEMPLATES, VAND_ANOMALOUS_STATES)


def encode_sentences(clip_model, tokenizer, sentences: list[str]) -> torch.Tensor:
    """``[n, D]`` L2-normalised text features of ``sentences`` (open_clip's ``encode_text``)."""
    device = clip_model.token_embedding.weight.device
    ids = tokenizer(list(sentences)).to(device)
    with torch.no_grad():
        return encode_prompts(clip_model, clip_model.token_embedding(ids), ids)


#: the ensembles computed in this process: {(text tower digest, tokenizer, sentences, device): [2, D]}
_ENSEMBLES: OrderedDict = OrderedDict()
_ENSEMBLES_KEPT = 1024


def text_tower_digest(clip_model) -> str:
    """A digest of the values of every parameter and buffer of ``clip_model`` outside its image
    tower (token and positional embeddings, blocks, ``ln_final``, projection, mask): 30 ms for
    the tiny backbone, about half a second for ViT-L's text tower on a CPU."""
    return tensor_digest(t for name, t in (*clip_model.named_parameters(), *clip_model.named_buffers())
                         if not name.startswith("visual."))


def ensemble_text(clip_model, tokenizer, normal: list[str], anomalous: list[str], tower: str | None = None
                  ) -> torch.Tensor:
    """``[2, D]``: per state, the normalised mean of the normalised sentence features.

    Kept for the process under the text tower's digest (``tower``: :func:`text_tower_digest` of
    ``clip_model``, computed here when not given), the tokenizer and the sentences: the same
    weights and sentences give the stored result (a copy), anything changed computes anew."""
    device = clip_model.token_embedding.weight.device
    key = (tower or text_tower_digest(clip_model), type(tokenizer).__name__,
           getattr(tokenizer, "context_length", None), tuple(normal), tuple(anomalous), str(device))
    if key not in _ENSEMBLES:
        rows = [F.normalize(encode_sentences(clip_model, tokenizer, s).mean(0), dim=-1) for s in (normal, anomalous)]
        _ENSEMBLES[key] = torch.stack(rows)
        while len(_ENSEMBLES) > _ENSEMBLES_KEPT:
            _ENSEMBLES.popitem(last=False)
    _ENSEMBLES.move_to_end(key)
    return _ENSEMBLES[key].clone()
