"""The report's "Headroom" subsection (3.3), present only when the headroom stage ran (headroom/summary.json):
the table of what the choice of demonstrations could gain with this model, the figure (with the trained selector's
checkpoints on it once the run has evaluated them), the share of the similarity → oracle gap each lineage's last
checkpoint recovers on the same test questions, the reward's signal, and the verdict.

Its phrases are held here as the report's are in `icl_kit.report.phrases` (zh and en, the same keys and
placeholders: tests/headroom/test_headroom_report.py checks it); numbers are formatted by `icl_kit.report.text`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from icl_kit.core.config import StatsConfig
from icl_kit.core.names import PHASES, lineage, natural_key
from icl_kit.core.runs import RunPaths, read_jsonl
from icl_kit.headroom.plots import plot_headroom
from icl_kit.headroom.stage import read_summary
from icl_kit.headroom.summary import gap_share
from icl_kit.report.text import DASH, Text, ci, count, md_table, num, pct, pts
from icl_kit.stats.intervals import mean_interval


class Doc(Protocol):
    """What the section writes into (icl_kit.report.sections.Doc)."""

    def add(self, *blocks: str) -> None: ...

    def figure(self, t: Text, name: str, make: Callable[[], Any], caption: str) -> None: ...

FIGURE = "headroom.png"
ZH: dict[str, str] = {
    "h_heading": "### 3.3 余量：示例选择最多能带来多少（训练前测量，n = {n} 道测试题）",
    "h_intro": "在编号最小的 {n} 道测试题和 {n_train} 个训练查询上，训练之前测量：零样本、随机示例（每题从其候选池中"
               "随机抽取 {m} 组，取平均；± 为单次抽取准确率的标准差）、相似度检索、{m} 组随机示例中事后最好的一组"
               "（best of M，上界，偏乐观），以及 oracle（每题候选池上 InfoScore 束搜索的最佳束）。"
               "括号内为 {level} 置信区间；差异为同一批题上的配对差异（点）。",
    "h_col_zero": "零样本", "h_col_random": "随机", "h_col_sim": "相似度", "h_col_best": "best of M",
    "h_col_oracle": "oracle", "h_col_or": "oracle − 随机", "h_col_os": "oracle − 相似度",
    "h_cap": "训练前的余量：各 shot 下零样本、随机、相似度、best of M 与 oracle 的准确率（误差线为 {level} 区间）；"
             "灰色标记为训练后各阶段最后一个检查点在同一批测试题上的准确率。",
    "h_gap_intro": "**训练后的选择器收回了多少“相似度 → oracle”差距**（同一批 {n} 道测试题；份额 = (选择器 − 相似度) / "
                   "(oracle − 相似度)，区间为按题目重抽样的 {level} 百分位 bootstrap 区间）：",
    "h_col_ckpt": "检查点", "h_col_acc": "准确率", "h_col_vs_sim": "相对相似度", "h_col_gap": "差距",
    "h_col_share": "收回份额 [{level} 区间]",
    "h_no_gap": "无差距可收回",
    "h_no_eval": "（本次运行尚未评估训练后的检查点，因此无法给出收回的份额。）",
    "h_room": "**结论：有学习空间。**在 shot {shot}，oracle 比相似度高 {sim} 点 {sim_ci}，比随机高 {rand} 点 "
              "{rand_ci}；这是该模型下选择器最多能带来的提升（阈值：比相似度高 {gain} 点）。",
    "h_no_room": "**结论：没有学习空间。**即使在差距最大的 shot {shot}，oracle 比相似度也只高 {sim} 点 {sim_ci}"
                 "（比随机高 {rand} 点 {rand_ci}），整个区间低于 {gain} 点。",
    "h_unclear": "**结论：无法确定是否有学习空间。**在 shot {shot}，oracle 比相似度高 {sim} 点 {sim_ci}"
                 "（比随机高 {rand} 点 {rand_ci}），区间跨过 {gain} 点的阈值；需要更多题目（headroom.n）。",
    "h_signal": "**训练奖励的信号：{word}。**奖励（{kind}，shot {shots}）在同一题的不同示例组之间的标准差为 {sd}"
                "（占其方差的 {share_sets}；题目之间占 {share_q}，组内优势会将其消去）；解码噪声：{noise}；"
                "{no_spread} 的训练查询对全部 {m} 组示例给出相同奖励。组大小 {g} 时，预计 {zero} 的 GRPO 组"
                "没有奖励差异，优势（{adv}，std_floor {floor}，组内奖励标准差 {group_sd}）的标准差约为 {adv_std}。",
    "h_signal_none": "**训练奖励的信号：未测量**（没有训练查询）。",
    "h_word_clear": "清晰", "h_word_weak": "弱", "h_word_none": "没有",
    "h_noise_deterministic": "0（确定性解码，且每个提示的答案都已缓存）",
    "h_noise_sampled": "无法分离（采样解码；每个提示只缓存一个答案，噪声计入组间方差）",
    "h_noise_inherited": "无法分离（do_sample 取自检查点的 generation_config.json）",
}
EN: dict[str, str] = {
    "h_heading": "### 3.3 Headroom: the most the choice of demonstrations could gain (measured before training, "
                 "n = {n} test questions)",
    "h_intro": "On the first {n} test questions and {n_train} training queries, before training: zero-shot; random "
               "demonstrations ({m} sets per question drawn from its candidate pool, averaged; ± is the SD of one "
               "draw's accuracy); similarity retrieval; the best of the {m} random sets in hindsight (best of M, an "
               "optimistic upper bound); and the oracle (the best InfoScore beam of the question's pool). Brackets: "
               "{level} intervals; differences are paired, on the same questions, in points.",
    "h_col_zero": "Zero-shot", "h_col_random": "Random", "h_col_sim": "Similarity", "h_col_best": "Best of M",
    "h_col_oracle": "Oracle", "h_col_or": "Oracle − random", "h_col_os": "Oracle − similarity",
    "h_cap": "Headroom before training: accuracy of zero-shot, random, similarity, best of M and the oracle at each "
             "shot (whiskers: {level} intervals); grey markers: the last checkpoint of each training phase on the "
             "same test questions.",
    "h_gap_intro": "**How much of the similarity → oracle gap the trained selector recovers** (the same {n} test "
                   "questions; share = (selector − similarity) / (oracle − similarity), with a {level} percentile "
                   "bootstrap interval over questions):",
    "h_col_ckpt": "Checkpoint", "h_col_acc": "Accuracy", "h_col_vs_sim": "vs similarity", "h_col_gap": "Gap",
    "h_col_share": "Share recovered [{level} interval]",
    "h_no_gap": "no gap to recover",
    "h_no_eval": "(The run has not evaluated trained checkpoints yet, so the share they recover is not known.)",
    "h_room": "**Verdict: room to learn.** At shot {shot} the oracle is {sim} points {sim_ci} above similarity and "
              "{rand} {rand_ci} above random: the most a selector could gain with this model (threshold: {gain} "
              "points over similarity).",
    "h_no_room": "**Verdict: no room to learn.** Even at shot {shot}, where the gap is largest, the oracle is only "
                 "{sim} points {sim_ci} above similarity ({rand} {rand_ci} above random), the whole interval below "
                 "{gain} points.",
    "h_unclear": "**Verdict: unclear whether there is room.** At shot {shot} the oracle is {sim} points {sim_ci} "
                 "above similarity ({rand} {rand_ci} above random), an interval across the {gain}-point threshold; "
                 "more questions (headroom.n) would settle it.",
    "h_signal": "**Signal of the training reward: {word}.** The reward ({kind} at shots {shots}) varies by SD {sd} "
                "between demonstration sets of one question ({share_sets} of its variance; {share_q} lies between "
                "questions, which the group advantage removes); decoding noise: {noise}; {no_spread} of the "
                "training queries give all {m} sets the same reward. At group size {g} about {zero} of GRPO groups "
                "would have no spread, and the advantage std ({adv}, std_floor {floor} against a within-group "
                "reward SD of {group_sd}) would be about {adv_std}.",
    "h_signal_none": "**Signal of the training reward: not measured** (no training queries).",
    "h_word_clear": "clear", "h_word_weak": "weak", "h_word_none": "none",
    "h_noise_deterministic": "0 (deterministic decoding, and each prompt's answer is cached)",
    "h_noise_sampled": "not separable (sampled decoding; each prompt's one cached answer puts it inside the "
                       "between-set part)",
    "h_noise_inherited": "not separable (do_sample comes from the checkpoint's generation_config.json)",
}
PHRASES = {"zh": ZH, "en": EN}


@dataclass
class HeadroomInputs:
    """What the section reads: the summary, and the trained checkpoints on the headroom's test questions."""

    summary: dict[str, Any]
    checkpoints: pd.DataFrame = field(default_factory=pd.DataFrame)  # system, shot, n, accuracy, low, high
    gaps: list[dict[str, Any]] = field(default_factory=list)  # system, shot + gap_share's fields


