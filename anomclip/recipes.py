"""Experiments as data: frozen recipe dataclasses.

A :class:`Recipe` describes everything that defines an AnomalyCLIP experiment: the backbone,
the dual-path encoder (DPAM), the prompt learner, the loss terms, the training schedule and
the scoring. The paper's settings are *named recipes* (:data:`RECIPES`); every ablation row is
``dataclasses.replace(recipe, ...)`` of one of them.

Layer indices and the DPAM start are written as **fractions of the visual depth** (floats in
(0, 1]) so that the same recipe runs on ViT-L/14 (24 blocks: 0.25 → block 6) and on a small
test model (8 blocks: 0.25 → block 2). Plain integers are absolute 1-based block numbers.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from .errors import AnomclipError

DPAM_MODES = ("vv", "qq", "kk", "qk")


@dataclass(frozen=True)
class Recipe:
    """One AnomalyCLIP experiment. Defaults are the authors' released code (``official``)."""

    name: str = "official"
    # --- backbone (SPEC §1)
    backbone: str = "ViT-L-14-336"
    pretrained: str | None = "openai"
    image_size: int = 518
    pos_interpolation: str = "bilinear"  # "bilinear" (authors) | "bicubic" (open_clip)
    global_ln_post: bool = False  # authors: no ln_post on the global feature
    # --- DPAM (SPEC §2)
    dpam: str = "vv"  # "vv" | "qq" | "kk" | "qk" | "none", or an ensemble "qq+kk+vv"
    dpam_start: float | int = 0.25  # ¼ depth = block 6 of 24
    layers: tuple[float | int, ...] = (1.0,)  # official: last block only (×λ=4)
    lam: float = 4.0  # weight of the local loss (official: 4 × layer 24)
    # --- prompt learner (SPEC §3)
    n_ctx: int = 12
    shared_ctx: bool = False
    object_aware: bool = False  # "X.. damaged bottle." instead of "X.. damaged object."
    state_word: str = "damaged"
    prompt_depth: int = 9
    prompt_length: int = 4
    fp16_quirk: bool = False  # authors cast deep prompts to fp16 on insertion
    # --- losses (SPEC §5)
    use_global_loss: bool = True
    use_focal_loss: bool = True
    use_dice_loss: bool = True
    # --- training (SPEC §6)
    epochs: int = 15
    batch_size: int = 8
    lr: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.999)
    seed: int = 111
    # --- scoring (SPEC §4)
    temperature: float = 0.07
    sigma: float = 4.0

    def __post_init__(self):
        modes = self.dpam_modes
        for m in modes:
            if m not in DPAM_MODES + ("none",):
                raise AnomclipError(
                    f"recipe {self.name!r}: unknown DPAM mode {m!r} (choose from vv, qq, kk, qk, none)"
                )
        if "none" in modes and len(modes) > 1:
            raise AnomclipError(f"recipe {self.name!r}: 'none' cannot be part of a DPAM ensemble")
        if self.pos_interpolation not in ("bilinear", "bicubic"):
            raise AnomclipError(
                f"recipe {self.name!r}: pos_interpolation must be 'bilinear' or 'bicubic'"
            )
        if not self.layers:
            raise AnomclipError(f"recipe {self.name!r}: at least one feature layer is needed")
        if self.prompt_depth < 1 or self.prompt_length < 0 or self.n_ctx < 0:
            raise AnomclipError(f"recipe {self.name!r}: prompt_depth ≥ 1, prompt_length ≥ 0, n_ctx ≥ 0")

    @property
    def dpam_modes(self) -> tuple[str, ...]:
        """The DPAM modes, e.g. ``('vv',)`` or ``('qq', 'kk', 'vv')`` for an ensemble."""
        return tuple(m.strip().lower() for m in self.dpam.split("+"))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise AnomclipError(f"unknown recipe setting(s): {', '.join(sorted(unknown))}")
        d = dict(d)
        for key in ("layers", "betas"):
            if key in d and d[key] is not None:
                d[key] = tuple(d[key])
        return cls(**d)

    def key(self) -> str:
        """A stable JSON string of all settings (for caches and result matching)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def with_(self, **changes) -> "Recipe":
        """``dataclasses.replace`` with a friendlier error for unknown settings."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise AnomclipError(f"unknown recipe setting(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)


def resolve_block(x: float | int, depth: int) -> int:
    """A layer given as a fraction of ``depth`` (float) or a 1-based block (int) → block number."""
    if isinstance(x, float):
        if not 0.0 < x <= 1.0:
            raise AnomclipError(f"layer fraction {x} must lie in (0, 1]")
        return max(1, int(round(x * depth)))
    b = int(x)
    if not 1 <= b <= depth:
        raise AnomclipError(f"layer {b} does not exist in a backbone with {depth} blocks")
    return b


OFFICIAL = Recipe()
PAPER = Recipe(name="paper", layers=(0.25, 0.5, 0.75, 1.0), lam=1.0)
OFFICIAL_FP16_QUIRK = Recipe(name="official-fp16-quirk", fp16_quirk=True)

#: The tiny random-weight backbone used by tests, CI and the default ``smoke`` book.
TINY_BACKBONE = "tiny-random"

RECIPES: dict[str, Recipe] = {r.name: r for r in (OFFICIAL, PAPER, OFFICIAL_FP16_QUIRK)}


def get_recipe(name_or_recipe: str | Recipe, **overrides) -> Recipe:
    """A named recipe (``official``, ``paper``, ``official-fp16-quirk``) with optional overrides."""
    if isinstance(name_or_recipe, Recipe):
        r = name_or_recipe
    else:
        if name_or_recipe not in RECIPES:
            raise AnomclipError(
                f"unknown recipe {name_or_recipe!r} (choose from {', '.join(RECIPES)})"
            )
        r = RECIPES[name_or_recipe]
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return r.with_(**overrides) if overrides else r


def smoke(recipe: str | Recipe = "official", **overrides) -> Recipe:
    """The recipe on the tiny random backbone at a small image size (tests, CI, smoke book)."""
    base = dict(backbone=TINY_BACKBONE, pretrained=None, image_size=96)
    base.update(overrides)
    return get_recipe(recipe).with_(**base)
