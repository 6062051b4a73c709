"""Training's refusals, all before it writes anything (`icl_kit.train.trainer.train` runs them first)."""

from __future__ import annotations

from icl_kit.run_context import RunContext
from icl_kit.selection.selector import PointerSelector
from icl_kit.train.queries import split_queries
from icl_kit.train.rollouts import check_rollouts, sequence_length
from icl_kit.train.sft import warm_start
from icl_kit.train.sft_data import check_sft_data
from icl_kit.train.state import load_last, train_fingerprint


def preflight(ctx: RunContext) -> None:
    """Every refusal training can meet before it writes, for each seed of train.seeds: the query split,
    rollouts.jsonl, artefacts made with other params (their sidecars, upstream first), the resume state, the
    warm-start checkpoint, and beam data that will not be built."""
    for seed in ctx.params.train.seeds or [None]:
        _preflight(ctx.for_seed(seed))


def _preflight(ctx: RunContext) -> None:
    params = ctx.params
    cfg = params.train
    split = split_queries(ctx.world.pool_ids, cfg.rollouts.val_fraction, cfg.rollouts.max_queries)
    check_rollouts(ctx.paths.rollouts, ctx.world.pool_ids, sequence_length(cfg))
    ctx.store.check("embeddings", "pools", "rollouts", *(("sft_data",) if cfg.sft.epochs else ()))
    load_last(ctx.paths.last, train_fingerprint(params))
    warm_start(PointerSelector(**vars(params.selector)), cfg.init_checkpoint)
    if cfg.sft.epochs and not params.sft_data.build:
        check_sft_data(ctx.paths.sft_data, split)
