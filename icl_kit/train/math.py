"""The equations of RCE and GRPO, one pure function each.

Shapes: B groups (queries), G sequences per group, L picks per sequence.
Groups may be ragged (offline rollouts are de-duplicated): a boolean `mask`
(B, G) marks the real sequences; padded entries never touch a result.

    RCE      w_i = softmax_i(r_i / τ),  loss = −Σ_i w_i log π(s_i)          (mean over groups)
    GRPO     A_i = advantage rule (registry `ADVANTAGES`)
             ρ_i = exp(log π_θ(s_i) − log π_old(s_i))            (ratio: product of the L pick ratios)
                 = exp((log π_θ(s_i) − log π_old(s_i)) / L)      (ratio: per_pick_mean, their geometric mean)
             loss = −mean_i min(ρ_i A_i, clip(ρ_i, 1−ε, 1+ε_high) A_i) + β · mean_i KL_i − c · mean_i H_i
             KL_i = Σ_t k3(log π_θ(a_t), log π_ref(a_t))                    (Schulman's k3)
             H_i  = mean_t entropy of pick t's softmax over the candidates still available
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from icl_kit.core.errors import KitError

ZERO_STD = 1e-6  # a group with reward std below this carries no signal and is dropped
KL_ADAPT_FACTOR = 2.0  # PPO paper (Schulman et al. 2017, §4): β ×/÷ 2 ...
KL_ADAPT_BAND = 1.5  # ... when the KL is above 1.5·target / below target/1.5


# ------------------------------------------------------------------ masked stats
def _full_mask(x: Tensor, mask: Tensor | None) -> Tensor:
    return torch.ones_like(x, dtype=torch.bool) if mask is None else mask


def group_mean_std(rewards: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Per-group mean and population std (1/n, not 1/(n−1)) over the real entries.

    rewards (B, G), mask (B, G) -> mean (B, 1), std (B, 1)
    """
    m = _full_mask(rewards, mask).to(rewards.dtype)
    n = m.sum(dim=1, keepdim=True).clamp_min(1.0)  # (B, 1)
    mean = (rewards * m).sum(dim=1, keepdim=True) / n
    var = ((rewards - mean) ** 2 * m).sum(dim=1, keepdim=True) / n
    return mean, var.sqrt()


def informative_groups(rewards: Tensor, mask: Tensor | None = None) -> Tensor:
    """Groups whose rewards differ (std ≥ ZERO_STD): the only ones with a GRPO signal. (B, G) -> bool (B,)"""
    return group_mean_std(rewards, mask)[1].squeeze(1) >= ZERO_STD


def masked_mean(x: Tensor, mask: Tensor | None = None, denom: float | Tensor | None = None) -> Tensor:
    """Σ x·mask / denom (denom defaults to Σ mask). A global `denom` lets each rank hold part of a batch."""
    m = _full_mask(x, mask).to(x.dtype)
    total = (x * m).sum()
    return total / (m.sum().clamp_min(1.0) if denom is None else denom)


# -------------------------------------------------------------------- advantages
def zscore_advantages(rewards: Tensor, mask: Tensor | None, std_floor: float, clip: float) -> Tensor:
    """A = clip((r − mean_g) / max(std_g, floor), ±clip). (B, G) -> (B, G)"""
    mean, std = group_mean_std(rewards, mask)
    return ((rewards - mean) / std.clamp_min(std_floor)).clamp(-clip, clip)


def rank_advantages(rewards: Tensor, mask: Tensor | None, std_floor: float, clip: float) -> Tensor:
    """Centred average ranks scaled to [−1, 1]: A = 2·rank/(n−1) − 1, ties share their mean rank.

    rank_i = #{j: r_j < r_i} + (#{j: r_j = r_i} − 1)/2  (0-based, = scipy rankdata − 1). (B, G) -> (B, G)
    """
    m = _full_mask(rewards, mask)
    pair = m.unsqueeze(1) & m.unsqueeze(2)  # (B, G, G): both i and j real
    diff = rewards.unsqueeze(2) - rewards.unsqueeze(1)  # (B, G_i, G_j) = r_i − r_j
    below = ((diff > 0) & pair).sum(dim=2).to(rewards.dtype)
    ties = ((diff == 0) & pair).sum(dim=2).to(rewards.dtype)
    rank = below + (ties - 1) / 2
    n = m.sum(dim=1, keepdim=True).to(rewards.dtype)
    return torch.where(m, 2 * rank / (n - 1).clamp_min(1.0) - 1, torch.zeros_like(rewards))


