"""Training a method on cached visual features: AnomalyCLIP's glocal context optimisation
(docs/anomalyclip.md §5–6), or a baseline's own objective (docs/compared-methods.md).

A method (:class:`~anomclip.methods.protocol.Method`) provides its trainable parameters
(``model.trainable_parameters()``, held by ``model.prompt_learner``) and its objective,
``model.training_loss(g, feats, labels, masks, cls_names) -> {"total", "global", "local"}``:
AnomalyCLIP's glocal loss, VAND's focal + dice, CoOp's is AnomalyCLIP's with the local terms
switched off. A method
with nothing to train (CLIP, CLIP-AC, WinCLIP) returns an empty :class:`TrainResult`.

Only the trainable part is trained: Adam (lr 1e-3, betas (0.5, 0.999), no weight decay, no
schedule), batch 8, 15 epochs, shuffled with a seeded generator (seed 111). Every epoch reads
the frozen visual features from a :class:`~anomclip.engine.features.FeatureSet`; the text side is
recomputed for each batch because it is what learns.

**Images without masks** train with the image-level loss alone (their ``"global"`` term): an
anomalous image without a mask says nothing about which pixels are anomalous. In a dataset
where no anomalous image has a mask, every image does (a dataset of image labels only);
otherwise the images with masks (normal ones count as all-zero masks) keep the whole loss, and
a batch's loss is the size-weighted mean of its two parts. A dataset whose anomalous images all
have masks trains exactly as before.

A checkpoint after every epoch holds the prompts, the optimiser, the shuffling generator and
the loss history, so an interrupted run resumed from it ends exactly where an uninterrupted
one does.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import AnomclipError
from ..io import read_checkpoint
from ..methods.protocol import Method
from .features import FeatureSet


@dataclass
class TrainResult:
    history: list = field(default_factory=list)  # one dict per epoch: loss, global, local, seconds
    steps: list = field(default_factory=list)  # one dict per step: epoch, loss, global, local
    seconds: float = 0.0
    checkpoint: str | None = None


def train(model: Method, features: FeatureSet, epochs: int | None = None, batch_size: int | None = None,
          lr: float | None = None, seed: int | None = None, checkpoint: str | Path | None = None,
          resume: bool = False, progress: bool = True, stop_after: int | None = None,
          checkpoint_extra: dict | None = None, on_epoch=None) -> TrainResult:
    """Train ``model``'s prompts on ``features``; settings default to ``model.recipe``.

    ``checkpoint``: file written (atomically) after every epoch; with ``resume=True`` an
    existing one is continued. ``stop_after``: stop after that many epochs of *this call*
    (to test resuming). ``checkpoint_extra``: entries stored in every checkpoint as well.
    ``on_epoch(epoch, epochs)`` is called after each epoch (a progress bar's hook).
    """
    r = model.recipe
    epochs = r.epochs if epochs is None else epochs
    batch_size = r.batch_size if batch_size is None else batch_size
    lr = r.lr if lr is None else lr
    seed = r.seed if seed is None else seed
    n = len(features)
    if n == 0:
        raise AnomclipError("the training set is empty")
    device = model.device
    params = model.trainable_parameters()
    if not params:  # a zero-shot method with hand-written prompts: nothing to train
        return TrainResult(checkpoint=None)
    opt = torch.optim.Adam(params, lr=lr, betas=tuple(r.betas), weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    image_only = image_level_only(features)
    result = TrainResult()
    start_epoch = 0
    if resume and checkpoint and Path(checkpoint).is_file():
        state = read_checkpoint(checkpoint)
        if "optimizer" not in state:
            raise AnomclipError(f"{checkpoint} has no training state to resume from")
        model.prompt_learner.load_state_dict(state["prompt_learner"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        start_epoch = state["epoch"]
        result.history, result.steps = list(state["history"]), list(state["steps"])
    t_start = time.perf_counter()
    model.prompt_learner.train()
    done_here = 0
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=gen).numpy()
        sums = {"loss": 0.0, "global": 0.0, "local": 0.0}
        batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress, leave=False)
        for idx in bar:
            if image_only[idx].any():
                losses = _split_loss(model, features, idx, image_only[idx], device)
            else:
                g, feats, labels, masks, cls_names, _ = features.batch(idx, device)
                losses = model.training_loss(g, feats, labels, masks, cls_names)
            opt.zero_grad(set_to_none=True)
            if losses["total"].requires_grad:
                losses["total"].backward()
                opt.step()
            step = {k: float(losses[k2].detach()) for k, k2 in (("loss", "total"), ("global", "global"),
                                                                ("local", "local"))}
            result.steps.append({"epoch": epoch + 1, **step})
            for k in sums:
                sums[k] += step[k] * len(idx)
            bar.set_postfix(loss=f"{step['loss']:.4f}")
        result.history.append({"epoch": epoch + 1, **{k: v / n for k, v in sums.items()},
                               "seconds": time.perf_counter() - t0})
        if checkpoint:
            model.save_prompts(checkpoint, extra={
                **(checkpoint_extra or {}),  # e.g. the training data's fingerprint (anomclip train)
                "optimizer": opt.state_dict(), "generator": gen.get_state(), "epoch": epoch + 1,
                "history": result.history, "steps": result.steps,
            })
        done_here += 1
        if on_epoch is not None:
            on_epoch(epoch + 1, epochs)
        if stop_after is not None and done_here >= stop_after:
            break
    model.prompt_learner.eval()
    result.seconds = time.perf_counter() - t_start
    result.checkpoint = str(checkpoint) if checkpoint else None
    return result


def image_level_only(features: FeatureSet) -> np.ndarray:
    """``[N]`` bool: the images trained with the image-level loss alone (module doc)."""
    labels = np.asarray(features.labels).astype(bool)
    has_mask = np.asarray(getattr(features, "has_mask", np.ones(labels.size, bool)), dtype=bool)
    if labels.any() and not (has_mask & labels).any():
        return np.ones(labels.size, bool)  # no anomalous image has a mask: image labels only
    return ~has_mask


def _split_loss(model: Method, features: FeatureSet, idx: np.ndarray, image_only: np.ndarray, device) -> dict:
    """The loss of a batch some of whose images train with the image-level loss alone."""
    parts = []
    for sel, whole in ((idx[~image_only], True), (idx[image_only], False)):
        if sel.size:
            g, feats, labels, masks, cls_names, _ = features.batch(sel, device)
            lo = model.training_loss(g, feats, labels, masks, cls_names)
            parts.append((sel.size, lo["total"] if whole else lo["global"], lo["global"],
                          lo["local"] if whole else lo["local"] * 0.0))
    if len(parts) == 1:
        _, total, glob, local = parts[0]
        return {"total": total, "global": glob, "local": local}
    n = idx.size
    return {k: sum(p[i] * (p[0] / n) for p in parts) for i, k in ((1, "total"), (2, "global"), (3, "local"))}
