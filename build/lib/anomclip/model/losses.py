"""Training losses of AnomalyCLIP (Zhou et al., ICLR 2024, Sec. 3.3 "glocal" optimisation).

The total loss is ``L_global + lam * sum_m L_local(M_m)``: a cross-entropy on the image-level
normal/anomalous logits plus, for every intermediate feature layer ``m``, a focal loss and
two dice losses on the per-pixel normal/anomalous probability maps.

All functions take and return torch tensors; every returned loss is a 0-d tensor that stays
attached to the autograd graph of its inputs, even when a term is switched off.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

_EPS = 1e-5


def _zero_like(x: torch.Tensor) -> torch.Tensor:
    """A 0-d zero tensor on ``x``'s graph (``sum(x) * 0``), so ``.backward()`` still works."""
    return x.sum() * 0.0


def focal_loss(probs: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Focal loss (Lin et al., 2017) on softmaxed two-class probability maps, without alpha.

    ``probs`` is [B, 2, H, W] (channel 0 normal, channel 1 anomalous), ``target`` is [B, H, W]
    binary. With the one-hot target ``o = (1 - target, target)`` clamped to [1e-5, 1 - 1e-5]::

        pt   = sum_c o_c * p_c + 1e-5
        loss = mean over b, h, w of  -(1 - pt)^gamma * log(pt)

    This is the ``FocalLoss`` of the AnomalyCLIP reference code with ``alpha=None``,
    ``smooth=1e-5`` and ``size_average=True``.
    """
    t = target.to(probs.dtype)
    onehot = torch.stack((1.0 - t, t), dim=1).clamp(_EPS, 1.0 - _EPS)
    pt = (onehot * probs).sum(dim=1) + _EPS
    return (-((1.0 - pt) ** gamma) * pt.log()).mean()


def dice_loss(p: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Soft dice loss (Milletari et al., 2016) with smoothing 1, averaged over the batch.

    ``p`` and ``g`` are [B, H, W]; sums run over each image's pixels::

        loss = 1 - mean_b[ (2 * sum(p * g) + 1) / (sum(p) + sum(g) + 1) ]

    This is the ``BinaryDiceLoss`` of the AnomalyCLIP reference code.
    """
    g = g.to(p.dtype)
    p2, g2 = p.flatten(1), g.flatten(1)
    dice = (2.0 * (p2 * g2).sum(1) + 1.0) / (p2.sum(1) + g2.sum(1) + 1.0)
    return 1.0 - dice.mean()


def local_loss(
    probs: torch.Tensor, mask: torch.Tensor, focal: bool = True, dice: bool = True
) -> torch.Tensor:
    """Local (pixel-level) loss of one feature layer, Eq. 5 of the paper.

    ``focal(probs, mask) + dice(probs[:, 1], mask) + dice(probs[:, 0], 1 - mask)``, where a
    term whose flag is False is left out; a zero tensor (still on the graph) if both are off.
    """
    loss = _zero_like(probs)
    if focal:
        loss = loss + focal_loss(probs, mask)
    if dice:
        m = mask.to(probs.dtype)
        loss = loss + dice_loss(probs[:, 1], m) + dice_loss(probs[:, 0], 1.0 - m)
    return loss


def global_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Global (image-level) loss: ``mean_b[-log softmax(logits_b)[labels_b]]``.

    ``logits`` is [B, 2] (column 0 normal, column 1 anomalous), ``labels`` is [B] with 0 for a
    normal and 1 for an anomalous image; ``torch.nn.functional.cross_entropy`` with mean
    reduction. Works for B = 1.
    """
    return F.cross_entropy(logits, labels.reshape(-1).long())


def glocal_loss(
    image_logits: torch.Tensor,
    layer_probs: Sequence[torch.Tensor] | Mapping[object, torch.Tensor],
    labels: torch.Tensor,
    masks: torch.Tensor,
    lam: float = 1.0,
    use_global: bool = True,
    use_focal: bool = True,
    use_dice: bool = True,
) -> dict[str, torch.Tensor]:
    """Glocal loss of AnomalyCLIP, Eq. 6: ``total = global + lam * sum_m local_m``.

    ``layer_probs`` holds one [B, 2, H, W] probability map per feature layer (a sequence, or a
    mapping whose values are used). Returns ``{"total", "global", "local"}`` with
    ``local = sum_m local_loss(layer_probs[m], masks)``. Switched-off terms are zero tensors
    that stay on the graph, so ``total.backward()`` always works.
    """
    maps = list(layer_probs.values()) if isinstance(layer_probs, Mapping) else list(layer_probs)
    glob = global_loss(image_logits, labels) if use_global else _zero_like(image_logits)
    local = _zero_like(image_logits)
    for probs in maps:
        local = local + local_loss(probs, masks, focal=use_focal, dice=use_dice)
    return {"total": glob + lam * local, "global": glob, "local": local}
