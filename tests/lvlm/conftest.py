"""What the Qwen tests share: one small demo world (40 demonstrations, 20 test questions), built once."""

from __future__ import annotations

import pytest

from icl_kit.data.demo.world import build_demo_world
from icl_kit.data.okvqa import load_split


@pytest.fixture(scope="session")
def data(tmp_path_factory: pytest.TempPathFactory):
    """(demonstration records, test records) of the shared world; a test file may define its own `data`."""
    root = build_demo_world(tmp_path_factory.mktemp("demo"), n_train=40, n_test=20, seed=1)
    return load_split(root, "train"), load_split(root, "val")
