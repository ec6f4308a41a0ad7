"""What one method costs on one set of images: trainable parameters, seconds per image, peak memory.

Chapter 15 (After AnomalyCLIP) measures every method of the registry with :func:`method_cost` on
the same images it draws their maps of:

* **trainable parameters**: the number of elements of :meth:`Method.trainable_parameters`
  (0 for a method that trains nothing);
* **seconds per image**: the fastest of ``repeats`` calls of encode + score on the whole set of N
  images, after a warm-up call on two of them (text features and lazy buffers are built there),
  divided by N.
  A transductive method (MuSc) scores the N images as one set, so its cost per image grows with N;
* **peak memory**: the most bytes the call's tensors held at once beyond what was allocated
  before it. On a GPU, ``torch.cuda.max_memory_allocated`` (the allocator's own count, kernel
  workspaces included); on a CPU, :class:`TensorMemory`: every tensor storage an operation
  creates counts from its creation until it is freed (temporaries inside one kernel are not
  seen). The model's own weights are reported apart (``weights_bytes``).

Nothing here prints or asserts a time.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from .timing import sync


def _storages(tree):
    for t in pytree.tree_leaves(tree):
        if isinstance(t, torch.Tensor):
            yield t.untyped_storage()


class TensorMemory(TorchDispatchMode):
    """The bytes of the tensor storages created inside the ``with`` block: ``current`` (still
    alive) and ``peak`` (the most alive at once). A storage counts once, from the operation that
    created it (a view or an in-place operation creates none) until it is freed."""

    def __init__(self):
        super().__init__()
        self.live: dict = {}  # storage id → (weak reference, bytes)
        self.current = 0
        self.peak = 0

    def _prune(self) -> None:
        gone = [k for k, (ref, _) in self.live.items() if ref.expired()]
        for k in gone:
            self.current -= self.live.pop(k)[1]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = {StorageWeakRef(s).cdata for s in _storages((args, kwargs))}
        out = func(*args, **kwargs)
        self._prune()  # frees first: a freed storage's address may be reused by a new one
        for s in _storages(out):
            ref = StorageWeakRef(s)
            if ref.cdata in inputs or ref.cdata in self.live:
                continue
            self.live[ref.cdata] = (ref, s.nbytes())
            self.current += s.nbytes()
        self.peak = max(self.peak, self.current)
        return out


def peak_memory(fn, device) -> tuple[object, int, str]:
    """``(fn(), peak bytes beyond what was allocated before, how it was measured)``."""
    if torch.device(device).type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        out = fn()
        sync(device)
        return out, int(torch.cuda.max_memory_allocated() - before), "torch.cuda.max_memory_allocated"
    with TensorMemory() as m:
        out = fn()
    return out, int(m.peak), "tensor storages alive at once (CPU)"


def trainable_count(model) -> int:
    """Elements of the parameters the method trains."""
    return int(sum(p.numel() for p in model.trainable_parameters()))


def weights_bytes(model) -> int:
    """Bytes of the model's parameters and buffers (frozen backbone included), each tensor once."""
    seen, total = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        key = t.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return int(total)


def method_cost(model, images: torch.Tensor, cls_names, device, repeats: int = 2) -> dict:
    """Encode and score ``images`` (preprocessed ``[N, 3, S, S]``, N ≥ 2) with one method: its
    costs (module docstring) and its outputs, the anomaly maps ``[N, H, W]`` and image scores
    ``[N]`` (numpy, as the method returns them: its own scale and smoothing)."""
    names = list(cls_names)
    x = images.to(device)
    if x.shape[-1] != model.image_size:  # a method at its own input size (WinCLIP at 240 px)
        x = torch.nn.functional.interpolate(x, size=(model.image_size,) * 2, mode="bicubic", align_corners=False)

    def run(k=None):
        with torch.no_grad():
            xs, ns = (x, names) if k is None else (x[:k], names[:k])
            g, feats = model.encode_image(xs)
            return model.score_features(g, feats, model.text_for(ns))

    run(2)  # warm-up: text features, lazy buffers
    times = []
    for _ in range(max(1, repeats)):
        sync(device)
        t0 = time.perf_counter()
        out = run()
        sync(device)
        times.append(time.perf_counter() - t0)
    seconds = min(times)  # the least disturbed call: other work on the machine only adds time
    _, peak, how = peak_memory(run, device)
    n = int(x.shape[0])
    return {"images": n, "trainable_parameters": trainable_count(model), "seconds_per_image": seconds / n,
            "peak_bytes": peak, "memory_how": how, "weights_bytes": weights_bytes(model),
            "maps": out.anomaly_map.float().cpu().numpy(), "scores": out.image_score.float().cpu().numpy()}


def rescaled(maps: np.ndarray) -> np.ndarray:
    """Maps on 0–1 by their own range over the whole set (0: the lowest value of any map, 1: the
    highest); a constant set gives 0 everywhere. Methods whose maps are not probabilities (MuSc:
    a distance) can then be drawn beside the others; the ranking within the set is unchanged."""
    m = np.asarray(maps, dtype=np.float64)
    lo, hi = float(np.nanmin(m)), float(np.nanmax(m))
    return np.zeros_like(m, dtype=np.float32) if hi <= lo else ((m - lo) / (hi - lo)).astype(np.float32)
