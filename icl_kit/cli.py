"""`icl-kit` command line: one subcommand per job; user errors print one sentence."""

from __future__ import annotations

import argparse
import errno
import sys
import traceback

from icl_kit.core.errors import KitError


def _add_params_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default=None, help="params YAML file (default: built-in defaults)")
    p.add_argument("-p", "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, e.g. -p train.grpo.lr=1e-5 (repeatable)")


# ------------------------------------------------------------------ subcommands
def cmd_demo_data(args: argparse.Namespace) -> int:
    from icl_kit.data.demo.world import build_demo_world, describe_world

    root = build_demo_world(args.out, n_train=args.n_train, n_test=args.n_test, seed=args.seed,
                            force=args.force)
    print(describe_world(root))
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    from icl_kit.core.config import describe, dump_yaml, load_params

    if args.describe:
        for key, default, help_text in describe():
            print(f"{key:40s} {default:28s} {help_text}")
        return 0
    print(dump_yaml(load_params(args.params, args.overrides)), end="")
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    """One question through the LVLM with K random ICDs: the prompt layout and the answer."""
    from icl_kit.core.config import load_params
    from icl_kit.data.demo.world import ensure_demo_world
    from icl_kit.data.okvqa import load_data
    from icl_kit.data.vqa_accuracy import vqa_accuracy
    from icl_kit.lvlm.base import Request
    from icl_kit.lvlm.prompts import build_messages, describe_messages, prompt_records
    from icl_kit.lvlm.registry import build_lvlm
    from icl_kit.selection.pools import random_icds

    if args.shots < 0:
        raise KitError(f"--shots {args.shots} must be 0 or more.")
    params = load_params(args.params, args.overrides)
    ensure_demo_world(params.data)
    pool, test = load_data(params.data)
    by_id = {r.question_id: r for r in [*pool, *test]}
    if args.question_id not in by_id:
        raise KitError(f"Question id {args.question_id} is in neither split of {params.data.root!r}; "
                       f"try one of {sorted(r.question_id for r in test)[:3]}.")
    query = by_id[args.question_id]
    # The eval's random system: one draw of max(shots) ICDs per question, shot K = first K.
    k_max = max(args.shots, *params.eval.shots)
    ids = random_icds(query.question_id, [r.question_id for r in pool], k_max, params.eval.seed)
    icds = tuple(by_id[i] for i in ids[:args.shots])
    messages = build_messages(icds, query, params.lvlm.prompt, load_images=False)
    print(f"question {query.question_id}: {query.question!r}  answers: {list(query.answers)}")
    print(f"ICDs: {args.shots} random (eval.seed={params.eval.seed}): {[r.question_id for r in icds]}")
    print(describe_messages(messages, prompt_records(icds, query, params.lvlm.prompt)))
    gen = build_lvlm(params).generate([Request(icds, query)])[0]
    print(f"raw: {gen.text!r}")
    print(f"answer: {gen.answer!r}  (VQA accuracy {100 * vqa_accuracy(gen.answer, query.answers):.0f})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from icl_kit.pipeline import run

    run_dir = run(args.params_file, args.overrides, stages=args.stages, force=args.force)
    report = run_dir / "report" / "report.md"
    print(f"icl-kit run: finished; see {report if report.exists() else run_dir}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from icl_kit.core.config import load_params
    from icl_kit.train.trainer import train

    res = train(load_params(args.params, args.overrides))
    cols = [c for c in res.val_table.columns if c in ("phase", "epoch", "checkpoint") or c.startswith("val/reward@")]
    if not res.val_table.empty:
        print(res.val_table[cols].to_string(index=False))
    print(f"icl-kit train: {res.steps} steps; best by validation reward: {res.best_checkpoint}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from icl_kit.core.config import load_params
    from icl_kit.evaluation.runner import evaluate

    params = load_params(args.params, args.overrides)
    if args.study_renames:
        from icl_kit.evaluation.systems import BASELINES, STUDY_RENAMES_OPTION

        params.eval.systems = [s if s in BASELINES or s.endswith(STUDY_RENAMES_OPTION) else s + STUDY_RENAMES_OPTION
                               for s in params.eval.systems]
    res = evaluate(params)
    print(f"icl-kit eval: {res.cells} cells filled with {res.calls} LVLM calls ({res.skipped} already done); "
          f"{len(res.systems)} systems x {res.n_questions} questions; see {res.summary}")
    if res.table is not None:
        print(res.table.to_string(index=False))
    return 0


def cmd_import_results(args: argparse.Namespace) -> int:
    from icl_kit.core.config import load_params
    from icl_kit.evaluation.import_results import import_results
    from icl_kit.evaluation.io import imported_path

    params = load_params(args.params, args.overrides) if args.params or not args.run else None
    run_dir = args.run or params.run_dir

    def split_size() -> int:  # read only when a run covers the whole test split
        from icl_kit.data.okvqa import load_data

        if params is None:
            raise KitError("A run covers the whole test split; pass --params (to read the split) or --n.")
        return len(load_data(params.data)[1])

    rows = import_results(args.file, args.system, run_dir, entry=args.entry, n=args.n, split_size=split_size)
    names = ", ".join(dict.fromkeys(rows["system"].astype(str)))
    print(f"icl-kit import-results: {len(rows)} rows of {names} -> {imported_path(run_dir)}")
    return 0


def _add_eval_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate systems x shots x test questions -> eval/predictions.jsonl")
    _add_params_args(p)
    p.add_argument("--study-renames", action="store_true",
                   help="read checkpoints renamed by the study's converter (one-layer sources only)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("import-results", help="import the study's result JSON as summary-only systems")
    p.add_argument("file", help="metrics JSON {'<time>-test_data_num=N-<Retriever>': {'shot_num=K': fraction}} "
                                "or a flat {'shot_num_K': fraction} baseline file")
    p.add_argument("--system", default=None,
                   help="name of the one imported run (default: one system per run, named after its retriever)")
    p.add_argument("--run", default=None, help="run folder (default: the params' run folder)")
    p.add_argument("--entry", default=None, help="part of the key of the run to import when the file holds several")
    p.add_argument("--n", type=int, default=None, help="question count when the key lacks test_data_num=N")
    _add_params_args(p)
    p.set_defaults(func=cmd_import_results)


def cmd_stats(args: argparse.Namespace) -> int:
    from pathlib import Path

    from icl_kit.core.config import load_params
    from icl_kit.stats.run import stats_for_run

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise KitError(f"Run folder {run_dir} does not exist; pass a folder such as runs/demo.")
    params = load_params(args.params or run_dir / "params.yaml", args.overrides)
    df, _ = stats_for_run(run_dir, params.stats)
    cols = ["system_a", "system_b", "shot", "n", "diff", "ci_low", "ci_high", "p_adj", "verdict", "subset"]
    print(df[cols].to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    print(f"icl-kit stats: wrote {run_dir}/stats/comparisons.csv and summary.json")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from icl_kit.core.config import load_params
    from icl_kit.report.build import write_report

    run_dir = Path(args.run_dir)
    params_file = Path(args.params or run_dir / "params.yaml")
    cfg = load_params(params_file, args.overrides).report if params_file.is_file() else None
    out = write_report(run_dir, cfg)  # without params.yaml it raises the message naming the stage
    print(f"icl-kit report: wrote {out['md']}, {out['html']} and {len(out['figures'])} figures")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from icl_kit.selection.convert import convert_paths

    convert_paths(args.v3_ckpt, args.output, args.force, echo=print, study_renames=args.study_renames)
    return 0


def cmd_import_rollouts(args: argparse.Namespace) -> int:
    from icl_kit.core.config import load_params
    from icl_kit.run_context import RunContext
    from icl_kit.train.import_rollouts import import_rollouts, train_split

    ctx = RunContext.build(load_params(args.params, args.overrides))
    s = import_rollouts(args.src, ctx.paths.root, train_split(ctx), ids=args.ids, force=args.force)
    lengths = ", ".join(f"{n} of length {k}" for k, n in s.pointer_lengths.items())
    print(f"icl-kit import-rollouts: {s.n_queries} queries, {s.n_candidates} candidates ({lengths}; ids read as "
          f"{s.ids}) -> {s.path}; dropped {s.n_failed_dropped} eval_failed candidates and {s.n_empty_queries} "
          f"queries left empty; {s.n_acc_differs} stored scores differ from the official VQA accuracy (the "
          f"official one is used), {s.n_fallback} were scored in fallback mode and {s.n_error} in error mode; "
          f"{s.n_pools_built} queries had no pool and got one built from their pointers and pools.json")
    return 0


def cmd_import_pools(args: argparse.Namespace) -> int:
    from icl_kit.core.config import load_params
    from icl_kit.run_context import RunContext

    ctx = RunContext.build(load_params(args.params, args.overrides))
    path, n = ctx.import_pools(args.anchors, args.candidates)
    print(f"icl-kit import-pools: {n} anchor pools from the study's cache, {len(ctx.pools) - n} others drawn by "
          f"pools.sampler={ctx.params.pools.sampler} -> {path}")
    return 0


def cmd_sft_data(args: argparse.Namespace) -> int:
    from icl_kit.core.config import load_params
    from icl_kit.run_context import RunContext
    from icl_kit.train.sft_data import make_sft_data

    path, s = make_sft_data(RunContext.build(load_params(args.params, args.overrides)))
    print(f"icl-kit sft-data: {s.written} queries searched -> {path}; {s.score_calls} LVLM scores, "
          f"{s.cache_hits} cache hits of {s.score_lookups} scores asked for")
    return 0


def cmd_import_sft_data(args: argparse.Namespace) -> int:
    from icl_kit.core.config import load_params
    from icl_kit.run_context import RunContext
    from icl_kit.train.import_sft import import_sft_data

    ctx = RunContext.build(load_params(args.params, args.overrides), commit=False)  # a failed import writes nothing
    path, n_q, n_b = import_sft_data(args.file, ctx, args.pools, args.force)
    print(f"icl-kit import-sft-data: {n_q} anchors, {n_b} beams -> {path}")
    return 0


def _add_sft_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sft-data", help="InfoScore beam search over each training query's pool -> sft_data.jsonl")
    _add_params_args(p)
    p.set_defaults(func=cmd_sft_data)

    p = sub.add_parser("import-sft-data", help="import the study's beam JSON (generated_data) as sft_data.jsonl")
    p.add_argument("file", help="the study's vqa-...-scorer:infoscore-...json (keys are train-split positions)")
    p.add_argument("--pools", default=None, help="the study's candidate-set cache the beams were searched in "
                   "(default: the run's pools.json)")
    p.add_argument("--force", action="store_true", help="replace an existing sft_data.jsonl")
    _add_params_args(p)
    p.set_defaults(func=cmd_import_sft_data)


def _add_selector_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-pools", help="read the study's RandSampler cache files into the run's pools.json")
    p.add_argument("anchors", help="the anchor cache, e.g. okvqa-anchor_sample_num:800.json")
    p.add_argument("candidates", help="the candidate cache, e.g. 'okvqa-RandSampler-anchor_sample_num: 800:64.json'")
    _add_params_args(p)
    p.set_defaults(func=cmd_import_pools)

    p = sub.add_parser("convert", help="convert v3 selector checkpoints (.pt) to the v2 Lightning layout")
    p.add_argument("--v3-ckpt", required=True, help="a .pt file, or a quoted glob such as 'ckpts/grpo_epoch*.pt'")
    p.add_argument("--output", default=None, help="output file (default: <src>_v2format.ckpt; single file only)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--study-renames", action="store_true",
                   help="also read a _v2format.ckpt renamed by the study's converter and write it with proper names")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("import-rollouts", help="import the study's RL data JSON as the run's rollouts.jsonl")
    p.add_argument("src", help="the study's rl_data_*.json (either layout, STUDY_FORMATS.md §5.4)")
    p.add_argument("--ids", choices=["auto", "positions", "question_ids"], default="auto",
                   help="what the file's ids are (auto: positions when query.question_id differs from the key)")
    p.add_argument("--force", action="store_true", help="replace an existing rollouts.jsonl")
    _add_params_args(p)
    p.set_defaults(func=cmd_import_rollouts)


def cmd_audit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from icl_kit.core.config import load_params
    from icl_kit.report.audit import audit

    params = load_params(args.params, args.overrides)
    out = Path(args.out) if args.out else params.run_dir / "report" / "audit.md"
    path, arts = audit(args.paths, out, params.report.language)
    print(f"icl-kit audit: {len(arts)} files, {sum(len(a.findings) for a in arts)} findings -> {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="icl-kit",
        description="Learn which in-context demonstrations to show a vision-language model.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo-data", help="write the embedded demo world (OK-VQA layout)")
    p.add_argument("--out", default="data/demo", help="output folder (default: data/demo)")
    p.add_argument("--n-train", type=int, default=2000, help="pool (train) questions")
    p.add_argument("--n-test", type=int, default=1000, help="test (val) questions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="rebuild even if the folder is complete")
    p.set_defaults(func=cmd_demo_data)

    p = sub.add_parser("params", help="print resolved params (or --describe every key)")
    _add_params_args(p)
    p.add_argument("--describe", action="store_true", help="list every key, default and meaning")
    p.set_defaults(func=cmd_params)

    p = sub.add_parser("run", help="run the notebooks train, eval, stats, report with one params file")
    p.add_argument("params_file", help="params YAML, e.g. params/demo.yaml")
    p.add_argument("-p", "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, e.g. -p train.grpo.lr=1e-5 (repeatable)")
    p.add_argument("--stages", default=None, help="comma-separated subset of train,eval,stats,report")
    p.add_argument("--force", action="store_true", help="re-run stages even if finished with the same inputs")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("train", help="train the selector (SFT, RCE warm-up, GRPO); resumes from checkpoints/last.pt")
    _add_params_args(p)
    p.set_defaults(func=cmd_train)

    _add_eval_commands(sub)
    _add_selector_commands(sub)
    _add_sft_commands(sub)
    p = sub.add_parser("stats", help="significance tests of a run's evaluation -> stats/comparisons.csv")
    p.add_argument("run_dir", help="run folder, e.g. runs/demo")
    _add_params_args(p)
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("ask", help="answer one question with K random ICDs; print the prompt layout")
    _add_params_args(p)
    p.add_argument("--question-id", type=int, required=True, help="question id (test or pool split)")
    p.add_argument("--shots", type=int, default=2, help="number of ICDs K (default 2)")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("report", help="write a run's report (report.md, report.html, figures) from its stats")
    p.add_argument("run_dir", help="run folder, e.g. runs/demo")
    _add_params_args(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("audit", help="what each study file is and the defects it shows -> audit.md")
    p.add_argument("paths", nargs="+", help="the study's checkpoints, RL data, result files and pool caches")
    p.add_argument("--out", default=None, help="output file (default: <run folder>/report/audit.md)")
    _add_params_args(p)
    p.set_defaults(func=cmd_audit)
    return parser


# What to do about an OS error on a path, by its type (the message names the path itself).
OS_ADVICE: tuple[tuple[type[OSError], str], ...] = (
    (PermissionError, "make it (and the folder it is in) readable and writable for you, or choose another path"),
    (FileExistsError, "a file is in the way of a folder there; move that file or choose another path"),
    (NotADirectoryError, "a part of the path is a file, not a folder; move that file or choose another path"),
    (IsADirectoryError, "it is a folder where a file is expected; pass the path of a file"),
    (FileNotFoundError, "it does not exist; check the path"),
)
BUG_REPORT = ("icl-kit: internal error: this is a bug in icl-kit, not a problem with your input; please report it "
              "with the traceback above and the command you ran.")


def os_error_sentence(exc: OSError) -> str | None:
    """One sentence for an OS error about a path or a full disk (None for others: those are bugs)."""
    if exc.filename is None:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"{exc.strerror}; free disk space and run the same command again (it continues where it stopped)."
        return None
    advice = next((a for cls, a in OS_ADVICE if isinstance(exc, cls)),
                  "fix that (e.g. free disk space or remount it writable) or choose another path")
    return f"{exc.strerror or type(exc).__name__}: {exc.filename}; {advice}."


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand. User errors (KitError, an OS error on a path) print one sentence and exit 2;
    an interrupt exits 130 (the command can be re-run to resume); anything else is a bug: traceback, exit 1."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KitError as exc:
        print(f"icl-kit: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        sentence = os_error_sentence(exc)
        if sentence is None:
            traceback.print_exc()
            print(BUG_REPORT, file=sys.stderr)
            return 1
        print(f"icl-kit: error: {sentence}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("icl-kit: interrupted; run the same command again to continue where it stopped.", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        print(BUG_REPORT, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
