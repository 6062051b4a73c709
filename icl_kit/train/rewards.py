"""Rewards of LVLM answers, for RCE, GRPO and validation.

Reward of an answer (`reward_value`):
    hard_plus_soft = correct + acc      (the study's default; correct = acc > 0)
    soft           = acc
    hard           = correct
    gt_prob        = Σ_{distinct gt a} min(count(a)/3, 1) · P(a | prompt)
                     (P by train.reward.prob_norm: Π of a's token probabilities, or exp(mean token log-prob))
A sequence's reward (`batch_sequence_rewards`) is the mean over prefix lengths `shots`.
"""

from __future__ import annotations

from collections.abc import Sequence

from icl_kit.core.errors import KitError
from icl_kit.lvlm.answers import Answer, AnswerService, PromptKey

REWARD_KINDS = ("hard_plus_soft", "soft", "hard", "gt_prob")


def reward_value(ans: Answer, kind: str) -> float:
    """The scalar reward of one answer under reward `kind`."""
    if kind == "hard_plus_soft":
        return float(ans.correct) + ans.acc
    if kind == "soft":
        return ans.acc
    if kind == "hard":
        return float(ans.correct)
    if kind == "gt_prob":
        if ans.gt_prob is None:
            raise KitError("reward kind 'gt_prob' needs gt_prob; build the AnswerService with with_gt_prob=True.")
        return ans.gt_prob
    raise KitError(f"Unknown reward kind {kind!r}; choose one of {list(REWARD_KINDS)}.")


def batch_sequence_rewards(
    service: AnswerService, seqs: Sequence[PromptKey], kind: str, shots: Sequence[int]
) -> list[float]:
    """Mean reward over the prefixes of each sequence of each length in `shots`, in one batched pass."""
    keys = [(q, tuple(icds[:k])) for q, icds in seqs for k in shots]
    values = [reward_value(a, kind) for a in service.answers(keys)]
    n = len(shots)
    return [sum(values[i * n : (i + 1) * n]) / n for i in range(len(seqs))]
