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
import math
from dataclasses import dataclass

from .errors import AnomclipError

DPAM_MODES = ("vv", "qq", "kk", "qk", "eattn")  # eattn: Crane's E-Attn (softmax(qqᵀ)+softmax(kkᵀ)+softmax(vvᵀ), one path)
#: resizes of the positional embedding: the authors' (bilinear), plain bicubic, and open_clip's
#: resize_pos_embed (bicubic with antialiasing: VAND's loader)
POS_INTERPOLATIONS = ("bilinear", "bicubic", "bicubic-antialias")


@dataclass(frozen=True)
class MethodInfo:
    """A method of the engine: its key (:attr:`Recipe.method`), the named recipe that runs it, its
    name in the tables, whether it is tuned on auxiliary data, and whether it is one of the six
    of the paper's Tables 1–3 (the others came after AnomalyCLIP)."""

    key: str  # Recipe.method; the class that implements it: anomclip.methods.registry
    recipe: str  # get_recipe(recipe) runs it
    display: str  # the column header of the paper's tables (of its own paper, for a later method)
    trains: bool  # tuned on the auxiliary data (False: nothing trained)
    in_paper: bool = True  # a column of AnomalyCLIP's Tables 1–3 (False: a method published after it)


#: The one list of methods: key → method, the paper's six in the order of its tables (CLIP …
#: AnomalyCLIP), then the methods published after it (docs/after-anomalyclip.md).
METHODS: dict[str, MethodInfo] = {m.key: m for m in (
    MethodInfo("clip", "clip", "CLIP", False),
    MethodInfo("clip-ac", "clip-ac", "CLIP-AC", False),
    MethodInfo("winclip", "winclip", "WinCLIP", False),
    MethodInfo("vand", "vand", "VAND", True),
    MethodInfo("coop", "coop", "CoOp", True),
    MethodInfo("anomalyclip", "official", "AnomalyCLIP", True),
    MethodInfo("crane", "crane", "Crane", True, in_paper=False),
    MethodInfo("adaptclip", "adaptclip", "AdaptCLIP", True, in_paper=False),  # zero-shot: visual + textual adapters
    MethodInfo("musc", "musc", "MuSc", False, in_paper=False),  # transductive: scores a category's test images jointly
)}

#: The six methods of the paper's Tables 1–3, in their order (what chapters 4 and 12 compare).
PAPER_METHODS: dict[str, MethodInfo] = {k: m for k, m in METHODS.items() if m.in_paper}


