"""Whole-page screenshots of chapters of a built book at 1280 px, as a reader sees them.

Each page is opened in headless Chromium (the book check's browser: nothing leaves the
machine), the window is made as tall as the page, and the page is saved as a JPEG at half size
(``--scale``), with its height in CSS pixels printed and written to ``heights.json``. Used for
the before/after pictures of a review (kept out of the repository: results/pages/ by default).

    python tools/shoot_pages.py --html book/_build/html --pages 04_zero_shot,08_losses,12_cost \\
        --out results/pages --suffix after
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from check_book import driver, load  # noqa: E402

WIDTH = 1280


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--html", default="book/_build/html", type=Path)
    ap.add_argument("--pages", required=True, help="comma-separated page names (04_zero_shot,…)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--suffix", default="", help="appended to each file name (before, after)")
    ap.add_argument("--scale", type=float, default=0.5)
    ap.add_argument("--max-height", type=int, default=16000, help="CSS pixels kept from the top of a page")
    a = ap.parse_args(argv)
    from PIL import Image

    pages = {p.stem: p for p in a.html.rglob("*.html") if "_static" not in p.parts}
    names = [n for n in a.pages.split(",") if n]
    missing = [n for n in names if n not in pages]
    if missing:
        print(f"error: --pages: no {', '.join(missing)}.html under {a.html}", file=sys.stderr)
        return 2
    a.out.mkdir(parents=True, exist_ok=True)
    heights_file = a.out / "heights.json"
    heights = json.loads(heights_file.read_text()) if heights_file.is_file() else {}
    d = driver()
    try:
        for name in names:
            load(d, pages[name].resolve().as_uri())
            height = int(d.execute_script("return document.documentElement.scrollHeight"))
            d.set_window_size(WIDTH, min(height, a.max_height) + 140)  # the window's frame
            d.execute_script("window.scrollTo(0, 0)")
            png = d.get_screenshot_as_png()
            img = Image.open(io.BytesIO(png)).convert("RGB")
            img = img.resize((round(img.width * a.scale), round(img.height * a.scale)), Image.LANCZOS)
            target = a.out / f"{name}{'-' + a.suffix if a.suffix else ''}.jpg"
            img.save(target, quality=72, optimize=True)
            heights[target.stem] = height
            print(f"{name}: {height} px tall at {WIDTH} px → {target} ({target.stat().st_size // 1024} KiB)")
            d.set_window_size(WIDTH, 900)
    finally:
        d.quit()
    heights_file.write_text(json.dumps(heights, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
