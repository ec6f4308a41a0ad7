"""Loading the CLIP backbone through open_clip (docs/anomalyclip.md §1).

* ``load_clip("ViT-L-14-336", "openai")`` — open_clip by name and pretrained tag (weights come
  from the Hugging Face cache, or are downloaded once when a network is available);
* ``load_clip("ViT-L-14-336", "/path/ViT-L-14-336px.pt")`` — a local weights file: OpenAI's
  own TorchScript archive (read with ``torch.jit.load``, its state dict loaded into the
  open_clip model of that name) or any file open_clip reads (state dict, safetensors);
* ``load_clip("tiny-random")`` — a tiny CLIP with random weights (seeded), for tests, CI and
  the default smoke runs. Every number it produces is from an **untrained tiny backbone**.

The positional embedding is resized to the requested input size (518 px for the paper:
37×37 patches) with bilinear interpolation, ``align_corners=False`` (the authors' code),
bicubic, or bicubic with antialiasing (``bicubic-antialias``: open_clip's ``resize_pos_embed``,
which VAND's loader uses; PyTorch's antialiased bicubic kernel differs from the plain one even
when upsampling). All CLIP weights are frozen and the model is in ``eval()``.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AnomclipError
from ..recipes import TINY_BACKBONE

#: Loggers of the libraries that load weights: they log every download retry and cache miss,
#: which anomclip reports in one line of its own instead.
NOISY_LOGGERS = ("open_clip", "huggingface_hub", "timm", "urllib3", "filelock", "root")

#: The tiny configuration: 8 visual blocks (so ¼, ½, ¾, 1 of depth are blocks 2, 4, 6, 8) and a
#: 12-block text tower (so the paper's deep prompts of depth 9 fit).
TINY_CONFIG = dict(
    embed_dim=64,
    vision=dict(layers=8, width=64, head_width=16, patch_size=8, image_size=64),
    text=dict(context_length=77, vocab_size=49408, width=64, heads=4, layers=12),
    seed=0,
)

OPENAI_HELP = (
    "get the weights once on a machine with network access "
    "(python -c \"import open_clip; open_clip.create_model('{name}', pretrained='{tag}')\" "
    "stores them in ~/.cache/huggingface/hub, or $HF_HOME), then run with HF_HUB_OFFLINE=1; "
    "or {file_hint} and pass its path as --pretrained"
)


def weights_file_hint(name: str, tag: str) -> str:
    """Which file to download for open_clip model ``name`` with weights ``tag``: OpenAI's own
    files are named after the model (``ViT-B-16.pt``; ``ViT-L-14-336px.pt`` for ViT-L-14-336)."""
    if tag == "openai":
        return f"download the OpenAI file {name + 'px' if name.endswith('-336') else name}.pt"
    return f"download the {name} '{tag}' weights file (open_clip_pytorch_model.bin or .safetensors)"


def open_clip_module():
    """``import open_clip``, without the FutureWarning that open_clip 2.26–2.32 make timm print on
    import (they import its deprecated ``timm.models.layers``): the user's terminal shows
    anomclip's own lines, not a third party's deprecation notice."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"timm\.")
        import open_clip
    return open_clip


@dataclass(frozen=True)
class BackboneInfo:
    """What the backbone is, for provenance: name, weights identity, depth and sizes."""

    name: str
    weights: str  # "openai", a file name + sha256 prefix, or "untrained …"
    trained: bool
    image_size: int
    patch_size: int
    vision_layers: int
    vision_width: int
    text_width: int
    embed_dim: int
    pos_interpolation: str

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


class OnBackbone:
    """A method built on a loaded CLIP (``self.clip``, its :class:`BackboneInfo` ``self.info``):
    the device it runs on and its input size, as the engine asks for them."""

    @property
    def device(self) -> torch.device:
        return self.clip.visual.proj.device

    @property
    def image_size(self) -> int:
        return self.info.image_size


def _tiny_clip() -> nn.Module:
    open_clip_module()
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    cfg = TINY_CONFIG
    state = torch.random.get_rng_state()
    torch.manual_seed(cfg["seed"])
    try:
        model = CLIP(
            cfg["embed_dim"],
            CLIPVisionCfg(**cfg["vision"]),
            CLIPTextCfg(**cfg["text"]),
            quick_gelu=True,
        )
    finally:
        torch.random.set_rng_state(state)
    return model


