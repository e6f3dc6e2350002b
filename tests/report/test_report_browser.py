"""A real run's report opened in headless Chromium: every image loads, and the page draws something.

Skipped when no Chromium is installed (``make test`` installs Debian's ``chromium`` where apt and root
are available).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = next((found for name in BROWSERS if (found := shutil.which(name))), None)
#: After the load event, records on <body> how many images the page has and which did not decode.
PROBE = ("<script>window.addEventListener('load', () => { const imgs = [...document.images];"
         "document.body.dataset.images = imgs.length; document.body.dataset.broken = JSON.stringify("
         "imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute('src'))); });</script>")

pytestmark = pytest.mark.skipif(BROWSER is None, reason="no headless browser found (looked for "
                                f"{', '.join(BROWSERS)}): apt-get install chromium, or run make test as root")


def _chromium(tmp: Path, *args: str) -> str:
    assert BROWSER is not None
    cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp / 'profile'}",
           "--virtual-time-budget=5000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout


def _probe(report: Path, tmp: Path) -> tuple[int, list[str]]:
    """Copy the report and its plots to ``tmp``, load it with the probe: (images, broken image sources)."""
    shutil.copytree(report.parent / "plots", tmp / "plots")
    (tmp / "probe.html").write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    dom = _chromium(tmp, "--dump-dom", (tmp / "probe.html").as_uri())
    body = re.search(r"<body[^>]*>", dom)
    assert body, dom[:500]
    attrs = dict(re.findall(r'data-(\w+)="([^"]*)"', body.group(0)))
    return int(attrs["images"]), json.loads(html.unescape(attrs["broken"]))


def test_run_report_renders_with_every_image(lm_runs: list[Path], tmp_path: Path) -> None:
    report = lm_runs[1] / "report.html"
    n, broken = _probe(report, tmp_path / "ok")
    assert n == len(list((lm_runs[1] / "plots").glob("*.png"))) >= 15 and broken == []
    # the probe can fail: a plot removed from the copy is reported broken
    (tmp_path / "ok" / "plots" / "10-loss.png").unlink()
    dom = _chromium(tmp_path / "ok", "--dump-dom", (tmp_path / "ok" / "probe.html").as_uri())
    assert "plots/10-loss.png" in html.unescape(re.search(r"<body[^>]*>", dom).group(0))  # type: ignore[union-attr]


def test_screenshot_of_a_report_shows_a_page(lm_runs: list[Path], tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    _chromium(tmp_path, "--hide-scrollbars", "--window-size=1000,1400", f"--screenshot={shot}",
              (lm_runs[0] / "report.html").as_uri())
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (1400, 1000) and pixels.std() > 0.05  # not a blank page
