"""`icl-kit` command line: one subcommand per job; user errors print one sentence."""

from __future__ import annotations

import argparse
import difflib
import errno
import re
import sys
import traceback
from typing import NoReturn

from icl_kit import __version__
from icl_kit.core.errors import KitError
from icl_kit.core.runs import RunPaths
from icl_kit.study.commands import add_study_commands


class Parser(argparse.ArgumentParser):
    """argparse whose every error is one line, `icl-kit: error: <message>; see icl-kit <command> --help.`, and
    whose mistyped command is answered with the nearest known one. Its subparsers are Parsers too."""

    commands: argparse._SubParsersAction | None = None

    def add_subparsers(self, **kwargs):  # argparse's own signature
        self.commands = super().add_subparsers(**kwargs)
        return self.commands

    def parse_args(self, args=None, namespace=None):  # argparse's own signature
        """As argparse, but an unknown option after a command points at that command's --help."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            where = " ".join(str(w) for w in (getattr(parsed, "command", None), getattr(parsed, "verb", None)) if w)
            self.exit(2, f"icl-kit: error: unrecognized arguments: {' '.join(extras)}; see "
                         f"{' '.join(['icl-kit', where]).strip()} --help.\n")
        return parsed

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"icl-kit: error: {self.sentence(message)}\n")

    def sentence(self, message: str) -> str:
        if self.commands is not None:
            names = list(self.commands.choices)
            where = self.prog.removeprefix("icl-kit").strip()
            m = re.match(rf"argument {re.escape(self.commands.dest)}: invalid choice: (['\"])(.*?)\1", message)
            if m:
                return unknown_command(m.group(2), names, where)
            if message.endswith(f"required: {self.commands.dest}"):
                return f"name a command: {', '.join(names)}; see {self.prog} --help."
        return f"{message}; see {self.prog} --help."


def unknown_command(typed: str, names: list[str], where: str = "") -> str:
    """The sentence for a mistyped command (of the commands under `where`, e.g. 'study'): "unknown command
    'reprot'; did you mean 'report'?", or the list of commands when none is close."""
    close = difflib.get_close_matches(typed, names, n=1)
    shown = f"{where} {typed}".strip()
    if close:
        return f"unknown command {shown!r}; did you mean {f'{where} {close[0]}'.strip()!r}?"
    return f"unknown command {shown!r}; choose one of {', '.join(names)}."


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

    if (args.params_file is None) == (args.params is None):
        which = "the params file once" if args.params_file else "a params file"
        raise KitError(f"Pass {which}, either as `icl-kit run params/demo.yaml` or as `icl-kit run --params "
                       "params/demo.yaml`; see icl-kit run --help.")
    run_dir = run(args.params_file or args.params, args.overrides, stages=args.stages, force=args.force)
    report = RunPaths(run_dir).report_md
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


def _add_eval_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate systems x shots x test questions -> eval/predictions.jsonl")
    _add_params_args(p)
    p.add_argument("--study-renames", action="store_true",
                   help="read checkpoints renamed by the study's converter (one-layer sources only)")
    p.set_defaults(func=cmd_eval)


