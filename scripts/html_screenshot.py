"""Render an onnxslim HTML report in headless Chromium: a screenshot, and a check that the page
does not overflow sideways at the given width.

    python scripts/html_screenshot.py                     # benchmark the demo model, then shoot
    python scripts/html_screenshot.py report.html -o shot.png --width 1280

Without a report, the demo model is benchmarked against a copy with a long file name (the case
that used to overflow). Exits 1 when the page is wider than the window, 2 without Chromium.
Needs `chromium` (Debian: `apt-get install -y chromium`), `chromium-browser` or `google-chrome`.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
LONG_NAME = "demo_optimized_with_a_rather_long_descriptive_file_name_for_the_report.onnx"
# Reports stay script-free; this copy measures the page and puts the figures in its title.
_MEASURE = (
    "<script>addEventListener('load',()=>{document.title='measured '+"
    "document.documentElement.scrollWidth+' '+window.innerWidth})</script>"
)


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def _run(browser: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def screenshot(browser: str, page: Path, png: Path, width: int = 1280, height: int = 900) -> Path:
    """A PNG of `page` in a `width` x `height` window."""
    _run(browser, f"--screenshot={png}", f"--window-size={width},{height}", page.resolve().as_uri())
    if not png.is_file():
        raise RuntimeError(f"{browser} wrote no screenshot of {page}")
    return png


def page_width(browser: str, page: Path, width: int = 1280) -> tuple[int, int]:
    """(the page's scroll width, the window's inner width) in CSS pixels at `width`."""
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "measure.html"
        copy.write_text(page.read_text().replace("</body>", _MEASURE + "</body>", 1))
        done = _run(
            browser,
            "--dump-dom",
            "--virtual-time-budget=2000",
            f"--window-size={width},900",
            copy.as_uri(),
        )
    found = re.search(r"<title>measured (\d+) (\d+)</title>", done.stdout)
    if not found:
        raise RuntimeError(f"{browser} did not measure the page: {done.stderr.strip()[-300:]}")
    return int(found.group(1)), int(found.group(2))


def demo_report(folder: Path) -> Path:
    """A benchmark page of the demo model against a long-named copy of it."""
    sys.path.insert(0, str(REPO))
    import onnxslim

    original = REPO / "models" / "demo.onnx"
    other = folder / LONG_NAME
    onnxslim.save(onnxslim.optimize(original), other)
    report = onnxslim.benchmark([original, other], runs=10, warmup=2, progress=False)
    report.command = f"onnxslim bench models/demo.onnx {LONG_NAME} --html report.html"
    path = folder / "report.html"
    report.write_html(path)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", nargs="?", type=Path, help="an HTML report (default: demo)")
    parser.add_argument("-o", "--output", type=Path, default=Path("report.png"))
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args()
    browser = find_browser()
    if browser is None:
        print("no Chromium found: apt-get install -y chromium", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as folder:
        page = args.report or demo_report(Path(folder))
        screenshot(browser, page, args.output, args.width, args.height)
        scroll, inner = page_width(browser, page, args.width)
        if args.report is None:
            shutil.copy(page, args.output.with_suffix(".html"))
    print(f"wrote {args.output}; page {scroll} px wide in a {inner} px window")
    if scroll > inner:
        print(f"overflow: the page is {scroll - inner} px wider than the window", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
