"""Open the built book in headless Chromium and check it as a reader would.

Visits every page of ``book/_build/html`` and fails (exit 1) on a missing image, a broken
internal link or anchor, an error output cell, a formula MathJax did not typeset, or any
request that leaves the machine (every URL the browser asks for must be a local file; the
browser is also kept from resolving any host name); takes the README's screenshot.

    python tools/check_book.py [--html book/_build/html] [--screenshot docs/book-screenshot.png]
"""
from __future__ import annotations

import argparse
import json
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


def outside_requests(d) -> list[str]:
    """URLs of the requests the page made (since the last call) that are not local files."""
    urls = []
    for entry in d.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            url = msg["params"]["request"]["url"]
            if urlparse(url).scheme not in LOCAL_SCHEMES:
                urls.append(url)
    return list(dict.fromkeys(urls))


def math_unrendered(d, wait_s: float = 5.0) -> int:
    """How many formulas of the page MathJax has not typeset after ``wait_s`` (0 = all, or none)."""
    import time

    t_end = time.time() + wait_s
    while True:
        n_math, n_done = d.execute_script(JS_MATH)
        if n_math == 0 or n_done >= n_math or time.time() > t_end:
            return max(0, n_math - n_done)
        time.sleep(0.25)


def check(html: Path, screenshot: Path | None, shot_page: str) -> list[str]:
    pages = sorted(p for p in html.rglob("*.html") if "_static" not in p.parts and "_sources" not in p.parts
                   and p.name not in ("genindex.html", "search.html"))
    if not pages:
        return [f"no HTML pages under {html} (run `make book` first)"]
    problems = []
    d = driver()
    try:
        for page in pages:
            d.get(page.resolve().as_uri())
            rel = page.relative_to(html)
            for src in d.execute_script(JS_BROKEN_IMAGES):
                problems.append(f"{rel}: missing image {src}")
            for err in d.execute_script(JS_ERRORS):
                problems.append(f"{rel}: error output: {err!r}")
            if (n := math_unrendered(d)):
                problems.append(f"{rel}: {n} formula(s) not typeset by MathJax")
            for url in outside_requests(d):
                problems.append(f"{rel}: request leaves the machine: {url}")
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
    args = ap.parse_args()
    problems = check(args.html, args.screenshot, args.shot_page)
    for p in problems:
        print(f"FAIL {p}")
    print(f"book check: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
