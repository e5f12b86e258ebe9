"""Screenshot a saewatch page in headless Chromium, cropped to where its examples are marked.

Used for ``docs/highlighted_examples.png``: a tall screenshot of a live page (the report page of
``saewatch demo``), then the band of rows holding the highlight marks (pixels of the marks'
outline colour, ``rgb(242, 142, 43)``), with some context above and below::

    python deploy/tools/screenshot_marks.py http://127.0.0.1:9108/ docs/highlighted_examples.png
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

MARK_RGB = (242, 142, 43)  # export/web/marks.py HIGHLIGHT_RGB, the peak's outline
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=3000"]


def screenshot(url: str, out: Path, width: int, height: int) -> None:
    binary = shutil.which("chromium")
    if binary is None:
        sys.exit("chromium is not installed: run deploy/tools/install-test-deps.sh")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}",
                        f"--window-size={width},{height}", f"--screenshot={out}", url],
                       check=True, capture_output=True, timeout=120)


def marked_band(image: Image.Image, above: int, below: int, max_height: int) -> tuple[int, int]:
    """Rows from ``above`` pixels over the first mark to ``below`` under the last one shown."""
    pixels = np.asarray(image.convert("RGB")).astype(np.int16)
    near = (np.abs(pixels - np.array(MARK_RGB)).sum(axis=2) < 30).any(axis=1)
    rows = np.nonzero(near)[0]
    if not len(rows):
        sys.exit("no highlight marks found on the page")
    top = max(0, int(rows[0]) - above)
    last = [int(r) for r in rows if r - top <= max_height - below][-1]
    return top, min(image.height, last + below)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("out", type=Path)
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=6000, help="the page's rendered height")
    parser.add_argument("--above", type=int, default=420, help="context over the first mark")
    parser.add_argument("--below", type=int, default=120, help="context under the last mark")
    parser.add_argument("--max-height", type=int, default=1300, help="of the cropped image")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        full = Path(tmp) / "full.png"
        screenshot(args.url, full, args.width, args.height)
        image = Image.open(full)
        top, bottom = marked_band(image, args.above, args.below, args.max_height)
        image.crop((0, top, image.width, bottom)).save(args.out, optimize=True)
    print(f"{args.out}: rows {top}..{bottom} of {image.height}")  # noqa: T201


if __name__ == "__main__":
    main()