def mean_only_advantages(rewards: Tensor, mask: Tensor | None, std_floor: float, clip: float) -> Tensor:
    """A = r − mean_g (no scaling: Dr. GRPO, Liu et al. 2025). (B, G) -> (B, G)"""
    return rewards - group_mean_std(rewards, mask)[0]


def batch_std_advantages(rewards: Tensor, mask: Tensor | None, std_floor: float, clip: float) -> Tensor:
    """A = clip((r − mean_g) / max(std_batch, floor), ±clip); std_batch over every real reward
    of the batch (TRL's `scale_rewards="batch"`). (B, G) -> (B, G)"""
    m = _full_mask(rewards, mask)
    std = rewards[m].std(correction=0) if m.any() else rewards.new_zeros(())
    return ((rewards - group_mean_std(rewards, mask)[0]) / std.clamp_min(std_floor)).clamp(-clip, clip)


def rloo_advantages(rewards: Tensor, mask: Tensor | None, std_floor: float, clip: float) -> Tensor:
    """A_i = r_i − mean_{j≠i} r_j: each sequence against the mean of the others of its group (leave-one-out
    baseline, RLOO: Ahmadian et al. 2024; TRL's RLOOTrainer); = n/(n−1)·(r_i − mean_g), unscaled.
    A group with one real sequence has no other: 0. (B, G) -> (B, G)"""
    m = _full_mask(rewards, mask).to(rewards.dtype)
    n = m.sum(dim=1, keepdim=True)  # (B, 1)
    others = ((rewards * m).sum(dim=1, keepdim=True) - rewards) / (n - 1).clamp_min(1.0)
    return torch.where(n > 1, rewards - others, torch.zeros_like(rewards))


AdvantageFn = Callable[[Tensor, Tensor | None, float, float], Tensor]
ADVANTAGES: dict[str, AdvantageFn] = {
    "zscore": zscore_advantages,
    "rank": rank_advantages,
    "mean_only": mean_only_advantages,
    "batch_std": batch_std_advantages,
    "rloo": rloo_advantages,
}


def group_advantages(
    rewards: Tensor, mode: str, std_floor: float, clip: float, mask: Tensor | None = None,
) -> Tensor:
    """Advantages of each sequence within its group by rule `mode`; padded entries are 0. (B, G) -> (B, G)

    `std_floor` and `clip` are `train.grpo.std_floor` / `train.grpo.adv_clip` (their defaults live there).
    """
    if mode not in ADVANTAGES:
        raise KitError(f"Advantage rule {mode!r} is unknown; choose one of {list(ADVANTAGES)}.")
    adv = ADVANTAGES[mode](rewards, mask, std_floor, clip)
    return adv if mask is None else adv.masked_fill(~mask, 0.0)


# ----------------------------------------------------------------------- GRPO
def policy_ratio(logp: Tensor, logp_old: Tensor) -> Tensor:
    """ρ = exp(log π_θ − log π_old), elementwise (sequence log-probs, (B, G))."""
    return torch.exp(logp - logp_old)


RATIOS = ("product", "per_pick_mean")


def selection_ratio(seq_logp: Tensor, seq_logp_old: Tensor, n_picks: int, mode: str) -> Tensor:
    """Importance ratio of a k-pick selection from its summed log-probs (B, G) -> (B, G).

    product:       ρ = exp(Σ_t Δ_t) = Π_t ρ_t, the sequence's own ratio (PPO/GRPO; `policy_ratio`)
    per_pick_mean: ρ = exp(Σ_t Δ_t / k) = (Π_t ρ_t)^(1/k), the geometric mean of the k pick ratios
                   (GSPO, Zheng et al. 2025: the sequence ratio normalised by its length)
    with Δ_t = log π_θ(a_t) − log π_old(a_t).
    """
    if mode == "product":
        return policy_ratio(seq_logp, seq_logp_old)
    if mode == "per_pick_mean":
        return torch.exp((seq_logp - seq_logp_old) / n_picks)
    raise KitError(f"train.grpo.ratio={mode!r} is unknown; choose one of {list(RATIOS)}.")