def last_checkpoints(predictions: list[dict[str, Any]]) -> list[str]:
    """The last epoch of each checkpoint lineage the evaluation holds, in training order (sft, rce, grpo, others)."""
    names = sorted({str(r["system"]) for r in predictions if r.get("checkpoint")}, key=natural_key)
    last = {lineage(n): n for n in names}  # natural order: the last one of a lineage wins

    def phase(name: str) -> int:
        stem = name.split("_epoch")[0]
        return PHASES.index(stem) if stem in PHASES else len(PHASES)

    return sorted(last.values(), key=lambda n: (phase(n), natural_key(n)))


def load_headroom(paths: RunPaths, stats: StatsConfig) -> HeadroomInputs | None:
    """The section's inputs, or None when the headroom stage has not run."""
    summary = read_summary(paths.headroom_summary)
    if summary is None:
        return None
    shots = summary["shots"]
    lines = sorted((r for r in read_jsonl(paths.headroom_questions) if r["split"] == "test"),
                   key=lambda r: r["question_id"])[: summary["n"]["test"]]
    by_id = {int(r["question_id"]): r for r in lines}
    predictions = [r for r in read_jsonl(paths.predictions) if int(r["question_id"]) in by_id]
    rows, gaps = [], []
    for system in last_checkpoints(predictions):
        for j, k in enumerate(shots):
            acc = {int(r["question_id"]): float(r["acc"]) for r in predictions
                   if r["system"] == system and int(r["shot"]) == k}
            ids = sorted(acc)
            if len(ids) < 2:
                continue
            x = np.array([acc[q] for q in ids])
            mean, low, high = mean_interval(pd.Series(x), summary["level"])
            rows.append({"system": system, "shot": k, "n": len(ids), "accuracy": mean, "low": low, "high": high})
            sim = np.array([by_id[q]["similarity"][j] for q in ids])
            oracle = np.array([by_id[q]["oracle"][j] for q in ids])
            share = gap_share(sim, oracle, x, level=summary["level"], n_boot=stats.n_boot, seed=stats.seed)
            gaps.append({"system": system, "shot": k, "accuracy": mean, **share})
    return HeadroomInputs(summary, pd.DataFrame(rows), gaps)


