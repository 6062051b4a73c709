"""The headroom table from the per-question lines (icl_kit.headroom.measure): accuracies with intervals, the paired
gains, the reward's signal, and the share of the similarity → oracle gap a trained selector recovers.

Per split and shot, each system's accuracy is the mean over questions with its t interval at 1 − stats.alpha
(`icl_kit.stats.intervals.mean_interval`); `random` is each question's mean over its M sets, and its spread the
SD over the M draws of one draw's accuracy (what a single random baseline, as the evaluation runs it, varies by);
`best_of_m` is each question's best of its M sets (hindsight: an upper bound of what picking among M random sets
could give, optimistic as any maximum). Gains are paired differences on the same questions
(`icl_kit.stats.paired.compare_paired` with the run's stats settings).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from icl_kit.core.config import Params, backend_traits
from icl_kit.core.names import POINTS
from icl_kit.core.runs import json_safe
from icl_kit.headroom.signal import advantage_signal, decoding_noise, decompose
from icl_kit.headroom.verdict import verdict
from icl_kit.stats.diff_intervals import pts
from icl_kit.stats.intervals import mean_interval
from icl_kit.stats.paired import compare_paired

SPLITS = ("test", "train")
SYSTEMS = ("zero_shot", "random", "similarity", "best_of_m", "oracle")
GAINS = (("random", "oracle"), ("similarity", "oracle"), ("random", "best_of_m"), ("random", "similarity"),
         ("zero_shot", "random"))  # (A, B): B − A
GAIN_FIELDS = ("n", "diff", "ci_low", "ci_high", "p", "p_method")
FORMAT_VERSION = 1


def split_scores(lines: Sequence[dict[str, Any]], split: str) -> dict[str, np.ndarray]:
    """{system: (Q, S) accuracies} of one split's lines (sorted by question id), plus 'draws' (Q, M, S), 'reward'
    (Q, M) for training queries, and 'ids' (Q,)."""
    rows = sorted((r for r in lines if r["split"] == split), key=lambda r: r["question_id"])
    if not rows:
        return {}
    rand = np.array([r["random"] for r in rows], dtype=np.float64)  # (Q, M, S)
    shots = rand.shape[2]
    out = {"ids": np.array([r["question_id"] for r in rows]), "draws": rand,
           "zero_shot": np.repeat(np.array([[r["zero_shot"]] for r in rows], dtype=np.float64), shots, axis=1),
           "random": rand.mean(axis=1), "best_of_m": rand.max(axis=1),
           "similarity": np.array([r["similarity"] for r in rows], dtype=np.float64),
           "oracle": np.array([r["oracle"] for r in rows], dtype=np.float64)}
    if all(r.get("reward") is not None for r in rows):
        out["reward"] = np.array([r["reward"] for r in rows], dtype=np.float64)
    return out


def accuracy_rows(scores: dict[str, np.ndarray], split: str, shots: Sequence[int], level: float) -> list[dict]:
    """One row per (system, shot): n, accuracy, low, high in points; random also its draws' SD, min and max."""
    rows = []
    for system in SYSTEMS:
        for j, k in enumerate(shots):
            acc, low, high = mean_interval(pd.Series(scores[system][:, j]), level)
            row = {"split": split, "system": system, "shot": int(k), "n": int(len(scores["ids"])),
                   "accuracy": acc, "low": low, "high": high}
            if system == "random":
                per_draw = scores["draws"][:, :, j].mean(axis=0) * POINTS  # (M,) each draw's accuracy
                row |= {"draw_sd": float(per_draw.std(ddof=1)), "draw_min": float(per_draw.min()),
                        "draw_max": float(per_draw.max())}
            rows.append(row)
    return rows


def stats_options(params: Params) -> dict[str, Any]:
    """compare_paired's settings from the run's stats section."""
    s = params.stats
    return {"n_boot": s.n_boot, "n_perm": s.n_perm, "seed": s.seed, "alpha": s.alpha,
            "equivalence_margin": s.equivalence_margin, "power": s.power, "interval": s.interval}


def gain_rows(scores: dict[str, np.ndarray], split: str, shots: Sequence[int], params: Params) -> list[dict]:
    """One row per (A, B, shot) of GAINS: B − A in points, its interval at 1 − stats.alpha, its p."""
    rows = []
    for a, b in GAINS:
        for j, k in enumerate(shots):
            c = compare_paired(scores[a][:, j], scores[b][:, j], **stats_options(params))
            rows.append({"split": split, "a": a, "b": b, "shot": int(k), **{f: c[f] for f in GAIN_FIELDS}})
    return rows