def clip_range(eps: float, eps_high: float | None) -> tuple[float, float]:
    """[1 − ε, 1 + ε_high]; ε_high None = ε (symmetric; DAPO's clip-higher sets ε_high > ε)."""
    return 1 - eps, 1 + (eps if eps_high is None else eps_high)


def clipped_surrogate(ratio: Tensor, adv: Tensor, eps: float, eps_high: float | None = None) -> Tensor:
    """PPO objective per sequence: min(ρA, clip(ρ, 1−ε, 1+ε_high)A) (to be maximised). (B, G) -> (B, G)"""
    return torch.minimum(ratio * adv, ratio.clamp(*clip_range(eps, eps_high)) * adv)


def clip_fraction(ratio: Tensor, adv: Tensor, eps: float, eps_high: float | None = None) -> Tensor:
    """1 where the clipped branch is the active one (its gradient is 0), else 0. (B, G) -> (B, G)"""
    return ((ratio * adv) > (ratio.clamp(*clip_range(eps, eps_high)) * adv)).to(ratio.dtype)


def clip_sides(ratio: Tensor, adv: Tensor, eps: float, eps_high: float | None = None) -> tuple[Tensor, Tensor]:
    """Where the clipped branch is active, by side: (low, high) as 0/1, (B, G) each (TRL's clip_ratio/*).

    low: ρ < 1 − ε and A < 0 (the update would push π_θ further below π_old); high: ρ > 1 + ε_high and A > 0.
    low + high = `clip_fraction` wherever A ≠ 0.
    """
    lo, hi = clip_range(eps, eps_high)
    return ((ratio < lo) & (adv < 0)).to(ratio.dtype), ((ratio > hi) & (adv > 0)).to(ratio.dtype)


def entropy_bonus(pick_entropy: Tensor, mask: Tensor | None, coef: float,
                  denom: float | Tensor | None = None) -> Tensor:
    """c · mean over sequences of the mean entropy of their picks, subtracted from the loss.

    pick_entropy (B, G, L): entropy of each pick's softmax over the candidates still available (PPO's entropy
    bonus, Schulman et al. 2017; verl's `entropy_coeff`). `denom` as in `masked_mean`.
    """
    return coef * masked_mean(pick_entropy.mean(-1), mask, denom)


def kl_k3(logp: Tensor, logp_ref: Tensor) -> Tensor:
    """k3 estimator of KL(π_θ ‖ π_ref) from samples of π_θ: e^{Δ} − Δ − 1, Δ = log π_ref − log π_θ.

    Non-negative and unbiased; elementwise (per pick: (B, G, L); sum over L for a sequence).
    """
    delta = logp_ref - logp
    return torch.exp(delta) - delta - 1


def adapt_beta(beta: float, kl: float, target: float) -> float:
    """Once per epoch: β·2 if KL > 1.5·target, β/2 if KL < target/1.5, else β; target 0 = fixed β."""
    if target <= 0:
        return beta
    if kl > KL_ADAPT_BAND * target:
        return beta * KL_ADAPT_FACTOR
    if kl < target / KL_ADAPT_BAND:
        return beta / KL_ADAPT_FACTOR
    return beta


# ------------------------------------------------------------------------ RCE
def rce_weights(rewards: Tensor, tau: float, mask: Tensor | None = None) -> Tensor:
    """w_i = softmax_i(r_i / τ) over each group's real entries (padded: 0). (B, G) -> (B, G)"""
    logits = rewards / tau
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    return torch.softmax(logits, dim=1)


def rce_group_loss(seq_logp: Tensor, weights: Tensor, mask: Tensor | None = None) -> Tensor:
    """−Σ_i w_i log π(s_i) per group. (B, G), (B, G) -> (B,)"""
    terms = weights * seq_logp
    if mask is not None:
        terms = terms.masked_fill(~mask, 0.0)  # 0·(−inf) would be NaN on padding
    return -terms.sum(dim=1)


def linear_tau(epoch: int, epochs: int, start: float, end: float) -> float:
    """τ for 0-based `epoch` of `epochs`: start at the first epoch, end at the last, linear between."""
    if epochs <= 1:
        return start
    frac = epoch / (epochs - 1)
    assert 0.0 <= frac <= 1.0, "epoch outside the schedule"
    return start + (end - start) * frac
