"""One optimiser step of RCE or GRPO on a batch of groups, vectorised over groups.

A batch is B groups of up to G sequences of L picks (pool positions), with rewards and
a mask (see `icl_kit.train.rollouts.Groups`). All B·G sequences go through the selector in one
teacher-forced pass; each group's query and candidates are encoded once (`step_logprobs`).

Dropout and the PPO ratio: the old log-probs are taken before the update IN THE SAME MODE
as the new ones. By default both are computed with dropout off (eval mode); with
`dropout_in_ratio` both use dropout with the same per-step seed (same masks), so ρ = 1
exactly before the first update either way. The reference policy is always evaluated
without dropout.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from icl_kit.core.config import GRPOConfig
from icl_kit.core.devices import training_mode
from icl_kit.core.dist import Ranks
from icl_kit.selection.selector import forced_logprobs
from icl_kit.train.batch import Batch
from icl_kit.train.math import (
    clip_fraction,
    clip_sides,
    clipped_surrogate,
    entropy_bonus,
    group_advantages,
    informative_groups,
    kl_k3,
    masked_mean,
    rce_group_loss,
    rce_weights,
    selection_ratio,
)


class NonFiniteError(RuntimeError):
    """The loss, gradient or parameters became NaN/inf at this step (the trainer names the checkpoint)."""


def encode(policy: nn.Module, b: Batch) -> tuple[Tensor, Tensor]:
    """Initial state (B, h) and candidate keys (B, K, h).

    Eval mode: each distinct candidate row is projected once (as `select(cand_index=...)` does), which is
    exact because no dropout is drawn. Train mode: per (query, candidate), so dropout masks stay
    per query as in `policy.encode`.
    """
    if policy.training:
        return policy.encode(b.q, b.c)
    uniq, inverse = torch.unique(b.cand_rows, return_inverse=True)  # (U,), (B, K)
    values, keys = policy.project_candidates(b.emb[uniq])  # (U, h) each
    return policy.encode_query(b.q, values[inverse]), keys[inverse]


def teacher_forced(policy: nn.Module, b: Batch) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Per pick t of every sequence, teacher-forced along b.seqs: (log-softmax over the candidates (B, G, K),
    chosen before t (B, G, K), the pick a_t (B, G)). Masked entries of the log-softmax are -inf.

    Query and candidates are encoded ONCE per group (the projections dominate the cost) and the
    G sequences of a group share those keys.
    """
    state, keys = encode(policy, b)  # (B, h), (B, K, h)
    yield from policy.teacher_forcing(state.unsqueeze(1).expand(*b.seqs.shape[:2], -1), keys, b.seqs)


def step_logprobs(policy: nn.Module, b: Batch) -> tuple[Tensor, Tensor]:
    """Teacher-forced per-pick log-probs and entropies of every sequence. -> (B, G, L), (B, G, L)

    The selector's `step_logprobs`, grouped (`teacher_forced`). Equal to `policy.step_logprobs` on
    inputs repeated G times (tests/train/test_grpo.py).
    """
    return forced_logprobs(teacher_forced(policy, b))


@contextmanager
def ratio_mode(policy: nn.Module, dropout_in_ratio: bool, seed: int) -> Iterator[None]:
    """Eval mode, or train mode with dropout masks drawn from `seed` (global RNG untouched)."""
    if not dropout_in_ratio:
        with training_mode(policy, False):
            yield
        return
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices), training_mode(policy, True):
        torch.manual_seed(seed)
        yield


