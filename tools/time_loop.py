"""How long the developer's loop takes, from a fresh clone (issue: a loop that stays fast).

Clones the checkout's committed ``HEAD`` into a scratch folder and times, in that clone, the
steps a developer and CI meet, one after the other:

* ``env``: ``make env`` (the locked environment, from the package registry);
* ``test-fast``: ``make test-fast`` (the inner loop, run before every commit);
* ``book-cold``: ``make book`` (every chapter executed, the HTML rendered: nothing cached);
* ``book-warm``: ``make book`` again (nothing changed: nothing should execute);
* ``ci``: ``CI=true bash .ci/run`` in a second fresh clone (``make test`` and the browser checks).

``--steps`` picks some of them (``ci`` clones again, so it includes its own ``make env``).
Each step's seconds, exit status and last output line go to ``results/loop.json`` and are
printed. Nothing is asserted: measure alone on the machine (OpenMP threads of two processes
slow each other down many times over).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEPS = {
    "env": ["make", "env"],
    "test-fast": ["make", "test-fast"],
    "book-cold": ["make", "book"],
    "book-warm": ["make", "book"],
    "ci": ["bash", ".ci/run"],
}


def clone(dest: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(REPO), str(dest)], check=True)
    return dest


def timed(cmd: list[str], cwd: Path, env: dict) -> dict:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    return {"command": " ".join(cmd), "seconds": round(time.perf_counter() - t0, 1), "returncode": p.returncode,
            "last_line": lines[-1] if lines else "",
            # .ci/run's own step timings, and pytest's summaries
            "steps": [ln for ln in lines if ln.startswith("ci: ") or re.search(r"\d+ passed.* in [\d.]+s", ln)]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", default="env,test-fast,book-cold,book-warm",
                    help=f"comma-separated, in order, from {', '.join(STEPS)}")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "loop.json")
    args = ap.parse_args(argv)
    steps = [s for s in args.steps.split(",") if s]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        print(f"error: unknown step {unknown[0]!r} (choose from {', '.join(STEPS)})", file=sys.stderr)
        return 2
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                          capture_output=True).stdout.strip()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANOMCLIP_", "PYTEST_"))}
    results = {"commit": head, "cpus": os.cpu_count(), "steps": []}
    with tempfile.TemporaryDirectory(prefix="anomclip-loop-") as tmp:
        work = clone(Path(tmp) / "clone")
        for step in steps:
            if step == "ci":
                r = timed(STEPS[step], clone(Path(tmp) / "ci"), {**env, "CI": "true"})
            else:
                r = timed(STEPS[step], work, env)
            r["step"] = step
            results["steps"].append(r)
            print(f"loop [{head}] {step}: {r['seconds']:.0f} s (exit {r['returncode']}) {r['last_line'][:100]}",
                  flush=True)
            for line in r["steps"]:
                print(f"    {line}", flush=True)
            if r["returncode"] != 0:
                break
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(results, indent=1) + "\n")
    os.replace(tmp_out, args.out)
    return 0 if all(r["returncode"] == 0 for r in results["steps"]) else 1


if __name__ == "__main__":
    sys.exit(main())
