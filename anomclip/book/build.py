"""Build the book: execute every chapter with papermill, then render it with Jupyter Book.

::

    python -m anomclip.book execute --profile smoke --data-root data --device auto [--force] [--only 04]
                                    [--backbone ViT-B-16 --pretrained openai]
    python -m anomclip.book html

``execute`` converts every ``notebooks/NN_*.py`` (jupytext py:percent, sorted by name) to a
notebook, runs it with papermill (kernel ``python3``, working directory = the repository root,
the template's parameters ``profile``, ``data_root``, ``device``, ``force``, ``backbone``,
``pretrained``) and writes the executed notebook to ``book/chapters/NN_*.ipynb``, with
papermill's injected-parameters cell tagged ``remove-cell`` like the chapter's own parameters
cell (the reader sees, in the provenance box, what actually ran). Per-chapter seconds are
printed and written to ``results/<profile>/book_timings.json`` after every chapter (status
``running``, then ``ok``); the cost chapter (``12_cost``), which shows them, executes last, so that its
table holds every other chapter's seconds. The first failing chapter
stops the build with a one-line message naming it (exit code 1).

Chapters re-execute only when something they depend on changed: each executed notebook
carries, in its metadata (``anomclip.build_key``), the sha256 of the chapter's source, the
package's source (``anomclip/**/*.py`` and the reference CSVs), ``requirements.lock``, the
parameters, the resolved device and the fingerprints of the data the profile reads; a chapter
whose stored key matches (and whose notebook has no error output) is not executed again
(``[book] NN: up to date``). ``--force`` (``make book FORCE=1``) re-executes every chapter. The
cost chapter (``12_cost``) reads the other chapters' timings, so it executes after all of them,
its key also holds their keys, and it re-executes whenever any other chapter executed in the
same build (their seconds changed). A chapter that is skipped
keeps its previous seconds in ``book_timings.json`` (listed under ``cached``).

``html`` regenerates ``book/_toc.yml`` from the executed chapters present (``intro.md`` as the
root, the chapters in the parts of :data:`PARTS`, then ``glossary.md`` under "Reference"), copies the MathJax installed with the
environment (MathJax 3.2.2 with its fonts, from the ``sphinx-mathjax-offline`` package) into
``book/_mathjax/mathjax`` so that the book renders formulas offline, and runs ``jupyter-book build book/``; the notebooks are not
executed again (``execute_notebooks: "off"``). The rendering is keyed too (:func:`html_key`: every
file of ``book/`` but the build's own output, and the versions of the tools that render it):
when nothing changed since the last build, the HTML is left as it is (``[book] HTML up to
date``); any change renders every page again (``--all``: sidebars and links stay consistent).
``html --force`` (``make book FORCE=1``) renders again in any case.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path


def find_checkout() -> Path | None:
    """The repository checkout that holds the chapters (``notebooks/`` and ``book/_config.yml``):
    the one this package lives in (an editable install), else the working directory; None when
    anomclip runs from an installed wheel outside a checkout."""
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        if (root / "notebooks").is_dir() and (root / "book" / "_config.yml").is_file():
            return root
    return None


#: the checkout (or, from a wheel outside one, where a checkout would be: nothing there exists)
REPO = find_checkout() or Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
BOOK = REPO / "book"
CHAPTERS = BOOK / "chapters"
CHAPTER_RE = re.compile(r"^[0-9][0-9]_.+\.py$")
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
#: tags papermill gives the cell it injects, and the tag Jupyter Book hides a cell with
INJECTED_TAG, HIDE_TAG = "injected-parameters", "remove-cell"
#: MathJax is copied outside ``_static``: Jupyter Book adds every .js file of ``_static`` to every page
MATHJAX_DIR = BOOK / "_mathjax" / "mathjax"


#: what a wheel installed outside a checkout says when asked for the book
NEEDS_CHECKOUT = ("the book's chapters are not part of an installed wheel: run it from a checkout of the repository "
                  "(git clone …, then make book)")


def _say(msg: str) -> None:
    print(msg, flush=True)


class ChapterError(RuntimeError):
    """A chapter failed to execute (the message names the chapter and the error)."""

    def __init__(self, chapter: str, message: str, output: Path | None = None):
        self.chapter, self.message, self.output = chapter, message, output
        super().__init__(f"chapter {chapter} failed: {message}"
                         + (f" (executed notebook with the traceback: {output})" if output else ""))


def chapters(notebooks_dir: str | Path = NOTEBOOKS, only: list[str] | None = None) -> list[Path]:
    """The chapter sources ``NN_*.py``, sorted; ``only`` keeps those whose name starts with one of them."""
    found = sorted(p for p in Path(notebooks_dir).iterdir() if p.is_file() and CHAPTER_RE.match(p.name))
    if only:
        keys = [str(o).strip() for o in only if str(o).strip()]
        found = [p for p in found if any(p.name.startswith(k) or p.stem == k for k in keys)]
        if not found:
            raise ChapterError(",".join(keys), f"no chapter in {notebooks_dir} matches")
    return found


def to_notebook(source: str | Path, out_path: str | Path) -> Path:
    """Convert a jupytext py:percent chapter to an .ipynb (with the python3 kernel)."""
    import jupytext

    nb = jupytext.read(str(source), fmt="py:percent")
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.metadata.setdefault("language_info", {"name": "python"})
    nb.metadata.pop("jupytext", None)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    jupytext.write(nb, str(out_path), fmt="ipynb")
    return out_path


def notebook_errors(path: str | Path) -> list[str]:
    """``"ename: evalue"`` of every error output in an executed notebook."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    errs = []
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.get("output_type") == "error":
                errs.append(f"{out.get('ename')}: {out.get('evalue')}")
    return errs