def optimise(policy: nn.Module, opt: torch.optim.Optimizer, loss: Tensor, global_loss: float,
              grad_clip: float, ranks: Ranks, step: int) -> float:
    """Backward, sum gradients over ranks, clip, step; NaN/inf anywhere raises NonFiniteError."""
    params = [p for p in policy.parameters() if p.requires_grad]
    opt.zero_grad(set_to_none=True)
    if loss.requires_grad:
        loss.backward()
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    ranks.sum_grads(params)
    norm = nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else math.inf)
    if not (math.isfinite(global_loss) and math.isfinite(float(norm))):
        raise NonFiniteError(f"step {step}: loss {global_loss}, grad norm {float(norm)}")
    opt.step()
    if not all(torch.isfinite(p).all() for p in params):
        raise NonFiniteError(f"step {step}: parameters are not finite after the update")
    return float(norm)


# ------------------------------------------------------------------------ RCE
def rce_step(policy: nn.Module, opt: torch.optim.Optimizer, full: Batch, tau: float, grad_clip: float,
             ranks: Ranks, step: int) -> dict[str, float]:
    """Reward-weighted CE: loss = mean over groups of −Σ_i softmax(r/τ)_i log π(s_i), dropout on."""
    n_groups = full.rewards.shape[0]
    mine = full.take(ranks.mine(n_groups))
    policy.train()
    if len(mine.rewards):
        logp, ent = step_logprobs(policy, mine)
        w = rce_weights(mine.rewards, tau, mine.mask)
        loss = rce_group_loss(logp.sum(-1), w, mine.mask).sum() / n_groups
        ent_sum = (ent.mean(-1) * mine.mask).sum()
    else:
        loss = ent_sum = torch.zeros((), device=full.q.device)
    totals = ranks.sum_(torch.stack([loss.detach(), ent_sum.detach()]).double().cpu())
    norm = optimise(policy, opt, loss, float(totals[0]), grad_clip, ranks, step)
    return {"train/loss": float(totals[0]), "train/entropy": float(totals[1]) / float(full.mask.sum()),
            "train/tau": tau, "train/grad_norm": norm, **reward_stats(full.rewards, full.mask)}


def reward_stats(rewards: Tensor, mask: Tensor) -> dict[str, float]:
    real = rewards[mask].double()
    return {"train/reward_mean": float(real.mean()), "train/reward_std": float(real.std(correction=0))}


# ----------------------------------------------------------------------- GRPO
def grpo_step(policy: nn.Module, ref: nn.Module | None, opt: torch.optim.Optimizer, full: Batch,
              cfg: GRPOConfig, beta: float, grad_clip: float, ranks: Ranks, step: int,
              dropout_seed: int) -> dict[str, float | None]:
    """Advantages on the whole batch, then `ppo_epochs` clipped-surrogate updates on this rank's groups.

    Groups whose rewards all tie (std < ZERO_STD) are dropped; if none is left, nothing is updated.
    """
    keep = informative_groups(full.rewards, full.mask)  # (B,)
    stats: dict[str, float | None] = {**reward_stats(full.rewards, full.mask),
                                      "train/frac_reward_zero_std": float(1 - keep.float().mean())}
    kept = full.take(keep.nonzero().squeeze(1))
    adv = group_advantages(kept.rewards, cfg.advantage, cfg.std_floor, cfg.adv_clip, kept.mask)  # (B', G)
    n_seq = float(kept.mask.sum())
    stats["train/beta"] = beta
    if n_seq == 0:
        return {**stats, **dict.fromkeys(GRPO_STEP_KEYS), "train/updated": False}
    real_adv = adv[kept.mask].double()
    stats.update({"train/adv_std": float(real_adv.std(correction=0)), "train/adv_max": float(real_adv.max())})
    idx = ranks.mine(len(kept.rewards))
    mine, adv_m = kept.take(idx), adv[idx]
    old = old_logprobs(policy, mine, cfg, dropout_seed)
    with torch.no_grad():
        ref_lp = step_logprobs(ref.eval(), mine)[0] if ref is not None and beta > 0 and len(idx) else None
    sums = torch.zeros(len(GRPO_SUM_KEYS), dtype=torch.float64)
    for _ in range(cfg.ppo_epochs):
        loss, local = _grpo_loss(policy, mine, adv_m, old, ref_lp, cfg, beta, n_seq, dropout_seed)
        totals = ranks.sum_(local.clone())
        norm = optimise(policy, opt, loss, float(totals[0]), grad_clip, ranks, step)
        sums += totals
    means = sums / cfg.ppo_epochs
    out = dict(zip(GRPO_SUM_KEYS, (float(v) for v in means), strict=True))
    out["train/entropy"] /= full.seqs.shape[-1]  # per pick, like RCE's
    return {**stats, **out, "train/grad_norm": norm, "train/updated": True}


