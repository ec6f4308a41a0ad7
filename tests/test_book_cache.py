"""The book re-executes only the chapters whose inputs changed (anomclip.book.build.execute_all).

Tiny fake chapters in tmp_path, a fake package folder and a fake lock: what is executed is
recorded by a stand-in for ``execute_chapter`` (one test runs the real papermill path once).
"""
from __future__ import annotations

import json

import pytest

from anomclip.book import build as book


def code_cell(source: str, outputs=()) -> dict:
    return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": list(outputs),
            "source": source}


def write_notebook(path, cells) -> None:
    """An nbformat-4 notebook as JSON (what papermill writes), without importing nbformat."""
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, indent=1))

CHAPTER = """# %% tags=["parameters"]
profile = "smoke"
live = True

# %%
x = {n}
print(x)
"""


@pytest.fixture
def tree(tmp_path, monkeypatch):
    nbs, pkg = tmp_path / "notebooks", tmp_path / "pkg"
    nbs.mkdir()
    (pkg / "sub").mkdir(parents=True)
    for i, name in enumerate(("01_a", "02_b", "12_cost")):
        (nbs / f"{name}.py").write_text(CHAPTER.format(n=i))
    (pkg / "core.py").write_text("A = 1\n")
    (pkg / "sub" / "ref.csv").write_text("a,b\n1,2\n")
    (tmp_path / "requirements.lock").write_text("numpy==1\n")
    ran = []

    def fake_execute(source, out_dir, parameters=None, cwd=None, timeout=None):
        out = book.Path(out_dir) / f"{book.Path(source).stem}.ipynb"
        out.parent.mkdir(parents=True, exist_ok=True)
        write_notebook(out, [code_cell(book.Path(source).read_text())])
        ran.append(book.Path(source).stem)
        return out, 0.01

    monkeypatch.setattr(book, "execute_chapter", fake_execute)

    def build(force=False, **kw):
        ran.clear()
        book.execute_all("smoke", str(tmp_path / "data"), "cpu", force, notebooks_dir=nbs,
                         out_dir=tmp_path / "chapters", cwd=tmp_path, echo=lambda m: None, package_dir=pkg, **kw)
        return list(ran)

    return tmp_path, build


ALL = ["01_a", "02_b", "12_cost"]


def test_unchanged_tree_executes_nothing(tree):
    root, build = tree
    assert build() == ALL
    assert build() == []
    doc = json.loads((root / "results" / "smoke" / "book_timings.json").read_text())
    assert doc["cached"] == ALL and doc["executed"] == [] and set(doc["chapters_s"]) == set(ALL)


def test_one_chapter_edit_reexecutes_it_and_the_cost_chapter_only(tree):
    root, build = tree
    build()
    (root / "notebooks" / "02_b.py").write_text(CHAPTER.format(n=42))
    assert build() == ["02_b", "12_cost"]  # 12 reads the timings of the chapters before it
    (root / "notebooks" / "12_cost.py").write_text(CHAPTER.format(n=7))
    assert build() == ["12_cost"]
    assert build() == []


def test_the_cost_chapter_executes_after_every_other_chapter(tree):
    """Its table of seconds per chapter is complete: a chapter numbered after it executes before it,
    and an edit of that chapter re-executes the cost chapter too."""
    root, build = tree
    (root / "notebooks" / "13_c.py").write_text(CHAPTER.format(n=13))
    assert build() == ["01_a", "02_b", "13_c", "12_cost"]
    (root / "notebooks" / "13_c.py").write_text(CHAPTER.format(n=31))
    assert build() == ["13_c", "12_cost"]


@pytest.mark.parametrize("edit", ["package_py", "package_csv", "lock"])
def test_package_or_lock_edit_reexecutes_everything(tree, edit):
    root, build = tree
    build()
    target = {"package_py": root / "pkg" / "core.py", "package_csv": root / "pkg" / "sub" / "ref.csv",
              "lock": root / "requirements.lock"}[edit]
    target.write_text(target.read_text() + "# changed\n")
    assert build() == ALL


def test_package_cache_files_do_not_count(tree):
    root, build = tree
    build()
    (root / "pkg" / "__pycache__").mkdir()
    (root / "pkg" / "__pycache__" / "core.cpython-311.pyc").write_bytes(b"\0\1")
    (root / "pkg" / "notes.txt").write_text("not source")
    assert build() == []


