"""`icl-kit study retest`: the study's claims re-tested from its own files, into an ordinary run folder.

From result files alone (no model, no data, no GPU): each run of the files becomes a summary-only system
(`icl_kit.study.import_results`), the claims (`icl_kit.study.claims`) become the primary family of the
statistics, which compare them from the summaries (approximately: which questions each run got right is
unknown), and the report leads with the claims. With the study's checkpoints and `--params` naming data
and an LVLM, each checkpoint named like an imported run (by `--name`, or by its file stem without
`_v2format`) is re-measured per question as the twin `<name> (re-measured)`, on the params' pools, on the
whole test split and on the study's first N questions, and every claim between two re-measured systems is
tested again, paired and exact, beside its summary row. Imported and re-measured systems are of different
worlds (the study's protocol and scorer against the kit's), so no comparison crosses between them.

Nothing is written until every input has been read and every claim checked; the run folder then gets
params.yaml, eval/imported.csv (exactly the runs given), eval/predictions.jsonl (re-measured systems
only), stats/, report/report.{md,html} and report/audit.md (what each file shows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from icl_kit.core.config import Params, from_dict, load_params, to_dict
from icl_kit.core.errors import KitError, few
from icl_kit.core.runs import RunPaths, prepare_run, remove_stale_temps
from icl_kit.evaluation.systems import STUDY_LAYERS_OPTION, STUDY_RENAMES_OPTION
from icl_kit.stats.verdict import claim_holds
from icl_kit.study.claims import default_claims, read_claims, resolve_claims
from icl_kit.study.import_results import (
    NamedRun,
    imported_rows,
    named_runs,
    parse_names,
    same_file,
    write_imported,
)
from icl_kit.study.inputs import CHECKPOINT_SUFFIXES, Input, collect, is_checkpoint, is_result_file

TWIN_SUFFIX = " (re-measured)"
V2_STEM_SUFFIX = "_v2format"
DEFAULT_RUN = Path("runs") / "study_retest"


@dataclass
class RetestResult:
    """What a re-test wrote and found."""

    run_dir: Path
    report: Path
    audit: Path
    claims: int  # claims (one per shot) tested from the study's summaries
    survived: int  # of those, significant after correction in the claimed direction
    remeasured: int  # systems re-measured per question
    comparisons: pd.DataFrame


# ------------------------------------------------------------------ inputs
def _split_specs(specs: Sequence[tuple[str, str]], checkpoints: Sequence[Input]) -> tuple[dict[Path, str], list]:
    """--name specs that name a checkpoint file ({path: name}) and the rest (for result-file runs)."""
    named: dict[Path, str] = {}
    rest = []
    for target, name in specs:
        hit = [c for c in checkpoints if target == c.shown or same_file(target, c.path)]
        if hit:
            named[hit[0].path] = name
        else:
            rest.append((target, name))
    return named, rest


def _twins(checkpoints: Sequence[Input], named: dict[Path, str], runs: Sequence[NamedRun]) -> dict[str, Input]:
    """{imported system name: the checkpoint that re-measures it}; an unmatched checkpoint is a KitError."""
    imported = {r.name for r in runs}
    twins: dict[str, Input] = {}
    for c in checkpoints:
        name = named.get(c.path, c.path.stem.removesuffix(V2_STEM_SUFFIX))
        if name not in imported:
            raise KitError(f"Checkpoint {c.shown} would re-measure {name!r}, but no imported run is called that; "
                           f"name it after the run it made (--name {c.path.name}=NAME, NAME one of "
                           f"{few(sorted(imported), 'run', 5)}), or leave it out.")
        if name in twins:
            raise KitError(f"Checkpoints {twins[name].shown} and {c.shown} both re-measure {name!r}; keep one.")
        twins[name] = c
    return twins


def _split_size(params: Params) -> int:
    from icl_kit.data.okvqa import load_data

    return len(load_data(params.data)[1])


# ------------------------------------------------------------------ params
def remeasured_claims(claims: Sequence[dict[str, Any]], twins: dict[str, Input]) -> list[dict[str, Any]]:
    """The same claims between the re-measured twins (label and claimed kept, so the report pairs them)."""
    return [{**c, "a": c["a"] + TWIN_SUFFIX, "b": c["b"] + TWIN_SUFFIX} for c in claims
            if c["a"] in twins and c["b"] in twins and c["shot"] >= 1]


def retest_params(params: Params, run_dir: Path, claims: list[dict[str, Any]], twins: dict[str, Input],
                  runs: Sequence[NamedRun], study_layers: int | None) -> Params:
    """The run's params: claims as stats.comparisons (no automatic family), and the re-measurement when asked."""
    raw = to_dict(params)
    raw["runs_dir"], raw["run_name"] = str(run_dir.parent), run_dir.name
    again = remeasured_claims(claims, twins)
    raw["stats"] |= {"comparisons": claims + again, "automatic": False, "baseline": claims[0]["a"]}
    raw["report"]["baseline"] = claims[0]["a"]
    if twins:
        option = STUDY_LAYERS_OPTION if study_layers == 1 else STUDY_RENAMES_OPTION
        paths = {name: str(c.path.resolve()) for name, c in twins.items()}
        raw["eval"] |= {"systems": [p + option for p in paths.values()],
                        "names": {p: name + TWIN_SUFFIX for name, p in paths.items()},
                        "questions": "all", "shots": sorted({c["shot"] for c in again})}
        firsts = {r.n for r in runs if r.name in twins and not r.whole_split}
        raw["stats"]["subsets"] = [f"first:{n}" for n in sorted(firsts)]
    return from_dict(raw)


