"""Peak memory and speed of ``anomclip predict`` on folders of N images (issue 17).

For each count N, N random 512×512 PNG images are written to a folder and
``python -m anomclip predict FOLDER --out OUT --batch-size B`` is run in a fresh child
process (``anomclip.cli.main`` with the phases timed): its peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``), the time of the checking pass, and the wall
and CPU time of the predicting pass after the model is loaded, from which images/s. The
figures are written as JSON and printed; nothing is asserted (a shared machine's timings vary).

    python tools/bench_predict.py --counts 40,400 --out results/bench_predict.json
    python tools/bench_predict.py --counts 40,200 --backbone ViT-L-14-336 --pretrained openai \\
        --image-size 518 --device cuda      # the paper's scale, on a GPU
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

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


def make_images(folder: Path, n: int, size: int, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        sub = folder / f"part{i % 4}"  # sub-folders, as a real collection has
        sub.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(sub / f"img{i:05d}.png")


def run_once(images: Path, out: Path, batch_size: int, extra: list[str]) -> dict:
    """Times (whole command, checking pass, predicting pass: wall and CPU) and the peak resident
    memory of one ``anomclip predict`` run in a fresh process."""
    cmd = ["predict", str(images), "--out", str(out), "--batch-size", str(batch_size), *extra]
    proc = subprocess.run([sys.executable, "-c", CHILD, *cmd], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        raise SystemExit(f"bench_predict: predict failed: {proc.stderr.strip()[-500:]}")
    return {k: round(v, 2) for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--counts", default="40,400", help="comma-separated numbers of images (default: %(default)s)")
    p.add_argument("--size", type=int, default=512, help="side of the images in pixels (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--out", default="results/bench_predict.json", help="JSON file to write")
    p.add_argument("--work", default=None, help="folder for the images and outputs (default: a temporary one)")
    args, extra = p.parse_known_args(argv)  # the rest goes to anomclip predict (--backbone, --device, …)
    counts = [int(c) for c in args.counts.split(",") if c.strip()]
    runs = []
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        work = Path(work)
        for n in counts:
            make_images(work / f"in{n}", n, args.size)
            r = run_once(work / f"in{n}", work / f"out{n}", args.batch_size, extra)
            r = {"images": n, **r, "images_per_s": round(n / max(r["predict_s"], 1e-9), 2),
                 "images_per_cpu_s": round(n / max(r["predict_cpu_s"], 1e-9), 2)}
            runs.append(r)
            print(f"{n:5d} images of {args.size} px: peak RSS {r['peak_rss_mib']:7.1f} MiB; predicting "
                  f"{r['predict_s']:.1f} s ({r['images_per_s']:.2f} images/s; {r['images_per_cpu_s']:.2f} per "
                  f"CPU-second), checking {r['check_s']:.1f} s, whole command {r['total_s']:.1f} s", flush=True)
    doc = {"what": "anomclip predict on a folder of random PNG images (tools/bench_predict.py)",
           "size": args.size, "batch_size": args.batch_size, "predict_args": extra, "runs": runs,
           "notes": "peak_rss_mib: the process's maximum resident set (ru_maxrss); predict_s: the "
                    "batched pass after the model is loaded (reading, scoring, writing); images_per_cpu_s "
                    "uses the process's CPU time (less sensitive to a shared machine)",
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
           "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    from anomclip.io import atomic_write_text

    atomic_write_text(out, json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