def test_data_edit_reexecutes_everything(tree):
    root, build = tree
    d = root / "data" / "synthetic" / "textures"
    d.mkdir(parents=True)
    (d / "meta.json").write_text("{}")
    (d / "img.png").write_bytes(b"abc")
    build()
    (d / "img.png").write_bytes(b"abd")
    assert build() == ALL


def test_force_reexecutes_everything_and_parameters_are_keyed(tree):
    root, build = tree
    build()
    assert build(force=True) == ALL
    assert build() == []  # force itself is not part of the key
    assert build(backbone="ViT-B-16") == ALL


def test_a_notebook_with_an_error_or_without_a_key_reexecutes(tree):
    root, build = tree
    build()
    out = root / "chapters" / "02_b.ipynb"
    nb = json.loads(out.read_text())
    nb["cells"][0]["outputs"] = [{"output_type": "error", "ename": "E", "evalue": "x", "traceback": []}]
    out.write_text(json.dumps(nb))
    (root / "chapters" / "01_a.ipynb").unlink()
    assert build() == ["01_a", "02_b", "12_cost"]


def test_key_changes_with_each_input(tmp_path):
    src = tmp_path / "01_a.py"
    src.write_text("x = 1\n")
    base = dict(parameters={"profile": "smoke"}, package="p", lock=b"l", data={"d": "1"})
    k = book.build_key(src, **base)
    assert k == book.build_key(src, **base)
    for change in ({"parameters": {"profile": "paper"}}, {"package": "q"}, {"lock": b"m"}, {"data": {"d": "2"}},
                   {"earlier": {"01_a": "k"}}):
        assert book.build_key(src, **{**base, **change}) != k, change
    src.write_text("x = 2\n")
    assert book.build_key(src, **base) != k


def test_real_execution_stores_the_key_and_passes_live_false(tmp_path):
    """One real papermill run: the executed notebook carries the key, the kernel saw live=False,
    and the second build does not start a kernel."""
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    (nbs / "01_a.py").write_text(CHAPTER.replace("x = {n}", "x = 'live is %s' % live"))
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "m.py").write_text("")
    kw = dict(notebooks_dir=nbs, out_dir=tmp_path / "chapters", cwd=tmp_path, echo=lambda m: None, package_dir=pkg)
    assert list(book.execute_all("smoke", "data", "cpu", **kw)) == ["01_a"]
    out = tmp_path / "chapters" / "01_a.ipynb"
    import nbformat  # the real notebook, read as Jupyter reads it

    nb = nbformat.read(str(out), as_version=4)
    assert nb.metadata["anomclip"]["build_key"] == book.stored_key(out)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "live is False" in text
    assert book.execute_all("smoke", "data", "cpu", **kw) == {}


WAITS_FOR = """# %% tags=["parameters"]
profile = "smoke"
live = True

# %%
import os, pathlib, time
here, other = pathlib.Path("{me}.started"), pathlib.Path("{other}.started")
here.write_text(os.environ.get("OMP_NUM_THREADS", ""))
t0 = time.time()
while not other.exists():  # only a chapter executed side by side with this one gets past here
    assert time.time() - t0 < 90, "the other chapter never started"
    time.sleep(0.1)
{tail}
"""


def _waiting_pair(tmp_path, tail: str, echo=lambda m: None):
    """Chapters 01_a (ending with ``tail``) and 02_b, each waiting for the other; execute_all's keywords."""
    nbs, pkg = tmp_path / "notebooks", tmp_path / "pkg"
    nbs.mkdir()
    pkg.mkdir()
    (pkg / "m.py").write_text("")
    (nbs / "01_a.py").write_text(WAITS_FOR.format(me="a", other="b", tail=tail))
    (nbs / "02_b.py").write_text(WAITS_FOR.format(me="b", other="a", tail=""))
    return nbs, dict(notebooks_dir=nbs, out_dir=tmp_path / "chapters", cwd=tmp_path, echo=echo, package_dir=pkg)


