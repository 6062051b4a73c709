"""The tests are grouped by subpackage (tests/<subpackage>/test_*.py); the shared helpers (fake_world,
tiny_run, study_fixtures, the DDP workers) and fixtures stay in tests/, importable from every group."""

import sys
from pathlib import Path

import pytest

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module's tests, restored after: tiny ops run fastest and steadiest on one
    thread. A module sets it through this fixture, never at import time, since pytest imports every test
    module before running any and an import-time setting would leak into the whole session."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """The run `make demo` makes (`icl-kit run params/demo.yaml` from the repository root), made once per test
    session in a scratch root that links the repository's params/, so nothing is written inside the clone.
    About 2 minutes on 2 cores; the README's numbers and the report-consistency test read it."""
    import shutil
    import subprocess

    repo = Path(HERE).parent
    root = tmp_path_factory.mktemp("demo_root")
    (root / "params").symlink_to(repo / "params")
    exe = Path(sys.executable).with_name("icl-kit")
    command = [str(exe) if exe.is_file() else shutil.which("icl-kit"), "run", "params/demo.yaml"]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "runs" / "demo"
