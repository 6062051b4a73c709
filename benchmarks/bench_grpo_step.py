"""One offline GRPO epoch: batch_groups=32 (vectorised over groups) vs batch_groups=1 (the study's one group per step).

Workload: 800 training queries, 64-candidate pools, 12 distinct scored sequences of 2 ICDs per
query, the demo selector (d=512, h=256), zscore advantages, β=0.1 KL to a frozen reference.
Rewards are SYNTHETIC (a seeded draw in {0, 1, 2} per sequence, like correct+acc with
ties), so the benchmark times the trainer's step, not an LVLM. Both runs go through
`icl_kit.train.steps.grpo_step`, the function the trainer calls, on one torch thread.

The reference is the same code with batch_groups=1, measured in the same run. The last
line is the figure the README quotes.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from icl_kit.core.config import GRPOConfig
from icl_kit.core.dist import Ranks
from icl_kit.selection.selector import PointerSelector
from icl_kit.train.batch import Batch
from icl_kit.train.steps import grpo_step

N_QUERIES, POOL, N_SEQ, SHOTS = 800, 64, 12, 2
DIM, HIDDEN = 512, 256
N_RECORDS = 2000  # demonstration split the pools are drawn from


def synthetic_world(seed: int = 0) -> dict[str, torch.Tensor]:
    """Embeddings, pools (row indices), sequences (N, S, L) and rewards (N, S)."""
    g = torch.Generator().manual_seed(seed)
    emb = torch.nn.functional.normalize(torch.randn(N_RECORDS, DIM, generator=g), dim=-1)
    pools = torch.stack([torch.randperm(N_RECORDS, generator=g)[:POOL] for _ in range(N_QUERIES)])
    seqs = torch.rand(N_QUERIES, N_SEQ, POOL, generator=g).argsort(-1)[..., :SHOTS]  # 12 distinct per row (w.h.p.)
    rewards = torch.randint(0, 3, (N_QUERIES, N_SEQ), generator=g).float()
    return {"emb": emb, "queries": torch.arange(N_QUERIES), "pools": pools, "seqs": seqs, "rewards": rewards}


def epoch_seconds(world: dict[str, torch.Tensor], batch_groups: int, max_steps: int | None = None) -> float:
    """Wall time of one epoch (or of `max_steps` steps, scaled to the epoch)."""
    torch.manual_seed(0)
    policy = PointerSelector(DIM, HIDDEN, dropout=0.1)
    ref = copy.deepcopy(policy).eval()
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-4, weight_decay=0.01)
    cfg = GRPOConfig(batch_groups=batch_groups)
    order = torch.randperm(N_QUERIES, generator=torch.Generator().manual_seed(1))
    n_steps = -(-N_QUERIES // batch_groups)
    todo = n_steps if max_steps is None else min(max_steps, n_steps)
    mask = torch.ones(N_SEQ, dtype=torch.bool)
    t0 = time.perf_counter()
    for s in range(todo):
        idx = order[s * batch_groups : (s + 1) * batch_groups]
        batch = Batch(world["emb"][world["queries"][idx]], world["emb"], world["pools"][idx], world["seqs"][idx],
                      world["rewards"][idx], mask.expand(len(idx), -1))
        grpo_step(policy, ref, opt, batch, cfg, 0.1, 1.0, Ranks(), s + 1, dropout_seed=s)
    return (time.perf_counter() - t0) * n_steps / todo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 = steady on a shared CPU)")
    parser.add_argument("--quick", action="store_true", help="time 80 steps of batch_groups=1 and scale")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    world = synthetic_world()
    epoch_seconds(world, 32, max_steps=2)  # warm-up
    fast = epoch_seconds(world, 32)
    slow = epoch_seconds(world, 1, max_steps=80 if args.quick else None)
    print(f"workload: {N_QUERIES} queries x {N_SEQ} scored sequences of {SHOTS} from pools of {POOL}; "
          f"selector {DIM}->{HIDDEN}; synthetic rewards; {args.threads} thread(s)")
    print(f"batch_groups=32: {fast:.2f} s/epoch ({-(-N_QUERIES // 32)} steps)")
    print(f"batch_groups=1:  {slow:.2f} s/epoch ({N_QUERIES} steps){' (scaled from 80)' if args.quick else ''}")
    # The arithmetic floor: each query's 64 candidates projected (d*h + h*h multiply-adds each) by the policy's
    # forward, the frozen reference's forward and the policy's backward (about twice a forward): ~4 passes.
    flop = 2 * 4 * N_QUERIES * POOL * (DIM * HIDDEN + HIDDEN * HIDDEN)
    print(f"arithmetic: ~{flop / 1e9:.0f} GFLOP an epoch (the candidate projections): batch_groups=32 at "
          f"{flop / fast / 1e9:.1f} GFLOP/s, batch_groups=1 at {flop / slow / 1e9:.1f}")
    print(f"speedup: {slow / fast:.1f}x (batch_groups 32 vs 1)")


if __name__ == "__main__":
    main()
