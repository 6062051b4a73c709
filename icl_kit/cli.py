"""`icl-kit` command line: one subcommand per job; user errors print one sentence."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from icl_kit.errors import KitError

Handler = Callable[[argparse.Namespace], int | None]


def _add_params_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default=None, help="params YAML file (default: built-in defaults)")
    p.add_argument("-p", "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, e.g. -p train.grpo.lr=1e-5 (repeatable)")


# ------------------------------------------------------------------ subcommands
def cmd_demo_data(args: argparse.Namespace) -> int:
    from icl_kit.data.demo import build_demo_world, describe_world

    root = build_demo_world(args.out, n_train=args.n_train, n_test=args.n_test, seed=args.seed,
                            force=args.force)
    print(describe_world(root))
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    from icl_kit.config import describe, dump_yaml, load_params

    if args.describe:
        for key, default, help_text in describe():
            print(f"{key:40s} {default:28s} {help_text}")
        return 0
    print(dump_yaml(load_params(args.params, args.overrides)), end="")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from icl_kit.pipeline import run

    run_dir = run(args.params_file, args.overrides, stages=args.stages, force=args.force)
    print(f"icl-kit run: finished; see {run_dir}/report/report.md")
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

    # Later stages register here: run, ask, convert, import-rollouts, eval, import-results, stats.
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KitError as exc:
        print(f"icl-kit: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
