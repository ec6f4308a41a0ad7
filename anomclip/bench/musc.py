"""MuSc's memory and time per category of N images (``anomclip bench musc``).

MuSc compares every patch of every image with every patch of the other images of its category:
the distances grow as N² × P² (P patches per image). :func:`anomclip.methods.musc.score_set` runs
them in blocks, so what it holds at once grows as N × P × C (one layer and degree's aggregated
features) plus the maps, not as N² × P². This benchmark measures it: for each N a fresh child
process builds random raw tokens of N images (in memory, as the feature cache's memory maps
would give them) and runs ``score_set``; the peak is the process's maximum resident set
(``ru_maxrss``) less its resident set just before scoring (on a GPU: ``max_memory_allocated`` less
what was allocated before). Beside each measurement: :func:`~anomclip.methods.musc.peak_bytes`,
the formula, which then extrapolates to the paper's setting (N = 500, 37 × 37 patches, C = 1024,
518 px). Memory does not depend on the number of layers and degrees (one is held at a time), so
the measurement may use fewer of them (``layers``, ``degrees``) to stay short; time is reported
per (layer, degree) and scaled to the 4 × 3 of the recipe.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time

from ..errors import AnomclipError
from ..methods.musc import DEFAULT_BLOCK, peak_bytes
from .timing import machine

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
from anomclip.methods.musc import score_set

n, p, w, size, layers, degrees, block, chunk, device = json.loads(sys.argv[1])
grid = int(round(p ** 0.5))
rng = np.random.default_rng(0)
raw = {l: np.empty((n, p, w), np.float32) for l in range(layers)}
for a in raw.values():
    for i in range(n):
        a[i] = rng.standard_normal((p, w), dtype=np.float32)
g = rng.standard_normal((n, 768), dtype=np.float32)

def load(rows, layer):
    a = g if layer is None else raw[layer]
    return torch.from_numpy(np.ascontiguousarray(a[rows]))

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()

cuda = device.startswith("cuda")
if cuda:
    torch.zeros(1, device=device)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
base = rss()
t0 = time.perf_counter()
scores, maps, _ = score_set(load, n, list(range(layers)), [2 * d + 1 for d in range(degrees)], grid, size,
                            block=block, chunk=chunk, device=device)
if cuda:
    torch.cuda.synchronize()
seconds = time.perf_counter() - t0
out = {"seconds": seconds}
if cuda:
    out["peak_bytes"] = torch.cuda.max_memory_allocated() - before
else:
    out["peak_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
print(json.dumps(out))
"""

#: the paper's setting: a category of 500 images, ViT-L-14-336 at 518 px
PAPER = dict(n=500, patches=37 * 37, width=1024, size=518)


def run_once(n: int, patches: int, width: int, size: int, layers: int, degrees: int, block: int, chunk: int,
             device: str) -> dict:
    """One category scored in a fresh process: its peak memory (bytes) and seconds."""
    arg = json.dumps([n, patches, width, size, layers, degrees, block, chunk, device])
    proc = subprocess.run([sys.executable, "-c", CHILD, arg], capture_output=True, text=True)
    if proc.returncode:
        raise AnomclipError(f"bench musc failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_musc(counts=(4, 8, 16), patches: int = 37 * 37, width: int = 1024, size: int = 518, layers: int = 1,
               degrees: int = 1, block: int = DEFAULT_BLOCK, chunk: int = 16, device: str = "cpu",
               on_row=None) -> dict:
    """``runs``: per N, the measured peak and the formula's; ``paper``: the formula at N = 500 on the
    paper's setting, with the time extrapolated from the largest run (∝ N² for the comparisons)."""
    gib = 2 ** 30
    runs = []
    for n in counts:
        r = run_once(n, patches, width, size, layers, degrees, block, chunk, device)
        f = peak_bytes(n, patches, width, size, block, chunk, layers, degrees)
        row = {"images": n, "measured_gib": round(r["peak_bytes"] / gib, 3), "formula_gib": round(f["total"] / gib, 3),
               "seconds": round(r["seconds"], 2),
               "seconds_per_image_per_layer_degree": round(r["seconds"] / (n * layers * degrees), 4)}
        runs.append(row)
        if on_row:
            on_row(row)
    paper = peak_bytes(PAPER["n"], PAPER["patches"], PAPER["width"], PAPER["size"], block, chunk)
    last = runs[-1]
    # comparisons cost ∝ N·(N−1)·P²·C per (layer, degree): scale the last run to N = 500 and 4 × 3
    scale = (PAPER["n"] * (PAPER["n"] - 1)) / (last["images"] * (last["images"] - 1)) \
        * (PAPER["patches"] / patches) ** 2 * (PAPER["width"] / width) * 12 / (layers * degrees)
    flop = 2 * 12 * PAPER["n"] * (PAPER["n"] - 1) * PAPER["patches"] ** 2 * PAPER["width"]
    return {
        "what": "MuSc's scoring of one category (anomclip bench musc): random raw tokens, peak memory beyond them",
        "setting": {"patches": patches, "width": width, "size": size, "layers": layers, "degrees": degrees,
                    "block": block, "chunk": chunk, "device": device},
        "runs": runs,
        "paper": {**PAPER, "block": block, "chunk": chunk,
                  "formula_gib": {k: round(v / gib, 3) for k, v in paper.items()},
                  "comparison_flop": flop,
                  "seconds_extrapolated_here": round(last["seconds"] * scale, 0),
                  "seconds_per_image_extrapolated_here": round(last["seconds"] * scale / PAPER["n"], 1)},
        "notes": ("measured_gib: ru_maxrss less the resident set before scoring (CPU) or max_memory_allocated "
                  "less what was allocated before (GPU); formula: anomclip.methods.musc.peak_bytes. The raw "
                  "tokens (the feature cache's memory maps in evaluation) and the backbone are not counted."),
        "machine": machine(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def row_summary(r: dict) -> str:
    return (f"{r['images']:5d} images: peak {r['measured_gib']:.3f} GiB measured, {r['formula_gib']:.3f} GiB by "
            f"formula; {r['seconds']:.1f} s ({r['seconds_per_image_per_layer_degree']:.3f} s per image per "
            "layer and degree)")
