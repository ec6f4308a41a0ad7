"""Open the built book in headless Chromium and check it as a reader would.

Visits every page of ``book/_build/html`` at 1280 px and fails (exit 1) on a missing image, a
broken internal link or anchor, an error output cell, a formula MathJax did not typeset, any
request that leaves the machine (every URL the browser asks for must be a local file; the
browser is also kept from resolving any host name), any local file a page asks for and does not
find (a 404: e.g. a MathJax font), any table or code block wider than its column (cut off or
scrolled: ``scrollWidth > clientWidth``), any "(s)" plural in the text, and, on a smoke-run
page, any table of our numbers that names a paper dataset a smoke domain stands in for without
saying "stands in for"; takes the README's screenshot.

Also fails on any visible table taller than 1,500 px (a long table folds behind a toggle, as
chapter 4's appendix does: a folded table is not visible).

Before the browser, it reads the executed chapters (``book/chapters/*.ipynb``) and fails on any
figure whose legend covers plotted data or gives one look (colour, dash, marker) to two labels:
every figure a chapter shows carries that check beside its PNG (:mod:`anomclip.book.figcheck`),
and a book whose figures carry none fails too; and on what a page must not show
(:mod:`anomclip.book.pagecheck`): a bare ``None`` output, a parameters cell's code, and on a
smoke-run page a label of our run that says "paper".

    python tools/check_book.py [--html book/_build/html] [--notebooks book/chapters]
                               [--screenshot docs/book-screenshot.png]
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

JS_BROKEN_IMAGES = "return [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
JS_LINKS = "return [...document.querySelectorAll('a[href]')].map(a => a.href)"
JS_MATH = """return [document.querySelectorAll('span.math, div.math').length,
    document.querySelectorAll('.MathJax, .MathJax_CHTML, .MathJax_Display, mjx-container').length]"""
#: URL schemes that stay on the machine
LOCAL_SCHEMES = ("file", "data", "blob", "about", "chrome", "chrome-untrusted", "devtools")
#: tables and code blocks wider than their column: own content overflowing (scrollWidth >
#: clientWidth) or the element sticking out of the article's column; hidden ones are skipped
JS_WIDE = """const col = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
    const right = col.getBoundingClientRect().right;
    return [...col.querySelectorAll('table, pre')].filter(e => e.offsetParent !== null)
      .filter(e => e.scrollWidth > e.clientWidth + 1 || e.getBoundingClientRect().right > right + 1)
      .map(e => e.tagName.toLowerCase() + ' ' + e.scrollWidth + ' px in ' + e.clientWidth + ' px: '
                + e.innerText.replace(/\\s+/g, ' ').slice(0, 60))"""
#: the page's prose: the article's text without code, formulas and the navigation
JS_PROSE = """const col = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
    const c = col.cloneNode(true);
    c.querySelectorAll('pre, code, script, style, mjx-container, .MathJax, nav').forEach(e => e.remove());
    return c.innerText"""
#: the text of every visible table and its caption
JS_TABLES = """return [...document.querySelectorAll('table')].filter(e => e.offsetParent !== null)
    .map(t => t.innerText)"""
#: a smoke-run page says so in its caution box (anomclip.book.labels.caveat)
JS_SMOKE = """return [...document.querySelectorAll('.admonition-title')].some(e => e.innerText.trim() === 'Smoke run')"""
#: a word with "(s)" glued to it: "dataset(s)" (a unit "time (s)" has a space before it)
PLURAL_S = re.compile(r"[A-Za-z]{2,}\(s\)")
STANDS_IN = "stands in for"
#: what a table of our numbers says in its header
OURS = re.compile(r"\bours\b")


def plurals(text: str) -> list[str]:
    """The "(s)" plurals of a text ("2 dataset(s)" → ["dataset(s)"]), once each."""
    return list(dict.fromkeys(PLURAL_S.findall(text)))


def paper_names() -> tuple[str, ...]:
    """The paper's datasets that a smoke domain stands in for (the names smoke numbers must not wear alone)."""
    try:
        from anomclip.book.labels import SMOKE_STANDINS
        return tuple(dict.fromkeys(SMOKE_STANDINS.values()))
    except ImportError:  # the package is not installed: its current values
        return ("MVTec AD", "VisA")


