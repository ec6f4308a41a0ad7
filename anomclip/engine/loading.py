"""The models of recipes, one frozen backbone per process, and the device they run on."""
from __future__ import annotations

import re
import threading

import torch

from ..errors import AnomclipError
from ..methods import Method, build_method
from ..model import backbone as bb
from ..recipes import Recipe

_BACKBONES: dict = {}
_LOADING = threading.Lock()  # a warm-up thread and a run never load the same backbone twice


def resolve_device(device: str | None) -> str:
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not re.fullmatch(r"cpu|cuda(:\d+)?", str(device)):
        raise AnomclipError(f"unknown device {device!r} (use auto, cpu, cuda or cuda:N)")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise AnomclipError(f"device {device!r} asked for, but no CUDA GPU is available (use --device cpu)")
    if ":" in str(device) and int(str(device).split(":")[1]) >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise AnomclipError(f"device {device!r}: there {'is' if n == 1 else 'are'} only {n} CUDA "
                            f"GPU{'' if n == 1 else 's'} (cuda:0 to cuda:{n - 1})")
    return str(device)


def build_model(recipe: Recipe, device: str = "cpu") -> Method:
    """The model of ``recipe.method`` (AnomalyCLIP or a baseline, :mod:`anomclip.methods`); the
    frozen backbone is loaded once per process."""
    key = (recipe.backbone, recipe.pretrained, recipe.image_size, recipe.pos_interpolation, device)
    with _LOADING:
        if key not in _BACKBONES:
            _BACKBONES.clear()  # keep one backbone in memory (ViT-L is 1.7 GB)
            _BACKBONES[key] = bb.load_clip(recipe.backbone, recipe.pretrained, recipe.image_size,
                                           recipe.pos_interpolation, device=device)
        clip_model, tokenizer, info = _BACKBONES[key]
    return build_method(recipe, clip_model, tokenizer, info).to(device)
