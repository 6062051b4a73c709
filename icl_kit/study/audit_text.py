"""Wording of audit.md in zh and en: the same fields and numbers in both (see `icl_kit.study.audit`).

Defect numbers are those of docs/study.md, "Defects".
"""

from __future__ import annotations

from typing import Any

from icl_kit.report.text import count, num

EN = {
    "title": "Audit of the study's files",
    "intro": "{n_files} files read; {n_findings} findings. Each finding names the defect (docs/study.md, "
             "\"Defects\") that the file itself shows.",
    "none": "No defect shown by this file.",
    "kind": "kind: {kind}",
    "generation": "generation: {generation}",
    "checkpoint_v3": "selector checkpoint, v3 `.pt` ({layers} layer(s))",
    "checkpoint_v2": "selector checkpoint, v2 Lightning `.ckpt` ({layers} layer(s))",
    "checkpoint_state_dict": "selector state dict ({layers} layer(s))",
    "gate": "with the query-update gate (the study from 2025-12-29)",
    "none_gen": "without the query-update gate (the seed report's)",
    "rl_data": "RL data, {queries} queries, {candidates} candidates",
    "d33": "early generator: global pointers, no pool",
    "k64": "k64/fix-v3: local pointers into candidate_pool_ids",
    "mixed": "a mix of both RL layouts",
    "sft_beams": "InfoScore beam data (the SFT data), {anchors} anchors, {beams} beams of {shots} shots",
    "results": "result file, {runs} run(s) of {retrievers}",
    "metrics": "the inference script's metrics.json",
    "flat": "the random baseline's file over the whole split",
    "anchor_cache": "RandSampler anchor cache, {anchors} anchors",
    "candidate_cache": "RandSampler candidate cache, {anchors} pools of {size}",
    "unknown": "not a study file the audit knows",
    "v4": "{generation} selector, not supported yet",
    "renamed_keys": "{count} keys renamed by the study's converter (cross_attn.*, attn_norm.*); the study's "
                    "inference did not map them back, so it ran this file with untrained cross-attention and "
                    "LayerNorm (defect 3).",
    "dropped_layers": "its source had {layers} layers ({where}); the converter dropped {count} of them (defect 3).",
    "sft_parity_targets": "an SFT file of the study's supervised stage ({evidence}): its targets were each ICD's "
                          "train index mod 2 over the sequence's own two ICDs, unrelated to content (defect 4).",
    "evidence_clip": "{clip} frozen CLIP weights beside the selector",
    "evidence_losses": "losses train {train}, val {val} in its name, far above ln 2 = {ln2}, the most a "
                       "2-candidate cross-entropy reaches unless a target is masked",
    "random_selector": "{count} of {total} candidates (gen_method beam or sample) were proposed by the generator's "
                       "selector, which it loaded with a key prefix left on, so those pointers came from a randomly "
                       "initialised selector (defect 5).",
    "infoscore_mask": "its {count} InfoScores, {negative} of them negative, were computed with a mask taken from a "
                      "plain string rather than Qwen's chat input, so each 'probability' averages the loss over "
                      "nearly the whole prompt (defect 6); the kit's import keeps only their order.",
    "lenient_scorer": "its {count} accuracies were scored by the study's scorer, which normalises the prediction "
                      "and the answers even when all 10 answers agree, more leniently than the official VQA "
                      "metric; no per-question prediction survives, so they cannot be rescored (defect 7).",
    "fallback": "{count} of {total} candidates were scored in fallback mode (substring match), {empty_half} of "
                "them an empty answer scored 0.5 (defect 8).",
    "correct_if_any": "{count} of {total} candidates count as correct (vqa_correct = 1) with an accuracy below 1, "
                      "since the generator sets vqa_correct whenever the accuracy is above 0 (defect 8).",
    "off_metric": "{count} of {total} candidates' stored vqa_acc_score differs from the official VQA accuracy of "
                  "their answer (defect 7).",
    "pointers_len2": "all {count} pointers have length 2, so no training sequence covers shots 3 and 4.",
    "shots_beyond": "run `{run}` reports {count} shot(s) ({shots}) beyond the {k} candidates (train items "
                    "0..{k_last}) the study's LeverLM inference chose from (defects 1, 2).",
    "mixed_runs": "{count} runs of {retriever} ({first} … {last}) share one file, and which checkpoint made each "
                  "is not recorded (defect 17).",
    "interval_width": "{count} run(s) on n = {n} questions: at their median accuracy {acc}%, the {level}% interval "
                      "of one accuracy is ±{one} points and of a difference between two such runs ±{diff} points "
                      "(from summaries, as independent proportions), so differences of a point or two cannot be "
                      "told from noise (defect 20).",
}