@pytest.mark.slow
def test_jobs_execute_chapters_side_by_side_each_on_its_share_of_the_cores(tmp_path):
    """``jobs=2``: each of two chapters waits for the other to have started (run one after the
    other, the first would time out); both are keyed and timed, the cost chapter still last."""
    said = []
    nbs, kw = _waiting_pair(tmp_path, tail="", echo=said.append)
    (nbs / "12_cost.py").write_text(CHAPTER.replace("x = {n}", "x = sorted(p.name for p in __import__('pathlib')"
                                                                ".Path('.').glob('*.started'))"))
    timings = book.execute_all("smoke", "data", "cpu", jobs=2, **kw)
    assert set(timings) == {"01_a", "02_b", "12_cost"} and list(timings)[-1] == "12_cost"
    cores = max(1, (__import__("os").cpu_count() or 1) // 2)
    assert (tmp_path / "a.started").read_text() == (tmp_path / "b.started").read_text() == str(cores)
    for stem in timings:
        assert book.stored_key(tmp_path / "chapters" / f"{stem}.ipynb")
    assert any("2 at a time" in m for m in said)
    assert book.execute_all("smoke", "data", "cpu", jobs=2, **kw) == {}  # keyed as one at a time


@pytest.mark.slow
def test_a_failing_chapter_among_jobs_is_named(tmp_path):
    _, kw = _waiting_pair(tmp_path, tail="raise ValueError('broken on purpose')")
    with pytest.raises(book.ChapterError, match="chapter 01_a failed: ValueError: broken on purpose"):
        book.execute_all("smoke", "data", "cpu", jobs=2, **kw)
    doc = json.loads((tmp_path / "results" / "smoke" / "book_timings.json").read_text())
    assert doc["status"] == "failed" and doc["failed"] == "01_a"


# ---------------------------------------------------------------- the rendering, keyed
@pytest.fixture
def book_dir(tmp_path, monkeypatch):
    """A book folder with two executed chapters; jupyter-book replaced by a stand-in that writes
    index.html (or fails) and counts its runs."""
    b = tmp_path / "book"
    (b / "chapters").mkdir(parents=True)
    (b / "intro.md").write_text("# Intro\n")
    (b / "_config.yml").write_text("title: t\n")
    for name in ("01_a", "02_b"):
        write_notebook(b / "chapters" / f"{name}.ipynb",
                       [{"cell_type": "markdown", "metadata": {}, "source": name}])
    runs = []

    def fake_run(cmd, env=None):
        runs.append(cmd)
        if getattr(fake_run, "fail", False):
            return book.subprocess.CompletedProcess(cmd, 1)
        html = b / "_build" / "html"
        html.mkdir(parents=True, exist_ok=True)
        (html / "index.html").write_text(f"<p>build {len(runs)}</p>")
        return book.subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(book.subprocess, "run", fake_run)
    monkeypatch.setattr(book, "install_mathjax", lambda target: target)
    return b, runs, fake_run


def test_unchanged_book_is_not_rendered_again_and_any_change_or_force_is(book_dir):
    b, runs, _ = book_dir
    quiet = dict(echo=lambda s: None)
    book.build_html(b, **quiet)
    book.build_html(b, **quiet)
    assert len(runs) == 1 and "--all" in runs[0]  # the second build found nothing changed
    (b / "_build" / "html" / "extra.html").write_text("x")  # the build's own output does not count
    book.build_html(b, **quiet)
    assert len(runs) == 1
    nb = b / "chapters" / "02_b.ipynb"
    nb.write_bytes(nb.read_bytes().replace(b"02_b", b"02_c"))  # a re-executed chapter: new bytes
    book.build_html(b, **quiet)
    assert len(runs) == 2
    (b / "intro.md").write_text("# Intro, edited\n")
    book.build_html(b, **quiet)
    book.build_html(b, **quiet, force=True)
    assert len(runs) == 4


def test_a_failed_render_is_never_taken_as_up_to_date(book_dir):
    b, runs, fake_run = book_dir
    book.build_html(b, echo=lambda s: None)
    (b / "intro.md").write_text("# changed\n")
    fake_run.fail = True
    with pytest.raises(book.ChapterError, match="failed"):
        book.build_html(b, echo=lambda s: None)
    fake_run.fail = False
    book.build_html(b, echo=lambda s: None)
    assert len(runs) == 3  # the failed build left no key: rendered again


def test_html_key_reads_every_source_file_and_the_renderers_versions(book_dir, monkeypatch):
    b, _, _ = book_dir
    k = book.html_key(b)
    (b / "_static").mkdir()
    (b / "_static" / "book.css").write_text("p {}")
    k2 = book.html_key(b)
    assert k2 != k
    (b / "_mathjax").mkdir()
    (b / "_mathjax" / "x.js").write_text("x")  # copied from the environment: its version counts instead
    assert book.html_key(b) == k2
    monkeypatch.setattr(book, "RENDERERS", book.RENDERERS + ("no-such-renderer-package",))
    assert book.html_key(b) != k2
