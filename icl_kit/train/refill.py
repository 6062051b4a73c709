"""`train.grpo.zero_spread: refill`: DAPO's dynamic sampling (Yu et al. 2025) for one GRPO step.

A group whose rewards all tie has zero advantage and is dropped (`informative_groups`). With refill, a
step whose B queries left only B' < B groups with reward spread draws further training queries, B − B' at a
time, until it holds B such groups or it has drawn `max_queries` extra queries (or the training queries run
out). Extra queries come from every training query not already in the step, in an order seeded by
`refill_seed(train.seed, global step)`, so the draws depend on nothing but the seed and the step (and, online,
the sampling generator the trainer saves in last.pt): a resumed run draws exactly what an uninterrupted one did.

The step's batch is the step's own groups followed by every drawn group, tied ones included, so the GRPO step
drops the ties itself and its `train/frac_reward_zero_std` and reward statistics cover every group drawn.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from icl_kit.core.config import GRPOConfig
from icl_kit.train.math import informative_groups
from icl_kit.train.rollouts import Groups

REFILL_SEED_BASE = 1 << 40  # keeps these seeds apart from the dropout seeds (seed·1_000_003 + step)
REFILL_SEED_STRIDE = 1_000_003


def refill_seed(seed: int, step: int) -> int:
    """The seed of global step `step`'s draw order."""
    return REFILL_SEED_BASE + seed * REFILL_SEED_STRIDE + step


def refill_order(n_queries: int, taken: Tensor, seed: int) -> Tensor:
    """Training-query indices 0..n−1 not in `taken`, in the order of a permutation seeded by `seed`."""
    perm = torch.randperm(n_queries, generator=torch.Generator().manual_seed(seed))
    return perm[~torch.isin(perm, taken.cpu())]


def cat_groups(parts: list[Groups]) -> Groups:
    """Groups stacked along B (each part's G and L are the same: the group size, or offline's common width)."""
    return Groups(*(torch.cat([getattr(p, f) for p in parts]) for f in ("rows", "seqs", "rewards", "mask")))


def refill(draw: Callable[[Tensor], Groups], first: Groups, taken: Tensor, n_queries: int, seed: int,
           max_queries: int) -> tuple[Groups, int]:
    """The step's groups `first` (of queries `taken`) and the extra groups drawn (module doc).

    draw(idx) -> the Groups of training queries idx (sampled and scored online, the fixed set offline).
    -> (all groups, number of extra queries drawn).
    """
    need = len(taken) - int(informative_groups(first.rewards, first.mask).sum())
    order = refill_order(n_queries, taken, seed)[:max_queries]
    parts, drawn = [first], 0
    while need > 0 and drawn < len(order):
        g = draw(order[drawn : drawn + need])
        drawn += len(g.rows)
        need -= int(informative_groups(g.rewards, g.mask).sum())
        parts.append(g)
    return (cat_groups(parts) if len(parts) > 1 else first), drawn


def refill_step(cfg: GRPOConfig, draw: Callable[[Tensor], Groups], first: Groups, taken: Tensor, n_queries: int,
                seed: int, step: int) -> tuple[Groups, dict[str, int]]:
    """`refill` at global step `step` when cfg.zero_spread is refill, and its log entry
    {"train/refill_queries": extra queries drawn}; with drop, `first` as it is and no entry."""
    if cfg.zero_spread != "refill":
        return first, {}
    groups, drawn = refill(draw, first, taken, n_queries, refill_seed(seed, step), cfg.refill_max_queries)
    return groups, {"train/refill_queries": drawn}
