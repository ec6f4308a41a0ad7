"""The text side: the first call computes the prompts' features, later calls read them back."""
from __future__ import annotations

import time

import torch

from .timing import seconds


def bench_text(model, device, calls: int = 100) -> dict:
    """Seconds of ``encode_text()`` on an empty text cache, and the mean over ``calls`` cached calls."""
    model.clear_text_cache()
    with torch.no_grad():
        first = seconds(model.encode_text, device)
        t0 = time.perf_counter()
        for _ in range(calls):
            model.encode_text()
        cached = (time.perf_counter() - t0) / calls
    return {"text_first_s": first, "text_cached_s": cached}


def summary(row: dict) -> list[str]:
    return [f"text features: first call {row['text_first_s'] * 1e3:.1f} ms, "
            f"cached call {row['text_cached_s'] * 1e6:.1f} µs"]
