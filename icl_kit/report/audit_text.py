"""Wording of audit.md in zh and en: the same fields and numbers in both (see `icl_kit.report.audit`)."""

from __future__ import annotations

from typing import Any

from icl_kit.report.text import count

EN = {
    "title": "Audit of the study's artifacts",
    "intro": "{n_files} files read; {n_findings} findings. Each finding names the defect of STUDY_FORMATS.md §10.2 "
             "that the file itself shows.",
    "none": "No defect shown by this file.",
    "kind": "kind: {kind}",
    "generation": "generation: {generation}",
    "checkpoint_v3": "selector checkpoint, v3 `.pt` ({layers} layer(s))",
    "checkpoint_v2": "selector checkpoint, v2 Lightning `.ckpt` ({layers} layer(s))",
    "checkpoint_state_dict": "selector state dict ({layers} layer(s))",
    "gate": "with the query-update gate (§3.2, from 2025-12-29)",
    "none_gen": "without the query-update gate (§3.1, the seed report's)",
    "rl_data": "RL data, {queries} queries, {candidates} candidates",
    "d33": "d33 generator: global pointers, no pool (§5.4)",
    "k64": "k64/fix-v3: local pointers into candidate_pool_ids (§5.4)",
    "mixed": "a mix of both RL layouts",
    "results": "result file, {runs} run(s) of {retrievers}",
    "metrics": "icl_inference metrics.json (§9.1)",
    "flat": "random_predict baseline over the full split (§9.2)",
    "anchor_cache": "RandSampler anchor cache, {anchors} anchors (§2.1)",
    "candidate_cache": "RandSampler candidate cache, {anchors} pools of {size} (§2.1)",
    "unknown": "not a study artifact the audit knows",
    "v4": "{generation} selector (§3.4), not supported yet",
    "renamed_keys": "`{file}`: {count} keys renamed by the study's converter (cross_attn.*, attn_norm.*); the "
                    "study's inference did not map them back, so it ran this file with untrained cross-attention "
                    "and LayerNorm (§10.2 #3).",
    "dropped_layers": "`{file}`: its source had {layers} layers ({where}); the converter dropped {count} of them "
                      "(§10.2 #3).",
    "fallback": "`{file}`: {count} of {total} candidates were scored in fallback mode (substring match), {empty_half} "
                "of them an empty answer scored 0.5 (§10.2 #8).",
    "off_metric": "`{file}`: {count} of {total} candidates' stored vqa_acc_score differs from the official VQA "
                  "accuracy of their answer (§10.2 #7).",
    "pointers_len2": "`{file}`: all {count} pointers have length 2, so no training sequence covers shots 3 and 4.",
    "shots_beyond": "`{file}`: run `{run}` reports {count} shot(s) ({shots}) beyond the {k} candidates (train items "
                    "0..{k_last}) the study's LeverLM inference chose from (§10.2 #1, #2).",
    "mixed_runs": "`{file}`: {count} runs of {retriever} ({first} … {last}) share one file, and which checkpoint "
                  "made each is not recorded (§10.2 #17).",
}

ZH = {
    "title": "研究产物审计",
    "intro": "共读取 {n_files} 个文件；发现 {n_findings} 项问题。"
             "每项问题都对应 STUDY_FORMATS.md §10.2 中、由文件本身可见的缺陷。",
    "none": "该文件未显示缺陷。",
    "kind": "类型：{kind}",
    "generation": "版本：{generation}",
    "checkpoint_v3": "选择器检查点，v3 `.pt`（{layers} 层）",
    "checkpoint_v2": "选择器检查点，v2 Lightning `.ckpt`（{layers} 层）",
    "checkpoint_state_dict": "选择器 state dict（{layers} 层）",
    "gate": "带查询更新门（§3.2，2025-12-29 起）",
    "none_gen": "无查询更新门（§3.1，种子报告所用）",
    "rl_data": "RL 数据，{queries} 个查询，{candidates} 个候选",
    "d33": "d33 生成器：全局指针，无候选池（§5.4）",
    "k64": "k64/fix-v3：指向 candidate_pool_ids 的局部指针（§5.4）",
    "mixed": "两种 RL 布局混合",
    "results": "结果文件，{runs} 次运行，检索器 {retrievers}",
    "metrics": "icl_inference metrics.json（§9.1）",
    "flat": "random_predict 全量基线（§9.2）",
    "anchor_cache": "RandSampler 锚点缓存，{anchors} 个锚点（§2.1）",
    "candidate_cache": "RandSampler 候选缓存，{anchors} 个池，每池 {size} 个（§2.1）",
    "unknown": "审计无法识别的文件",
    "v4": "{generation} 选择器（§3.4），暂不支持",
    "renamed_keys": "`{file}`：{count} 个键被研究的转换器改名（cross_attn.*、attn_norm.*）；研究的推理未将其映射回去，"
                    "因此该文件在推理时使用的是未训练的交叉注意力和 LayerNorm（§10.2 #3）。",
    "dropped_layers": "`{file}`：其源文件有 {layers} 层（{where}）；转换器丢弃了其中 {count} 层（§10.2 #3）。",
    "fallback": "`{file}`：{total} 个候选中有 {count} 个以 fallback 模式（子串匹配）评分，"
                "其中 {empty_half} 个空答案得 0.5（§10.2 #8）。",
    "off_metric": "`{file}`：{total} 个候选中有 {count} 个存储的 vqa_acc_score 与官方 VQA 准确率不同（§10.2 #7）。",
    "pointers_len2": "`{file}`：全部 {count} 个指针长度均为 2，训练序列从未覆盖 3、4 个示例。",
    "shots_beyond": "`{file}`：运行 `{run}` 报告了 {count} 个超出研究 LeverLM 推理候选范围"
                    "（{k} 个，训练项 0..{k_last}）的示例数（{shots}）（§10.2 #1、#2）。",
    "mixed_runs": "`{file}`：{retriever} 的 {count} 次运行（{first} … {last}）写在同一文件中，且未记录各次所用的检查点"
                  "（§10.2 #17）。",
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


def finding_text(t: dict[str, str], art: Any, f: Any) -> str:
    fields: dict[str, Any] = {k: count(v) if isinstance(v, int) else v for k, v in f.fields.items()}
    if "shots" in f.fields:
        fields["shots"] = ", ".join(str(s) for s in f.fields["shots"])
        fields["k_last"] = f.fields["k"] - 1
    return t[f.code].format(file=art.path.name, count=count(f.count), **fields)


def render(arts: list[Any], language: str) -> str:
    """audit.md: a title, one line of totals, then one section per file."""
    t = PHRASES[language]
    n_findings = sum(len(a.findings) for a in arts)
    out = [f"# {t['title']}", "", t["intro"].format(n_files=count(len(arts)), n_findings=count(n_findings)), ""]
    for art in arts:
        out += [f"## `{art.path.name}`", "", *(f"- {line}" for line in _kind_line(t, art))]
        out += [f"- ⚠️ {finding_text(t, art, f)}" for f in art.findings] or [f"- {t['none']}"]
        out.append("")
    return "\n".join(out)
