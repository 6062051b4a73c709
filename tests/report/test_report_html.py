"""report.html in a real browser: headless Chromium renders tables and embedded figures (skipped without it)."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_report import make_run

from icl_kit.report.build import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]
TIMEOUT_S = 60
MIN_PIXEL_STD = 10.0  # a blank or single-colour page has a std near 0

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed")


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, text=True, timeout=TIMEOUT_S, check=True)


def test_chromium_renders_tables_and_figures(tmp_path):
    out = write_report(make_run(tmp_path / "run"))
    url = out["html"].resolve().as_uri()
    dom = chromium(tmp_path, "--dump-dom", url).stdout
    assert dom.count("<table") >= 8
    assert dom.count('<img src="data:image/png;base64,') == len(out["figures"])
    assert "二、测试配置" in dom and "七、总结" in dom
    shot = tmp_path / "page.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,2000", url)
    pixels = np.asarray(Image.open(shot).convert("L"), float)
    assert pixels.shape == (2000, 1200)
    assert pixels.std() > MIN_PIXEL_STD


# Measured in the page after load: where the answer's sentence ends, and whether every figure decoded.
MEASURE = """<script>
window.addEventListener('load', () => {
  const answer = document.querySelector('h2').nextElementSibling;
  const box = answer.getBoundingClientRect();
  const figures = [...document.images].map(i => [i.complete && i.naturalWidth > 0, i.getBoundingClientRect().width]);
  document.body.setAttribute('data-measure', JSON.stringify(
    {bottom: box.bottom, screen: window.innerHeight, text: answer.innerText, figures: figures}));
});
</script>"""
SCREEN = (1280, 800)  # a laptop's first screen


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_first_screen_holds_the_answer_and_every_figure_renders(tmp_path, lang):
    out = write_report(make_run(tmp_path / "run"))
    page = out["languages"][lang][1]
    measured = page.with_name(f"measured.{lang}.html")  # beside the report, so the figures resolve the same way
    measured.write_text(page.read_text(encoding="utf-8").replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    size = f"--window-size={SCREEN[0]},{SCREEN[1]}"
    dom = chromium(tmp_path, "--dump-dom", "--virtual-time-budget=5000", size, measured.as_uri()).stdout
    m = json.loads(html.unescape(re.search(r'data-measure="([^"]*)"', dom).group(1)))
    answer = out["languages"][lang][0].read_text(encoding="utf-8").split("\n## ")[1].split("\n\n")[1]
    assert m["text"] == re.sub(r"\*\*|`", "", answer).replace("\n", " ").strip()  # the answer's first paragraph
    assert 0 < m["bottom"] <= m["screen"], m  # ends above the fold
    assert m["figures"] and all(ok and width >= 400 for ok, width in m["figures"]), m["figures"]
    shot = tmp_path / f"first.{lang}.png"
    chromium(tmp_path, f"--screenshot={shot}", size, page.as_uri())
    pixels = np.asarray(Image.open(shot).convert("L"), float)
    top = pixels[: int(m["bottom"])]
    assert pixels.shape == (SCREEN[1], SCREEN[0]) and top.std() > MIN_PIXEL_STD  # text drawn where the answer is
    ink = (top < 128).mean(axis=1)
    assert (ink > 0).sum() >= 20  # several lines of dark text on the first screen, not a blank band
