"""`icl-kit run`: the four notebooks in order under papermill, skipping finished stages.

A stage is finished when its outputs exist and the hash of its inputs (the params
sections it reads, the files earlier stages wrote, and the notebook itself) equals
the hash recorded when it last finished (`stages.json` in the run folder).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from icl_kit.core.artefacts import ARTEFACTS
from icl_kit.core.config import Params, load_params, parse_override, to_dict
from icl_kit.core.errors import KitError
from icl_kit.core.runs import OUTPUT_MODE, RunPaths, atomic_write_json, make_temp, prepare_run, remove_stale_temps
from icl_kit.core.stages import HEADROOM as HEADROOM_IO
from icl_kit.core.stages import STAGES as STAGE_IO
from icl_kit.core.stages import StageIO
from icl_kit.nb import project_root
from icl_kit.run_context import check_inputs


@dataclass(frozen=True)
class Stage:
    """One notebook and what its stage reads and writes (declared in `icl_kit.core.stages`)."""

    notebook: str
    io: StageIO

    @property
    def name(self) -> str:
        return self.io.name

    @property
    def sections(self) -> tuple[str, ...]:
        return self.io.sections

    @property
    def reads(self) -> tuple[str, ...]:
        return self.io.reads

    @property
    def writes(self) -> tuple[str, ...]:
        return self.io.writes


NOTEBOOKS = {"train": "01_train.ipynb", "eval": "02_eval_epochs.ipynb", "stats": "03_significance.ipynb",
             "report": "04_report.ipynb", "headroom": "00_headroom.ipynb"}
STAGES: tuple[Stage, ...] = tuple(Stage(NOTEBOOKS[io.name], io) for io in STAGE_IO)
HEADROOM = Stage(NOTEBOOKS["headroom"], HEADROOM_IO)  # first when headroom.enabled, or when named in --stages
STAGE_NAMES = (HEADROOM.name, *(s.name for s in STAGES))
MODEL_STAGES = ("headroom", "train", "eval")  # the stages that read the data and run the models
STATE_FILE = RunPaths(Path()).stages.name  # in the run folder (the artefact table)
SOURCE_NOTEBOOKS = "notebooks"  # the repository's stage notebooks (a run's executed copies: RunPaths.notebooks)
FAILED_SUFFIX = ".failed.ipynb"


def _hash_path(path: Path, h: hashlib._Hash) -> None:
    if path.is_dir():
        for child in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
            h.update(str(child.relative_to(path)).encode())
            h.update(child.read_bytes())
    elif path.is_file():
        h.update(path.read_bytes())
    else:
        h.update(b"<absent>")


def input_hash(stage: Stage, params: Params, run_dir: Path, notebook: Path) -> str:
    """sha256 of the stage's params sections, the files it reads and the notebook source."""
    h = hashlib.sha256()
    resolved = to_dict(params)
    h.update(json.dumps({k: resolved[k] for k in stage.sections}, sort_keys=True).encode())
    paths = RunPaths(run_dir)
    for name in stage.reads:
        h.update(ARTEFACTS[name].path.encode())
        for path in paths.every_seed(name, params.train.seeds):  # train.seeds: each seed's train log
            _hash_path(path, h)
    _hash_path(notebook, h)
    return h.hexdigest()


def _load_state(run_dir: Path) -> dict[str, dict]:
    path = RunPaths(run_dir).stages
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}  # a damaged record only costs a re-run


def is_finished(stage: Stage, run_dir: Path, digest: str, state: dict[str, dict], params: Params | None = None) -> bool:
    """The outputs exist, the inputs hash is the one recorded when the stage last finished, and the outputs
    themselves say they were made with these params (a notebook run by hand may have re-made them with others)."""
    seeds = params.train.seeds if params is not None else []
    outputs_exist = all(p.exists() for name in stage.writes for p in RunPaths(run_dir).every_seed(name, seeds))
    recorded = state.get(stage.name, {}).get("inputs") == digest
    return outputs_exist and recorded and (params is None or outputs_match(stage, params, run_dir))


def outputs_match(stage: Stage, params: Params, run_dir: Path) -> bool:
    """Do the stage's outputs record the params they were made with, and are those the current ones?"""
    from icl_kit.report.build import report_is_current
    from icl_kit.stats.run import stats_are_current

    if stage.name == "stats":
        return stats_are_current(run_dir, params.stats)
    if stage.name == "report":
        return report_is_current(run_dir, params)
    return True


