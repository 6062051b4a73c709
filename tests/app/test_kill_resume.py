"""Kill and resume: `icl-kit train` and `icl-kit eval` killed with SIGKILL at seeded random moments (twice in
a row in some trials), then resumed, end with the same files as an uninterrupted run.

Every file is compared byte for byte, except the reward cache (compared by its rows: sqlite's header counts
transactions) and the training log (compared without its wall-clock `time/` keys and per-process `lvlm/` counts).
No temp file may be left.
The killed commands run as child processes of this checkout (`icl_kit.cli.main` in a process forked from a
forkserver that imported the kit, torch and torch._dynamo once, so a launch does not pay seconds of imports
before its first write); the resumes and the reference run in-process.
Both sides use one intra-op thread: CPU reductions split by thread count (LayerNorm's bias gradient does), so a
run whose steps were made with 2 threads and 1 thread differs in the last bit of a few weights.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import random
import shutil
import signal
import time
from multiprocessing import forkserver
from pathlib import Path

import pytest
import yaml
from tiny_run import contents, differences, run_cli, tiny_params

from icl_kit.core.config import load_params
from icl_kit.evaluation.runner import evaluate
from icl_kit.train.trainer import train

NAME = "k"
KILL_SEED = 15
# (stage, kills in a row before the resume): 10 kills; a kill that comes too late (the command had finished)
# does not count, and extra trials follow until MIN_KILLS kills have landed (at most MAX_LAUNCHES commands).
TRIALS = [("train", 1), ("eval", 2), ("train", 2), ("eval", 1), ("train", 1), ("eval", 1), ("train", 1),
          ("eval", 1)]
MIN_KILLS = 10
MAX_LAUNCHES = 14
POLL_S = 0.01
THREADS = 1  # the in-process side (`one_thread`) and the killed processes (OMP_NUM_THREADS of their forkserver)
# what the forkserver imports once: the commands and what they import when they run (torch._dynamo is imported by
# torch's optimizers when the first one is built)
PRELOAD = ["tiny_run", "icl_kit.cli", "icl_kit.train.trainer", "icl_kit.evaluation.runner", "torch._dynamo",
           "icl_kit.data.demo.world", "icl_kit.data.okvqa", "icl_kit.lvlm.registry", "icl_kit.lvlm.simulated",
           "icl_kit.lvlm.agreement", "icl_kit.selection.encoders", "icl_kit.study.formats.sampler"]
pytestmark = pytest.mark.usefixtures("one_thread")


STAGES = {"train": lambda p: train(p, progress=False), "eval": lambda p: evaluate(p, progress=False)}


def run_in(folder: Path, stage: str, params_file: Path) -> None:
    """Run (or resume) a stage in-process with `folder` as the working directory."""
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.chdir(folder):
        STAGES[stage](load_params(params_file))


def wrote_since(run: Path, t0: float) -> bool:
    with contextlib.suppress(FileNotFoundError):
        return any(p.stat().st_mtime >= t0 for p in run.rglob("*") if p.is_file())
    return False


@pytest.fixture(scope="module")
def launcher():
    """A forkserver with the kit imported and OMP_NUM_THREADS=THREADS; each launch forks a fresh process from it."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", str(THREADS))  # read by the forkserver's torch, inherited by its children
        forkserver.ensure_running()
    yield ctx
    forkserver._forkserver._stop()  # its imports (torch and all) are not kept for the rest of the session


def launch(launcher, folder: Path, stage: str, params_file: Path):
    """Start `icl-kit <stage>` in a new process; return it once it has written into its run folder (or ended)."""
    t0 = time.time()
    proc = launcher.Process(target=run_cli, args=(str(folder), [stage, "--params", str(params_file)]))
    proc.start()
    while proc.is_alive() and not wrote_since(folder / "runs" / NAME, t0):
        time.sleep(POLL_S)
    return proc


def kill_during(launcher, folder: Path, stage: str, params_file: Path, delay: float) -> bool:
    """Start `icl-kit <stage>`; once it has written into its run folder, SIGKILL it after `delay` seconds.
    True when the kill landed (the command was still running)."""
    proc = launch(launcher, folder, stage, params_file)
    proc.join(timeout=delay)
    if proc.exitcode is None:
        proc.kill()  # SIGKILL
        proc.join()
    if proc.exitcode == -signal.SIGKILL:
        return True
    assert proc.exitcode == 0, f"{stage} failed on its own (exit {proc.exitcode})"
    return False


@pytest.fixture(scope="module")
def reference(tmp_path_factory, one_thread, launcher):
    """The uninterrupted run: its files after training and after evaluation, and each stage's seconds: how long
    an uninterrupted command runs after its first write, the window the kills fall in."""
    base = tmp_path_factory.mktemp("kills")
    params_file = base / "tiny.yaml"
    # 18 optimiser steps, last.pt saved after each one; 200 eval cells appended in chunks of 4
    params_file.write_text(yaml.safe_dump(tiny_params(base / "world", NAME, train={"save_every_steps": 1})))
    ref = base / "ref"
    run_in(ref, "train", params_file)
    trained = base / "trained"
    shutil.copytree(ref, trained)
    after_train = contents(trained / "runs" / NAME)
    run_in(ref, "eval", params_file)
    seconds = {}
    (base / "timed").mkdir()
    for stage in ("train", "eval"):
        proc = launch(launcher, base / "timed", stage, params_file)
        wrote = time.perf_counter()
        proc.join()
        assert proc.exitcode == 0, f"{stage} failed on its own (exit {proc.exitcode})"
        seconds[stage] = time.perf_counter() - wrote
    shutil.rmtree(base / "timed")
    return {"base": base, "params": params_file, "trained": trained, "seconds": seconds,
            "train": after_train, "eval": contents(ref / "runs" / NAME)}


def trial(reference: dict, launcher, i: int, stage: str, times: int, rng: random.Random) -> list[bool]:
    """Kill `times` commands in a row, resume in-process, compare with the reference; which kills landed."""
    folder = reference["base"] / f"trial{i}"
    if stage == "eval":
        shutil.copytree(reference["trained"], folder)  # evaluation starts from the trained run
    else:
        folder.mkdir()
    landed = []
    for _ in range(times):
        delay = rng.uniform(0.0, 0.8 * reference["seconds"][stage])
        landed.append(kill_during(launcher, folder, stage, reference["params"], delay))
    run_in(folder, stage, reference["params"])
    run = folder / "runs" / NAME
    assert not list(run.rglob("*.tmp")), f"trial {i} ({stage}): temp files left"
    assert differences(reference[stage], contents(run)) == [], f"trial {i} ({stage}), kills landed: {landed}"
    shutil.rmtree(folder)
    return landed


@pytest.mark.slow
def test_killed_runs_resume_to_the_same_files(reference, launcher):
    rng = random.Random(KILL_SEED)
    plan = list(TRIALS)
    kills = launches = i = 0
    while i < len(plan) or (kills < MIN_KILLS and launches < MAX_LAUNCHES):
        if i == len(plan):
            plan.append((rng.choice(["train", "eval"]), 1))
        stage, times = plan[i]
        landed = trial(reference, launcher, i, stage, times, rng)
        kills, launches, i = kills + sum(landed), launches + times, i + 1
    assert kills >= MIN_KILLS, f"only {kills} of {launches} kills landed before the command finished"