def hide_injected_parameters(path: str | Path) -> int:
    """Tag papermill's injected-parameters cell(s) of an executed notebook ``remove-cell``;
    returns how many cells were tagged."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    n = 0
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if INJECTED_TAG in tags and HIDE_TAG not in tags:
            cell["metadata"]["tags"] = [*tags, HIDE_TAG]
            n += 1
    if n:
        nbformat.write(nb, str(path))
    return n


#: the package whose source is part of every chapter's key
PACKAGE = Path(__file__).resolve().parents[1]
#: chapters that read what the other chapters wrote (the cost chapter reads their timings): they
#: execute after every other chapter, their key holds the keys of those executed before them, and
#: they re-execute whenever another chapter executed in the same build (its seconds changed)
DEPENDS_ON_EARLIER = ("12_",)


def execution_order(sources: list[Path]) -> list[Path]:
    """``sources`` in the order ``execute`` runs them: by name, the chapters that read the other
    chapters' timings (:data:`DEPENDS_ON_EARLIER`) last."""
    return sorted(sources, key=lambda p: p.name.startswith(DEPENDS_ON_EARLIER))
#: where the key is stored in an executed notebook's metadata
KEY_META = "anomclip"


def package_digest(package_dir: str | Path = PACKAGE) -> str:
    """sha256 of the package's source: every ``*.py`` and ``*.csv`` file (by relative path and bytes)."""
    package_dir = Path(package_dir)
    h = hashlib.sha256()
    files = sorted(p for p in package_dir.rglob("*") if p.is_file() and p.suffix in (".py", ".csv")
                   and "__pycache__" not in p.parts)
    for p in files:
        data = p.read_bytes()
        h.update(p.relative_to(package_dir).as_posix().encode() + b"\0" + len(data).to_bytes(8, "little") + data)
    return h.hexdigest()


