"""The classes that implement the methods of :data:`anomclip.recipes.METHODS`, by method key.

The list of methods itself — keys, recipes, names in the paper's tables, whether they train —
is :data:`anomclip.recipes.METHODS`; this module only says which class runs each key.
"""
from __future__ import annotations

from torch import nn

from ..errors import AnomclipError
from ..model.anomalyclip import AnomalyCLIP
from ..recipes import METHODS, Recipe, get_recipe
from .adaptclip import AdaptCLIP
from .clip import CLIPAC, CLIPBaseline
from .coop import CoOp
from .crane import Crane
from .musc import MuSc
from .protocol import Method
from .vand import VAND
from .winclip import WinCLIP

#: method key → the class that implements it (every key of METHODS, nothing else)
CLASSES: dict[str, type] = {"clip": CLIPBaseline, "clip-ac": CLIPAC, "winclip": WinCLIP, "vand": VAND, "coop": CoOp,
                            "anomalyclip": AnomalyCLIP, "crane": Crane, "adaptclip": AdaptCLIP, "musc": MuSc}
assert list(CLASSES) == list(METHODS), "one class per method of recipes.METHODS"

#: Methods with hand-written prompts and nothing to train: their runs take no training data.
ZERO_SHOT_METHODS = tuple(k for k, m in METHODS.items() if not m.trains)


def _method_of(recipe: Recipe | str) -> str:
    """The method key of a recipe, a recipe name or a method key."""
    if isinstance(recipe, Recipe):
        return recipe.method
    if recipe in METHODS:
        return recipe
    return get_recipe(recipe).method


def display_name(recipe: Recipe | str) -> str:
    """The paper's name of the method a recipe (a recipe name, or a method key) runs."""
    return METHODS[_method_of(recipe)].display


def trains(recipe: Recipe | str) -> bool:
    """Whether the method is tuned on auxiliary data (VAND, CoOp, AnomalyCLIP)."""
    return METHODS[_method_of(recipe)].trains


def model_class(method: str) -> type:
    """The class that implements ``method`` (a :attr:`Recipe.method`)."""
    if method not in CLASSES:
        raise AnomclipError(f"unknown method {method!r} (choose from {', '.join(CLASSES)})")
    return CLASSES[method]


def build_method(recipe: Recipe, clip_model: nn.Module, tokenizer, info) -> Method:
    """The model of ``recipe.method`` around a loaded (frozen) open_clip model."""
    return model_class(recipe.method)(clip_model, tokenizer, info, recipe)
