"""The six methods of the paper's Tables 1–3, by recipe name, in table order."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..errors import AnomclipError
from ..model import AnomalyCLIP
from ..recipes import Recipe


@dataclass(frozen=True)
class MethodInfo:
    """A column of Tables 1–3: the recipe that runs it, its name in the paper, whether it trains."""

    recipe: str  # get_recipe(recipe) builds it
    display: str  # the column header of the paper's tables
    trains: bool  # tuned on the auxiliary data (False: zero-shot with hand-written prompts)


#: Recipe name → method, in the order of the paper's tables (CLIP … AnomalyCLIP).
METHODS: dict[str, MethodInfo] = {m.recipe: m for m in (
    MethodInfo("clip", "CLIP", False),
    MethodInfo("clip-ac", "CLIP-AC", False),
    MethodInfo("winclip", "WinCLIP", False),
    MethodInfo("vand", "VAND", True),
    MethodInfo("coop", "CoOp", True),
    MethodInfo("official", "AnomalyCLIP", True),
)}

_DISPLAY_BY_METHOD = {"clip": "CLIP", "clip-ac": "CLIP-AC", "winclip": "WinCLIP", "vand": "VAND", "coop": "CoOp",
                      "anomalyclip": "AnomalyCLIP"}


def display_name(recipe: Recipe | str) -> str:
    """The paper's name of the method a recipe (or recipe name) runs."""
    if isinstance(recipe, str):
        if recipe in METHODS:
            return METHODS[recipe].display
        from ..recipes import get_recipe
        recipe = get_recipe(recipe)
    return _DISPLAY_BY_METHOD[recipe.method]


#: Methods with hand-written prompts and nothing to train: their runs take no training data.
ZERO_SHOT_METHODS = ("clip", "clip-ac", "winclip")


def trains(recipe: Recipe) -> bool:
    """Whether ``recipe``'s method is tuned on auxiliary data (VAND, CoOp, AnomalyCLIP)."""
    return recipe.method not in ZERO_SHOT_METHODS


def model_class(method: str) -> type:
    """The class that implements ``method`` (a :attr:`Recipe.method`)."""
    from .clip import CLIPAC, CLIPBaseline
    from .coop import CoOp
    from .vand import VAND
    from .winclip import WinCLIP

    classes = {"anomalyclip": AnomalyCLIP, "clip": CLIPBaseline, "clip-ac": CLIPAC, "winclip": WinCLIP,
               "vand": VAND, "coop": CoOp}
    if method not in classes:
        raise AnomclipError(f"unknown method {method!r} (choose from {', '.join(classes)})")
    return classes[method]


def build_method(recipe: Recipe, clip_model: nn.Module, tokenizer, info) -> nn.Module:
    """The model of ``recipe.method`` around a loaded (frozen) open_clip model."""
    return model_class(recipe.method)(clip_model, tokenizer, info, recipe)
