"""benchmarks/gpu_check.sh's CPU side: its syntax, its clean skip without CUDA, and its Python parts run on the CPU
with the tiny model (GPU_CHECK_CPU=1) into the one figures file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "gpu_check.sh"


def run(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, dict]:
    figures = tmp_path / "figures.json"
    done = subprocess.run(["bash", str(SCRIPT), str(figures)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHON": sys.executable, **env})
    return done, json.loads(figures.read_text())


def test_the_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    assert os.access(SCRIPT, os.X_OK)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA skip")
def test_without_cuda_it_says_so_and_writes_one_line(tmp_path):
    done, figures = run(tmp_path)
    assert done.returncode == 0 and "gpu_check: skipped, no usable CUDA device" in done.stdout
    assert list(figures) == ["skipped"] and figures["skipped"].startswith("no usable CUDA device")


def test_its_python_parts_run_on_the_cpu_into_one_file(tmp_path):
    done, figures = run(tmp_path, GPU_CHECK_CPU="1")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert figures["device"] == "cpu" and {p["exit_status"] for p in figures["parts"].values()} == {0}
    tiny = figures["agreement"]["tiny"]["float32"]
    assert tiny["n_prompts"] == 4 and tiny["kit"]["answers_equal_study"] == 4  # fp32: every path answers alike
    assert tiny["kit"]["max_rel_logp_diff"] <= 1e-6 and tiny["kit"]["work"]["prefix_hits"] > 0
    rows = figures["bench"]["rows"]
    assert len(rows) == 3 and all(r["prompts_per_s"] > 0 for r in rows.values()) and figures["bench"]["speedup"] > 0