ZH = {
    "title": "研究文件审计",
    "intro": "共读取 {n_files} 个文件；发现 {n_findings} 项问题。每项问题都对应 docs/study.md“缺陷”一节中、"
             "由文件本身可见的缺陷。",
    "none": "该文件未显示缺陷。",
    "kind": "类型：{kind}",
    "generation": "版本：{generation}",
    "checkpoint_v3": "选择器检查点，v3 `.pt`（{layers} 层）",
    "checkpoint_v2": "选择器检查点，v2 Lightning `.ckpt`（{layers} 层）",
    "checkpoint_state_dict": "选择器 state dict（{layers} 层）",
    "gate": "带查询更新门（2025-12-29 起的版本）",
    "none_gen": "无查询更新门（种子报告所用版本）",
    "rl_data": "RL 数据，{queries} 个查询，{candidates} 个候选",
    "d33": "早期生成器：全局指针，无候选池",
    "k64": "k64/fix-v3：指向 candidate_pool_ids 的局部指针",
    "mixed": "两种 RL 布局混合",
    "sft_beams": "InfoScore 束搜索数据（SFT 数据），{anchors} 个锚点，每个 {beams} 条束、{shots} 个示例",
    "results": "结果文件，{runs} 次运行，检索器 {retrievers}",
    "metrics": "推理脚本的 metrics.json",
    "flat": "随机基线在全部测试集上的结果文件",
    "anchor_cache": "RandSampler 锚点缓存，{anchors} 个锚点",
    "candidate_cache": "RandSampler 候选缓存，{anchors} 个池，每池 {size} 个",
    "unknown": "审计无法识别的文件",
    "v4": "{generation} 选择器，暂不支持",
    "renamed_keys": "{count} 个键被研究的转换器改名（cross_attn.*、attn_norm.*）；研究的推理未将其映射回去，"
                    "因此该文件在推理时使用的是未训练的交叉注意力和 LayerNorm（缺陷 3）。",
    "dropped_layers": "其源文件有 {layers} 层（{where}）；转换器丢弃了其中 {count} 层（缺陷 3）。",
    "sft_parity_targets": "研究监督阶段的 SFT 文件（{evidence}）：其训练目标是每个示例的训练集下标对 2 取模，"
                          "只在该序列自己的两个示例之间选择，与内容无关（缺陷 4）。",
    "evidence_clip": "选择器旁有 {clip} 个冻结的 CLIP 权重",
    "evidence_losses": "文件名中的损失 train {train}、val {val} 远高于 ln 2 = {ln2}"
                       "（两候选交叉熵在目标未被遮蔽时的上限）",
    "random_selector": "{total} 个候选中有 {count} 个（gen_method 为 beam 或 sample）由生成器的选择器提出；"
                       "生成器加载权重时留下了键前缀，所以这些指针来自随机初始化的选择器（缺陷 5）。",
    "infoscore_mask": "其 {count} 个 InfoScore（其中 {negative} 个为负）的遮罩取自普通字符串而非 Qwen 的对话输入，"
                      "因此每个“概率”几乎是对整个提示的损失取平均（缺陷 6）；本工具导入时只保留它们的顺序。",
    "lenient_scorer": "其 {count} 个准确率由研究自己的评分器计算：即使 10 个答案完全一致，它也会对预测和答案做规范化，"
                      "比官方 VQA 指标宽松；逐题预测没有保留，无法重新评分（缺陷 7）。",
    "fallback": "{total} 个候选中有 {count} 个以 fallback 模式（子串匹配）评分，"
                "其中 {empty_half} 个空答案得 0.5（缺陷 8）。",
    "correct_if_any": "{total} 个候选中有 {count} 个准确率低于 1 却被记为正确（vqa_correct = 1），"
                      "因为生成器只要准确率大于 0 就记为正确（缺陷 8）。",
    "off_metric": "{total} 个候选中有 {count} 个存储的 vqa_acc_score 与官方 VQA 准确率不同（缺陷 7）。",
    "pointers_len2": "全部 {count} 个指针长度均为 2，训练序列从未覆盖 3、4 个示例。",
    "shots_beyond": "运行 `{run}` 报告了 {count} 个超出研究 LeverLM 推理候选范围（{k} 个，训练项 0..{k_last}）"
                    "的示例数（{shots}）（缺陷 1、2）。",
    "mixed_runs": "{retriever} 的 {count} 次运行（{first} … {last}）写在同一文件中，"
                  "且未记录各次所用的检查点（缺陷 17）。",
    "interval_width": "{count} 次运行只用了 n = {n} 题：在其准确率中位数 {acc}% 处，单个准确率的 {level}% 置信区间为 "
                      "±{one} 点，两次这样的运行之差为 ±{diff} 点（由汇总数按独立比例计算），"
                      "所以一两个点的差异无法与噪声区分（缺陷 20）。",
}

