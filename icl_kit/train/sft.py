"""Supervised fine-tuning of the selector on InfoScore beams (the Lever-LM stage, corrected).

The targets are each beam's positions IN THE QUERY'S OWN POOL, picked in order, with the
chosen ones masked (the selector's own pointer step): not the study's `index mod 2` over
the two gold ICDs (docs/study.md, "InfoScore beam data").

    loss_t(beam)  = (1 − ε) · (−log π(a_t | q, C, a_<t)) + ε · mean_{j available} (−log π(j | ...))
    loss(query)   = Σ_beams w_beam · Σ_t loss_t(beam)
    w_beam        = 1/n (uniform)  or  (1/rank) / Σ 1/rank (rank; best beam first)
    train/loss    = mean over the batch's queries;  ε = train.sft.label_smoothing

The smoothing term spreads ε over the candidates still available at step t, as
`torch.nn.functional.cross_entropy(label_smoothing=ε)` spreads it over all classes when none is masked.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from icl_kit.core.devices import training_mode
from icl_kit.core.dist import Ranks
from icl_kit.core.errors import KitError
from icl_kit.selection.checkpoints import load_checkpoint
from icl_kit.selection.selector import PointerSelector
from icl_kit.train.batch import Batch
from icl_kit.train.queries import QueryTable
from icl_kit.train.rollouts import Groups
from icl_kit.train.steps import optimise, teacher_forced

log = logging.getLogger(__name__)

VAL_CHUNK = 256  # validation queries per selector pass


def beam_weights(mask: Tensor, rule: str) -> Tensor:
    """Weights (B, W) of each query's beams (best first), summing to 1 over its real beams."""
    if rule == "uniform":
        w = mask.float()
    elif rule == "rank":
        w = mask.float() / torch.arange(1, mask.shape[1] + 1, device=mask.device).float()
    else:
        raise KitError(f"train.sft.beam_weight={rule!r} is unknown; choose 'uniform' or 'rank'.")
    return w / w.sum(dim=1, keepdim=True).clamp_min(1e-12)


def pick_losses(policy: nn.Module, b: Batch, smoothing: float) -> Tensor:
    """Smoothed cross-entropy of every teacher-forced pick (module doc). -> (B, W, L)"""
    out = []
    for logp_all, chosen, idx in teacher_forced(policy, b):
        nll = -logp_all.gather(2, idx.unsqueeze(2)).squeeze(2)  # (B, W)
        n_avail = (~chosen).sum(dim=-1).clamp_min(1)
        uniform = -logp_all.masked_fill(chosen, 0.0).sum(dim=-1) / n_avail  # (B, W)
        out.append((1 - smoothing) * nll + smoothing * uniform)
    return torch.stack(out, dim=-1)


def query_losses(policy: nn.Module, b: Batch, smoothing: float, rule: str) -> Tensor:
    """loss(query) of each group (B,): beam-weighted sums of pick losses."""
    return (beam_weights(b.mask, rule) * pick_losses(policy, b, smoothing).sum(-1)).sum(-1)


def sft_step(policy: nn.Module, opt: torch.optim.Optimizer, full: Batch, smoothing: float, rule: str,
             grad_clip: float, ranks: Ranks, step: int) -> dict[str, float]:
    """One SFT update on B query groups of beams, dropout on; ranks share the groups."""
    n_groups = full.mask.shape[0]
    mine = full.take(ranks.mine(n_groups))
    policy.train()
    if len(mine.mask):
        loss = query_losses(policy, mine, smoothing, rule).sum() / n_groups
    else:
        loss = torch.zeros((), device=full.q.device)
    total = float(ranks.sum_(loss.detach().double().cpu().reshape(1))[0])
    norm = optimise(policy, opt, loss, total, grad_clip, ranks, step)
    real = full.rewards[full.mask].double()
    return {"train/loss": total, "train/grad_norm": norm, "train/beam_score_mean": float(real.mean())}


@torch.no_grad()
def validation_sft_loss(policy: nn.Module, table: QueryTable, groups: Groups, rule: str,
                        device: torch.device) -> float:
    """val/sft_loss: mean unsmoothed loss(query) of the validation beams, dropout off."""
    total = 0.0
    with training_mode(policy, False):
        for start in range(0, len(groups.rows), VAL_CHUNK):
            g = groups.take(torch.arange(start, min(start + VAL_CHUNK, len(groups.rows))))
            b = table.groups_batch(g.rows, g.seqs, g.rewards, g.mask, device)
            total += float(query_losses(policy, b, 0.0, rule).double().sum())
    return total / len(groups.rows)


def warm_start(policy: PointerSelector, path: str) -> None:
    """Load checkpoint `path` (train.init_checkpoint; '' = none) into `policy`; its shape must be the selector's.

    Any file `icl_kit.selection.checkpoints` loads works (v3 .pt, the study's v2/Lightning .ckpt whose CLIP
    weights are ignored, a bare state dict); dropout stays the params' value.
    """
    if not path:
        return
    loaded, info = load_checkpoint(path)
    want, got = policy.config(), loaded.config()
    diff = [f"{k}={got[k]} (params: {want[k]})" for k in want if k != "dropout" and got.get(k) != want[k]]
    if diff:
        raise KitError(f"train.init_checkpoint {path} has {', '.join(diff)}; set the selector section to match "
                       "the checkpoint.")
    policy.load_state_dict(loaded.state_dict())
    log.info("warm start from %s (%s, phase %s, epoch %s)", path, info.get("layout"), info.get("phase"),
             info.get("epoch"))
