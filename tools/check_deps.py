"""Do the declared dependency ranges hold? (``make check-deps``)

Two checks, each running the fast tests (``-m "not slow and not notebooks"``) in another
environment than the lock's:

* ``--floors``: a scratch venv (``.cache/check-deps/floors``) with the *lowest* versions that
  ``pyproject.toml`` declares for torch (and its torchvision), open_clip_torch, numpy,
  scikit-learn and pandas; everything else resolves as pip resolves it for a user.
* ``--open-clip-src PATH``: the lock's environment with open_clip imported from a source tree
  (a checkout of open_clip's development branch: ``PATH/src/open_clip``), ahead of the
  installed release.

It prints one line per check and writes ``results/check_deps.json`` (versions, tests passed and
failed, seconds). It asserts nothing about time.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FLOORED = ("torch", "torchvision", "open_clip_torch", "numpy", "scikit-learn", "pandas")
FAST = ["-m", "not slow and not notebooks", "-q", "-p", "no:cacheprovider"]


def declared_floors(pyproject: Path = REPO / "pyproject.toml") -> dict[str, str]:
    """``{package: lowest declared version}`` of the packages this check floors."""
    text = pyproject.read_text()
    deps = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1)
    floors = {}
    for name, low in re.findall(r'"([A-Za-z0-9_.-]+)>=([0-9][^,"]*)', deps):
        if name in FLOORED:
            floors[name] = low
    missing = set(FLOORED) - set(floors)
    if missing:
        raise SystemExit(f"check-deps: pyproject.toml declares no floor for {', '.join(sorted(missing))}")
    return floors


def run(cmd, env=None, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, text=True, capture_output=True)


def pytest_summary(out: str) -> dict:
    """Counts from pytest's last line (``3 failed, 250 passed, 12 deselected in 40.1s``)."""
    last = out.strip().splitlines()[-1] if out.strip() else ""
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|error|errors|skipped|deselected)", last)}
    return {"passed": counts.get("passed", 0), "failed": counts.get("failed", 0) + counts.get("error", 0)
            + counts.get("errors", 0), "skipped": counts.get("skipped", 0), "summary": last}


def versions(python: Path, env=None) -> dict:
    code = ("import json, importlib.metadata as m, open_clip, torch, numpy, sklearn, pandas;"
            "print(json.dumps({'python': __import__('platform').python_version(), 'torch': torch.__version__,"
            "'torchvision': m.version('torchvision'),"
            "'open_clip': getattr(open_clip, '__version__', None) or m.version('open_clip_torch'),"
            "'open_clip_file': open_clip.__file__, 'numpy': numpy.__version__,"
            "'scikit-learn': sklearn.__version__, 'pandas': pandas.__version__}))")
    p = run([python, "-c", code], env=env)
    if p.returncode:
        raise SystemExit(f"check-deps: the environment does not import: {p.stderr.strip().splitlines()[-1]}")
    return json.loads(p.stdout)


def fast_tests(python: Path, env=None, extra=()) -> dict:
    t0 = time.perf_counter()
    p = run([python, "-m", "pytest", *FAST, *extra], env=env)
    res = pytest_summary(p.stdout)
    res["durations"] = [ln for ln in p.stdout.splitlines() if re.match(r"\s*\d+\.\d+s (call|setup|teardown)", ln)]
    res["seconds"] = round(time.perf_counter() - t0, 1)
    res["returncode"] = p.returncode
    if p.returncode:
        res["failures"] = [ln for ln in p.stdout.splitlines() if ln.startswith(("FAILED", "ERROR"))][:40]
    return res


def check_floors(floors: dict[str, str], venv: Path, extra=()) -> dict:
    """Install the floors into a scratch venv (re-used while the floors are the same) and test."""
    stamp = venv / ".floors.json"
    pins = [f"{k}=={v}" for k, v in sorted(floors.items())]
    if not (stamp.exists() and json.loads(stamp.read_text()) == pins):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        py = venv / "bin" / "python"
        pip = [py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        # as `make env`: the package with its book and test extras, and MathJax's files for the book
        p = run([*pip, *pins, "-e", f"{REPO}[book,test]", "sphinx-mathjax-offline==0.0.2"])
        if p.returncode:
            tail = [ln for ln in p.stderr.splitlines() if ln.strip() and not ln.startswith("WARNING: Location")]
            raise SystemExit("check-deps: pip could not install the floors: " + (tail[-1] if tail else "?"))
        stamp.write_text(json.dumps(pins))
    py = venv / "bin" / "python"
    env = {**os.environ, "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg"}
    return {"check": "floors", "declared": floors, "versions": versions(py, env), **fast_tests(py, env, extra)}


def check_open_clip_src(src: Path, extra=()) -> dict:
    """The lock's environment with open_clip imported from ``src`` (a checkout's root or its ``src``)."""
    src = src.resolve()
    root = src / "src" if (src / "src" / "open_clip").is_dir() else src
    if not (root / "open_clip" / "__init__.py").exists():
        raise SystemExit(f"check-deps: {src} holds no open_clip source tree (expected src/open_clip/__init__.py)")
    py = REPO / ".venv" / "bin" / "python"
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg"}
    v = versions(py, env)
    if not v["open_clip_file"].startswith(str(root)):
        raise SystemExit(f"check-deps: open_clip was imported from {v['open_clip_file']}, not from {root}")
    commit = run(["git", "-C", src, "rev-parse", "--short", "HEAD"]).stdout.strip() or None
    return {"check": "open_clip source", "source": str(src), "commit": commit, "versions": v,
            **fast_tests(py, env, extra)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--floors", action="store_true", help="test the lowest declared versions in a scratch venv")
    ap.add_argument("--open-clip-src", type=Path, help="test against open_clip imported from this source tree")
    ap.add_argument("--venv", type=Path, default=REPO / ".cache" / "check-deps" / "floors")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "check_deps.json")
    ap.add_argument("--pytest", default="", help="more pytest arguments, e.g. '-k model' or '--durations=20'")
    args = ap.parse_args(argv)
    if not (args.floors or args.open_clip_src):
        ap.error("nothing to check: give --floors and/or --open-clip-src PATH")
    results = []
    if args.floors:
        results.append(check_floors(declared_floors(), args.venv, args.pytest.split()))
    if args.open_clip_src:
        results.append(check_open_clip_src(args.open_clip_src, args.pytest.split()))
    for r in results:
        v = r["versions"]
        print(f"check-deps [{r['check']}] torch {v['torch']}, torchvision {v['torchvision']}, open_clip {v['open_clip']}, "
              f"numpy {v['numpy']}, scikit-learn {v['scikit-learn']}, pandas {v['pandas']}: "
              f"{r['summary']}")
        for f in r.get("failures", []):
            print("   ", f)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    os.replace(tmp, args.out)
    return 0 if all(r["returncode"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
