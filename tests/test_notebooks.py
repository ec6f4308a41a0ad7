"""Every chapter of the book executes with the smoke profile, without an error output.

One test per ``notebooks/NN_*.py`` (``pytest -m notebooks``). The chapters run in order from
the repository root as ``make book`` runs them. They write into the checkout only what ``make
html`` reads afterwards: the executed notebooks in ``book/chapters`` and the run store
``results/smoke`` (later chapters, and a later ``make book``, re-use its matching runs: they are
keyed by content, not by path). The synthetic data and the feature cache go to a temporary
folder. Set ``ANOMCLIP_BOOK_TMP=1`` to put the chapters and the run store there too.
"""
from __future__ import annotations

import os
import subprocess

import pytest

from anomclip.book import build as book

CHAPTER_FILES = book.chapters()


@pytest.fixture(scope="session")
def book_workdir(tmp_path_factory):
    if os.environ.get("ANOMCLIP_BOOK_TMP"):
        return tmp_path_factory.mktemp("book")
    return book.REPO  # results/smoke and book/chapters: what `make html` reads


@pytest.fixture(scope="session")
def scratch(tmp_path_factory):
    """The chapters' synthetic data and feature cache: nothing `make html` reads."""
    return tmp_path_factory.mktemp("chapter-data")


@pytest.mark.notebooks
@pytest.mark.parametrize("source", CHAPTER_FILES, ids=[p.stem for p in CHAPTER_FILES])
def test_chapter_executes(source, book_workdir, scratch, monkeypatch):
    monkeypatch.setenv("ANOMCLIP_CACHE", os.environ.get("ANOMCLIP_CACHE", str(scratch / "features")))
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    params = {"profile": "smoke", "data_root": str(scratch / "data"), "device": "cpu", "force": False}
    try:
        out_dir = book_workdir / "chapters" if os.environ.get("ANOMCLIP_BOOK_TMP") else book.CHAPTERS
        out, seconds = book.execute_chapter(source, out_dir, params, cwd=book_workdir)
    except book.ChapterError as e:
        pytest.fail(str(e), pytrace=False)
    assert out.is_file()
    assert book.notebook_errors(out) == []


def test_chapters_found(tmp_path):
    """Chapters are the ``NN_*.py`` files, in numeric order; other files are left out."""
    for name in ("10_b.py", "02_a.py", "1_x.py", "02_a.ipynb", "README.md", "03_c.py", "ab_c.py", "04-d.py"):
        (tmp_path / name).write_text("")
    (tmp_path / "05_dir.py").mkdir()
    assert [p.name for p in book.chapters(tmp_path)] == ["02_a.py", "03_c.py", "10_b.py"]
    assert [p.name for p in book.chapters(tmp_path, only=["03", "10_b"])] == ["03_c.py", "10_b.py"]
    on_disk = {p.name for p in book.NOTEBOOKS.glob("[0-9][0-9]_*.py")}
    assert {p.name for p in CHAPTER_FILES} == on_disk and on_disk


def test_toc(tmp_path):
    (tmp_path / "chapters").mkdir()
    for n in ("01_a.ipynb", "10_b.ipynb", "02_c.ipynb"):
        (tmp_path / "chapters" / n).write_text("{}")
    toc = book.write_toc(tmp_path).read_text()
    assert "root: intro" in toc and "caption: The method" in toc and "caption: Ablations" in toc
    assert "caption: The main results" not in toc  # a part without a chapter present is left out
    assert toc.index("chapters/01_a") < toc.index("chapters/02_c") < toc.index("chapters/10_b")
    assert "glossary" not in toc
    (tmp_path / "glossary.md").write_text("# Glossary\n")  # the terms page comes after the chapters
    toc = book.write_toc(tmp_path).read_text()
    assert toc.index("chapters/10_b") < toc.index("caption: Reference") < toc.index("file: glossary")


def test_chapters_run_from_the_repository_root(tmp_path, monkeypatch):
    """JupyterLab starts a chapter's kernel in notebooks/: open_chapter's relative data/results
    paths must still name the repository's folders (as under papermill, cwd = the root)."""
    from anomclip.book.chapter import run_from_checkout

    monkeypatch.chdir(book.REPO / "notebooks")
    assert run_from_checkout() == book.REPO
    assert os.getcwd() == str(book.REPO)
    monkeypatch.chdir(tmp_path)  # anywhere else (a temporary book folder): left alone
    assert run_from_checkout() == tmp_path.resolve() and os.getcwd() == str(tmp_path)


def test_lab_opens_py_chapters_as_notebooks():
    """make lab points JUPYTER_CONFIG_PATH at jupyter/, whose default setting override makes the
    Jupytext notebook the default viewer of .py files."""
    import json

    cfg = json.loads((book.REPO / "jupyter" / "labconfig" / "default_setting_overrides.json").read_text())
    assert cfg["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]["python"] == "Jupytext Notebook"
    # what `make lab` runs (make -n prints the command without running it)
    cmd = subprocess.run(["make", "-n", "-s", "lab"], cwd=book.REPO, capture_output=True, text=True).stdout
    assert f"JUPYTER_CONFIG_PATH={book.REPO / 'jupyter'}" in cmd and " lab " in cmd
    assert ("--allow-root" in cmd) == (os.getuid() == 0)  # jupyter refuses root without it