PHRASES = {"en": EN, "zh": ZH}


def _kind_line(t: dict[str, str], art: Any) -> list[str]:
    d = {k: (", ".join(v) if isinstance(v, list) else count(v) if isinstance(v, int) else v)
         for k, v in art.details.items()}
    lines = [t["kind"].format(kind=t[art.kind].format(**d))]
    gen = art.generation
    if gen:
        text = t["v4"].format(generation=gen) if gen.startswith("V4") else t["none_gen" if gen == "none" else gen]
        lines.append(t["generation"].format(generation=text))
    return lines


def _evidence(t: dict[str, str], f: Any) -> str:
    parts = []
    if f.fields.get("clip"):
        parts.append(t["evidence_clip"].format(clip=count(f.fields["clip"])))
    if f.fields.get("losses"):
        train, val = f.fields["losses"]
        parts.append(t["evidence_losses"].format(train=num(train, 2), val=num(val, 2), ln2=num(f.fields["ln2"], 2)))
    return "; ".join(parts)


def finding_text(t: dict[str, str], f: Any) -> str:
    fields: dict[str, Any] = {k: count(v) if isinstance(v, int) else num(v) if isinstance(v, float) else v
                              for k, v in f.fields.items()}
    if "shots" in f.fields:
        fields["shots"] = ", ".join(str(s) for s in f.fields["shots"])
        fields["k_last"] = f.fields["k"] - 1
    if f.code == "sft_parity_targets":
        fields["evidence"] = _evidence(t, f)
    if f.code == "interval_width":
        fields["level"] = f"{f.fields['level']:g}"
    return t[f.code].format(count=count(f.count), **fields)


def render(arts: list[Any], language: str) -> str:
    """audit.md: a title, one line of totals, then one section per file, headed by its path as given."""
    t = PHRASES[language]
    n_findings = sum(len(a.findings) for a in arts)
    out = [f"# {t['title']}", "", t["intro"].format(n_files=count(len(arts)), n_findings=count(n_findings)), ""]
    for art in arts:
        out += [f"## `{art.shown or art.path}`", "", *(f"- {line}" for line in _kind_line(t, art))]
        out += [f"- ⚠️ {finding_text(t, f)}" for f in art.findings] or [f"- {t['none']}"]
        out.append("")
    return "\n".join(out)
