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
