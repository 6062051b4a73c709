"""report.html in a real browser: headless Chromium renders tables and embedded figures (skipped without it)."""

from __future__ import annotations

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
