"""The headroom verdict in plain words, from the summary's numbers (icl_kit.headroom.summary).

Room (test questions): at a shot, the oracle beats similarity by more than headroom.min_gain points when its whole
interval lies above that gain ("room"), by less when its whole interval lies below ("no room"), else "unclear".
The run has room when one shot has; none when no shot has and every shot has none.
Signal (training queries, train.reward): "none" when every query gives all its M sets the same reward; "weak"
when more than WEAK_ZERO_SPREAD of the expected GRPO groups have no spread (the trainer drops them, so a step
learns from few queries); else "clear". Against noise: decoding adds none when decoding is deterministic, and
the cache answers each prompt once in any case (icl_kit.headroom.signal).
The English sentences here are what `icl-kit headroom` and the notebook print; the report writes its own, in
both languages, from the same fields.
"""

from __future__ import annotations

import math
from typing import Any

WEAK_ZERO_SPREAD = 0.5  # share of zero-spread groups above which a GRPO step learns from fewer than half its queries


def _row(rows: list[dict], **match: Any) -> dict | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def room(summary: dict[str, Any]) -> tuple[str, int | None]:
    """('room' | 'no room' | 'unclear', the test shot with the largest oracle − similarity gain)."""
    rows = [r for r in summary["gains"] if r["split"] == "test" and (r["a"], r["b"]) == ("similarity", "oracle")]
    if not rows:
        return "unclear", None
    gain = summary["min_gain"]
    best = max(rows, key=lambda r: r["diff"])
    if any(r["ci_low"] > gain for r in rows):
        return "room", best["shot"]
    if all(r["ci_high"] < gain for r in rows):
        return "no room", best["shot"]
    return "unclear", best["shot"]


def signal_word(sig: dict[str, Any] | None) -> str | None:
    """'none' | 'weak' | 'clear' (module doc); None without training rewards."""
    if sig is None:
        return None
    if sig["no_spread_questions"] >= 1 or not sig["var_sets"] > 0:
        return "none"
    return "weak" if sig["zero_spread"] > WEAK_ZERO_SPREAD else "clear"


def _pts(x: float) -> str:
    return f"{x:+.1f}"


def _ci(r: dict) -> str:
    return f"[{_pts(r['ci_low'])}, {_pts(r['ci_high'])}]"


def room_sentence(summary: dict[str, Any], word: str, shot: int | None) -> str:
    if shot is None:
        return "No test questions were measured, so the room is unknown."
    gains = [r for r in summary["gains"] if r["split"] == "test" and r["shot"] == shot]
    sim, rand = _row(gains, a="similarity", b="oracle"), _row(gains, a="random", b="oracle")
    best = _row(gains, a="random", b="best_of_m")
    n = summary["n"]["test"]
    lead = {"room": "Room to learn", "no room": "No room to learn", "unclear": "Unclear whether there is room"}[word]
    return (f"{lead}: at shot {shot}, on {n} test questions, the oracle (best InfoScore beam of each query's pool) is "
            f"{_pts(sim['diff'])} points {_ci(sim)} above similarity and {_pts(rand['diff'])} {_ci(rand)} above "
            f"random; the best of {summary['draws']} random sets is {_pts(best['diff'])} {_ci(best)} above random. "
            f"That is the most a selector could gain with this model (the verdict's threshold: "
            f"{summary['min_gain']:g} points over similarity, headroom.min_gain).")


def signal_sentence(sig: dict[str, Any] | None, word: str | None) -> str:
    if sig is None:
        return "No training queries were measured, so the reward's signal is unknown."
    noise = {"deterministic": "no decoding noise (deterministic decoding, and each prompt's answer is cached)",
             "sampled": "decoding noise that cannot be separated (sampled decoding; each prompt's one cached answer "
                        "fixes its draw, inside the between-set part)",
             "inherited": "decoding noise left to the checkpoint's generation_config.json (do_sample: null), not "
                          "separated"}[sig["decoding"]]

    def share(x: float | None) -> str:
        return "—" if x is None or not math.isfinite(x) else f"{100 * x:.0f}%"

    return (f"Signal {word}: the training reward ({sig['reward']['kind']} at shots {sig['reward']['shots']}) varies "
            f"by SD {sig['sd_sets']:.3g} between demonstration sets of one question ({share(sig['share_sets'])} of "
            f"its variance; {share(sig['share_questions'])} lies between questions, which the group advantage "
            f"removes), with {noise}; {share(sig['no_spread_questions'])} of the {sig['questions']} training "
            f"queries give all {sig['draws']} sets the same reward. At group size {sig['group_size']} about "
            f"{share(sig['zero_spread'])} of GRPO groups would have no spread, and the advantage std "
            f"({sig['advantage']}, std_floor {sig['std_floor']:g} against a within-group reward SD of "
            f"{sig['group_reward_std']:.2g}) would be about {sig['adv_std']:.3g}.")


def verdict(summary: dict[str, Any]) -> dict[str, Any]:
    """{'room', 'shot', 'signal', 'text': [sentences]}: the answer, first in every output."""
    word, shot = room(summary)
    sig_word = signal_word(summary["signal"])
    text = [room_sentence(summary, word, shot), signal_sentence(summary["signal"], sig_word)]
    if summary.get("simulated"):
        text.append("These numbers come from the demo world's simulated LVLM, not a model.")
    return {"room": word, "shot": shot, "signal": sig_word, "text": text}
