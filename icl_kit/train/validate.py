"""Per-epoch validation on the held-out training queries.

    val/rce_loss   mean over validation groups of −Σ_i softmax(r/τ_end)_i log π(s_i), dropout off
                   (fixed τ so epochs compare; the groups are the offline rollouts of those queries)
    val/reward@k   mean reward of the first k ICDs of the GREEDY selection of max(val_shots) ICDs,
    val/acc@k      and its VQA accuracy (0..1), answered by the training LVLM through the cache
    val/reward_se@k  standard error of val/reward@k over validation queries

Validation reward is what checkpoint choice should use: it measures the selector as it will
be used (greedy), on queries it never trained on, with the same reward as training.
"""

from __future__ import annotations

import torch
from torch import nn

from icl_kit.core.config import TrainConfig
from icl_kit.core.devices import training_mode
from icl_kit.core.dist import Ranks
from icl_kit.lvlm.answers import AnswerService
from icl_kit.train.math import rce_group_loss, rce_weights
from icl_kit.train.queries import QueryTable
from icl_kit.train.rewards import reward_value
from icl_kit.train.rollouts import Groups
from icl_kit.train.steps import step_logprobs

VAL_CHUNK = 256  # validation queries per selector pass


@torch.no_grad()
def validation_rce_loss(policy: nn.Module, table: QueryTable, groups: Groups, tau: float,
                        device: torch.device) -> float:
    """Mean RCE loss of `groups` at temperature `tau` in eval mode."""
    total = 0.0
    with training_mode(policy, False):
        for start in range(0, len(groups.rows), VAL_CHUNK):
            g = groups.take(torch.arange(start, min(start + VAL_CHUNK, len(groups.rows))))
            b = table.groups_batch(g.rows, g.seqs, g.rewards, g.mask, device)
            w = rce_weights(b.rewards, tau, b.mask)
            total += float(rce_group_loss(step_logprobs(policy, b)[0].sum(-1), w, b.mask).double().sum())
    return total / len(groups.rows)


@torch.no_grad()
def greedy_selection(policy: nn.Module, table: QueryTable, rows: torch.Tensor, k: int,
                     device: torch.device) -> torch.Tensor:
    """Greedy k-ICD selections (pool positions) for table rows. (V,) -> (V, k) on CPU."""
    with training_mode(policy, False):
        out = [policy.select(*table.batch(rows[s : s + VAL_CHUNK], device), k, mode="greedy").cpu()
               for s in range(0, len(rows), VAL_CHUNK)]
    return torch.cat(out)


def validation_rewards(policy: nn.Module, table: QueryTable, rows: torch.Tensor, service: AnswerService,
                       cfg: TrainConfig, ranks: Ranks, device: torch.device) -> dict[str, float]:
    """val/reward@k, val/reward_se@k and val/acc@k for k in cfg.val_shots; ranks share the LVLM calls."""
    shots = sorted(set(cfg.val_shots))
    seqs = greedy_selection(policy, table, rows, max(shots), device)  # (V, k_max)
    mine = ranks.mine(len(rows))
    keys = table.icd_ids(rows[mine], seqs[mine].unsqueeze(1))  # one (qid, ids) per query
    prompts = [(q, ids[:k]) for q, ids in keys for k in shots]
    answers = service.answers(prompts)
    n_s = len(shots)
    sums = torch.zeros(3 * n_s + 1, dtype=torch.float64)  # Σr, Σr², Σacc per shot; count
    for i, a in enumerate(answers):
        j = i % n_s
        r = reward_value(a, cfg.reward.kind)
        sums[j] += r
        sums[n_s + j] += r * r
        sums[2 * n_s + j] += a.acc
    sums[-1] = len(keys)
    sums = ranks.sum_(sums)
    n = float(sums[-1])
    out: dict[str, float] = {}
    for j, k in enumerate(shots):
        mean = float(sums[j]) / n
        var = max(float(sums[n_s + j]) / n - mean * mean, 0.0) * n / max(n - 1, 1)
        out[f"val/reward@{k}"] = mean
        out[f"val/reward_se@{k}"] = (var / n) ** 0.5
        out[f"val/acc@{k}"] = float(sums[2 * n_s + j]) / n
    return out


def validate(policy: nn.Module, table: QueryTable, groups: Groups, service: AnswerService, cfg: TrainConfig,
             ranks: Ranks, device: torch.device) -> dict[str, float]:
    """Every validation metric of the module doc (identical on every rank)."""
    return {"val/rce_loss": validation_rce_loss(policy, table, groups, cfg.rce.tau_end, device),
            **validation_rewards(policy, table, groups.rows, service, cfg, ranks, device)}
