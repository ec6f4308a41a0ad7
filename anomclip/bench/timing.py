"""Timing helpers shared by the benchmarks."""
from __future__ import annotations

import os
import platform
import time

import numpy as np
import torch


def sync(device) -> None:
    """Wait for the device's queued work (timings on a GPU are asynchronous otherwise)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def seconds(fn, device="cpu") -> float:
    """Seconds of one call of ``fn()``, the device's queued work included."""
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def median_seconds(fn, repeats: int, device) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    sync(device)
    return float(np.median([seconds(fn, device) for _ in range(repeats)]))


def machine() -> dict:
    """The CPU, its cores, the platform and torch's threads: what a CPU timing depends on."""
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()}
