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
    return interleaved_medians({"fn": fn}, repeats, device)["fn"]


def interleaved_medians(fns: dict, repeats: int, device) -> dict:
    """``{name: median seconds}`` of each ``fns[name]()`` over ``repeats`` rounds after one warm-up
    round, every round calling each function once in turn: a ratio of two of them is then taken
    under the same machine conditions, even where the machine's speed drifts during the run
    (a shared host: timed back to back, the same code varied by 20 % within an hour here)."""
    for fn in fns.values():
        fn()
        sync(device)
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(seconds(fn, device))
    return {name: float(np.median(t)) for name, t in times.items()}


def machine() -> dict:
    """The CPU, its cores, the platform and torch's threads: what a CPU timing depends on."""
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()}