@contextlib.contextmanager
def quiet_loggers(names=NOISY_LOGGERS, level: int = logging.ERROR):
    """Drop the named loggers' records below ``level`` while loading (then restore them).

    A named logger gets its level raised for the block; ``"root"`` (open_clip logs with
    ``logging.info(...)`` / ``logging.error(...)`` on the root logger) gets a filter for the
    block, which applies to records logged on the root logger itself only, not to those other
    loggers propagate to it. The root logger's own records are kept off every handler (and off
    the screen) and **captured**: the block gets the list of their messages at ``WARNING`` and
    above, for the caller to fold into its one-line error ("Failed to download weights…"). The
    rest of the process's logging is untouched (no ``logging.disable``); the filter is removed
    afterwards.
    """
    named = [logging.getLogger(n) for n in names if n != "root"]
    saved = [lg.level for lg in named]
    captured: list[str] = []

    def root_filter(record):
        if record.levelno >= logging.WARNING:
            captured.append(record.getMessage())
        return False  # never shown: what matters reaches the user through anomclip's own line

    for lg in named:
        lg.setLevel(max(level, lg.getEffectiveLevel()))
    if "root" in names:
        logging.getLogger().addFilter(root_filter)
    try:
        yield captured
    finally:
        for lg, lv in zip(named, saved):
            lg.setLevel(lv)
        if "root" in names:
            logging.getLogger().removeFilter(root_filter)


def _said(captured: list[str]) -> str:
    """What the loaders logged, in one line (for an error message), or ``""``."""
    text = " / ".join(" ".join(m.split()) for m in dict.fromkeys(captured) if m.strip())
    return f" [open_clip: {text if len(text) <= 300 else text[:299] + '…'}]" if text else ""