def data_fingerprints(profile: str, data_root: str | Path, cwd: str | Path = REPO) -> dict[str, str]:
    """{dataset folder: fingerprint} of the data a profile reads: every folder with a ``meta.json``
    (``<data_root>/synthetic/*`` for the smoke profile, ``<data_root>/*`` for the paper profile),
    its ``meta.json`` and the digest of every file in it (remembered by the feature cache's digest
    index, so an unchanged tree costs one ``stat`` per file)."""
    from ..engine.features import FeatureCache

    root = Path(data_root)
    root = root if root.is_absolute() else Path(cwd) / root
    base = root / "synthetic" if profile == "smoke" else root
    if not base.is_dir():
        return {}
    try:
        index = FeatureCache.from_env().digests
    except Exception:  # no writable cache folder: digests for the life of the process
        from ..data.fingerprint import DigestIndex
        index = DigestIndex()
    found = {}
    for meta in sorted(base.glob("*/meta.json")):
        folder = meta.parent
        h = hashlib.sha256()
        for p in sorted(q for q in folder.rglob("*") if q.is_file() and not q.name.startswith(".")):
            h.update(p.relative_to(folder).as_posix().encode() + b"\0" + index.digest(p).encode() + b"\n")
        found[folder.relative_to(root).as_posix()] = h.hexdigest()
    try:
        index.flush()
    except Exception:
        pass
    return found


def build_key(source: str | Path, parameters: dict, package: str | None = None, lock: bytes = b"",
              data: dict | None = None, earlier: dict | None = None) -> str:
    """The sha256 a chapter's execution is keyed by: its source, the package digest
    (:func:`package_digest`), ``requirements.lock``'s bytes, its parameters, the data
    fingerprints and (for :data:`DEPENDS_ON_EARLIER`) the keys of the chapters before it."""
    h = hashlib.sha256()

    def add(tag: str, blob: bytes):
        h.update(tag.encode() + b"\0" + len(blob).to_bytes(8, "little") + blob)

    add("chapter", Path(source).read_bytes())
    add("package", (package if package is not None else package_digest()).encode())
    add("lock", lock)
    add("params", json.dumps(parameters, sort_keys=True, default=str).encode())
    add("python", sys.version.encode())
    add("data", json.dumps(data or {}, sort_keys=True).encode())
    add("earlier", json.dumps(earlier or {}, sort_keys=True).encode())
    return h.hexdigest()


def stored_key(path: str | Path) -> str | None:
    """The build key stored in an executed notebook (None: absent, unreadable or with an error output).

    Read as JSON (the executed notebooks are nbformat 4, written by papermill): importing
    nbformat costs 1.3–5 s (its JSON-schema validator compiles a grammar at import), most of an
    unchanged ``make book``, which only compares keys."""
    try:
        nb = json.loads(Path(path).read_text(encoding="utf-8"))
        cells, meta = nb["cells"], nb.get("metadata") or {}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    for cell in cells:
        if cell.get("cell_type") == "code" and any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return None
    return (meta.get(KEY_META) or {}).get("build_key")


def store_key(path: str | Path, key: str) -> None:
    """Write ``key`` into an executed notebook's metadata (atomically), in nbformat's own layout
    (sorted keys, indent 1): read and written as JSON, without importing nbformat."""
    from ..io import atomic_write_text

    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    nb.setdefault("metadata", {}).setdefault(KEY_META, {})["build_key"] = key
    atomic_write_text(path, json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n")


def execute_chapter(source: str | Path, out_dir: str | Path = CHAPTERS, parameters: dict | None = None,
                    cwd: str | Path = REPO, timeout: int | None = 1800) -> tuple[Path, float]:
    """Execute one chapter; returns ``(executed notebook, seconds)`` or raises :class:`ChapterError`."""
    import papermill as pm

    source = Path(source)
    out_dir = Path(out_dir)
    out = out_dir / f"{source.stem}.ipynb"
    src_nb = out_dir / ".src" / f"{source.stem}.ipynb"
    to_notebook(source, src_nb)
    parameters = {"live": False, **(parameters or {})}  # the built book draws static figures
    old = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = INLINE_BACKEND  # figures inline even when make exports Agg
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(src_nb), str(out), parameters=parameters, kernel_name="python3",
                            cwd=str(cwd), progress_bar=False, log_output=False, execution_timeout=timeout,
                            report_mode=False)
    except pm.PapermillExecutionError as e:
        raise ChapterError(source.stem, f"{e.ename}: {str(e.evalue).splitlines()[0] if e.evalue else ''} "
                                        f"(cell {e.exec_count})", out) from None
    except Exception as e:  # kernel died, timeout, bad notebook…
        raise ChapterError(source.stem, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                           out if out.exists() else None) from None
    finally:
        if old is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = old
    seconds = time.perf_counter() - t0
    hide_injected_parameters(out)
    errs = notebook_errors(out)
    if errs:
        raise ChapterError(source.stem, errs[0], out)
    return out, seconds


