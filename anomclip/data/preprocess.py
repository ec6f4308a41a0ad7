"""Preprocessing, exactly as the authors' code does it (docs/anomalyclip.md §7).

Equal to the authors' ``dataset.py`` + ``test.py``:

* images → read upright (EXIF orientation applied, ``PIL.ImageOps.exif_transpose``), RGB
  (greyscale, RGBA, palette and 16-bit images are converted; 16-bit values are scaled to 8 bit
  with ``round(v * 255 / 65535)``, never clipped), resized to S×S with PIL bicubic (aspect
  ratio squashed; PIL antialiases when downsampling), scaled to [0, 1] and normalised with the
  CLIP mean/std;
* masks → read upright, single channel at their original resolution, binarised with ``> 0``
  (VisA masks hold class ids, not 255) and stored as an 8-bit image of 0/255, resized to S×S
  with **PIL bilinear** (which antialiases — smooths — when it shrinks, exactly like
  torchvision's ``Resize`` on a PIL image in the authors' code), divided by 255 and
  thresholded ``> 0.5`` (i.e. a resized value ≥ 128); normal images get an all-zero mask. A
  mask whose size differs from its image is an error.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import AnomclipError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)


CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _sixteen_to_eight(arr: np.ndarray) -> np.ndarray:
    """Scale 16-bit values (0…65535) to 8 bit with rounding: 65535 → 255, 257 → 1."""
    arr = np.clip(arr.astype(np.float64), 0, 65535)
    return np.round(arr * (255.0 / 65535.0)).astype(np.uint8)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB.

    Alpha is dropped (no compositing); ``I;16*`` is scaled by 255/65535; 32-bit ``I`` images
    are read as 16-bit when a value exceeds 255, else as 8-bit; ``F`` as [0, 1] when its
    maximum is ≤ 1, else as 0…255.
    """
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I;16"):
        return Image.fromarray(_sixteen_to_eight(np.asarray(img)), "L").convert("RGB")
    if img.mode == "I":
        arr = np.asarray(img)
        if arr.max(initial=0) > 255:
            eight = _sixteen_to_eight(arr)
        else:
            eight = np.clip(arr, 0, 255).astype(np.uint8)
        return Image.fromarray(eight, "L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        arr = arr * 255.0 if arr.max(initial=0) <= 1.0 else arr
        return Image.fromarray(np.round(np.clip(arr, 0, 255)).astype(np.uint8), "L").convert("RGB")
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA")
    return img.convert("RGB")


#: The EXIF tag holding a camera's orientation (1 = upright).
EXIF_ORIENTATION = 0x0112


def _upright(img: Image.Image) -> Image.Image:
    """``img`` rotated/flipped as its EXIF orientation says (phones and some scanners store
    pixels sideways and an orientation tag); unchanged when there is no such tag."""
    try:
        orientation = img.getexif().get(EXIF_ORIENTATION, 1)
    except (OSError, ValueError, SyntaxError, TypeError, AttributeError):  # a broken EXIF block:
        # the pixels decode fine, keep them as stored
        return img
    return ImageOps.exif_transpose(img) if orientation not in (None, 1) else img


def read_image(path: str | os.PathLike) -> Image.Image:
    """Decode an image file as 8-bit RGB at its original size, upright (EXIF orientation)."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            return _to_rgb(_upright(img))
    except FileNotFoundError:
        raise AnomclipError(f"image file {path} does not exist") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError,
            ValueError) as exc:
        raise AnomclipError(f"cannot read image {path}: {exc}") from None


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Decode a mask file as a boolean array (``value > 0``) at its original size, upright.

    Single-channel modes (``1``, ``L``, ``P`` indices, ``I``, ``I;16``, ``F``) are compared
    directly; colour masks are anomalous where any channel is non-zero (the authors convert
    to ``L`` first, which rounds a faint pure-blue/red pixel to 0; real masks are 0/255 or
    class ids, where both agree).
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            img = _upright(img)
            if img.mode in ("1", "L", "P", "I", "F") or img.mode.startswith("I;16"):
                arr = np.asarray(img)
            else:
                arr = np.asarray(img.convert("RGB")).max(axis=-1)
    except FileNotFoundError:
        raise AnomclipError(f"mask file {path} does not exist") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError,
            ValueError) as exc:
        raise AnomclipError(f"cannot read mask {path}: {exc}") from None
    return arr > 0


def image_to_tensor(img: Image.Image, size: int) -> torch.Tensor:
    """RGB PIL image → normalised float tensor [3, size, size] (bicubic, aspect squashed)."""
    img = img.resize((size, size), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    return ((x - mean) / std).contiguous()


def mask_to_tensor(mask: np.ndarray, size: int) -> torch.Tensor:
    """Boolean mask [H, W] → float {0, 1} [size, size], the authors' steps exactly.

    ``Image.fromarray(mask * 255, "L").resize((size, size), BILINEAR)`` (PIL's bilinear
    filter widens with the shrink factor, i.e. antialiases), ``/ 255``, then ``> 0.5``.
    """
    eight = Image.fromarray(np.ascontiguousarray(mask, dtype=bool).astype(np.uint8) * 255, "L")
    resized = np.asarray(eight.resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
    return torch.from_numpy((resized > 0.5).astype(np.float32))


def load_image(path: str | os.PathLike, size: int) -> torch.Tensor:
    """Image file → normalised tensor [3, size, size]."""
    return image_to_tensor(read_image(path), size)


def load_mask(path: str | os.PathLike, size: int) -> torch.Tensor:
    """Mask file → float {0, 1} tensor [size, size]."""
    return mask_to_tensor(read_mask(path), size)


def denormalize(t: torch.Tensor) -> np.ndarray:
    """Normalised image tensor [3, H, W] (or [1, 3, H, W]) → ``uint8`` array [H, W, 3]."""
    t = t.detach().cpu().float()
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 3 or t.shape[0] != 3:
        raise ValueError(f"denormalize expects a [3, H, W] tensor, got {tuple(t.shape)}")
    x = t * torch.tensor(CLIP_STD).view(3, 1, 1) + torch.tensor(CLIP_MEAN).view(3, 1, 1)
    return (x.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