def is_torchscript(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a TorchScript archive (as OpenAI's ``ViT-L-14-336px.pt``).

    Both ``torch.save`` and ``torch.jit.save`` write zip files; only TorchScript stores its
    ``code/`` and ``constants.pkl``.
    """
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())


def load_torchscript_weights(model: nn.Module, path: str | os.PathLike, name: str) -> None:
    """Load the state dict of a TorchScript archive into an open_clip ``model`` (in place).

    OpenAI's archives use the same parameter names as open_clip's ``CLIP`` and store some
    tensors in float16 (copied into the model's float32 parameters); their extra entries
    ``input_resolution``, ``context_length`` and ``vocab_size`` are dropped, and a positional
    embedding of another grid is resized with open_clip's own helper.
    """
    open_clip_module()
    from open_clip.model import resize_pos_embed as open_clip_resize

    try:
        with warnings.catch_warnings():  # torch ≥ 2.9 calls torch.jit.load deprecated; it is the reader here
            warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.jit.*")
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
    except Exception as e:
        first = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise AnomclipError(f"weights file {path} cannot be read as TorchScript: {first}") from None
    state = {k: v for k, v in state.items() if k not in ("input_resolution", "context_length", "vocab_size")}
    open_clip_resize(state, model)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        what = (f"{len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} of another shape, e.g. "
                f"{(missing or unexpected or wrong)[0]}")
        raise AnomclipError(f"weights file {path} does not fit backbone {name} ({what})")
    model.load_state_dict(state)


def _file_identity(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return f"{Path(path).name} (sha256 {h.hexdigest()[:16]})"


def _open_clip_model(name: str, pretrained: str | None, quick_gelu: bool | None, cache_dir):
    open_clip = open_clip_module()

    if name not in open_clip.list_models():
        raise AnomclipError(
            f"unknown backbone {name!r}: use an open_clip model name such as ViT-L-14-336 or ViT-B-16, "
            f"or {TINY_BACKBONE!r}"
        )
    if quick_gelu is None:  # OpenAI weights were trained with QuickGELU
        quick_gelu = pretrained is not None and (
            pretrained == "openai" or os.path.isfile(pretrained)
        )
    if pretrained and not os.path.isfile(pretrained):
        tags = open_clip.list_pretrained_tags_by_model(name)
        if pretrained not in tags:
            if os.sep in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors")):
                raise AnomclipError(f"weights file {pretrained} does not exist")
            raise AnomclipError(
                f"unknown pretrained tag {pretrained!r} for {name} (known: {', '.join(tags) or 'none'})"
            )
    torchscript = bool(pretrained) and os.path.isfile(pretrained) and is_torchscript(pretrained)
    captured: list[str] = []
    try:
        with quiet_loggers() as captured:
            model = open_clip.create_model(
                name, pretrained=None if torchscript else (pretrained or None),
                force_quick_gelu=bool(quick_gelu), cache_dir=cache_dir,
            )
    except AnomclipError:
        raise
    except Exception as e:  # network, cache or file problems
        if pretrained and os.path.isfile(pretrained):
            raise AnomclipError(
                f"could not load weights file {pretrained} into {name}: {str(e).splitlines()[0][:200]}"
                + _said(captured)
            ) from None
        raise AnomclipError(
            f"could not get the {name} '{pretrained}' weights (offline?){_said(captured)}: "
            + OPENAI_HELP.format(name=name, tag=pretrained, file_hint=weights_file_hint(name, pretrained))
        ) from None
    if torchscript:
        load_torchscript_weights(model, pretrained, name)
    return model


def resize_pos_embed(pos: torch.Tensor, new_grid: int, mode: str = "bilinear") -> torch.Tensor:
    """Resize a ViT positional embedding ``[1 + g·g, W]`` to ``[1 + n·n, W]``.

    The class-token position is kept as is; the ``g×g`` grid part is interpolated with
    ``mode`` (``bilinear`` as the authors, ``bicubic``, or ``bicubic-antialias`` as open_clip's
    ``resize_pos_embed``), ``align_corners=False``.
    """
    cls_pos, grid_pos = pos[:1], pos[1:]
    g = int(round(grid_pos.shape[0] ** 0.5))
    if g * g != grid_pos.shape[0]:
        raise AnomclipError(f"positional embedding of {grid_pos.shape[0]} patches is not a square grid")
    if g == new_grid:
        return pos
    grid_pos = grid_pos.reshape(1, g, g, -1).permute(0, 3, 1, 2)
    antialias = mode == "bicubic-antialias"
    grid_pos = F.interpolate(grid_pos.float(), size=(new_grid, new_grid), mode="bicubic" if antialias else mode,
                             align_corners=False, antialias=antialias)
    grid_pos = grid_pos.permute(0, 2, 3, 1).reshape(new_grid * new_grid, -1).to(pos.dtype)
    return torch.cat([cls_pos, grid_pos], dim=0)


def set_image_size(visual: nn.Module, image_size: int, mode: str = "bilinear") -> None:
    """Make an open_clip ``VisionTransformer`` accept ``image_size`` inputs (in place)."""
    patch = visual.conv1.kernel_size[0]
    if image_size % patch:
        raise AnomclipError(f"image_size {image_size} is not a multiple of the backbone's patch size {patch}")
    new_grid = image_size // patch
    with torch.no_grad():
        new = resize_pos_embed(visual.positional_embedding.data, new_grid, mode)
    visual.positional_embedding = nn.Parameter(new, requires_grad=False)
    visual.grid_size = (new_grid, new_grid)
    visual.image_size = (image_size, image_size)


def load_clip(
    name: str = "ViT-L-14-336",
    pretrained: str | None = "openai",
    image_size: int | None = 518,
    pos_interpolation: str = "bilinear",
    device: str | torch.device = "cpu",
    quick_gelu: bool | None = None,
    cache_dir: str | None = None,
):
    """Load a frozen, ``eval()`` open_clip model and describe it.

    Returns ``(clip_model, tokenizer, BackboneInfo)``. ``pretrained`` is an open_clip tag
    (``openai``), a local weights file, or ``None`` for random weights (shape tests and
    benchmarks only). ``name="tiny-random"`` gives the embedded tiny model.
    """
    open_clip = open_clip_module()

    if name == TINY_BACKBONE:
        model = _tiny_clip()
        weights, trained = "untrained tiny backbone (random weights, seed 0)", False
        if pretrained:  # the tiny architecture with weights from a file (tests of the loaders)
            if not os.path.isfile(pretrained):
                raise AnomclipError(f"weights file {pretrained} does not exist (the tiny backbone takes a "
                                    "file or none)")
            if not is_torchscript(pretrained):
                raise AnomclipError(f"weights file {pretrained}: the tiny backbone loads TorchScript archives only")
            load_torchscript_weights(model, pretrained, name)
            weights, trained = _file_identity(pretrained), True
        tokenizer = open_clip.tokenizer.SimpleTokenizer()
    else:
        model = _open_clip_model(name, pretrained, quick_gelu, cache_dir)
        if pretrained is None:
            weights, trained = "untrained (random weights)", False
        elif os.path.isfile(pretrained):
            weights, trained = _file_identity(pretrained), True
        else:
            weights, trained = pretrained, True
        with quiet_loggers():
            tokenizer = open_clip.get_tokenizer(name)
    visual = model.visual
    if not hasattr(visual, "transformer") or not hasattr(visual, "conv1"):
        raise AnomclipError(f"backbone {name} is not a plain ViT: DPAM needs open_clip's VisionTransformer")
    if image_size:
        set_image_size(visual, int(image_size), pos_interpolation)
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tokenizer, describe(model, name, weights, trained, pos_interpolation)


def describe(clip_model: nn.Module, name: str = "custom", weights: str = "unknown", trained: bool = True,
             pos_interpolation: str = "bilinear") -> BackboneInfo:
    """A :class:`BackboneInfo` for an open_clip model built elsewhere."""
    visual = clip_model.visual
    return BackboneInfo(
        name=name,
        weights=weights,
        trained=trained,
        image_size=visual.image_size[0] if isinstance(visual.image_size, tuple) else int(visual.image_size),
        patch_size=visual.conv1.kernel_size[0],
        vision_layers=len(visual.transformer.resblocks),
        vision_width=visual.conv1.out_channels,
        text_width=clip_model.token_embedding.weight.shape[1],
        embed_dim=visual.proj.shape[1],
        pos_interpolation=pos_interpolation,
    )
