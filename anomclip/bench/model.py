"""The default benchmark (``anomclip bench``): one recipe's model on one device.

The forward pass (:mod:`.forward`), the text side (:mod:`.text`), training with and without the
feature cache (:mod:`.training`) and AUPRO on many large maps (:mod:`.metrics`).
"""
from __future__ import annotations

import torch

from ..engine.loading import build_model
from ..engine.results import device_name, package_versions
from . import forward, metrics, text, training


def bench_model(recipe, device: str, batch_sizes=(1, 4), repeats: int = 3, bf16: bool = False,
                skip_train: bool = False, aupro_maps: int = 100, aupro_size: int = 518) -> dict:
    """Time ``recipe``'s model on ``device``: keys ``forward``, ``text``, ``training`` (unless
    ``skip_train``) and ``aupro`` (unless ``aupro_maps`` is 0), with the device, versions and model."""
    model = build_model(recipe, device)
    info = model.info
    report = {"device": device_name(device), "versions": package_versions(), "backbone": info.name,
              "weights": info.weights, "image_size": info.image_size, "recipe": recipe.name,
              "dpam": ",".join(model.modes) or "off", "dpam_start": model.dpam_start, "layers": list(model.layers),
              "threads": torch.get_num_threads()}
    report["forward"] = forward.bench_forward(model, list(batch_sizes), repeats, device, bf16)
    report["text"] = text.bench_text(model, device)
    if not skip_train:
        report["training"] = training.bench_training(model)
    if aupro_maps > 0:
        report["aupro"] = metrics.bench_aupro(n=aupro_maps, size=aupro_size)
    return report


def summary(report: dict) -> list[str]:
    lines = [f"device: {report['device']}; backbone {report['backbone']} ({report['weights']}) at "
             f"{report['image_size']} px, DPAM {report['dpam']} from block {report['dpam_start']}, "
             f"layers {report['layers']}"]
    lines += forward.summary(report["forward"]) + text.summary(report["text"])
    if "training" in report:
        lines += training.summary(report["training"])
    if "aupro" in report:
        lines += metrics.summary(report["aupro"])
    return lines
