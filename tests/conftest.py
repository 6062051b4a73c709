"""The tests are grouped by subpackage (tests/<subpackage>/test_*.py); the shared helpers (fake_world,
tiny_run, study_fixtures, the DDP workers) and fixtures stay in tests/, importable from every group."""

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