@dataclass(frozen=True)
class Recipe:
    """One AnomalyCLIP experiment. Defaults are the authors' released code (``official``)."""

    name: str = "official"
    #: which model the recipe builds (anomclip.methods): anomalyclip | clip | clip-ac | winclip | vand | coop
    method: str = "anomalyclip"
    # --- backbone (docs/anomalyclip.md §1)
    backbone: str = "ViT-L-14-336"
    pretrained: str | None = "openai"
    image_size: int = 518
    pos_interpolation: str = "bilinear"  # "bilinear" (authors) | "bicubic" | "bicubic-antialias" (open_clip)
    global_ln_post: bool = False  # authors: no ln_post on the global feature
    # --- DPAM (docs/anomalyclip.md §2)
    dpam: str = "vv"  # "vv" | "qq" | "kk" | "qk" | "none", or an ensemble "qq+kk+vv"
    dpam_start: float | int = 0.25  # ¼ depth = block 6 of 24
    layers: tuple[float | int, ...] = (1.0,)  # official: last block only (×λ=4)
    lam: float = 4.0  # weight of the local loss (official: 4 × layer 24)
    # --- prompt learner (docs/anomalyclip.md §3)
    n_ctx: int = 12
    shared_ctx: bool = False
    object_aware: bool = False  # "X.. damaged bottle." instead of "X.. damaged object."
    state_word: str = "damaged"
    prompt_depth: int = 9
    prompt_length: int = 4
    fp16_quirk: bool = False  # authors cast deep prompts to fp16 on insertion
    # --- losses (docs/anomalyclip.md §5)
    use_global_loss: bool = True
    use_focal_loss: bool = True
    use_dice_loss: bool = True
    # --- training (docs/anomalyclip.md §6)
    epochs: int = 15
    #: epochs by tuning dataset, as the method's own script sets them ("MVTec AD=3", "VisA=15");
    #: a profile's protocol picks the entry of the dataset it tunes on (Recipe.for_tuning)
    epochs_by_tuning: tuple[str, ...] = ()
    batch_size: int = 8
    lr: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.999)
    seed: int = 111
    # --- scoring (docs/anomalyclip.md §4)
    temperature: float = 0.07
    sigma: float = 4.0
    # --- baselines (docs/compared-methods.md)
    windows: tuple[int, ...] = ()  # WinCLIP: sliding-window sizes in patches (2, 3 = 32, 48 px at patch 16)
    # --- MuSc (docs/after-anomalyclip.md, MuSc): neighbourhood sizes r, the mutual-scoring interval, RsCIN's k
    musc_r: tuple[int, ...] = ()
    musc_interval: tuple[float, float] = (0.0, 0.3)
    rscin_k: tuple[str, ...] = ()  # "1,2,3" (any dataset), "VisA=1,8,9" (by table name or folder)
    #: settings the method's own paper fixes; a real-data profile keeps them (smoke follows the tiny backbone)
    own_settings: tuple[str, ...] = ()

    def __post_init__(self):
        modes = self.dpam_modes
        for m in modes:
            if m not in DPAM_MODES + ("none",):
                raise AnomclipError(
                    f"recipe {self.name!r}: unknown DPAM mode {m!r} (choose from vv, qq, kk, qk, eattn, none)"
                )
        if "none" in modes and len(modes) > 1:
            raise AnomclipError(f"recipe {self.name!r}: 'none' cannot be part of a DPAM ensemble")
        if self.pos_interpolation not in POS_INTERPOLATIONS:
            raise AnomclipError(
                f"recipe {self.name!r}: pos_interpolation must be one of {', '.join(POS_INTERPOLATIONS)}"
            )
        if not self.layers:
            raise AnomclipError(f"recipe {self.name!r}: at least one feature layer is needed")
        if self.method not in METHODS:
            raise AnomclipError(f"recipe {self.name!r}: unknown method {self.method!r} "
                                f"(choose from {', '.join(METHODS)})")
        if self.method == "winclip" and not self.windows:
            raise AnomclipError(f"recipe {self.name!r}: WinCLIP needs at least one window size (windows)")
        if self.prompt_depth < 1 or self.prompt_length < 0 or self.n_ctx < 0:
            raise AnomclipError(f"recipe {self.name!r}: prompt_depth ≥ 1, prompt_length ≥ 0, n_ctx ≥ 0")
        self._check_numbers()

    def _check_numbers(self) -> None:
        """Sizes, counts and rates a run cannot use: one line naming the setting."""

        def bad(setting, value, rule):
            raise AnomclipError(f"recipe {self.name!r}: {setting} = {value!r} {rule}")

        for key, low in (("image_size", 1), ("batch_size", 1), ("epochs", 0)):  # epochs 0: not trained
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                bad(key, value, f"must be a whole number ≥ {low}")
        for key, low in (("lr", 0.0), ("temperature", 0.0)):
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > low):
                bad(key, value, f"must be a finite number > {low:g}")
        for key in ("lam", "sigma"):
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                bad(key, value, "must be a finite number ≥ 0")
        if len(self.betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in self.betas):
            bad("betas", self.betas, "must be two numbers in [0, 1)")
        for key in ("dpam_start",):
            resolve_block(getattr(self, key), None, setting=key)
        self.tuning_epochs()  # each entry "DATASET=EPOCHS"
        for layer in self.layers:
            resolve_block(layer, None, setting="layers")

    @property
    def dpam_modes(self) -> tuple[str, ...]:
        """The DPAM modes, e.g. ``('vv',)`` or ``('qq', 'kk', 'vv')`` for an ensemble."""
        return tuple(m.strip().lower() for m in self.dpam.split("+"))

    def tuning_epochs(self) -> dict[str, int]:
        """:attr:`epochs_by_tuning` as ``{tuning dataset: epochs}``."""
        out: dict[str, int] = {}
        for entry in self.epochs_by_tuning:
            name, sep, n = (entry.rpartition("=") if isinstance(entry, str) else ("", "", ""))
            if not sep or not name.strip() or not n.strip().isdigit():
                raise AnomclipError(f"recipe {self.name!r}: epochs_by_tuning entry {entry!r} must read "
                                    "DATASET=EPOCHS (e.g. 'VisA=15')")
            out[name.strip()] = int(n)
        return out

    def for_tuning(self, dataset: str | None) -> "Recipe":
        """The recipe as run when tuned on ``dataset``: its :attr:`epochs_by_tuning` entry, if it
        has one, sets :attr:`epochs` (the entries stay, so the run key says how they were chosen)."""
        epochs = self.tuning_epochs().get(dataset) if dataset is not None else None
        return self if epochs is None or epochs == self.epochs else dataclasses.replace(self, epochs=epochs)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise AnomclipError(f"unknown recipe setting{'s' if len(unknown) > 1 else ''}: {', '.join(sorted(unknown))}")
        d = dict(d)
        for key in ("layers", "betas", "windows", "own_settings", "epochs_by_tuning", "musc_r", "musc_interval",
                    "rscin_k"):
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
            raise AnomclipError(f"unknown recipe setting{'s' if len(unknown) > 1 else ''}: {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)


def resolve_block(x: float | int, depth: int | None, setting: str = "layer") -> int | None:
    """A layer given as a fraction of ``depth`` (float) or a 1-based block (int) → block number.

    With ``depth=None`` only what can be checked without the backbone is (fraction in (0, 1],
    block ≥ 1) and ``None`` is returned.
    """
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise AnomclipError(f"{setting} {x!r} must be a block number (int) or a fraction of the depth (float)")
    if isinstance(x, float):
        if not 0.0 < x <= 1.0:
            raise AnomclipError(f"{setting} fraction {x} must lie in (0, 1]")
        return None if depth is None else max(1, int(round(x * depth)))
    b = int(x)
    if b < 1 or (depth is not None and b > depth):
        where = f"a backbone with {depth} blocks" if depth is not None else "any backbone (blocks count from 1)"
        raise AnomclipError(f"{setting} {b} does not exist in {where}")
    return b


OFFICIAL = Recipe()
PAPER = Recipe(name="paper", layers=(0.25, 0.5, 0.75, 1.0), lam=1.0)
OFFICIAL_FP16_QUIRK = Recipe(name="official-fp16-quirk", fp16_quirk=True)

#: The tiny random-weight backbone used by tests, CI and the default ``smoke`` book (the one name
#: of it: :mod:`anomclip.model.backbone` imports it from here).
TINY_BACKBONE = "tiny-random"

#: One line per recipe setting: the CLI's ``--help`` (every field becomes a flag) and the docs.
#: A field added to :class:`Recipe` gets a description here (tests/test_cli.py checks it).
DESCRIPTIONS: dict[str, str] = {
    "name": "display name of the recipe (a label, not part of any cache or run key)",
    "method": "the zero-shot method: anomalyclip, or a baseline (clip, clip-ac, winclip, vand, coop), crane, adaptclip, "
              "or musc",
    "backbone": "open_clip model name, e.g. ViT-L-14-336, or tiny-random (a small random-weight CLIP)",
    "pretrained": "open_clip weights tag (openai), a weights file (e.g. OpenAI's ViT-L-14-336px.pt), "
                  "or none for random weights",
    "image_size": "input size in pixels, a multiple of the patch size (paper: 518)",
    "pos_interpolation": "resizing of the positional embedding: bilinear (authors), bicubic, or "
                         "bicubic-antialias (open_clip's resize_pos_embed, as VAND's loader)",
    "global_ln_post": "apply ln_post to the global image feature (authors: no)",
    "dpam": "DPAM attention of the surrogate path: vv, qq, kk, qk, eattn (Crane's summed E-Attn), none, or an "
            "ensemble such as qq+kk+vv",
    "dpam_start": "first block of the surrogate path: a block number (6) or a fraction of the depth (0.25)",
    "layers": "blocks whose patch features make the maps, comma-separated: block numbers (6,12,18,24) "
              "or fractions of the depth (0.25,0.5,0.75,1.0)",
    "lam": "weight λ of the local (focal + dice) loss",
    "n_ctx": "number E of learnable context tokens per prompt",
    "shared_ctx": "one context shared by the normal and the abnormal prompt",
    "object_aware": "name the category in the prompts ('damaged bottle') instead of 'object'",
    "state_word": "the word of the abnormal prompt ('damaged')",
    "prompt_depth": "deep prompts are inserted in text blocks 2..depth",
    "prompt_length": "number of learnable tokens of each deep prompt",
    "fp16_quirk": "cast the deep prompts to float16 on insertion and run the text tower on all 77 positions, "
                  "as the authors' code does (their arithmetic, bit for bit)",
    "use_global_loss": "train with the global (image-level cross-entropy) loss",
    "use_focal_loss": "train with the focal loss on the maps",
    "use_dice_loss": "train with the dice loss on the maps",
    "epochs": "training epochs (0: a method that is not trained)",
    "epochs_by_tuning": "epochs per tuning dataset as the method's own script sets them, comma-separated "
                        "DATASET=EPOCHS (VAND: MVTec AD=3,VisA=15); a profile's protocol applies them",
    "batch_size": "training batch size (≥ 1)",
    "lr": "Adam learning rate (> 0)",
    "betas": "Adam betas, two comma-separated numbers in [0, 1)",
    "seed": "seed of the prompt initialisation and of the shuffling",
    "temperature": "softmax temperature of the cosine similarities",
    "sigma": "σ of the Gaussian smoothing of the anomaly map, in pixels (0: none)",
    "windows": "WinCLIP's sliding-window sizes in patches, comma-separated (2,3)",
    "musc_r": "MuSc's neighbourhood sizes r in patches (odd), comma-separated (1,3,5)",
    "musc_interval": "MuSc's interval of the sorted nearest-image distances averaged, two fractions (0,0.3)",
    "rscin_k": "MuSc's RsCIN neighbourhood sizes k, comma-separated entries K:K:K for any dataset or "
               "DATASET=K:K:K (1:2:3,VisA=1:8:9)",
    "own_settings": "settings the method's own paper fixes, kept by a real-data profile (comma-separated)",
}

# --- the baselines of Tables 1–3 (docs/compared-methods.md says where each setting comes from)
#: CLIP: "A photo of a normal/anomalous [cls].", CLIP's own image embedding (ln_post), the last
#: block's patch tokens through ln_post/proj (DPAM off), AnomalyCLIP's scoring; no training.
CLIP = Recipe(name="clip", method="clip", dpam="none", layers=(1.0,), global_ln_post=True, lam=0.0,
              n_ctx=0, prompt_depth=1, prompt_length=0, epochs=0, own_settings=("epochs",))
#: CLIP-AC: CLIP with the 80 ImageNet templates of the CLIP paper, averaged per class.
CLIP_AC = CLIP.with_(name="clip-ac", method="clip-ac")
#: WinCLIP (zero-shot): ViT-B-16-plus-240 (LAION-400M, epoch 31) at 240 px, windows of 2 and 3
#: patches (32, 48 px), compositional prompt ensemble, harmonic aggregation; no smoothing.
WINCLIP = Recipe(name="winclip", method="winclip", backbone="ViT-B-16-plus-240", pretrained="laion400m_e31",
                 image_size=240, dpam="none", layers=(1.0,), global_ln_post=True, lam=0.0, n_ctx=0,
                 prompt_depth=1, prompt_length=0, windows=(2, 3), sigma=0.0, epochs=0,
                 own_settings=("backbone", "pretrained", "image_size", "epochs"))
#: VAND / APRIL-GAN: linear projections of the raw tokens of blocks 6/12/18/24, focal + dice,
#: logits × 100, their released train.sh: batch 8 in both directions, 3 epochs when tuned on
#: MVTec AD and 15 when tuned on VisA; the position embedding resized as their loader does
#: (open_clip's resize_pos_embed: bicubic, antialiased). Their loader's nn.GELU at 518 px is
#: not reproduced (docs/compared-methods.md, VAND).
VAND = Recipe(name="vand", method="vand", dpam="none", layers=(0.25, 0.5, 0.75, 1.0), global_ln_post=True,
              lam=1.0, n_ctx=0, prompt_depth=1, prompt_length=0, use_global_loss=False, temperature=0.01,
              sigma=0.0, epochs=3, epochs_by_tuning=("MVTec AD=3", "VisA=15"), batch_size=8,
              pos_interpolation="bicubic-antialias", own_settings=("image_size", "epochs", "batch_size"))
#: CoOp: one learnable context of 16 tokens shared by "[V]… normal [cls]." and "[V]… anomalous
#: [cls].", CoOp's objective (image-level cross-entropy only), scored as AnomalyCLIP without DPAM.
#: Logits at CLIP's logit scale as CoOp's code (exp(logit_scale) = 100 for OpenAI CLIP): 1/100.
COOP = Recipe(name="coop", method="coop", dpam="none", layers=(1.0,), global_ln_post=True, lam=0.0, n_ctx=16,
              shared_ctx=True, object_aware=True, state_word="anomalous", prompt_depth=1, prompt_length=0,
              use_focal_loss=False, use_dice_loss=False, temperature=0.01)

# --- after AnomalyCLIP (docs/after-anomalyclip.md; AlirezaSalehy/Crane at 39181f9)
#: Crane as its code runs it (train.py, test.sh's Crane line): E-Attn in blocks 6..24 (dpam "eattn"),
#: global feature with ln_post, Adam betas (0.6, 0.999), 5 epochs, score-based pooling, the loss
#: 0.2·CE(τ 0.01) + 2·Σ_m (focal_m + dice_m). Their `--features_list 6 12 18 24` returns layer 24 four
#: times (the layer-copy bug inherited from AnomalyCLIP): one layer, local weight 4 × 2 = 8.
CRANE = Recipe(name="crane", method="crane", dpam="eattn", layers=(1.0,), lam=8.0, global_ln_post=True,
               epochs=5, betas=(0.6, 0.999))
#: Crane as described: the four distinct layers 6/12/18/24, local weight 2 on each.
CRANE_PAPER = CRANE.with_(name="crane-paper", layers=(0.25, 0.5, 0.75, 1.0), lam=2.0)
#: crane with their fp16 cast of the deep prompts (their arithmetic: tools/crane_side_by_side.py)
CRANE_FP16_QUIRK = CRANE.with_(name="crane-fp16-quirk", fp16_quirk=True)

#: AdaptCLIP zero-shot as its code runs it (gaobb/AdaptCLIP at 354d9e3: train.py argparse, scripts/train_adaptclip.sh,
#: scripts/test_adaptclip.sh): DPAM V-V on blocks 6..24 (DAPM_replace(20)), the global feature without ln_post,
#: the visual adapter (reduction 4) and the textual adapter (12 context tokens) on the last layer's features,
#: loss Σ_VA,TA CE + focal + dice(S) + dice(1 − S), Adam lr 1e-3 betas (0.5, 0.999), batch 8, 15 epochs, seed 10,
#: σ = 4. Their features_list 6 12 18 24 feeds only the few-shot adapter (not implemented): one layer here.
ADAPTCLIP = Recipe(name="adaptclip", method="adaptclip", dpam="vv", dpam_start=0.25, layers=(1.0,), lam=1.0,
                   global_ln_post=False, n_ctx=12, prompt_depth=1, prompt_length=0, epochs=15, batch_size=8,
                   lr=1e-3, betas=(0.5, 0.999), seed=10, temperature=0.07, sigma=4.0,
                   own_settings=("image_size", "epochs", "batch_size"))

#: MuSc as its code runs it (xrli-U/MuSc at b76b93d: configs/musc.yaml, models/musc.py): raw tokens of
#: blocks 6/12/18/24 (their 0-based feature_layers 5/11/17/23), r = 1, 3, 5, interval [0, 0.3), RsCIN
#: k = 1, 2, 3 (VisA: 1, 8, 9), 518 px, the position grid resized bicubic (not antialiased), no smoothing,
#: no text, no training. Their nn.GELU at 518 px and fp16 autocast are not reproduced (docs/after-anomalyclip.md).
MUSC = Recipe(name="musc", method="musc", dpam="none", layers=(0.25, 0.5, 0.75, 1.0), global_ln_post=True, lam=0.0,
              n_ctx=0, prompt_depth=1, prompt_length=0, use_global_loss=False, use_focal_loss=False,
              use_dice_loss=False, sigma=0.0, epochs=0, pos_interpolation="bicubic", musc_r=(1, 3, 5),
              rscin_k=("1:2:3", "VisA=1:8:9"), own_settings=("image_size", "epochs"))

#: Settings added after the run store's version 2: a run key holds them only where they differ from
#: their default, so the keys of every run that does not use them stay what they were.
KEYED_WHEN_SET = ("musc_r", "musc_interval", "rscin_k")

RECIPES: dict[str, Recipe] = {r.name: r for r in (OFFICIAL, PAPER, OFFICIAL_FP16_QUIRK, CLIP, CLIP_AC, WINCLIP,
                                                  VAND, COOP, CRANE, CRANE_PAPER, CRANE_FP16_QUIRK, ADAPTCLIP,
                                                  MUSC)}


def get_recipe(name_or_recipe: str | Recipe, **overrides) -> Recipe:
    """A named recipe (``official``, ``paper``, ``official-fp16-quirk``, or a baseline: ``clip``,
    ``clip-ac``, ``winclip``, ``vand``, ``coop``) with optional overrides."""
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
