"""Losses checked against per-pixel loops written out from the formulas."""
from __future__ import annotations

import math

import pytest
import torch

from anomclip.model import losses


def _probs(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 2, h, w, generator=g, dtype=torch.float64).softmax(dim=1)


def _mask(b: int, h: int, w: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, h, w, generator=g) < 0.4).double()


def _focal_loop(probs, target, gamma=2.0) -> float:
    b, _, h, w = probs.shape
    total = 0.0
    for i in range(b):
        for y in range(h):
            for x in range(w):
                t = float(target[i, y, x])
                o0 = min(max(1.0 - t, 1e-5), 1 - 1e-5)
                o1 = min(max(t, 1e-5), 1 - 1e-5)
                pt = o0 * float(probs[i, 0, y, x]) + o1 * float(probs[i, 1, y, x]) + 1e-5
                total += -((1.0 - pt) ** gamma) * math.log(pt)
    return total / (b * h * w)


def _dice_loop(p, g) -> float:
    b, h, w = p.shape
    ratios = []
    for i in range(b):
        inter = sp = sg = 0.0
        for y in range(h):
            for x in range(w):
                inter += float(p[i, y, x]) * float(g[i, y, x])
                sp += float(p[i, y, x])
                sg += float(g[i, y, x])
        ratios.append((2 * inter + 1) / (sp + sg + 1))
    return 1.0 - sum(ratios) / b


@pytest.mark.parametrize("gamma", [2.0, 0.0, 1.5])
def test_focal_matches_pixel_loop(gamma):
    probs, mask = _probs(2, 3, 4), _mask(2, 3, 4)
    expected = _focal_loop(probs, mask, gamma)
    assert losses.focal_loss(probs, mask, gamma=gamma).item() == pytest.approx(expected, rel=1e-12)
    # a long target gives the same value
    assert losses.focal_loss(probs, mask.long(), gamma=gamma).item() == pytest.approx(expected, rel=1e-12)


def test_dice_matches_pixel_loop():
    probs, mask = _probs(3, 4, 5), _mask(3, 4, 5)
    assert losses.dice_loss(probs[:, 1], mask).item() == pytest.approx(_dice_loop(probs[:, 1], mask), rel=1e-12)
    # perfect prediction of an empty mask: (0 + 1) / (0 + 0 + 1) = 1 -> loss 0
    zeros = torch.zeros(1, 2, 2)
    assert losses.dice_loss(zeros, zeros).item() == 0.0


def test_local_loss_terms():
    probs, mask = _probs(2, 3, 3), _mask(2, 3, 3)
    focal = _focal_loop(probs, mask)
    dice = _dice_loop(probs[:, 1], mask) + _dice_loop(probs[:, 0], 1 - mask)
    assert losses.local_loss(probs, mask).item() == pytest.approx(focal + dice, rel=1e-12)
    assert losses.local_loss(probs, mask, dice=False).item() == pytest.approx(focal, rel=1e-12)
    assert losses.local_loss(probs, mask, focal=False).item() == pytest.approx(dice, rel=1e-12)
    assert losses.local_loss(probs, mask, focal=False, dice=False).item() == 0.0


def test_global_loss_is_cross_entropy():
    logits = torch.tensor([[0.3, -1.2], [2.0, 0.5], [-0.1, 0.4]], dtype=torch.float64)
    labels = torch.tensor([1, 0, 1])
    expected = 0.0
    for row, y in zip(logits.tolist(), labels.tolist()):
        expected += -(row[y] - math.log(math.exp(row[0]) + math.exp(row[1])))
    assert losses.global_loss(logits, labels).item() == pytest.approx(expected / 3, rel=1e-12)
    assert losses.global_loss(logits, labels.float()).item() == pytest.approx(expected / 3, rel=1e-12)


def test_global_loss_single_image():
    logits = torch.tensor([[0.3, -1.2]], dtype=torch.float64)
    expected = -(-1.2 - math.log(math.exp(0.3) + math.exp(-1.2)))
    assert losses.global_loss(logits, torch.tensor([1])).item() == pytest.approx(expected, rel=1e-12)


def test_glocal_total_is_global_plus_lambda_times_locals():
    logits = torch.tensor([[0.2, 0.9], [1.1, -0.3]], dtype=torch.float64)
    labels = torch.tensor([1, 0])
    mask = _mask(2, 4, 4)
    layers = [_probs(2, 4, 4, seed=s) for s in range(3)]
    glob = sum(-(row[y] - math.log(math.exp(row[0]) + math.exp(row[1]))) for row, y in zip(logits.tolist(), [1, 0])) / 2
    local = sum(
        _focal_loop(p, mask) + _dice_loop(p[:, 1], mask) + _dice_loop(p[:, 0], 1 - mask) for p in layers
    )
    for lam in (1.0, 0.25):
        out = losses.glocal_loss(logits, layers, labels, mask, lam=lam)
        assert out["global"].item() == pytest.approx(glob, rel=1e-12)
        assert out["local"].item() == pytest.approx(local, rel=1e-12)
        assert out["total"].item() == pytest.approx(glob + lam * local, rel=1e-12)
    # a dict of layers behaves like its values
    as_dict = losses.glocal_loss(logits, {6: layers[0], 12: layers[1], 18: layers[2]}, labels, mask)
    assert as_dict["total"].item() == pytest.approx(glob + local, rel=1e-12)


def test_gradient_flows_with_batch_of_one():
    logits = torch.randn(1, 2, requires_grad=True)
    raw = [torch.randn(1, 2, 5, 5, requires_grad=True) for _ in range(2)]
    mask = (torch.rand(1, 5, 5) < 0.5).float()
    out = losses.glocal_loss(logits, [r.softmax(1) for r in raw], torch.tensor([1]), mask)
    out["total"].backward()
    assert logits.grad is not None and raw[0].grad is not None and raw[1].grad is not None
    assert raw[0].grad.abs().sum() > 0


def test_switched_off_terms_are_zero_and_backward_still_works():
    logits = torch.randn(2, 2, requires_grad=True)
    raw = torch.randn(2, 2, 3, 3, requires_grad=True)
    mask = torch.zeros(2, 3, 3)
    labels = torch.tensor([0, 1])

    out = losses.glocal_loss(logits, [raw.softmax(1)], labels, mask, use_global=False)
    assert out["global"].item() == 0.0
    assert out["total"].item() == pytest.approx(out["local"].item())
    out["total"].backward()
    assert raw.grad is not None

    out = losses.glocal_loss(logits, [raw.softmax(1)], labels, mask, use_focal=False, use_dice=False)
    assert out["local"].item() == 0.0
    assert out["total"].item() == pytest.approx(out["global"].item())

    out = losses.glocal_loss(
        logits, [raw.softmax(1)], labels, mask, use_global=False, use_focal=False, use_dice=False
    )
    assert out["total"].item() == 0.0
    out["total"].backward()  # every term off: still a graph, gradients are zero
    assert logits.grad is not None
