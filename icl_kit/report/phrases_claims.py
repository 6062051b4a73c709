"""The phrases of the report's answer (`icl_kit.report.answer`): the claims table (c_), each claim's evidence
(ev_), where it was measured (w_) and the headline sentences (h_), in Chinese and English; merged into
`icl_kit.report.phrases`' tables, which hold the same keys in both languages."""

from __future__ import annotations

CLAIMS_ZH: dict[str, str] = {
    "c_claim": "主张", "c_claimed": "声称的差异", "c_evidence": "证据（n）", "c_diff": "本工具的差异 [{level} 区间]",
    "c_mde": "本 n 可检测的最小差异", "c_need": "检出 ±{margin} 点所需 n", "c_verdict": "结论",
    "ev_summary": "研究的汇总数，n = {n} †", "ev_paired": "逐题重新测量，{label}，n = {n}",
    "w_summary": "仅凭研究的汇总数（n = {n}）", "w_paired": "逐题重新测量（{label}，n = {n}）",
    "h_none": "{where}，{m} 项{what}没有一项成立：每个区间宽约 ±{hw} 点，差异要达到约 {mde} 点才能以 {power} "
              "功效被检出，所以这些差异都无法与噪声区分。",
    "h_held": "{where}，{m} 项{what}中有 {held} 项成立（{cells}）",
    "h_held_one": "{where}，{m} 项{what}中有 {held} 项成立（{cells}）",
    "h_held_none": "{where}，{m} 项{what}没有一项成立",
    "h_contrary": "{k} 项显示了主张之外的真实差异（{cells}）",
    "h_equiv": "{k} 项在 ±{margin} 点内等价",
    "h_noise": "{k} 项无法与噪声区分（区间约 ±{hw} 点，差异要达到约 {mde} 点才能以 {power} 功效被检出）",
    "h_cell": "{claim}（shot {shot}）{diff} {ci}",
    "c_note": "校正后 p 与族校正区间都在同一证据上的主张族内计算（族大小 m = {sizes}；区间为 1 − α/m 的 Bonferroni "
              "同时区间，结论以校正后的精确 p 为准）；{level} 区间是单项主张自己的区间；"
              "“可检测的最小差异”是本 n 在该族 α/m 水平下以 {power} 功效能检出的最小差异；"
              "“所需 n”是以同样功效检出 ±{margin} 点差异所需的题数。",
    "c_family": "族校正区间",
    "c_note_summary": "† 仅有研究的汇总准确率：按独立比例近似检验（两次运行答的是同一批题，所以偏保守）；"
                      "所需 n 的范围假设逐题配对重测、两次答案的相关系数为 0.8–0.3。",
    "c_note_audit": "研究各文件本身显示的缺陷（含计数）见 [audit.md](audit.md)（{k} 项）。",
    "ev_run": "逐题，{label}，n = {n}", "w_run": "{label}（n = {n}）上",
    "ev_seeds": "该方法，{k} 个训练种子 × {label}（每个种子 n = {n}）",
    "ev_checkpoint": "该检查点（一次训练），逐题，{label}，n = {n}",
    "w_seeds": "作为方法，在 {k} 个训练种子 × {label}（n = {n}）上",
    "c_note_seeds": "“该方法”的行检验的是这组参数本身：{k} 个训练种子的检查点与同一批题交叉"
                    "（种子 × 题目，两者都是随机效应，准 t 检验，Satterthwaite 自由度）；"
                    "“该检查点”的行只关于一个训练出来的文件，对另一个种子什么也没说。",
}

CLAIMS_EN: dict[str, str] = {
    "c_claim": "Claim", "c_claimed": "Claimed", "c_evidence": "Evidence (n)", "c_diff": "Kit's difference [{level} "
                                                                                      "interval]",
    "c_mde": "Detectable at this n", "c_need": "n to detect ±{margin}", "c_verdict": "Verdict",
    "ev_summary": "the study's numbers, n = {n} †", "ev_paired": "re-measured per question, {label}, n = {n}",
    "w_summary": "from the study's summary numbers at n = {n}", "w_paired": "re-measured per question on {label} "
                                                                            "(n = {n})",
    "h_none": "None of the {m} {what} holds {where}: each interval is about ±{hw} points wide, and a difference "
              "would need about {mde} points to be detected with {power} power, so the differences cannot be told "
              "from noise.",
    "h_held": "{held} of the {m} {what} hold {where} ({cells})",
    "h_held_one": "{held} of the {m} {what} holds {where} ({cells})",
    "h_held_none": "None of the {m} {what} holds {where}",
    "h_contrary": "{k} with a real difference the claim did not make ({cells})",
    "h_equiv": "{k} equivalent within ±{margin} points",
    "h_noise": "{k} not to be told from noise (intervals about ±{hw} points; a difference would need about {mde} "
               "points to be detected with {power} power)",
    "h_cell": "{claim} at shot {shot}, {diff} {ci}",
    "c_note": "Adjusted p and the family-adjusted interval are computed within the family of claims on the same "
              "evidence (family size m = {sizes}; the interval is the Bonferroni simultaneous interval at 1 − α/m, "
              "and the verdict follows the exact adjusted p); the {level} interval is each claim's own; "
              "“detectable” is the smallest difference this n detects with {power} power at the family's α/m; "
              "“n to detect” is the questions needed to detect ±{margin} points with that power.",
    "c_family": "Family-adjusted interval",
    "c_note_summary": "† From the study's summary accuracies only: tested as independent proportions, an "
                      "approximation that is conservative here (both runs answered the same questions); the n range "
                      "assumes a paired re-measurement whose answers correlate 0.8–0.3.",
    "c_note_audit": "What each of the study's files shows (its defects, with counts): [audit.md](audit.md) ({k} "
                    "findings).",
    "ev_run": "per question, {label}, n = {n}", "w_run": "on {label} (n = {n})",
    "ev_seeds": "this method, {k} training seeds × {label} (n = {n} each)",
    "ev_checkpoint": "this checkpoint (one training run), per question, {label}, n = {n}",
    "w_seeds": "as methods, over {k} training seeds × {label} (n = {n})",
    "c_note_seeds": "“This method” rows test the params themselves: the checkpoints of {k} training seeds crossed "
                    "with the same questions (seed × question, both random effects; quasi-t test with "
                    "Satterthwaite's degrees of freedom); “this checkpoint” rows are about one trained file and say "
                    "nothing of another seed.",
}
