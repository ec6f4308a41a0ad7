"""The researcher's way in, end to end: JupyterLab opens a chapter, runs it, a control is changed,
the figure changes — in headless Chromium, as a person would use it.

    python tools/check_lab.py [--chapter 02_attention] [--screenshot docs/lab-screenshot.png]

Starts ``jupyter lab`` on a free local port with the project's settings (``jupyter/``: ``.py``
chapters open as notebooks), opens a copy of the chapter (so Lab's autosave never touches the
committed file), runs all its cells, checks that no cell printed a traceback, moves the first
slider of the chapter's live controls one step and waits until the figure under it is redrawn.
Exit code 0 when all of that happened, 1 (with the step that failed) otherwise. Run it after the
chapters have been executed once (``make test`` / ``make book``): the chapter then reads its runs
from the run store instead of training them.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COPY = "lab_check.py"  # not a chapter name (NN_*.py): the book never picks it up


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(port: int, tmp: Path) -> subprocess.Popen:
    env = dict(os.environ, JUPYTER_CONFIG_PATH=str(REPO / "jupyter"), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
               MPLBACKEND="module://matplotlib_inline.backend_inline")
    cmd = [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
           "--IdentityProvider.token=", "--ServerApp.password=", f"--ServerApp.root_dir={REPO}",
           "--LabApp.expose_app_in_browser=True", f"--LabApp.user_settings_dir={tmp / 'settings'}",
           f"--LabApp.workspaces_dir={tmp / 'workspaces'}"]
    if hasattr(os, "getuid") and os.getuid() == 0:
        cmd.append("--allow-root")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=open(tmp / "lab.log", "w"), stderr=subprocess.STDOUT)
    for _ in range(120):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2)
            return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"check_lab: JupyterLab did not start; its log: {tmp / 'lab.log'}\n"
                     + (tmp / "lab.log").read_text()[-2000:])


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,1000", f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}"):
        opts.add_argument(flag)
    os.environ.setdefault("SE_OFFLINE", "true")
    driver = os.environ.get("CHROMEDRIVER", shutil.which("chromedriver") or "/usr/bin/chromedriver")
    return webdriver.Chrome(options=opts, service=Service(driver))


PANEL = "const w = [...window.jupyterapp.shell.widgets('main')].find(x => x.context && x.content && x.content.widgets);"


def check(url: str, screenshot: Path | None, timeout: float) -> list[str]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    done = []
    d = browser()
    try:
        wait = WebDriverWait(d, timeout, poll_frequency=0.5)
        d.get(url)
        wait.until(lambda d: d.execute_script("return !!(window.jupyterapp && window.jupyterapp.shell)"))
        wait.until(lambda d: d.execute_script(PANEL + "return !!(w && w.sessionContext.session"
                                              " && w.sessionContext.session.kernel"
                                              " && w.sessionContext.session.kernel.status === 'idle')"))
        factory = d.execute_script(PANEL + "return w.context.factoryName")
        if factory != "Jupytext Notebook" and "otebook" not in factory:
            raise AssertionError(f"the chapter opened in {factory!r}, not as a notebook")
        done.append(f"opened {COPY} as a notebook ({factory})")
        t0 = time.perf_counter()
        d.execute_script(PANEL + "window.jupyterapp.shell.activateById(w.id);"
                         "window.jupyterapp.commands.execute('notebook:run-all-cells'); return true")  # not awaited
        handle = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".widget-slider .noUi-handle") or None)[0]
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".widget-output img"))
        wait.until(lambda d: d.execute_script(PANEL + "return w.sessionContext.session.kernel.status === 'idle'"))
        errors = [e.text[:300] for e in d.find_elements(
            By.CSS_SELECTOR, ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            if "Traceback" in e.text or "Error" in e.text]
        if errors:
            raise AssertionError(f"a cell failed: {errors[0]}")
        done.append(f"ran every cell in {time.perf_counter() - t0:.0f} s, no traceback")
        image = lambda: d.find_element(By.CSS_SELECTOR, ".widget-output img").get_attribute("src")  # noqa: E731
        readout = lambda: d.find_element(By.CSS_SELECTOR, ".widget-slider .widget-readout").text  # noqa: E731
        before, value = image(), readout()
        d.execute_script("arguments[0].scrollIntoView({block: 'center'})", handle)
        handle.click()
        handle.send_keys(Keys.ARROW_RIGHT)
        if readout() == value:
            handle.send_keys(Keys.ARROW_LEFT, Keys.ARROW_LEFT)
        wait.until(lambda d: readout() != value and image() != before)
        done.append(f"moved a slider from {value} to {readout()}: the figure was redrawn")
        if screenshot:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            d.execute_script("arguments[0].scrollIntoView({block: 'start'})",
                             d.find_element(By.CSS_SELECTOR, ".widget-slider").find_element(
                                 By.XPATH, "ancestor::div[contains(@class,'jp-Cell')]"))
            time.sleep(1)
            d.save_screenshot(str(screenshot))
            done.append(f"screenshot: {screenshot}")
    finally:
        d.quit()
    return done


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chapter", default="02_attention", help="the chapter to open (a notebooks/NN_*.py stem)")
    ap.add_argument("--screenshot", type=Path, default=None)
    ap.add_argument("--timeout", type=float, default=900, help="seconds allowed for each step")
    args = ap.parse_args(argv)
    source = REPO / "notebooks" / f"{args.chapter}.py"
    if not source.is_file():
        print(f"check_lab: no chapter {source}", file=sys.stderr)
        return 2
    copy = REPO / "notebooks" / COPY
    shutil.copyfile(source, copy)
    tmp = Path(tempfile.mkdtemp(prefix="check-lab-"))
    port = free_port()
    lab = start_lab(port, tmp)
    try:
        for line in check(f"http://127.0.0.1:{port}/lab/tree/notebooks/{COPY}", args.screenshot, args.timeout):
            print(f"check_lab: {line}", flush=True)
    except Exception as exc:  # a step that did not happen: say which
        print(f"check_lab: FAILED: {type(exc).__name__}: {str(exc)[:500]}", file=sys.stderr)
        return 1
    finally:
        lab.terminate()
        try:
            lab.wait(timeout=20)
        except subprocess.TimeoutExpired:
            lab.kill()
        copy.unlink(missing_ok=True)
        shutil.rmtree(REPO / "notebooks" / ".ipynb_checkpoints", ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    print("check_lab: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
