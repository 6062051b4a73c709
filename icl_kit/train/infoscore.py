"""InfoScore (Lever-LM's beam score) and the beam rules built on it: one pure function per equation.

    P(y | ctx, x)           = Σ_a w_a · p(a | ctx, x)                 teacher-forced, answer tokens only
    p(a | ctx, x)           = exp(Σ_t log p(a_t | ·))                 (sft_data.prob_norm: sequence, the default)
                            = exp(mean_t log p(a_t | ·))              (sft_data.prob_norm: token_mean, Lever-LM's)
    InfoScore(c | ctx, x)   = P(y | [c] + ctx, x) − P(y | ctx, x)     (sft_data.score: prob, Lever-LM)
                            = log P(y | [c] + ctx, x) − log P(y | ctx, x)   (sft_data.score: logprob)

Lever-LM (and the study) take p = exp(−mean token loss), the token_mean norm; the kit's default is the
answer's own probability, the product of its token probabilities (`icl_kit.lvlm.answers.answer_prob`).

y is the query's most frequent answer (w = {y: 1}, sft_data.answer: most_frequent) or every distinct
annotator answer a with w_a = min(1, count(a)/3) (sft_data.answer: vqa_weighted, so P is the expected
VQA credit of a sampled answer up to the other strings' mass). p is the LVLM's `score`, which masks
exactly the answer, unlike the study's Qwen path (docs/study.md, "InfoScore beam data"), whose "probability"
averaged the loss over almost the whole prompt.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from icl_kit.core.errors import KitError
from icl_kit.data.records import Record
from icl_kit.lvlm.answers import gt_prob_weights

PROB_FLOOR = 1e-300  # log of a probability that underflowed to 0 stays finite


def answer_weights(query: Record, answer: str) -> dict[str, float]:
    """{answer string: weight} whose weighted probability is P(y | ·) (module doc)."""
    if answer == "most_frequent":
        return {query.answer: 1.0}
    if answer == "vqa_weighted":
        return gt_prob_weights(query.answers)
    raise KitError(f"sft_data.answer={answer!r} is unknown; choose 'most_frequent' or 'vqa_weighted'.")


def info_score(p_with: float, p_without: float, score: str) -> float:
    """InfoScore of adding one ICD: P(y | [c] + ctx) − P(y | ctx), or the difference of their logs."""
    if score == "prob":
        return p_with - p_without
    if score == "logprob":
        return math.log(max(p_with, PROB_FLOOR)) - math.log(max(p_without, PROB_FLOOR))
    raise KitError(f"sft_data.score={score!r} is unknown; choose 'prob' or 'logprob'.")


def extend(context: tuple[int, ...], candidate: int, order: str) -> tuple[int, ...]:
    """The context with `candidate` added: before it (left, Lever-LM) or after it (right)."""
    if order == "left":
        return (candidate, *context)
    if order == "right":
        return (*context, candidate)
    raise KitError(f"sft_data.construct_order={order!r} is unknown; choose 'left' or 'right'.")


def beam_rank_score(step_scores: Sequence[float], rule: str) -> float:
    """What a beam is ranked by: its last step's InfoScore (Lever-LM) or the sum of its step scores.

    With score 'prob' the cumulative sum telescopes to P(y | beam) − P(y | no ICD).
    """
    if rule == "last_step":
        return float(step_scores[-1])
    if rule == "cumulative":
        return float(sum(step_scores))
    raise KitError(f"sft_data.beam_score={rule!r} is unknown; choose 'last_step' or 'cumulative'.")


def top_beams(scores: Sequence[float], beam_size: int) -> list[int]:
    """Indices of the `beam_size` largest scores, best first; ties keep the earlier index."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:beam_size]