def old_logprobs(policy: nn.Module, b: Batch, cfg: GRPOConfig, dropout_seed: int) -> Tensor | None:
    """log π_old of each sequence (B, G), taken before any update in the ratio's dropout mode.

    None when ppo_epochs == 1: the single update's own forward, detached, is then exactly the
    old log-prob (same weights, same mode, same dropout seed), so a second pass is skipped.
    """
    if cfg.ppo_epochs == 1 or not len(b.rewards):
        return None
    with torch.no_grad(), ratio_mode(policy, cfg.dropout_in_ratio, dropout_seed):
        return step_logprobs(policy, b)[0].sum(-1)


GRPO_SUM_KEYS = ("train/loss", "train/ppo_loss", "train/kl", "train/ratio_mean", "train/clip_frac",
                 "train/entropy", "train/clip_ratio/low", "train/clip_ratio/high")
GRPO_STEP_KEYS = (*GRPO_SUM_KEYS, "train/adv_std", "train/adv_max", "train/grad_norm")


def _grpo_loss(policy: nn.Module, mine: Batch, adv: Tensor, old: Tensor | None, ref_lp: Tensor | None,
               cfg: GRPOConfig, beta: float, n_seq: float, dropout_seed: int) -> tuple[Tensor, Tensor]:
    """loss = −Σ min(ρA, clip(ρ)A)/N + β Σ KL/N − c Σ H/N on this rank's groups (N = global sequence count;
    ρ by `cfg.ratio`, clip range [1 − ε, 1 + ε_high], entropy term only when c = `cfg.entropy_coef` ≠ 0).

    -> loss (scalar, differentiable) and this rank's sums of GRPO_SUM_KEYS (each already / N).
    """
    if not len(mine.rewards):  # this rank got no groups: contribute zero loss and zero gradient
        return torch.zeros(()), torch.zeros(len(GRPO_SUM_KEYS), dtype=torch.float64)
    with ratio_mode(policy, cfg.dropout_in_ratio, dropout_seed):
        logp, ent = step_logprobs(policy, mine)  # (b, G, L)
    seq = logp.sum(-1)  # (b, G)
    ratio = selection_ratio(seq, seq.detach() if old is None else old, logp.shape[-1], cfg.ratio)  # (b, G)
    eps, eps_high = cfg.clip_eps, cfg.clip_eps_high
    ppo = -masked_mean(clipped_surrogate(ratio, adv, eps, eps_high), mine.mask, n_seq)
    kl = kl_k3(logp, ref_lp).sum(-1) if ref_lp is not None else torch.zeros_like(ratio)  # (b, G)
    kl_mean = masked_mean(kl, mine.mask, n_seq)
    loss = ppo + beta * kl_mean
    if cfg.entropy_coef:
        loss = loss - entropy_bonus(ent, mine.mask, cfg.entropy_coef, n_seq)
    low, high = clip_sides(ratio, adv, eps, eps_high)
    parts = [loss, ppo, kl_mean, masked_mean(ratio, mine.mask, n_seq),
             masked_mean(clip_fraction(ratio, adv, eps, eps_high), mine.mask, n_seq),
             masked_mean(ent.sum(-1), mine.mask, n_seq), masked_mean(low, mine.mask, n_seq),
             masked_mean(high, mine.mask, n_seq)]
    return loss, torch.stack([p.detach() for p in parts]).double().cpu()