def execute_all(profile: str = "smoke", data_root: str = "data", device: str = "auto", force: bool = False,
                only: list[str] | None = None, notebooks_dir: str | Path = NOTEBOOKS,
                out_dir: str | Path = CHAPTERS, cwd: str | Path = REPO, echo=None, backbone: str | None = None,
                pretrained: str | None = None, package_dir: str | Path = PACKAGE,
                lock_file: str | Path | None = None, jobs: int = 1) -> dict:
    """Execute the chapters in order, skipping those whose build key is unchanged (unless
    ``force``); writes ``<cwd>/results/<profile>/book_timings.json``. Returns {chapter: seconds}
    of the chapters executed this time.

    ``jobs`` > 1 executes that many chapters side by side (each kernel with its share of the
    cores), the cost chapter still last. Chapters share runs safely: the run store and the
    feature cache lock what one process computes, and another waits and reuses it."""
    echo = echo or _say
    out_dir = Path(out_dir)
    params = {"profile": profile, "data_root": str(data_root), "device": device, "force": bool(force),
              "backbone": backbone, "pretrained": pretrained}
    try:
        from ..engine.loading import resolve_device
        resolved = resolve_device(device)
    except Exception:
        resolved = device
    keyed = {**{k: v for k, v in params.items() if k != "force"}, "live": False, "resolved_device": resolved}
    package = package_digest(package_dir)
    lock_file = Path(lock_file) if lock_file else Path(cwd) / "requirements.lock"
    lock = lock_file.read_bytes() if lock_file.is_file() else b""
    timings: dict[str, float] = {}
    cached: list[str] = []
    keys: dict[str, str] = {}
    t_all = time.perf_counter()
    timings_path = Path(cwd) / "results" / profile / "book_timings.json"
    try:
        prev = json.loads(timings_path.read_text()).get("chapters_s", {})
    except (OSError, ValueError):
        prev = {}

    def write(status: str, failed: str | None = None):
        timings_path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"profile": profile, "device": device, "force": bool(force), "status": status, "failed": failed,
               "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
               # chapters not executed this time (up to date, or not in --only) keep their seconds
               "chapters_s": {**prev, **{k: round(v, 1) for k, v in timings.items()}},
               "executed": sorted(timings), "cached": cached,
               "total_s": round(time.perf_counter() - t_all, 1)}
        timings_path.write_text(json.dumps(doc, indent=1) + "\n")

    def key_of(src: Path) -> str:
        earlier = dict(keys) if src.name.startswith(DEPENDS_ON_EARLIER) else None
        return build_key(src, keyed, package, lock, data_fingerprints(profile, data_root, cwd), earlier)

    def done(src: Path, seconds: float) -> None:
        keys[src.stem] = key_of(src)  # the data as the chapter left it (the first one generates it)
        store_key(out_dir / f"{src.stem}.ipynb", keys[src.stem])
        timings[src.stem] = seconds
        write("running")  # a later chapter (the cost chapter) reads the times of the earlier ones
        echo(f"[book] {src.stem}: {seconds:.1f} s")

    def up_to_date(src: Path) -> bool:
        """Whether the executed notebook carries the key the chapter has now (then it is counted cached)."""
        out = out_dir / f"{src.stem}.ipynb"
        if force or not out.is_file():
            return False
        key = stored_key(out)
        if key != key_of(src):
            return False
        keys[src.stem] = key
        cached.append(src.stem)
        echo(f"[book] {src.stem}: up to date")
        return True

    pending: list[Path] = []  # chapters to execute, in order
    for src in execution_order(chapters(notebooks_dir)):
        if only and src not in chapters(notebooks_dir, only):
            key = stored_key(out_dir / f"{src.stem}.ipynb")  # not asked for: its notebook as it is
            if key:
                keys[src.stem] = key
            continue
        if src.name.startswith(DEPENDS_ON_EARLIER):
            pending.append(src)  # decided once the others ran (their keys and seconds)
            continue
        if not up_to_date(src):
            pending.append(src)
    first = [s_ for s_ in pending if not s_.name.startswith(DEPENDS_ON_EARLIER)]
    last = [s_ for s_ in pending if s_.name.startswith(DEPENDS_ON_EARLIER)]
    try:
        for src, seconds in _execute_many(first, out_dir, params, cwd, jobs, echo):
            done(src, seconds)
        for src in last:
            if not timings and up_to_date(src):  # an earlier chapter that just ran changed its seconds
                continue
            echo(f"[book] {src.stem} …")
            _, seconds = execute_chapter(src, out_dir, params, cwd)
            done(src, seconds)
    except ChapterError as e:
        write("failed", e.chapter)
        raise
    write("ok")
    echo(f"[book] {len(timings)} chapter{'' if len(timings) == 1 else 's'} executed, {len(cached)} up to date, in "
         f"{time.perf_counter() - t_all:.1f} s → {out_dir} (timings: {timings_path})")
    return timings


