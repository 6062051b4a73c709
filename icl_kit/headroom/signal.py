"""How much signal the training reward carries: its variance split three ways, and the GRPO groups it implies.

rewards r[q, m]: the training reward of random set m (of M) of training query q (icl_kit.headroom.measure).
One-way random-effects decomposition (the usual ANOVA estimators):

    within      s²_w = mean_q var_m r[q, m]   (ddof 1)        between demonstration sets of one question
    questions   s²_q = max(var_q mean_m r[q, m] − s²_w / M, 0)  between questions
    decoding    s²_d                                           the same prompt answered twice

The kit answers each prompt once and caches the answer, so the reward a trainer sees for a prompt never changes:
decoding noise is 0 for training whatever the decoding. With deterministic decoding (beam or greedy search, the
simulator) it is 0 for the model too; with sampling it exists but is frozen into each prompt's one cached answer,
inside s²_w, where nothing here can separate it (that would need several answers per prompt): `decoding_noise`
says which. Only the part between sets can be learned by a selector: the group advantage removes the question's
own level.

A GRPO group of G sequences is modelled as G of the M sets drawn without replacement (with replacement when
G > M): as if the policy picked like random, which a fresh selector nearly does. Its expected share of
zero-spread groups is exact under that model (Σ_v C(c_v, G) / C(M, G) per question, c_v the sets of reward v);
the advantage std is the trainer's own rule (`icl_kit.train.math.group_advantages`) on simulated groups.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from icl_kit.core.config import Params, backend_traits
from icl_kit.train.math import ZERO_STD, group_advantages, informative_groups

GROUPS_PER_QUESTION = 64  # simulated groups per training query for the advantage std
TIE_DECIMALS = 9  # rewards equal to 9 decimals tie (the trainer's ZERO_STD is 1e-6 on the std)


def decoding_noise(params: Params) -> tuple[float, str]:
    """(decoding variance, why): 0 for deterministic decoding; NaN when sampled, or left to the checkpoint's
    generation_config.json (do_sample: null), where it is not separable (module doc)."""
    if backend_traits(params.lvlm).simulated:
        return 0.0, "deterministic"  # the demo world's simulator answers as a function of the prompt
    do_sample = params.lvlm.generation.do_sample
    if do_sample is False:
        return 0.0, "deterministic"
    return math.nan, "sampled" if do_sample else "inherited"


def decompose(rewards: np.ndarray, decoding: float = 0.0) -> dict[str, float]:
    """Variances (module doc) of rewards (Q, M), their shares of the total, and the share of questions whose M
    rewards all tie (no signal there at all)."""
    r = np.asarray(rewards, dtype=np.float64)
    q, m = r.shape
    within = float(r.var(axis=1, ddof=1).mean())
    questions = max(float(r.mean(axis=1).var(ddof=1)) - within / m, 0.0) if q > 1 else 0.0
    sets = within - (decoding if math.isfinite(decoding) else 0.0)
    total = questions + within

    def share(v: float) -> float:
        return v / total if total > 0 else math.nan

    ties = np.ptp(np.round(r, TIE_DECIMALS), axis=1) == 0
    return {"questions": q, "draws": m, "mean": float(r.mean()), "var_questions": questions, "var_sets": sets,
            "var_decoding": decoding, "share_questions": share(questions), "share_sets": share(sets),
            "share_decoding": share(decoding) if math.isfinite(decoding) else math.nan,
            "sd_sets": math.sqrt(max(sets, 0.0)), "sd_questions": math.sqrt(questions),
            "no_spread_questions": float(ties.mean())}


def zero_spread_share(rewards: np.ndarray, group_size: int) -> float:
    """Expected share of groups of `group_size` sets whose rewards all tie (module doc), over the questions."""
    r = np.round(np.asarray(rewards, dtype=np.float64), TIE_DECIMALS)
    m = r.shape[1]
    out = []
    for row in r:
        counts = np.unique(row, return_counts=True)[1]
        if group_size <= m:
            out.append(sum(math.comb(int(c), group_size) for c in counts) / math.comb(m, group_size))
        else:
            out.append(float(((counts / m) ** group_size).sum()))
    return float(np.mean(out))


def simulated_groups(rewards: np.ndarray, group_size: int, seed: int) -> torch.Tensor:
    """(Q · GROUPS_PER_QUESTION, G) rewards of simulated groups (module doc), from a seeded generator."""
    r = np.asarray(rewards, dtype=np.float64)
    q, m = r.shape
    rng = np.random.default_rng([seed, q, m, group_size])
    replace = group_size > m
    rows = [r[i, rng.choice(m, size=group_size, replace=replace)] for i in range(q) for _ in range(GROUPS_PER_QUESTION)]
    return torch.tensor(np.array(rows), dtype=torch.float32)  # the trainer's rewards are float32


def advantage_signal(rewards: np.ndarray, params: Params, seed: int) -> dict[str, Any]:
    """Expected GRPO statistics at train.rollouts.group_size under train.grpo's advantage rule: the advantage std
    over the groups with spread (as train_log.jsonl's train/adv_std), the reward std within a group, and the
    share of zero-spread groups (exact, and as simulated)."""
    g, cfg = params.train.rollouts.group_size, params.train.grpo
    groups = simulated_groups(rewards, g, seed)
    keep = informative_groups(groups)
    kept = groups[keep]
    adv = group_advantages(kept, cfg.advantage, cfg.std_floor, cfg.adv_clip) if len(kept) else kept
    within = groups.double().std(dim=1, correction=0)
    return {"group_size": g, "advantage": cfg.advantage, "std_floor": cfg.std_floor,
            "adv_std": float(adv.double().std(correction=0)) if adv.numel() > 1 else 0.0,
            "group_reward_std": float(within.mean()), "zero_spread": zero_spread_share(rewards, g),
            "zero_spread_simulated": float(1 - keep.float().mean()), "zero_std": ZERO_STD}