# ------------------------------------------------------------------ the section
def _h(t: Text, key: str, **fields: Any) -> str:
    return PHRASES[t.language][key].format(**{**t.defaults, **fields})


def _share(x: float | None) -> str:
    return DASH if x is None or not math.isfinite(x) else f"{num(100 * x, 0)}%"


def headroom_section(doc: Doc, t: Text, inputs: HeadroomInputs | None) -> None:
    """3.3 (module doc); nothing when the headroom stage has not run."""
    if inputs is None:
        return
    s = inputs.summary
    doc.add(_h(t, "h_heading", n=count(s["n"]["test"])),
            _h(t, "h_intro", n=count(s["n"]["test"]), n_train=count(s["n"]["train"]), m=count(s["draws"])),
            _table(t, s))
    doc.figure(t, FIGURE, lambda: plot_headroom(s, inputs.checkpoints if len(inputs.checkpoints) else None),
               _h(t, "h_cap"))
    doc.add(_gap_table(t, s, inputs.gaps), _verdict(t, s), _signal(t, s))


def _table(t: Text, s: dict[str, Any]) -> str:
    acc = {(r["system"], r["shot"]): r for r in s["accuracy"] if r["split"] == "test"}
    gain = {(r["a"], r["b"], r["shot"]): r for r in s["gains"] if r["split"] == "test"}

    def cell(r: dict) -> str:
        return f"{pct(r['accuracy'])} [{num(r['low'])}, {num(r['high'])}]"

    body = []
    for k in s["shots"]:
        if ("oracle", k) not in acc:
            continue
        rand = acc[("random", k)]
        row = [str(k), cell(acc[("zero_shot", k)]), f"{cell(rand)} ±{num(rand['draw_sd'])}",
               cell(acc[("similarity", k)]), cell(acc[("best_of_m", k)]), cell(acc[("oracle", k)])]
        row += [f"{pts(g['diff'])} {ci(g['ci_low'], g['ci_high'])}"
                for g in (gain[("random", "oracle", k)], gain[("similarity", "oracle", k)])]
        body.append(row)
    heads = ("h_col_zero", "h_col_random", "h_col_sim", "h_col_best", "h_col_oracle", "h_col_or", "h_col_os")
    return md_table([t("col_shot")] + [_h(t, h) for h in heads], body)