def unlabelled_standins(table_text: str, names=None) -> list[str]:
    """The paper dataset names a table of our smoke numbers shows without "stands in for"
    (empty for a table without our numbers, or one that says what stands in for what)."""
    if not OURS.search(table_text) or STANDS_IN in table_text:
        return []
    return [n for n in (names or paper_names()) if n in table_text]


#: the tallest a visible table may be (px) before it must fold behind a toggle
TALL_PX = 1500
#: the height and first words of every visible table of the article (one inside a closed toggle,
#: a ``<details>`` such as MyST-NB's hide-output, is folded: not visible)
JS_TABLE_HEIGHTS = """const col = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
    return [...col.querySelectorAll('table')].filter(e => e.offsetParent !== null && !e.closest('details:not([open])'))
      .map(t => [Math.round(t.getBoundingClientRect().height), t.innerText.replace(/\\s+/g, ' ').slice(0, 60)])"""


def tall_tables(heights, limit: float = TALL_PX) -> list[str]:
    """The tables (``[height px, first words]`` of the visible ones: a folded table is not
    visible) taller than ``limit``, as lines for the report."""
    return [f"table {int(h)} px tall (over {int(limit)} px: fold it behind a toggle): {text!r}"
            for h, text in heights if h > limit]


JS_ERRORS = """return [...document.querySelectorAll('.output.traceback, .output.error, div.traceback')]
    .map(e => e.innerText.slice(0, 200))
    .concat(document.body.innerText.includes('Traceback (most recent call last)') ? ['Traceback text'] : [])"""


def driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    chromedriver = shutil.which("chromedriver")
    if not binary or not chromedriver:
        sys.exit("check_book: chromium and chromedriver are needed (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,900",
                 "--host-resolver-rules=MAP * ~NOTFOUND",
                 f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(options=opts, service=Service(chromedriver))


def requests(d) -> list[tuple[str, str | None]]:
    """(URL, the page that asked for it) of every request made since the last call, once each."""
    out = []
    for entry in d.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            doc = msg["params"].get("documentURL")
            out.append((msg["params"]["request"]["url"], doc.split("#")[0] if doc else None))
    return list(dict.fromkeys(out))


def outside_requests(urls) -> list[str]:
    """The URLs that are not local files."""
    return [u for u in urls if urlparse(u).scheme not in LOCAL_SCHEMES]


def missing_files(urls) -> list[str]:
    """The local files asked for that do not exist (a 404 of the offline book)."""
    return [u for u in urls if urlparse(u).scheme == "file" and not Path(unquote(urlparse(u).path)).exists()]


def math_unrendered(d, wait_s: float = 5.0) -> int:
    """How many formulas of the page MathJax has not typeset after ``wait_s`` (0 = all, or none)."""
    import time

    t_end = time.time() + wait_s
    while True:
        n_math, n_done = d.execute_script(JS_MATH)
        if n_math == 0 or n_done >= n_math or time.time() > t_end:
            return max(0, n_math - n_done)
        time.sleep(0.25)


def load(d, url: str, timeout: float = 60.0) -> None:
    """Open ``url`` and wait until its document is complete and has a body (a page caught while
    it is still being replaced has none, and the checks would fail on it)."""
    from selenium.webdriver.support.ui import WebDriverWait

    d.get(url)
    WebDriverWait(d, timeout, poll_frequency=0.2).until(
        lambda d: d.execute_script("return document.readyState === 'complete' && !!document.body"))


def figure_problems(notebooks: Path) -> list[str]:
    """Legends covering data or giving one look to two labels in the figures of the executed
    chapters under ``notebooks``, and what their pages must not show (:mod:`anomclip.book.pagecheck`)."""
    from anomclip.book.figcheck import figure_checks
    from anomclip.book.pagecheck import page_problems

    problems, checked = [], 0
    for nb in sorted(notebooks.glob("*.ipynb")):
        doc = json.loads(nb.read_text())
        problems += page_problems(nb.name, doc)
        for cell, check in figure_checks(doc):
            checked += 1
            if check.get("error"):
                problems.append(f"{nb.name} cell {cell}: figure not checked ({check['error']})")
            for clash in check.get("colour_clashes", []):
                problems.append(f"{nb.name} cell {cell}: one colour ({clash['colour']}) for "
                                + " and ".join(repr(lb) for lb in clash["labels"]) + " in one figure")
            for hit in check.get("legend_overlaps", []):
                entries = ", ".join(hit["legend"][:4]) + (", …" if len(hit["legend"]) > 4 else "")
                n = hit.get("count", 1)
                problems.append(f"{nb.name} cell {cell}: the legend ({entries}) covers {hit['kind']} "
                                f"{hit['artist']!r}{f' ×{n}' if n > 1 else ''} in {hit['axes']!r}")
    if not checked:
        problems.append(f"no figure under {notebooks} carries the legend check (chapters executed before "
                        "anomclip.book.figcheck? run `make book FORCE=1`)")
    print(f"checked the legends of {checked} figures")
    return problems


def check(html: Path, screenshot: Path | None, shot_page: str) -> list[str]:
    pages = sorted(p for p in html.rglob("*.html") if "_static" not in p.parts and "_sources" not in p.parts
                   and p.name not in ("genindex.html", "search.html"))
    if not pages:
        return [f"no HTML pages under {html} (run `make book` first)"]
    problems = []
    d = driver()
    try:
        for page in pages:
            load(d, page.resolve().as_uri())
            rel = page.relative_to(html)
            for src in d.execute_script(JS_BROKEN_IMAGES):
                problems.append(f"{rel}: missing image {src}")
            for err in d.execute_script(JS_ERRORS):
                problems.append(f"{rel}: error output: {err!r}")
            if (n := math_unrendered(d)):
                problems.append(f"{rel}: {n} formulas not typeset by MathJax")
            math_unrendered(d, wait_s=0.5)  # let MathJax ask for its fonts and extensions
            asked = requests(d)
            for url in outside_requests(dict.fromkeys(u for u, _ in asked)):  # any page: none may leave
                problems.append(f"{rel}: request leaves the machine: {url}")
            here = page.resolve().as_uri()  # a late request of the previous page is not blamed on this one
            for url in missing_files(dict.fromkeys(u for u, doc in asked if doc in (None, here))):
                problems.append(f"{rel}: local file not found (404): {url}")
            for wide in d.execute_script(JS_WIDE):
                problems.append(f"{rel}: wider than its column: {wide}")
            for tall in tall_tables(d.execute_script(JS_TABLE_HEIGHTS)):
                problems.append(f"{rel}: {tall}")
            for word in plurals(d.execute_script(JS_PROSE)):
                problems.append(f"{rel}: \"(s)\" plural: {word}")
            if d.execute_script(JS_SMOKE):
                for text in d.execute_script(JS_TABLES):
                    for name in unlabelled_standins(text):
                        problems.append(f"{rel}: smoke table labelled {name!r} without \"{STANDS_IN}\": "
                                        f"{text[:60]!r}")
            for href in d.execute_script(JS_LINKS):
                url = urlparse(href)
                if url.scheme != "file":
                    continue
                target = Path(unquote(url.path))
                if not target.exists():
                    problems.append(f"{rel}: broken link {href}")
                elif url.fragment and target == page.resolve():
                    if not d.execute_script("return document.getElementById(arguments[0]) !== null", unquote(url.fragment)):
                        problems.append(f"{rel}: broken anchor #{url.fragment}")
            print(f"checked {rel}")
        if screenshot is not None:
            target = next((p for p in pages if shot_page in p.name), pages[0])
            d.get(target.resolve().as_uri())
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            d.save_screenshot(str(screenshot))
            print(f"screenshot of {target.relative_to(html)} → {screenshot}")
    finally:
        d.quit()
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--html", default="book/_build/html", type=Path)
    ap.add_argument("--screenshot", default="docs/book-screenshot.png", type=Path)
    ap.add_argument("--shot-page", default="04_zero_shot")
    ap.add_argument("--notebooks", default="book/chapters", type=Path, help="the executed chapters")
    args = ap.parse_args()
    problems = figure_problems(args.notebooks) + check(args.html, args.screenshot, args.shot_page)
    for p in problems:
        print(f"FAIL {p}")
    print(f"book check: {len(problems)} {'problem' if len(problems) == 1 else 'problems'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