# ------------------------------------------------------------------ entry point
def retest(
    files: Sequence[str | Path],
    *,
    params_path: str | Path | None = None,
    overrides: Sequence[str] = (),
    run_dir: str | Path | None = None,
    names: Sequence[str] = (),
    claims_file: str | Path | None = None,
    n: int | None = None,
    study_layers: int | None = None,
    progress: bool = False,
) -> RetestResult:
    """Re-test the study's claims from its files (see the module doc); returns what was written and found."""
    from icl_kit.report.build import write_report
    from icl_kit.stats.run import stats_for_run
    from icl_kit.study.audit import audit

    if study_layers not in (None, 1):
        raise KitError(f"--study-layers {study_layers}: only 1 can be restored (the study's converter dropped the "
                       "other layers); load the original .pt files instead.")
    inputs = collect(files)
    results = [i for i in inputs if is_result_file(i.path)]
    checkpoints = [i for i in inputs if is_checkpoint(i.path)]
    if not results:
        raise KitError(f"No result file of the study is among the {few([i.shown for i in inputs], 'input')}; "
                       "pass its metrics.json or random-baseline file (docs/study.md, \"Result files\").")
    params = load_params(params_path, list(overrides))
    run_dir = Path(run_dir) if run_dir else params.run_dir if params_path else DEFAULT_RUN
    asked, file_names = read_claims(claims_file) if claims_file else (None, [])
    named, run_specs = _split_specs(parse_names([*file_names, *names]), checkpoints)
    # a claims file may name checkpoints for a re-measurement; left out this time, those names go unused
    given = parse_names(names)
    run_specs = [s for s in run_specs if s in given or Path(s[0]).suffix not in CHECKPOINT_SUFFIXES]
    runs = named_runs([i.path for i in results], run_specs, n=n,
                      split_size=(lambda: _split_size(params)) if params_path else None)
    claims = resolve_claims(asked if asked is not None else default_claims(runs), runs)
    if not claims:
        raise KitError(f"The result files hold no two runs of one world (the same test questions) at a common shot: "
                       f"{[(r.name, r.world) for r in runs]}; nothing can be compared.")
    twins = _twins(checkpoints, named, runs)
    if twins and not params_path:
        raise KitError("Re-measuring the study's checkpoints needs the data and a model: pass --params naming them "
                       "(e.g. params/retest_study.yaml), or leave the checkpoints out to test the result files alone.")
    params = retest_params(params, run_dir, claims, twins, runs, study_layers)
    if twins:
        _check_model_inputs(params)
    # every check has passed: from here on the run folder is written
    remove_stale_temps(run_dir)
    prepare_run(params, run_dir)
    write_imported(run_dir, imported_rows(runs))
    if twins:
        from icl_kit.evaluation.runner import evaluate

        evaluate(params, progress=progress)
    audit_path, _ = audit([i.shown for i in inputs], RunPaths(run_dir).audit, params.report.language)
    df, _ = stats_for_run(run_dir, params.stats, progress=progress)
    out = write_report(run_dir, params.report)
    told = df[(df["family"] == "primary") & (df["mode"] == "summary")]
    survived = int(sum(claim_holds(r["verdict"], r["diff"], r["claimed"]) for _, r in told.iterrows()))
    return RetestResult(run_dir, out["md"], audit_path, len(told), survived, len(twins), df)


def _check_model_inputs(params: Params) -> None:
    from icl_kit.run_context import check_inputs

    check_inputs(params)