def cmd_stats(args: argparse.Namespace) -> int:
    from pathlib import Path

    from icl_kit.core.config import load_params
    from icl_kit.stats.run import stats_for_run

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise KitError(f"Run folder {run_dir} does not exist; pass a folder such as runs/demo.")
    params = load_params(args.params or RunPaths(run_dir).params, args.overrides)
    df, _ = stats_for_run(run_dir, params.stats)
    cols = ["system_a", "system_b", "shots", "n", "diff", "ci_low", "ci_high", "p_adj", "verdict", "subset"]
    print(df[cols].to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    print(f"icl-kit stats: wrote {run_dir}/stats/comparisons.csv and summary.json")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from icl_kit.core.config import load_params
    from icl_kit.report.build import write_report

    run_dir = Path(args.run_dir)
    params_file = Path(args.params or RunPaths(run_dir).params)
    cfg = None
    if params_file.is_file():
        params = load_params(params_file, args.overrides)
        own = RunPaths(run_dir).params
        if args.params and own.is_file():
            _refuse_other_params(load_params(own), params, params_file, own)
        cfg = params.report
    out = write_report(run_dir, cfg)  # without params.yaml it raises the message naming the stage
    langs = ", ".join(str(html) for _, html in out["languages"].values())
    print(f"icl-kit report: wrote {out['md']}, {out['html']} ({langs}) and {len(out['figures'])} figures")
    return 0


def _refuse_other_params(own, given, given_file, own_file) -> None:  # noqa: ANN001 - two Params
    """A report renders the run it is given: params that differ beyond `report` describe another run."""
    from icl_kit.core.config import to_dict

    a, b = to_dict(own), to_dict(given)
    differ = sorted(k for k in a if k != "report" and a[k] != b[k])
    if differ:
        raise KitError(f"{given_file} differs from the run's {own_file} in {differ}; a report renders the run as it "
                       "was made: leave --params out (or change only report.* with -p), or re-run the stages.")


def cmd_sft_data(args: argparse.Namespace) -> int:
    from icl_kit.core.config import load_params
    from icl_kit.run_context import RunContext
    from icl_kit.train.sft_data import make_sft_data

    path, s = make_sft_data(RunContext.build(load_params(args.params, args.overrides), commit=False))
    print(f"icl-kit sft-data: {s.written} queries searched -> {path}; {s.score_calls} LVLM scores, "
          f"{s.cache_hits} cache hits of {s.score_lookups} scores asked for")
    return 0


def cmd_headroom(args: argparse.Namespace) -> int:
    from icl_kit.core.config import load_params
    from icl_kit.headroom.stage import headroom
    from icl_kit.headroom.summary import table_text

    res = headroom(load_params(args.params, args.overrides))
    print(table_text(res.summary))
    print("\n".join(res.summary["verdict"]["text"]))
    print(f"icl-kit headroom: {res.measured} questions measured with {res.calls} LVLM prompts and {res.score_calls} "
          f"scores in {res.seconds:.1f} s; see {res.summary_path}")
    return 0


def _add_sft_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sft-data", help="InfoScore beam search over each training query's pool -> sft_data.jsonl")
    _add_params_args(p)
    p.set_defaults(func=cmd_sft_data)
    p = sub.add_parser("headroom", help="before training: what a selector could gain (oracle, best of M, random, "
                                        "similarity) and the reward's signal -> headroom/summary.json")
    _add_params_args(p)
    p.set_defaults(func=cmd_headroom)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="icl-kit",
        description="Learn which in-context demonstrations to show a vision-language model.",
    )
    parser.add_argument("--version", action="version", version=f"icl-kit {__version__}")
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

    p = sub.add_parser("run", help="run the notebooks (headroom when headroom.enabled), train, eval, stats, "
                                   "report with one params file")
    p.add_argument("params_file", nargs="?", default=None, metavar="PARAMS",
                   help="params YAML, e.g. params/demo.yaml (or give it as --params)")
    p.add_argument("--params", default=None, help="the params YAML, as the other commands take it")
    p.add_argument("-p", "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, e.g. -p train.grpo.lr=1e-5 (repeatable)")
    p.add_argument("--stages", default=None, help="comma-separated subset of headroom,train,eval,stats,report "
                                                  "(default: all, headroom when headroom.enabled)")
    p.add_argument("--force", action="store_true", help="re-run stages even if finished with the same inputs")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("train", help="train the selector (SFT, RCE warm-up, GRPO); resumes from checkpoints/last.pt")
    _add_params_args(p)
    p.set_defaults(func=cmd_train)

    _add_eval_commands(sub)
    _add_sft_commands(sub)
    add_study_commands(sub)
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


def close_bars() -> None:
    """Close the progress bars an error or interrupt left open (the traceback holds their frames, so they would
    close, and print their last refresh, only after the sentence): the sentence stays the last line."""
    std = sys.modules.get("tqdm.std")
    for bar in list(getattr(getattr(std, "tqdm", None), "_instances", ())):
        bar.close()


def say(sentence: str) -> None:
    close_bars()
    print(sentence, file=sys.stderr)


def bug() -> int:
    close_bars()
    traceback.print_exc()
    print(BUG_REPORT, file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand. User errors (KitError, an OS error on a path, a mistyped command or option) print
    one sentence and exit 2; an interrupt exits 130 with one sentence (the command can be re-run to resume);
    anything else is a bug: traceback, exit 1."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already said in one line
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    try:
        return int(args.func(args) or 0)
    except KitError as exc:
        say(f"icl-kit: error: {exc}")
        return 2
    except OSError as exc:
        sentence = os_error_sentence(exc)
        if sentence is None:
            return bug()
        say(f"icl-kit: error: {sentence}")
        return 2
    except KeyboardInterrupt:
        say("icl-kit: interrupted; run the same command again to continue where it stopped.")
        return 130
    except Exception:
        return bug()


if __name__ == "__main__":
    sys.exit(main())
