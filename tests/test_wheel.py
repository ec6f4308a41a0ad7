"""The wheel as pip installs it: built from the checkout, installed into a fresh virtual
environment, and run from a folder outside the checkout.

The fresh environment gets the dependencies by a ``.pth`` line naming the test environment's
site-packages (a directory on ``sys.path``: the editable install's own ``.pth`` hook there is
not run), so the only ``anomclip`` it can import is the installed wheel.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds and installs the wheel (about 30 s)

REPO = Path(__file__).resolve().parents[1]


def run(cmd, cwd, env=None, check=True):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    # built from a copy of the tracked sources (what a clone holds), so no build/ folder is left in the
    # checkout and no stale file of an earlier build can slip into the wheel
    src = tmp / "src"
    listed = subprocess.run(["git", "ls-files", "anomclip", "pyproject.toml", "README.md"], cwd=REPO,
                            capture_output=True, text=True)
    files = listed.stdout.split() if listed.returncode == 0 else (  # not a git checkout: the source tree
        ["pyproject.toml", "README.md"] + [str(p.relative_to(REPO)) for p in (REPO / "anomclip").rglob("*")
                                           if p.is_file() and "__pycache__" not in p.parts])
    for rel in files:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, src / rel)
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(dist),
         str(src)], cwd=tmp)
    wheel = next(dist.glob("anomclip-*.whl"))
    env_dir = tmp / "fresh"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    site = run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)], cwd=tmp)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env.update(MPLBACKEND="Agg", ANOMCLIP_CACHE=str(tmp / "cache"))
    work = tmp / "elsewhere"
    work.mkdir()
    return {"wheel": wheel, "py": py, "bin": env_dir / "bin", "env": env, "work": work}


def test_the_wheel_holds_every_subpackage_and_the_reference_table(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    packages = {str(p.parent.relative_to(REPO)) for p in (REPO / "anomclip").rglob("__init__.py")}
    assert packages >= {"anomclip", "anomclip/model", "anomclip/methods", "anomclip/data", "anomclip/engine",
                        "anomclip/book"}
    for pkg in packages:
        assert f"{pkg}/__init__.py" in names, pkg
    assert "anomclip/book/reference/paper_results.csv" in names


def test_synth_train_eval_predict_and_the_api_run_from_the_installed_wheel(installed):
    b, env, work = installed["bin"], installed["env"], installed["work"]
    where = run([str(installed["py"]), "-c", "import anomclip; print(anomclip.__file__)"], cwd=work, env=env).stdout
    assert str(REPO) not in where and "site-packages" in where
    run([str(b / "anomclip"), "synth", "--out", "data"], cwd=work, env=env)
    run([str(b / "anomclip"), "train", "--data", "data/textures", "--out", "p.pt", "--epochs", "1"], cwd=work, env=env)
    run([str(b / "anomclip"), "eval", "--data", "data/objects", "--checkpoint", "p.pt", "--out", "r.json"],
        cwd=work, env=env)
    doc = json.loads((work / "r.json").read_text())
    assert set(doc["categories"]) and 0.0 <= doc["mean"]["pixel_auroc"] <= 1.0
    image = next((work / "data" / "objects").rglob("*.png"))
    run([str(b / "anomclip"), "predict", "--checkpoint", "p.pt", "--out", "pred", str(image)], cwd=work, env=env)
    assert (work / "pred" / "scores.json").is_file()
    api = ("from anomclip import AnomalyCLIP, DataSpec, get_recipe, run_experiment, smoke\n"
           "from anomclip.book.reference import paper_value\n"
           "exp = run_experiment(smoke('clip'), None, [DataSpec('data/objects', 'objects')], 'results',"
           " progress=False, device='cpu')\n"
           "print(round(exp.results['objects']['mean']['pixel_auroc'], 6), paper_value(1, 'MVTec AD', 'pixel_auroc'))")
    out = run([str(installed["py"]), "-c", api], cwd=work, env=env).stdout.split()
    assert 0.0 <= float(out[0]) <= 1.0 and abs(float(out[1]) - 0.911) < 1e-9


def test_the_book_from_a_wheel_says_in_one_line_that_it_needs_a_checkout(installed):
    proc = run([str(installed["bin"] / "anomclip"), "book"], cwd=installed["work"], env=installed["env"], check=False)
    assert proc.returncode == 2
    assert "checkout" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