def parse_stages(text: str | None, headroom: bool = False) -> list[Stage]:
    """The stages `--stages` names, in run order; none named: every stage, headroom first when `headroom`
    (headroom.enabled)."""
    if not text:
        return [HEADROOM] * headroom + list(STAGES)
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [n for n in names if n not in STAGE_NAMES]
    if unknown:
        raise KitError(f"Unknown stage(s) {unknown}; choose from {', '.join(STAGE_NAMES)}.")
    return [s for s in (HEADROOM, *STAGES) if s.name in names]


def _show_demo_world(params: Params) -> None:
    """Build the embedded demo world if missing and print its summary (counts, answer agreement)."""
    from icl_kit.data.demo.world import describe_world, ensure_demo_world

    root = ensure_demo_world(params.data)
    if root is not None:
        print(describe_world(root), flush=True)


def run(
    params_path: str | Path,
    overrides: Sequence[str] = (),
    stages: str | None = None,
    force: bool = False,
) -> Path:
    """Execute the notebooks in order; return the run folder.

    Each stage's notebook writes the run folder only once its own checks pass (ArtefactStore.commit), and
    after a stage succeeds the resolved params are committed here too (stats and report read them).
    """
    root = project_root(Path(__file__).resolve().parent)
    if not (root / SOURCE_NOTEBOOKS / STAGES[0].notebook).is_file():
        raise KitError(f"The stage notebooks are not in {root / SOURCE_NOTEBOOKS}; run icl-kit from a clone of the "
                       "repository installed with `pip install -e .`.")
    params_path = Path(params_path).resolve()
    params = load_params(params_path, list(overrides))
    chosen = parse_stages(stages, params.headroom.enabled)
    if any(s.name in MODEL_STAGES for s in chosen):
        check_inputs(params)  # data, system prompt file and weights: one sentence before any work
    run_dir = Path(params.run_dir).resolve()
    remove_stale_temps(run_dir)  # a killed earlier run's half-written files (never a live writer's)
    state = _load_state(run_dir)
    if params.data.demo:
        _show_demo_world(params)
    print(f"icl-kit run: {params_path.name} -> {run_dir} (stages: {', '.join(s.name for s in chosen)})")
    for i, stage in enumerate(chosen, 1):
        src = root / SOURCE_NOTEBOOKS / stage.notebook
        digest = input_hash(stage, params, run_dir, src)
        if not force and is_finished(stage, run_dir, digest, state, params):
            print(f"[{i}/{len(chosen)}] {stage.name}: finished earlier with the same inputs, skipped")
            continue
        print(f"[{i}/{len(chosen)}] {stage.name}: running {stage.notebook}", flush=True)
        start = time.time()
        _execute(stage, src, run_dir, params_path, overrides)
        prepare_run(params, run_dir)
        seconds = round(time.time() - start, 1)
        state[stage.name] = {"inputs": input_hash(stage, params, run_dir, src), "seconds": seconds}
        atomic_write_json(RunPaths(run_dir).stages, state)
        print(f"[{i}/{len(chosen)}] {stage.name}: done in {seconds:.0f}s", flush=True)
    return run_dir


RUN_PARAMETERS = ("# Parameters: this executed copy's own run (icl-kit run injected the caller's)\n"
                  'params_path = "../params.yaml"  # the run\'s resolved params\n'
                  "overrides = {}\n"
                  'run_dir = ".."  # the run folder\n')


def point_at_the_run(notebook: Path) -> None:
    """Make an executed copy re-run where it lies (runs/<name>/notebooks/): its injected parameters become the
    run's own resolved params and folder, relative to the copy (papermill injected the caller's paths)."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    for cell in nb.cells:
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            cell.source = RUN_PARAMETERS
    nbformat.write(nb, str(notebook))


def failed_copy(dst: Path) -> Path:
    """Where a failed stage's executed notebook goes: beside the last good copy, never over it."""
    return dst.with_name(f"{dst.stem}{FAILED_SUFFIX}")