def signal(scores: dict[str, np.ndarray], params: Params) -> dict[str, Any] | None:
    """The training reward's decomposition and GRPO expectations (icl_kit.headroom.signal); None without rewards."""
    if "reward" not in scores:
        return None
    noise, why = decoding_noise(params)
    return {"reward": {"kind": params.train.reward.kind, "shots": list(params.train.reward.shots)},
            "decoding": why, **decompose(scores["reward"], noise),
            **advantage_signal(scores["reward"], params, params.headroom.seed)}


def summarise(lines: Sequence[dict[str, Any]], params: Params) -> dict[str, Any]:
    """summary.json's content: settings, accuracy and gain rows of both splits, the reward's signal, the verdict."""
    shots = sorted(set(params.eval.shots))
    level = 1 - params.stats.alpha
    accuracy, gains, sig = [], [], None
    for split in SPLITS:
        scores = split_scores(lines, split)
        if not scores:
            continue
        accuracy += accuracy_rows(scores, split, shots, level)
        gains += gain_rows(scores, split, shots, params)
        sig = signal(scores, params) if split == "train" else sig
    h = params.headroom
    out = {"format_version": FORMAT_VERSION, "shots": shots, "level": level, "draws": h.draws,
           "n": {s: int(sum(r["split"] == s for r in lines)) for s in SPLITS}, "min_gain": h.min_gain,
           "simulated": backend_traits(params.lvlm).simulated, "accuracy": accuracy, "gains": gains, "signal": sig}
    return json_safe(out | {"verdict": verdict(out)})


# ------------------------------------------------------------------ the gap a selector recovers
def gap_share(similarity: np.ndarray, oracle: np.ndarray, selector: np.ndarray, *, level: float, n_boot: int,
              seed: int) -> dict[str, float]:
    """Share of the similarity → oracle gap a selector recovers on the same questions (accuracies 0..1, (n,)):
    (selector − similarity) / (oracle − similarity) in means, with a percentile bootstrap interval over questions
    (resampled together, so the pairing holds). NaN share when the gap is not positive (nothing to recover)."""
    s, o, x = (np.asarray(v, dtype=np.float64) for v in (similarity, oracle, selector))
    gap, gain = (o - s).mean(), (x - s).mean()  # means of paired differences, as compare_paired's
    out = {"n": int(s.size), "gap": pts(gap), "gain": pts(gain), "share": math.nan, "low": math.nan,
           "high": math.nan}
    if gap <= 0:
        return out
    idx = np.random.default_rng(seed).integers(0, s.size, size=(n_boot, s.size))
    gaps = o[idx].mean(axis=1) - s[idx].mean(axis=1)
    shares = np.where(gaps > 0, (x[idx].mean(axis=1) - s[idx].mean(axis=1)) / np.where(gaps > 0, gaps, 1), np.nan)
    low, high = np.nanpercentile(shares, [50 * (1 - level), 50 * (1 + level)])
    return out | {"share": gain / gap, "low": float(low), "high": float(high)}


# ------------------------------------------------------------------ the table as people read it
def table_frame(summary: dict[str, Any], split: str = "test") -> pd.DataFrame:
    """One row per shot: each system's accuracy 'acc [low, high]' (random with ± its draws' SD), then the oracle's
    and the best of M's gains with their intervals (points)."""
    acc = {(r["system"], r["shot"]): r for r in summary["accuracy"] if r["split"] == split}
    gains = {(r["a"], r["b"], r["shot"]): r for r in summary["gains"] if r["split"] == split}

    def cell(r: dict) -> str:
        return f"{r['accuracy']:.1f} [{r['low']:.1f}, {r['high']:.1f}]"

    def diff(r: dict) -> str:
        return f"{r['diff']:+.1f} [{r['ci_low']:+.1f}, {r['ci_high']:+.1f}]"

    rows = []
    for k in summary["shots"]:
        if ("oracle", k) not in acc:
            continue
        row: dict[str, Any] = {"shot": k}
        row |= {s: cell(acc[(s, k)]) for s in SYSTEMS}
        row["random"] += f" ±{acc[('random', k)]['draw_sd']:.1f}"
        row |= {f"{b} − {a}": diff(gains[(a, b, k)]) for a, b in GAINS[:3]}
        rows.append(row)
    return pd.DataFrame(rows)


def table_text(summary: dict[str, Any]) -> str:
    """The test table (`table_frame`) as text, with what it is."""
    frame = table_frame(summary, "test")
    level = f"{100 * summary['level']:g}%"
    head = (f"Accuracy (points) on {summary['n']['test']} test questions, {level} intervals; random: mean of "
            f"{summary['draws']} sets ± the SD of one draw; gains: paired differences")
    return head + "\n" + (frame.to_string(index=False) if len(frame) else "(no test questions)")
