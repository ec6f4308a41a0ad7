"""Peak memory and speed of ``anomclip predict`` on folders of N images (issue 17).

For each count N, N random PNG images are written to a folder and ``anomclip predict FOLDER
--out OUT --batch-size B`` is run in a fresh child process (``anomclip.cli.main`` with the phases
timed): its peak resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``), the time of
the checking pass, and the wall and CPU time of the predicting pass after the model is loaded,
from which images/s.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import AnomclipError
from .timing import machine

CHILD = """
import json, resource, sys, time
import anomclip.engine.predict as P

marks = {}
real_check, real_predict = P.check_images, P.predict_images


def check_images(paths, progress=False):
    t = time.perf_counter()
    real_check(paths, progress)
    marks["check_s"] = time.perf_counter() - t


def predict_images(load_model, *a, **k):
    def load():
        model = load_model()
        marks["loaded"], marks["loaded_cpu"] = time.perf_counter(), time.process_time()
        return model

    rows = real_predict(load, *a, **k)
    marks["predict_s"] = time.perf_counter() - marks.pop("loaded")
    marks["predict_cpu_s"] = time.process_time() - marks.pop("loaded_cpu")
    return rows


P.check_images, P.predict_images = check_images, predict_images
from anomclip.cli import main

t0 = time.perf_counter()
code = main(sys.argv[1:])
marks["total_s"] = time.perf_counter() - t0
marks["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(marks))
sys.exit(code)
"""

NOTES = ("peak_rss_mib: the process's maximum resident set (ru_maxrss); predict_s: the batched pass after the "
         "model is loaded (reading, scoring, writing); images_per_cpu_s uses the process's CPU time (less "
         "sensitive to a shared machine)")


def make_images(folder: Path, n: int, size: int, seed: int = 0) -> None:
    """``n`` random ``size``² PNG images in four sub-folders of ``folder``, as a real collection has."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        sub = folder / f"part{i % 4}"
        sub.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(sub / f"img{i:05d}.png")


def run_once(images: Path, out: Path, batch_size: int, predict_args: list[str]) -> dict:
    """Times (whole command, checking pass, predicting pass: wall and CPU) and the peak resident
    memory of one ``anomclip predict`` run in a fresh process."""
    cmd = ["predict", str(images), "--out", str(out), "--batch-size", str(batch_size), *predict_args]
    proc = subprocess.run([sys.executable, "-c", CHILD, *cmd], capture_output=True, text=True)
    if proc.returncode:
        raise AnomclipError(f"anomclip predict failed: {proc.stderr.strip().splitlines()[-1:]}")
    return {k: round(v, 2) for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}


def bench_predict(counts=(40, 400), size: int = 512, batch_size: int = 8, predict_args=(), work=None,
                  on_row=None) -> dict:
    """``runs``: one row per count of images (:func:`run_once`'s figures and images/s, wall and CPU).
    ``predict_args`` go to ``anomclip predict`` (``--backbone``, ``--device``, …); ``on_row(row)``
    is called after each count."""
    runs = []
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        tmp = Path(tmp)
        for n in counts:
            make_images(tmp / f"in{n}", n, size)
            r = run_once(tmp / f"in{n}", tmp / f"out{n}", batch_size, list(predict_args))
            r = {"images": n, **r, "images_per_s": round(n / max(r["predict_s"], 1e-9), 2),
                 "images_per_cpu_s": round(n / max(r["predict_cpu_s"], 1e-9), 2)}
            runs.append(r)
            if on_row:
                on_row(r)
    return {"what": "anomclip predict on a folder of random PNG images (anomclip bench predict)", "size": size,
            "batch_size": batch_size, "predict_args": list(predict_args), "runs": runs, "notes": NOTES,
            "machine": machine(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def row_summary(r: dict, size: int) -> str:
    return (f"{r['images']:5d} images of {size} px: peak RSS {r['peak_rss_mib']:7.1f} MiB; predicting "
            f"{r['predict_s']:.1f} s ({r['images_per_s']:.2f} images/s; {r['images_per_cpu_s']:.2f} per "
            f"CPU-second), checking {r['check_s']:.1f} s, whole command {r['total_s']:.1f} s")
