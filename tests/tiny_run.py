"""A tiny run of the demo world (simulated LVLM, seconds on a CPU) and its files, for comparing two run folders
(or one folder before and after a command)."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

WALL_CLOCK = ("time/", "lvlm/")  # train_log.jsonl keys of seconds, and of what this process asked of the LVLM (a
# step re-run after a kill finds its answers in the cache: train.outputs.WorkLog)


def tiny_params(world: Path, name: str, **sections: dict[str, Any]) -> dict[str, Any]:
    """Params of a tiny run in `runs/<name>` on the demo world at `world`; `sections` update single keys."""
    params: dict[str, Any] = {
        "run_name": name, "runs_dir": "runs", "seed": 0,
        "data": {"root": str(world), "demo": True, "demo_train": 60, "demo_test": 20},
        "encoder": {"backend": "simple", "dim": 16},
        "lvlm": {"backend": "simulated", "batch_size": 16},
        "pools": {"size": 8},
        "selector": {"input_dim": 16, "hidden_dim": 16},
        "train": {"device": "cpu", "val_shots": [2], "reward": {"kind": "hard_plus_soft", "shots": [2]},
                  "rollouts": {"mode": "online", "group_size": 4},
                  "rce": {"epochs": 1, "batch_groups": 8}, "grpo": {"epochs": 2, "batch_groups": 8}},
        "eval": {"systems": ["zero_shot", "random", "similarity", "checkpoints/grpo_epoch*.pt"], "shots": [1, 2],
                 "questions": "all", "chunk": 4},
        "stats": {"n_boot": 200, "n_perm": 200},
        "report": {"language": "en"},
    }
    for section, values in sections.items():
        params[section].update(values)
    return params


def run_cli(folder: str, argv: list[str]) -> None:
    """`icl-kit <argv>` with `folder` as the working directory and its output discarded, as the body of a
    child process: the process exits with the command's exit code."""
    from icl_kit.cli import main

    os.chdir(folder)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    raise SystemExit(main(argv))


def file_bytes(root: Path) -> dict[str, bytes]:
    """Every file under `root` (hidden temp files included) -> its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def cache_rows(path: Path) -> list[tuple]:
    """The reward cache's rows in key order (its file header counts transactions, so bytes may differ)."""
    with sqlite3.connect(path) as db:
        return sorted(db.execute("SELECT * FROM answers").fetchall())


def log_rows(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [{k: v for k, v in json.loads(line).items() if not k.startswith(WALL_CLOCK)} for line in lines]


def contents(root: Path) -> dict[str, Any]:
    """What a finished run holds: bytes of every file, except the reward cache (its rows), the training log (its
    lines without wall-clock seconds) and lvlm_work.json (the work each process recorded: a resumed run's second
    process finds the answers the first stored, icl_kit.lvlm.work_record; only that it exists is compared)."""
    out: dict[str, Any] = {}
    for rel, data in file_bytes(root).items():
        if rel == "lvlm_work.json":
            out[rel] = "recorded"
        elif rel == "rewards.sqlite":
            out[rel] = cache_rows(root / rel)
        elif rel == "train_log.jsonl":
            out[rel] = log_rows(root / rel)
        else:
            out[rel] = data
    return out


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Files only in one, or different in both (names only)."""
    return ([f"only before: {k}" for k in sorted(a.keys() - b.keys())]
            + [f"only after: {k}" for k in sorted(b.keys() - a.keys())]
            + [f"changed: {k}" for k in sorted(a.keys() & b.keys()) if a[k] != b[k]])