def _gap_table(t: Text, s: dict[str, Any], gaps: list[dict[str, Any]]) -> str:
    if not gaps:
        return _h(t, "h_no_eval")
    body = [[g["system"], str(g["shot"]), pct(g["accuracy"]), pts(g["gain"]), pts(g["gap"]),
             _h(t, "h_no_gap") if not math.isfinite(g["share"]) else
             f"{_share(g['share'])} [{_share(g['low'])}, {_share(g['high'])}]"] for g in gaps]
    heads = [_h(t, h) for h in ("h_col_ckpt",)] + [t("col_shot")] + [
        _h(t, h) for h in ("h_col_acc", "h_col_vs_sim", "h_col_gap", "h_col_share")]
    return _h(t, "h_gap_intro", n=count(gaps[0]["n"])) + "\n\n" + md_table(heads, body)


def _verdict(t: Text, s: dict[str, Any]) -> str:
    v = s["verdict"]
    if v["shot"] is None:
        return ""
    gains = {(r["a"], r["b"]): r for r in s["gains"] if r["split"] == "test" and r["shot"] == v["shot"]}
    sim, rand = gains[("similarity", "oracle")], gains[("random", "oracle")]
    key = {"room": "h_room", "no room": "h_no_room", "unclear": "h_unclear"}[v["room"]]
    return _h(t, key, shot=v["shot"], sim=pts(sim["diff"]), sim_ci=ci(sim["ci_low"], sim["ci_high"]),
              rand=pts(rand["diff"]), rand_ci=ci(rand["ci_low"], rand["ci_high"]), gain=num(s["min_gain"]))


def _signal(t: Text, s: dict[str, Any]) -> str:
    g = s["signal"]
    if g is None:
        return _h(t, "h_signal_none")
    return _h(t, "h_signal", word=_h(t, f"h_word_{s['verdict']['signal']}"), kind=g["reward"]["kind"],
              shots=", ".join(str(k) for k in g["reward"]["shots"]), sd=num(g["sd_sets"], 3),
              share_sets=_share(g["share_sets"]), share_q=_share(g["share_questions"]),
              noise=_h(t, f"h_noise_{g['decoding']}"), no_spread=_share(g["no_spread_questions"]), m=count(g["draws"]),
              g=count(g["group_size"]), zero=_share(g["zero_spread"]), adv=g["advantage"], adv_std=num(g["adv_std"], 3),
              floor=num(g["std_floor"], 2), group_sd=num(g["group_reward_std"], 3))
