"""`icl-kit study <verb>`: the study wing's commands (retest, audit, import-results, import-rollouts,
import-sft-data, import-pools, convert). Each prints one line of what it did; a user error is one sentence."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from icl_kit.core.errors import KitError

NAME_HELP = ("name a run or checkpoint: FILE, FILE:ENTRY or ENTRY (a part of a run's key, e.g. its date), then "
             "=NAME (repeatable); unnamed runs are called after their retriever, numbered by date when repeated")


def _add_params_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--params", default=None, required=required, help="params YAML file (default: built-in defaults)")
    p.add_argument("-p", "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, e.g. -p report.language=en (repeatable)")


# ------------------------------------------------------------------ retest
def cmd_retest(args: argparse.Namespace) -> int:
    from icl_kit.study.retest import retest

    res = retest(args.files, params_path=args.params, overrides=args.overrides, run_dir=args.run, names=args.name,
                 claims_file=args.claims, n=args.n, study_layers=args.study_layers, progress=True)
    again = f"; {res.remeasured} checkpoints re-measured per question" if res.remeasured else ""
    print(f"icl-kit study retest: {res.survived} of {res.claims} claims survive{again}; report {res.report}, "
          f"audit {res.audit}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from icl_kit.core.config import load_params
    from icl_kit.core.runs import RunPaths
    from icl_kit.study.audit import audit

    params = load_params(args.params, args.overrides)
    out = Path(args.out) if args.out else RunPaths(Path(params.run_dir)).audit
    path, arts = audit(args.paths, out, params.report.language)
    print(f"icl-kit study audit: {len(arts)} files, {sum(len(a.findings) for a in arts)} findings -> {path}")
    return 0


def cmd_import_results(args: argparse.Namespace) -> int:
    from icl_kit.core.config import load_params
    from icl_kit.evaluation.io import imported_path
    from icl_kit.study.import_results import import_results

    params = load_params(args.params, args.overrides) if args.params or not args.run else None
    run_dir = Path(args.run) if args.run else params.run_dir  # type: ignore[union-attr]

    def split_size() -> int:  # read only when a run covers the whole test split
        from icl_kit.data.okvqa import load_data

        if params is None:
            raise KitError("A run covers the whole test split; pass --params (to read the split) or --n.")
        return len(load_data(params.data)[1])

    if not args.files and not args.remove:
        raise KitError("Pass the study's result files to import (or --remove NAME to drop an imported system).")
    rows = import_results(args.files, run_dir, args.name, n=args.n, split_size=split_size, remove=args.remove)
    names = ", ".join(dict.fromkeys(rows["system"].astype(str))) or "nothing"
    removed = f"; removed {', '.join(args.remove)}" if args.remove else ""
    print(f"icl-kit study import-results: {len(rows)} rows of {names}{removed} -> {imported_path(run_dir)}")
    return 0


# ------------------------------------------------------------------ training data and pools
def cmd_import_rollouts(args: argparse.Namespace) -> int:
    from icl_kit.core.config import load_params
    from icl_kit.run_context import RunContext
    from icl_kit.study.rollouts import import_rollouts, train_split

    ctx = RunContext.build(load_params(args.params, args.overrides), commit=False)
    split = train_split(ctx.world)  # pools.json: a stale one is refused before the run folder is committed
    ctx.store.commit()
    record = ctx.store.record("rollouts", source=f"imported: {Path(args.src).name}")
    s = import_rollouts(args.src, ctx.paths.root, split, ids=args.ids, force=args.force, record=record)
    lengths = ", ".join(f"{n} of length {k}" for k, n in s.pointer_lengths.items())
    print(f"icl-kit study import-rollouts: {s.n_queries} queries, {s.n_candidates} candidates ({lengths}; ids read "
          f"as {s.ids}) -> {s.path}; dropped {s.n_failed_dropped} eval_failed candidates and {s.n_empty_queries} "
          f"queries left empty; {s.n_acc_differs} stored scores differ from the official VQA accuracy (the "
          f"official one is used), {s.n_fallback} were scored in fallback mode and {s.n_error} in error mode; "
          f"{s.n_pools_built} queries had no pool and got one built from their pointers and pools.json")
    return 0


def cmd_import_sft_data(args: argparse.Namespace) -> int:
    from icl_kit.core.config import load_params
    from icl_kit.run_context import RunContext
    from icl_kit.study.beams import import_sft_data

    ctx = RunContext.build(load_params(args.params, args.overrides), commit=False)  # a failed import writes nothing
    path, n_q, n_b = import_sft_data(args.file, ctx, args.pools, args.force)
    print(f"icl-kit study import-sft-data: {n_q} anchors, {n_b} beams -> {path}")
    return 0


def cmd_import_pools(args: argparse.Namespace) -> int:
    from icl_kit.core.config import load_params
    from icl_kit.run_context import RunContext

    ctx = RunContext.build(load_params(args.params, args.overrides))
    path, n = ctx.world.import_pools(args.anchors, args.candidates)
    others = len(ctx.world.pools) - n
    print(f"icl-kit study import-pools: {n} anchor pools from the study's cache, {others} others drawn "
          f"by pools.sampler={ctx.params.pools.sampler} -> {path}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from icl_kit.selection.convert import convert_paths

    convert_paths(args.v3_ckpt, args.output, args.force, echo=print, study_renames=args.study_renames,
                  study_layers=args.study_layers)
    return 0


# ------------------------------------------------------------------ parser
def _retest_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("retest", help="re-test the study's claims from its files -> a run folder with a report",
                       description="Re-test the study's claims from its result files alone (no model, no data), "
                                   "or with its checkpoints and --params naming data and an LVLM (re-measured per "
                                   "question). Writes params.yaml, eval/, stats/, report/ into the run folder.")
    p.add_argument("files", nargs="+", help="the study's result JSON files, checkpoints, or folders holding them")
    p.add_argument("--run", default=None, help="run folder to write (default: the params' run folder, else "
                                               "runs/study_retest)")
    p.add_argument("--name", action="append", default=[], metavar="FILE_OR_ENTRY=NAME", help=NAME_HELP)
    p.add_argument("--claims", default=None, help="YAML list of the study's claims {a, b, shot?, claimed?, label?} "
                                                  "(default: every pair of runs of one world at every shot)")
    p.add_argument("--n", type=int, default=None, help="question count of runs whose file covers the whole split "
                                                       "(the random baseline's file); default: the params' split")
    p.add_argument("--study-layers", type=int, default=None,
                   help="1: the sources of the study's converted checkpoints had one layer (when nothing shows it)")
    _add_params_args(p)
    p.set_defaults(func=cmd_retest)


def _import_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-results", help="import the study's result files as summary-only systems of a run")
    p.add_argument("files", nargs="*", help="metrics.json files {'<time>-test_data_num=N-<Retriever>': "
                                            "{'shot_num=K': fraction}} or the flat {'shot_num_K': fraction} baseline")
    p.add_argument("--name", action="append", default=[], metavar="FILE_OR_ENTRY=NAME", help=NAME_HELP)
    p.add_argument("--run", default=None, help="run folder (created when missing; default: the params' run folder)")
    p.add_argument("--n", type=int, default=None, help="question count of runs whose file covers the whole split")
    p.add_argument("--remove", action="append", default=[], metavar="NAME", help="drop an imported system")
    _add_params_args(p)
    p.set_defaults(func=cmd_import_results)

    p = sub.add_parser("import-rollouts", help="import the study's RL data JSON as the run's rollouts.jsonl")
    p.add_argument("src", help="the study's rl_data_*.json (either layout, docs/study.md)")
    p.add_argument("--ids", choices=["auto", "positions", "question_ids"], default="auto",
                   help="what the file's ids are (auto: positions when query.question_id differs from the key)")
    p.add_argument("--force", action="store_true", help="replace an existing rollouts.jsonl")
    _add_params_args(p)
    p.set_defaults(func=cmd_import_rollouts)

    p = sub.add_parser("import-sft-data", help="import the study's InfoScore beam JSON as sft_data.jsonl")
    p.add_argument("file", help="the study's vqa-...-scorer:infoscore-...json (keys are train-split positions)")
    p.add_argument("--pools", default=None, help="the study's candidate-set cache the beams were searched in "
                   "(default: the run's pools.json)")
    p.add_argument("--force", action="store_true", help="replace an existing sft_data.jsonl")
    _add_params_args(p)
    p.set_defaults(func=cmd_import_sft_data)

    p = sub.add_parser("import-pools", help="read the study's RandSampler cache files into the run's pools.json")
    p.add_argument("anchors", help="the anchor cache, e.g. okvqa-anchor_sample_num:800.json")
    p.add_argument("candidates", help="the candidate cache, e.g. 'okvqa-RandSampler-anchor_sample_num: 800:64.json'")
    _add_params_args(p)
    p.set_defaults(func=cmd_import_pools)


def add_study_commands(sub: argparse._SubParsersAction) -> Callable[..., int]:
    """`icl-kit study <verb>` under the main parser."""
    study = sub.add_parser("study", help="the existing study's files: retest, audit, import-*, convert",
                           description="Read, explain and re-test the existing study's own files (docs/study.md).")
    verbs = study.add_subparsers(dest="verb", required=True)
    _retest_parser(verbs)
    p = verbs.add_parser("audit", help="what each study file is and the defects it shows -> audit.md")
    p.add_argument("paths", nargs="+", help="the study's files or folders (walked)")
    p.add_argument("--out", default=None, help="output file (default: <run folder>/report/audit.md)")
    _add_params_args(p)
    p.set_defaults(func=cmd_audit)
    _import_parsers(verbs)
    p = verbs.add_parser("convert", help="convert selector checkpoints (.pt) to the v2 Lightning layout")
    p.add_argument("--v3-ckpt", required=True, help="a .pt file, or a quoted glob such as 'ckpts/grpo_epoch*.pt'")
    p.add_argument("--output", default=None, help="output file (default: <src>_v2format.ckpt; single file only)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--study-renames", action="store_true",
                   help="also read a _v2format.ckpt renamed by the study's converter and write it with proper names")
    p.add_argument("--study-layers", type=int, default=None,
                   help="1: the renamed file's source had one layer (when nothing in or beside it shows it)")
    p.set_defaults(func=cmd_convert)
    return cmd_retest