def _execute_in_worker(source: Path, out_dir: Path, parameters: dict, cwd: Path, threads: int):
    """:func:`execute_chapter` in a worker process, its kernel on ``threads`` cores; returns
    ``(seconds, None)`` or ``(None, (chapter, message, output))``."""
    os.environ["OMP_NUM_THREADS"] = str(threads)  # the kernel's torch takes its share, no more
    try:
        return execute_chapter(source, out_dir, parameters, cwd)[1], None
    except ChapterError as e:
        return None, (e.chapter, e.message, e.output)


def _execute_many(sources: list[Path], out_dir: Path, parameters: dict, cwd: Path, jobs: int, echo):
    """Execute ``sources``, ``jobs`` at a time; yields ``(source, seconds)`` as each finishes and
    raises the first :class:`ChapterError` (the chapters still running are let finish)."""
    if jobs <= 1 or len(sources) <= 1:
        for src in sources:
            echo(f"[book] {src.stem} …")
            yield src, execute_chapter(src, out_dir, parameters, cwd)[1]
        return
    import concurrent.futures as cf
    import multiprocessing as mp

    threads = max(1, (os.cpu_count() or 1) // jobs)
    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = {}
        for src in sources:
            futures[pool.submit(_execute_in_worker, src, out_dir, parameters, cwd, threads)] = src
        echo(f"[book] {len(sources)} chapters, {jobs} at a time …")
        failed = None
        for fut in cf.as_completed(futures):
            seconds, err = fut.result()
            if err is not None:
                failed = failed or err
                for other in futures:
                    other.cancel()  # those not started yet
                continue
            if failed is None:
                yield futures[fut], seconds
        if failed is not None:
            raise ChapterError(*failed)


def read_timings(profile: str = "smoke", cwd: str | Path = REPO):
    """The per-chapter seconds of the latest ``execute`` of ``profile`` as a DataFrame (chapter,
    seconds) with its ``attrs`` status, device and total; None when no timings were written."""
    import pandas as pd

    path = Path(cwd) / "results" / profile / "book_timings.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    frame = pd.DataFrame(sorted(doc.get("chapters_s", {}).items()), columns=["chapter", "seconds"])
    frame.attrs.update({k: doc.get(k) for k in ("status", "device", "created", "failed")})
    frame.attrs["total_s"] = float(frame["seconds"].sum())
    return frame


#: the book's parts (caption, first and last chapter number), as the landing page's reading guide
#: describes them; a chapter numbered past the last part joins it
PARTS = (("The method", 1, 3), ("The main results", 4, 5), ("Ablations, one choice at a time", 6, 11),
         ("Cost, failures and the released code", 12, 14), ("After AnomalyCLIP", 15, 15),
         ("Questions people ask", 16, 99))


def write_toc(book_dir: str | Path = BOOK) -> Path:
    """``_toc.yml`` for the executed chapters present in ``book/chapters``, in :data:`PARTS`
    (chapter numbering runs on across parts), then the glossary."""
    book_dir = Path(book_dir)
    found = sorted(p for p in (book_dir / "chapters").glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise ChapterError("html", f"no executed chapters in {book_dir / 'chapters'}: run "
                                   "`python -m anomclip.book execute` first")
    lines = ["# Generated by `python -m anomclip.book html` from the executed chapters; do not edit.",
             "format: jb-book", "root: intro", "parts:"]
    for caption, first, last in PARTS:
        mine = [p for p in found if first <= int(p.name[:2]) <= last]
        if mine:
            lines += [f"  - caption: {caption}", "    numbered: true", "    chapters:"]
            lines += [f"      - file: chapters/{p.stem}" for p in mine]
    if (book_dir / "glossary.md").is_file():  # the terms the chapters link to, after them
        lines += ["  - caption: Reference", "    chapters:", "      - file: glossary"]
    toc = book_dir / "_toc.yml"
    toc.write_text("\n".join(lines) + "\n")
    return toc


#: what the book needs of MathJax 3 (tested: nothing else is requested by a page): the TeX input
#: with CommonHTML output, its web fonts, and the TeX extensions it loads on demand
MATHJAX_FILES = ("tex-chtml.js", "output/chtml/fonts/woff-v2", "input/tex/extensions")


def install_mathjax(target: str | Path = MATHJAX_DIR) -> Path:
    """Copy MathJax 3 (:data:`MATHJAX_FILES`, with its TeX fonts) from the ``sphinx-mathjax-offline``
    package (installed by ``make env``; used as a source of files only, not as a Sphinx
    extension) to ``target`` (served as the book's ``_static/mathjax``); returns the path of
    ``tex-chtml.js``. A target from an older MathJax (no ``tex-chtml.js``) is replaced."""
    import importlib.metadata as md
    import shutil

    try:
        dist = md.distribution("sphinx-mathjax-offline")
    except md.PackageNotFoundError:
        raise ChapterError("html", "MathJax is not installed: run `make env` (it installs sphinx-mathjax-offline)") from None
    src = Path(dist.locate_file("sphinx-mathjax-offline/static/mathjax"))
    target = Path(target)
    if not all((target / rel).exists() for rel in MATHJAX_FILES):
        if target.exists():
            shutil.rmtree(target)
        for rel in MATHJAX_FILES:
            s, t = src / rel, target / rel
            if not s.exists():
                raise ChapterError("html", f"MathJax is incomplete: {s} is missing (reinstall sphinx-mathjax-offline)")
            t.parent.mkdir(parents=True, exist_ok=True)
            if s.is_dir():
                shutil.copytree(s, t)
            else:
                shutil.copy2(s, t)
    return target / "tex-chtml.js"


#: the tools whose versions are part of the HTML's key
RENDERERS = ("jupyter-book", "sphinx", "myst-nb", "myst-parser", "sphinx-book-theme", "pydata-sphinx-theme",
             "sphinx-mathjax-offline")
HTML_KEY = Path("_build") / "anomclip-html-key"


def html_key(book_dir: str | Path = BOOK) -> str:
    """sha256 of what the rendered book is made from: every file under ``book_dir`` (name and
    bytes) except ``_build/`` and the MathJax copy, and the versions of :data:`RENDERERS`."""
    import importlib.metadata as md

    book_dir = Path(book_dir)
    h = hashlib.sha256()
    for p in sorted(book_dir.rglob("*")):
        rel = p.relative_to(book_dir)
        if rel.parts[0] in ("_build", "_mathjax") or not p.is_file():
            continue
        h.update(f"file {rel.as_posix()} {p.stat().st_size}\n".encode())
        h.update(p.read_bytes())
    for name in RENDERERS:
        try:
            version = md.version(name)
        except md.PackageNotFoundError:
            version = "-"
        h.update(f"tool {name} {version}\n".encode())
    return h.hexdigest()


def build_html(book_dir: str | Path = BOOK, echo=None, force: bool = False) -> Path:
    """Regenerate the table of contents and run ``jupyter-book build`` (unless the book's sources
    are those of the last build: :func:`html_key`); raises on failure."""
    echo = echo or _say
    book_dir = Path(book_dir)
    toc = write_toc(book_dir)
    install_mathjax(book_dir / "_mathjax" / "mathjax")
    index = book_dir / "_build" / "html" / "index.html"
    key_file = book_dir / HTML_KEY
    key = html_key(book_dir)
    if not force and index.is_file() and key_file.is_file() and key_file.read_text().strip() == key:
        echo(f"[book] HTML up to date (the book's sources are those of the last build): {index}")
        return index
    key_file.unlink(missing_ok=True)  # a build that fails half-way is never taken as up to date
    missing = [p.stem for p in chapters() if not (book_dir / "chapters" / f"{p.stem}.ipynb").is_file()]
    if missing:
        echo(f"[book] warning: not executed yet, left out of the book: {', '.join(missing)} "
             "(run `python -m anomclip.book execute`)")
    n = sum(1 for line in toc.read_text().splitlines() if "file:" in line)
    echo(f"[book] {toc}: {n} chapter{'' if n == 1 else 's'}")
    exe = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "jupyter_book"]
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run(cmd + ["build", str(book_dir), "--all"], env=env)
    if proc.returncode != 0 or not index.is_file():
        raise ChapterError("html", f"`jupyter-book build {book_dir}` failed (exit code {proc.returncode})")
    from ..io import atomic_write_text

    atomic_write_text(key_file, key + "\n")
    echo(f"[book] open {index}")
    return index


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m anomclip.book", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("execute", help="execute every chapter (papermill) into book/chapters")
    ex.add_argument("--profile", default="smoke", choices=["smoke", "paper"])
    ex.add_argument("--data-root", default="data")
    ex.add_argument("--device", default="auto")
    ex.add_argument("--force", action="store_true",
                    help="re-execute every chapter, and recompute results even when a matching file exists")
    ex.add_argument("--backbone", default=None, help="an open_clip model name (default: the profile's)")
    ex.add_argument("--pretrained", default=None, help="weights tag or file for --backbone (default: the profile's)")
    ex.add_argument("--jobs", type=int, default=1,
                    help="chapters executed side by side (each on its share of the cores; default 1)")
    ex.add_argument("--only", action="append", default=None,
                    help="chapter number or name prefix (repeatable or comma-separated), e.g. --only 04")
    ht = sub.add_parser("html", help="regenerate _toc.yml and run jupyter-book build book/ (unless unchanged)")
    ht.add_argument("--force", action="store_true", help="render again even when the book's sources are unchanged")
    args = ap.parse_args(argv)
    if find_checkout() is None:
        print(NEEDS_CHECKOUT, file=sys.stderr)
        return 2
    try:
        if args.cmd == "execute":
            only = [o for x in args.only for o in x.split(",")] if args.only else None
            if args.jobs < 1:
                print(f"error: --jobs must be at least 1, got {args.jobs}", file=sys.stderr)
                return 2
            execute_all(args.profile, args.data_root, args.device, args.force, only, backbone=args.backbone,
                        pretrained=args.pretrained, jobs=args.jobs)
        else:
            build_html(force=args.force)
    except ChapterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