# The kernel's own notices, none of them about the run: tqdm's "IProgress not found" (no widgets under papermill)
# and jupyter_core's platformdirs notice; debugpy's "frozen modules" notice is off by PYDEVD_DISABLE_FILE_VALIDATION.
KERNEL_WARNINGS = ("ignore:IProgress not found", "ignore:Jupyter is migrating its paths")
KERNEL_LOG = logging.getLogger("icl_kit.kernel")  # the kernel manager's internals ("Could not destroy zmq
KERNEL_LOG.addHandler(logging.NullHandler())  # context", shutdown retries): never on the user's console
KERNEL_LOG.propagate = False


def kernel_env() -> dict[str, str]:
    """The notebook kernel's environment: ours, with the kernel's start-up notices off (the user's own
    PYTHONWARNINGS come after ours, so they win)."""
    warn = ",".join(filter(None, [*KERNEL_WARNINGS, os.environ.get("PYTHONWARNINGS")]))
    return {**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1", "PYTHONWARNINGS": warn}


def quiet_kernel_manager(log: IO[bytes]) -> type:
    """A kernel manager whose kernel writes its own messages (ipykernel's "running over TCP" notice, its
    tracebacks while it shuts down after an interrupt) into `log`, not onto the console; what a cell prints
    still comes through papermill."""
    from jupyter_client.manager import AsyncKernelManager

    class QuietKernelManager(AsyncKernelManager):
        def __init__(self, **kw: object) -> None:
            super().__init__(**kw)
            self.log = KERNEL_LOG

        async def start_kernel(self, **kw: object) -> None:
            await super().start_kernel(**{**kw, "stdout": log, "stderr": log, "env": kernel_env()})

    return QuietKernelManager


def _papermill(src: Path, tmp: Path, params_path: Path, overrides: Sequence[str], log: IO[bytes]) -> None:
    import papermill as pm

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The specified file .* does not end in")  # the temp name
        pm.execute_notebook(
            str(src), str(tmp),
            parameters={"params_path": str(params_path), "overrides": dict(map(parse_override, overrides))},
            cwd=str(Path.cwd()), progress_bar=False, stdout_file=sys.stdout, stderr_file=sys.stderr,
            kernel_name="python3", kernel_manager_class=quiet_kernel_manager(log),
        )


def _last_line(log: IO[bytes]) -> str:
    log.seek(0)
    lines = [line.strip() for line in log.read().decode(errors="replace").splitlines() if line.strip()]
    return lines[-1][-160:] if lines else ""


def _failed(stage: Stage, tmp: Path, dst: Path, what: str) -> KitError:
    """Keep the failed executed copy beside the last good one; the sentence naming both."""
    failed = failed_copy(dst)
    os.chmod(tmp, OUTPUT_MODE)
    os.replace(tmp, failed)
    kept = f"the last good copy {dst} is unchanged" if dst.exists() else "there is no earlier good copy"
    return KitError(f"Stage {stage.name} failed in notebooks/{stage.notebook}, {what}; the failed notebook is "
                    f"{failed} ({kept}).")


def _execute(stage: Stage, src: Path, run_dir: Path, params_path: Path, overrides: Sequence[str]) -> None:
    """Run one notebook under papermill into a temp file; on success it becomes notebooks/<name>, on failure
    notebooks/<name>.failed.ipynb, so the last good executed copy is never overwritten. An interrupt (Ctrl-C
    here, or of the kernel) is a KeyboardInterrupt, whatever papermill made of it."""
    import papermill as pm
    from nbclient.exceptions import DeadKernelError

    dst = RunPaths(run_dir).notebooks / stage.notebook
    fd, tmp = make_temp(dst)
    os.close(fd)
    with tempfile.TemporaryFile() as log:
        try:
            _papermill(src, tmp, params_path, overrides, log)
        except pm.PapermillExecutionError as exc:
            if exc.ename == "KeyboardInterrupt":
                tmp.unlink(missing_ok=True)
                raise KeyboardInterrupt from None
            first = exc.evalue.splitlines()[0].rstrip(".") if exc.evalue else ""
            raise _failed(stage, tmp, dst, f"cell {exc.exec_count}: {exc.ename}: {first}") from None
        except DeadKernelError:
            why = _last_line(log) or "it was killed, perhaps for lack of memory"
            raise _failed(stage, tmp, dst, f"where its kernel died ({why})") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    point_at_the_run(tmp)
    os.chmod(tmp, OUTPUT_MODE)
    os.replace(tmp, dst)
    failed_copy(dst).unlink(missing_ok=True)  # the stage works again: its old failure is history
