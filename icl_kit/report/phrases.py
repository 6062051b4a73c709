"""The report's phrases in Chinese (the default, `report.language: zh`) and English, key by key.

Both tables must hold the same keys with the same placeholders (tests/report/test_report.py checks it), so a
report rendered in either language prints the same numbers.
"""

from __future__ import annotations

from icl_kit.report.phrases_claims import CLAIMS_EN, CLAIMS_ZH

# ------------------------------------------------------------------ phrases
ZH: dict[str, str] = {
    "title": "# {title}：{compared}",
    "header": "> 日期：{date} · 数据集：{dataset} · 样本数：{n} · 推理模型：{model} · 采样器：{sampler}",
    "smoke_banner": "> ⚠️ **冒烟测试（smoke run）**：本次运行只检查流程能否跑通，报告中的数字没有意义，不要引用。",
    "sim_banner": "> ⚠️ **模拟 LVLM**：答案来自演示世界的模拟器，不是模型；数字只说明方法，不是模型的结果。",
    "sec": "## {roman}、{name}",
    "sec_names": "核心结论|测试配置|结果对比|详细分析|关键发现|建议|总结",
    "name_answer_retest": "研究主张的复检",
    "title_default": "ICD 选择器评估", "title_retest": "研究结论复检", "title_sim": "（演示世界，模拟 LVLM）",
    "a_gain": "真实差异（提升）", "a_drop": "真实差异（下降）", "a_equiv": "在 ±{margin} 点内等价",
    "a_noise": "无法与噪声区分",
    "what_claims": "主张", "what_primary": "主要比较",
    "h_join": "{first}：{rest}。", "clause_sep": "；",
    "compared_claims": "研究的 {m} 项主张",
    "header_imported": "> 日期：{date} · 来源：研究的结果文件 {files} · 样本数：{n} · "
                       "推理模型：研究自己的运行（本工具未重新运行）",
    "col_source": "来源（文件:键）", "col_questions": "测试题",
    "imported_intro": "**导入的系统**：研究报告的准确率（只有汇总数，没有逐题结果）；"
                      "研究的文件不记录是哪个检查点产生的，未命名的运行按检索器命名，同一检索器多次运行时按日期编号。",
    "stats_line": "统计方法：{desc}",
    "stats_desc_summary": "两个汇总准确率之差按独立比例的 Wald 检验与区间近似（无逐题数据时的近似，偏保守）；"
                          "{correction} 多重比较校正（α = {alpha}，每个比较族内分别校正）；TOST 等价检验"
                          "（δ = ±{margin} 点）；功效 {power}",
    "subset_study_first": "研究报告的前 {k} 题", "subset_study_all": "研究报告的全部测试题",
    "key": "项目", "value": "取值",
    "cfg_dataset": "数据集", "cfg_questions": "测试问题", "cfg_model": "推理模型", "cfg_sampler": "采样器",
    "cfg_systems": "评估的系统", "cfg_shots": "Shot", "cfg_stats": "统计方法", "cfg_training": "训练",
    "cfg_run": "运行状态", "questions_desc": "{how}，n = {n}",
    "q_first": "编号最小的前若干题", "q_random": "随机抽取", "q_all": "全部",
    "demo_dataset": "{dataset}（演示世界：合成数据，OK-VQA 文件格式）",
    "sim_model": "模拟 LVLM（演示世界的模拟器，不是模型）",
    "sampler_desc": "RandSampler（每题 {size} 个候选，种子 {seed}）",
    "stats_desc": "精确配对符号翻转检验（1/30 分值格点上精确计算）{cluster}+ {interval} {level} 置信区间；"
                  "{correction} 多重比较校正（α = {alpha}，每个比较族内分别校正）；"
                  "TOST 等价检验（δ = ±{margin} 点）；功效 {power}",
    "cluster_desc": "，按图像聚类（{k} 张图像：同一图像的题目一起翻转；区间、MDE 与所需题数按聚类稳健计算）",
    "training_desc": "InfoScore 束搜索数据上的 SFT {sft} 个 epoch，RCE 预热 {rce} 个 epoch，"
                     "GRPO {grpo} 个 epoch；奖励 {reward}{seeds}",
    "run_smoke": "冒烟测试（数字无意义）", "run_normal": "正式运行",
    "cfg_batching": "批处理一致性", "cfg_work": "LVLM 工作量",
    "work_desc": "{stage}：{prompts} 个提示，{images} 张图像（编码 {encoded}）",
    "work_tokens": "预填充 {prefill}、解码 {decode} 个 token，约 {tflop} TFLOP（3B 规模）",
    "work_sim": "{stage}：{prompts} 个提示，{images} 张图像（模拟器：没有模型运行，不计 FLOP）",
    "agreement_desc": "批处理答案与逐条答案在 {agree}/{n} 个提示上相同（批大小 {batch}，{dtype}）",
    "sub_acc": "### 3.1 完整对比表",
    "acc_caption": "**各系统准确率**（括号内为 {level} 置信区间）",
    "system": "系统",
    "subset_heading": "#### {label}（n = {n}）",
    "subset_family": "*这是{all}（n = {n_all}）的子集：其比较单独组成族进行校正（m = {sizes}），不与全部问题上的比较"
                     "合并；它们重复使用同样的问题，因此不是独立的证据。*",
    "subset_all": "全部测试问题", "subset_first": "前 {k} 题", "subset_random": "随机 {k} 题（种子 {seed}）",
    "kind_explicit": "**指定的比较（主要比较族，单独校正）**", "kindname_explicit": "指定",
    "kind_vs_baseline": "**与基线 {baseline} 对比**", "kind_epoch_vs_previous": "**与上一个 epoch 对比**",
    "kind_pair": "**其他对比**",
    "col_b": "B", "col_a": "A", "col_shot": "Shot", "col_acc_a": "A 准确率", "col_acc_b": "B 准确率",
    "col_diff": "差异 B−A", "col_ci": "{level} 置信区间", "col_tost": "{tost_level} 区间（TOST）",
    "col_padj": "校正后 p", "col_verdict": "结论",
    "v_better": "显著提升", "v_worse": "显著下降", "v_equivalent": "等价（±{margin}）",
    "v_inconclusive_n": "无可检测差异（检出 {margin} 点需 n≈{n}）", "v_inconclusive": "无可检测差异",
    "approx_note": "† 仅有汇总准确率：按独立比例近似检验（对配对数据偏保守）。",
    "table_note": "差异单位为百分点。箭头与加粗只标记经 {correction} 校正后 p < {alpha} 的差异；"
                  "{level} 置信区间是单项比较的区间（未做多重校正），所以不含 0 的区间仍可能不显著；"
                  "“等价”表示 TOST 显示差异在 ±{margin} 点以内；"
                  "“检出 {margin} 点需 n≈” 为以 {power} 功效、在 α/m 水平（m 为该行所在比较族的比较数：{sizes}）"
                  "检出 {margin} 点差异所需的题数；这也是本族最小 p 必须达到的水平。",
    "floor_note": "少数比较无法精确计算，改用 {n_perm} 次随机符号翻转，原始 p 最小只能到 {floor}；"
                  "“≤” 表示原始 p 已到这个下限，"
                  "校正后 p 是上界，真实值可能更小。",
    "sub_summary": "### 3.2 统计汇总",
    "col_subset": "子集", "col_kind": "比较类型", "col_count": "比较数", "col_mean": "平均差异",
    "col_halfwidth": "区间半宽（中位数）", "col_better": "提升", "col_worse": "下降", "col_equiv": "等价",
    "col_inconcl": "无可检测差异",
    "kindname_vs_baseline": "对基线", "kindname_epoch_vs_previous": "对上一 epoch", "kindname_pair": "其他",
    "fig": "![{alt}]({path})\n\n*图：{caption}*",
    "cap_accuracy": "各 shot 下每个检查点的准确率，按训练顺序排列（阴影为各准确率自身的 {level} 置信区间，"
                    "虚线/点线及浅色带为没有 epoch 的系统）。",
    "cap_forest": "{label}：各比较的差异及 {level} 置信区间（每个 shot 一栏），颜色表示结论；"
                  "灰带为 ±{margin} 点等价界。",
    "cap_forest_squares": "方块为仅有汇总准确率的近似比较。",
    "cap_power": "最小可检测差异随题数 n 的变化（功效 {power}，α/{m}，差异标准差 {sd} 点）；红点为本次 n = {n}，"
                 "点线为 ±{margin} 点等价界。",
    "cap_training": "训练曲线：奖励、优势标准差、KL、零方差组比例，以及每个 epoch 的验证损失与验证奖励。",
    "detail_heading": "### 4.{i} {b} vs {a}",
    "detail_subset": "- **{label}（n = {n}）**",
    "detail_line": "  - Shot {shot}：{b} {acc_b} vs {a} {acc_a}，差异 {diff} 点，{level} 置信区间 {ci}，"
                   "{tost_level} 区间 {tost_ci}，"
                   "校正后 p {p_adj}（原始 p {p}；符号检验 p {sign}：{up} 题变好、{down} 题变差）→ {verdict}",
    "detail_line_summary": "  - Shot {shot}：{b} {acc_b} vs {a} {acc_a}，差异 {diff} 点，{level} 置信区间 {ci}，"
                           "{tost_level} 区间 {tost_ci}，校正后 p {p_adj}（原始 p {p}；仅汇总数）→ {verdict}",
    "detail_mde": "  - 在 n = {n}、α/{m}（本族的水平）下，以 {power} 功效可检出的最小差异约为 ±{mde} 点"
                  "（各 shot 中位数）；检出 {margin} 点需 n≈{need}（shot {shot}，与表中相同）",
    "detail_mde_obs": "；探索性：确认与观测值同样大小的差异需 n≈{need_obs}"
                      "（中位数，观测功效意义上的估计，不作结论依据）。",
    "train_heading": "### 4.{i} 训练过程",
    "no_train_log": "（没有训练日志：跳过训练相关的分析。）",
    "col_phase": "阶段", "col_epoch": "Epoch", "col_val_loss": "验证损失", "col_val_reward": "验证奖励",
    "col_time": "耗时 (s)", "col_ckpt": "检查点",
    "best_heading": "### 4.{i} 最佳 epoch 的选择",
    "col_lineage": "检查点序列", "col_best": "测试集最佳检查点", "col_best_diff": "相对基线差异",
    "col_naive": "单独检验 p（单侧）", "col_maxt": "max-T p",
    "best_note": "两个 p 都是单侧的（方向为“更好”）。"
                 "max-T（Westfall–Young）考虑了“从 {e} 个 epoch 中挑最好的”这一选择；"
                 "单独检验 p 没有考虑。",
    "f_significant": "{b} 相对 {a} 在 shot {shot} 上{direction} {diff} 点"
                     "（{level} 置信区间 {ci}，校正后 p {p_adj}，n = {n}）。",
    "dir_up": "提升", "dir_down": "下降",
    "f_none_significant": "经 {correction} 校正后，{m} 项比较（n = {n}）中没有一项差异显著。",
    "f_val_disagree": "验证损失与验证奖励选出的最佳 epoch 不一致：损失最低的是 {loss_epoch}（{loss}），"
                      "奖励最高的是 {reward_epoch}（{reward}）。",
    "f_weak_signal": "训练信号很弱：优势标准差的中位数只有 {adv}（阈值 {thr}），"
                     "奖励完全没有差异的组占 {zero}（中位数）。",
    "f_maxt_lost": "{lineage} 在 shot {shot} 的测试集最佳 epoch {epoch}（{diff} 点）单独检验 p {naive}，"
                   "但计入“挑选{pick}”后 max-T p {maxt}，不再显著。",
    "f_maxt_kept": "{lineage} 在 shot {shot} 的测试集最佳检查点 {epoch}（{diff} 点）在计入挑选"
                   "（从 {among} 中挑最好的，max-T p {maxt}）和整个比较族的校正"
                   "（m = {m}，校正后 p {p_adj}）后都仍显著。",
    "f_maxt_family": "{lineage} 在 shot {shot} 的测试集最佳检查点 {epoch}（{diff} 点）：max-T p {maxt} 只计入了"
                     "“从 {among} 中挑最好的”；再计入整个比较族（m = {m}），校正后 p {p_adj}：{verdict}。",
    "among_epochs": "{e} 个 epoch", "among_joint": "{e} 个 epoch × {k} 个 shot", "shot_pooled": "{shots}（全部 shot）",
    "pick_epoch": "最佳 epoch", "pick_joint": "最佳 epoch 和 shot",
    "best_note_joint": "“全部 shot”一行只检验一次：每题一个符号，由所有 epoch 和 shot 共用（{e} 个 epoch × {k} 个 "
                       "shot），其 max-T p 也计入了挑选 shot；各 shot 的行只回答“在该 shot 上”。",
    "f_n_small": "在 n = {n} 时 {m} 项比较中有 {k} 项无法下结论：本次能以 {power} 功效检出的最小差异约为 ±{mde} 点，"
                 "检出 ±{margin} 点约需 n≈{need} 题（各表的中位数）。",
    "f_significant_range": "{b} 相对 {a} 在 shot {shots} 上的差异都显著（{k} 项，{lo} 到 {hi} 点，n = {n}）。",
    "family_ci": "，族校正 {ci}", "and_more_sentence": "另有 {k} 项同类差异。",
    "p_ci_disagree": "（精确 p {p} 与此区间对 0 的判断不一致）",
    "f_subsets": "题数决定结论：n = {n_small} 时 {k_small} / {m_small} 项比较无法下结论"
                 "（区间半宽中位数 ±{hw_small} 点），n = {n_large} 时只有 {k_large} / {m_large} 项"
                 "（±{hw_large} 点）；其中 {settled} 项在大样本下得到了结论。",
    "f_subsets_none": "n = {n_small} 到 n = {n_large}：区间半宽中位数从 ±{hw_small} 点缩小到 ±{hw_large} 点，"
                      "但没有一项比较因此得到结论"
                      "（无法下结论的分别有 {k_small} / {m_small} 和 {k_large} / {m_large} 项）。",
    "f_val_selected": "按验证奖励选出的检查点 {system}（验证奖励 {reward}）在测试集上：{cells}。",
    "f_val_selected_cell": "shot {shot} {diff} 点 {ci}（{verdict}）",
    "f_best_on_test": "相比之下，各 shot 测试集上最好的检查点差异为 {cells}，因为是在测试集上挑选的，偏乐观。",
    "f_best_cell": "shot {shot} {diff}（{system}）",
    "f_summary_mode": "{k} 项比较只有汇总准确率（近似检验，结论偏保守）。",
    "f_smoke": "这是冒烟测试：以上数字不代表任何模型的效果。",
    "f_none": "没有触发任何规则。",
    "r_val_reward": "按验证奖励（而不是验证损失）选择检查点：本次两者选出的 epoch 不同。",
    "r_weak_signal": "加强训练信号：增大每组采样数（train.rollouts.group_size），"
                     "或使用更有区分度的奖励（train.reward.kind、train.reward.shots），再检查奖励缓存是否正常。",
    "r_more_n": "把测试题数增加到 n≈{need}（eval.n 或 eval.questions: all），再判断这些差异。",
    "r_split_too_small": "本次已用上全部测试题（n = {n}）；检出 ±{margin} 点约需 n≈{need} 题，超过了这个测试集："
                         "把这些差异记为“未检出”，或在更大的测试集上检验。",
    "kind_method": "**方法对比（在各训练种子上检验）**",
    "kind_method_vs_baseline": "**各方法与基线 {baseline} 对比（在各训练种子上检验）**",
    "kindname_method": "方法", "kindname_method_vs_baseline": "方法对基线",
    "seeds_desc": "；{k} 个训练种子（{seeds}），每个种子一条检查点序列",
    "r_undetectable": "其余 {k} 项无法下结论的差异远小于本次能检出的差异（最小可检测差异 ±{mde} 点），"
                      "其中最容易检出的也约需 n≈{need} 题：把它们记为“未检出”，不要当作提升或下降。",
    "r_honest": "报告按验证集选出的检查点在测试集上的结果，不要报告测试集上挑出来的最佳 epoch。",
    "r_no_claim": "不要宣称提升：目前没有经校正后显著的差异。",
    "r_remeasure": "这 {k} 项比较只有汇总数：要检验它们，用研究的检查点逐题重新测量"
                   "（`icl-kit study retest 文件… 检查点… --params P`）；"
                   "配对检验要检出 ±{margin} 点差异约需 n≈{need} 题。",
    "r_confirm": "在新的一批测试题上复核显著的差异（{k} 项）后再采用。",
    "r_smoke": "用正式参数重新运行（report.smoke: false）后再看结论。",
    "r_none": "暂无需要改变的做法。",
    "conclusion": "共 {m} 项比较（{label}，n = {n}）：显著提升 {better} 项，显著下降 {worse} 项，"
                  "等价 {equiv} 项，无可检测差异 {inconcl} 项。",
    "conclusion_best": "最大的显著提升：{b} 相对 {a}，shot {shot}，{diff} 点 {ci}。",
    "conclusion_none": "没有经校正后显著的提升。",
    "conclusion_smoke": "注意：这是冒烟测试，数字没有意义。",
    "conclusion_sim": "注意：结果来自模拟 LVLM（演示世界），不是模型。",
    "list_sep": "、", "and_more": "等 {k} 个", "sentence_sep": "", "full_stop": "。",
}

EN: dict[str, str] = {
    "title": "# {title}: {compared}",
    "header": "> Date: {date} · Dataset: {dataset} · Questions: {n} · Model: {model} · Sampler: {sampler}",
    "smoke_banner": "> ⚠️ **SMOKE RUN**: this run only checks that the pipeline works; the numbers in this "
                    "report are meaningless and must not be quoted.",
    "sim_banner": "> ⚠️ **SIMULATED LVLM**: the answers come from the demo world's simulator, not a model; "
                  "the numbers illustrate the method, not a model's results.",
    "sec": "## {roman}. {name}",
    "sec_names": "The answer|Test configuration|Results|Detailed analysis|Key findings|Recommendations|Conclusion",
    "name_answer_retest": "The study's claims, re-tested",
    "title_default": "ICD selector evaluation", "title_retest": "Re-test of the study's claims",
    "title_sim": " (demo world, simulated LVLM)",
    "a_gain": "a real difference (gain)", "a_drop": "a real difference (drop)", "a_equiv": "equivalent within "
                                                                                      "±{margin} points",
    "a_noise": "cannot be told from noise",
    "what_claims": "claims", "what_primary": "primary comparisons",
    "h_join": "{first}: {rest}.", "clause_sep": "; ",
    "compared_claims": "{m} claims of the study",
    "header_imported": "> Date: {date} · Source: the study's result files {files} · Questions: {n} · Model: the "
                       "study's own runs (not re-run here)",
    "col_source": "Source (file:key)", "col_questions": "Test questions",
    "imported_intro": "**Imported systems**: accuracies the study reported (summaries only, no per-question "
                      "results); the study's files do not record which checkpoint made a run, so an unnamed run is "
                      "called after its retriever, numbered by date when one retriever ran more than once.",
    "stats_line": "Statistics: {desc}",
    "stats_desc_summary": "the difference of two summary accuracies by a Wald test and interval for independent "
                          "proportions (an approximation for summaries without per-question data, conservative); "
                          "{correction} correction within each family of comparisons (α = {alpha}); TOST "
                          "equivalence (δ = ±{margin} points); power {power}",
    "subset_study_first": "the study's first {k} questions, as reported", "subset_study_all": "the study's whole "
                                                                                            "test split, as reported",
    "key": "Item", "value": "Value",
    "cfg_dataset": "Dataset", "cfg_questions": "Test questions", "cfg_model": "Model", "cfg_sampler": "Sampler",
    "cfg_systems": "Systems evaluated", "cfg_shots": "Shots", "cfg_stats": "Statistics", "cfg_training": "Training",
    "cfg_run": "Run status", "questions_desc": "{how}, n = {n}",
    "q_first": "the smallest question ids", "q_random": "random draw", "q_all": "all",
    "demo_dataset": "{dataset} (demo world: synthetic data in the OK-VQA file layout)",
    "sim_model": "simulated LVLM (demo-world simulator, not a model)",
    "sampler_desc": "RandSampler ({size} candidates per question, seed {seed})",
    "stats_desc": "exact paired sign-flip test (computed exactly on the 1/30 score lattice){cluster} + {interval} "
                  "{level} interval; {correction} correction within each family of comparisons "
                  "(α = {alpha}); TOST equivalence (δ = ±{margin} points); power {power}",
    "cluster_desc": ", by image ({k} images: the questions of one image flip together; interval, MDE and n needed "
                    "cluster-robust)",
    "training_desc": "epochs: SFT on InfoScore beams {sft}, RCE warm-up {rce}, GRPO {grpo}; reward {reward}{seeds}",
    "run_smoke": "smoke run (numbers meaningless)", "run_normal": "full run",
    "cfg_batching": "Batch agreement", "cfg_work": "LVLM work",
    "work_desc": "{stage}: {prompts} prompts, {images} images ({encoded} encoded)",
    "work_tokens": "{prefill} prefill and {decode} decode tokens, ≈ {tflop} TFLOP at 3B size",
    "work_sim": "{stage}: {prompts} prompts with {images} images (simulated: no model ran, no FLOPs)",
    "agreement_desc": "batched answers equal one-at-a-time answers on {agree}/{n} prompts (batch {batch}, {dtype})",
    "sub_acc": "### 3.1 Full comparison",
    "acc_caption": "**Accuracy of each system** ({level} interval in brackets)",
    "system": "System",
    "subset_heading": "#### {label} (n = {n})",
    "subset_family": "*A subset of {all} (n = {n_all}): its comparisons are adjusted as families of their own "
                     "(m = {sizes}), apart from those on all the questions, and they re-use those questions, so they "
                     "are not independent evidence.*",
    "subset_all": "all test questions", "subset_first": "first {k} questions",
    "subset_random": "random {k} questions (seed {seed})",
    "kind_explicit": "**Explicit comparisons (the primary family, adjusted on its own)**", "kindname_explicit": "expli"
                     "cit",
    "kind_vs_baseline": "**Against the baseline {baseline}**",
    "kind_epoch_vs_previous": "**Against the previous epoch**",
    "kind_pair": "**Other comparisons**",
    "col_b": "B", "col_a": "A", "col_shot": "Shot", "col_acc_a": "A accuracy", "col_acc_b": "B accuracy",
    "col_diff": "Diff B−A", "col_ci": "{level} interval", "col_tost": "{tost_level} interval (TOST)", "col_padj": "Adj"
                "usted p", "col_verdict": "Verdict",
    "v_better": "significant gain", "v_worse": "significant drop", "v_equivalent": "equivalent (±{margin})",
    "v_inconclusive_n": "no detectable difference (to detect {margin} points: n ≈ {n})", "v_inconclusive": "no detecta"
                        "ble difference",
    "approx_note": "† Summary accuracies only: tested as independent proportions (conservative for paired data).",
    "table_note": "Differences are in points. Arrows and bold mark only differences with {correction}-adjusted "
                  "p < {alpha}; the {level} intervals are per comparison (not adjusted), so an interval that excludes "
                  "0 "
                  "can still be not significant; “equivalent” means TOST puts the difference within ±{margin} "
                  "points; “to detect {margin} points: n ≈” is the number of questions needed to detect a {margin}-poi"
                  "nt "
                  "difference with power {power} at α/m (m = the comparisons in the row's family: {sizes}), the level "
                  "the family's smallest p must reach.",
    "floor_note": "A few comparisons could not be computed exactly and use {n_perm} random sign flips, so their raw p "
                  "cannot go below {floor}; “≤” marks "
                  "an adjusted p whose raw p sits at that floor: it is an upper bound, the true p may be smaller.",
    "sub_summary": "### 3.2 Statistics summary",
    "col_subset": "Subset", "col_kind": "Comparison", "col_count": "Count", "col_mean": "Mean diff",
    "col_halfwidth": "Interval half-width (median)", "col_better": "Better", "col_worse": "Worse",
    "col_equiv": "Equivalent", "col_inconcl": "No detectable difference",
    "kindname_vs_baseline": "vs baseline", "kindname_epoch_vs_previous": "vs previous epoch", "kindname_pair": "other",
    "fig": "![{alt}]({path})\n\n*Figure: {caption}*",
    "cap_accuracy": "Accuracy of each checkpoint at each shot, in training order (bands: each accuracy's own "
                    "{level} interval; broken lines with light bands: systems without epochs).",
    "cap_forest": "{label}: difference and {level} interval of each comparison (one panel per shot), coloured by "
                  "verdict; grey band: ±{margin}-point equivalence margin.",
    "cap_forest_squares": " Squares: summary-only approximations.",
    "cap_power": "Minimum detectable difference against the number of questions n (power {power} at α/{m}, SD of "
                 "differences {sd} points); the red point marks this run's n = {n}, the dotted line the "
                 "±{margin}-point equivalence margin.",
    "cap_training": "Training curves: reward, advantage std, KL, share of zero-spread groups, and validation "
                    "loss and validation reward per epoch.",
    "detail_heading": "### 4.{i} {b} vs {a}",
    "detail_subset": "- **{label} (n = {n})**",
    "detail_line": "  - Shot {shot}: {b} {acc_b} vs {a} {acc_a}, difference {diff} points, {level} interval {ci}, "
                   "{tost_level} interval {tost_ci}, adjusted p {p_adj} (raw p {p}; sign test p {sign}: {up} questions "
                   "improved, {down} worsened) → {verdict}",
    "detail_line_summary": "  - Shot {shot}: {b} {acc_b} vs {a} {acc_a}, difference {diff} points, {level} interval "
                           "{ci}, {tost_level} interval {tost_ci}, adjusted p {p_adj} (raw p {p}; summaries only) → "
                           "{verdict}",
    "detail_mde": "  - At n = {n} and α/{m} (the family's level) the smallest difference detectable with power "
                  "{power} is about ±{mde} points (median over shots); to detect {margin} points: n ≈ {need} (shot "
                  "{shot}, as in the table)",
    "detail_mde_obs": "; exploratory: to confirm a difference of the observed size (an observed-power estimate, "
                      "median, not evidence for or against it): n ≈ {need_obs}.",
    "train_heading": "### 4.{i} Training",
    "no_train_log": "(No training log: the training analysis is skipped.)",
    "col_phase": "Phase", "col_epoch": "Epoch", "col_val_loss": "Val loss", "col_val_reward": "Val reward",
    "col_time": "Time (s)", "col_ckpt": "Checkpoint",
    "best_heading": "### 4.{i} Choosing the best epoch",
    "col_lineage": "Checkpoint series", "col_best": "Best checkpoint on test", "col_best_diff": "Diff vs baseline",
    "col_naive": "Naive p (one-sided)", "col_maxt": "max-T p",
    "best_note": "Both p-values are one-sided (in the direction of “better”). max-T (Westfall–Young) accounts for "
                 "picking the best of {e} epochs; the naive p does not.",
    "f_significant": "{b} vs {a} at shot {shot}: a {direction} of {diff} points ({level} interval {ci}, adjusted "
                     "p {p_adj}, n = {n}).",
    "dir_up": "gain", "dir_down": "drop",
    "f_none_significant": "After {correction} correction, none of the {m} comparisons (n = {n}) is significant.",
    "f_val_disagree": "Validation loss and validation reward pick different best epochs: the lowest loss is at "
                      "{loss_epoch} ({loss}), the highest reward at {reward_epoch} ({reward}).",
    "f_weak_signal": "The training signal was weak: the median advantage std was only {adv} (threshold {thr}), "
                     "and a median {zero} of groups had no reward spread at all.",
    "f_maxt_lost": "{lineage} at shot {shot}: the best epoch on test, {epoch} ({diff} points), has naive p "
                   "{naive} but max-T p {maxt} once picking {pick} is accounted for: not significant.",
    "f_maxt_kept": "{lineage} at shot {shot}: the best checkpoint on test, {epoch} ({diff} points), stays "
                   "significant both after picking it among {among} (max-T p {maxt}) and after the family's "
                   "correction (m = {m}, adjusted p {p_adj}).",
    "f_maxt_family": "{lineage} at shot {shot}: the best checkpoint on test, {epoch} ({diff} points), has max-T p "
                     "{maxt}, which accounts only for picking it among {among}; corrected for its family of {m} "
                     "comparisons it has adjusted p {p_adj}: {verdict}.",
    "among_epochs": "{e} epochs", "among_joint": "{e} epochs × {k} shots", "shot_pooled": "{shots} (all shots)",
    "pick_epoch": "the best epoch", "pick_joint": "the best epoch and shot",
    "best_note_joint": " The “all shots” row is one test: one sign per question, shared by every epoch and shot ({e} "
                       "epochs × {k} shots), so its max-T p accounts for picking the shot too; a shot's row answers "
                       "“at this shot”.",
    "f_n_small": "At n = {n}, {k} of {m} comparisons are inconclusive: the smallest difference this run detects "
                 "with power {power} is about ±{mde} points, and detecting ±{margin} points would need about "
                 "n ≈ {need} questions (the tables' median).",
    "f_significant_range": "{b} vs {a} differs significantly at shots {shots} ({k} comparisons, {lo} to {hi} points, "
                           "n = {n}).",
    "family_ci": ", family-adjusted {ci}", "and_more_sentence": " {k} more like it.",
    "p_ci_disagree": " (the exact p, {p}, and this interval disagree about 0)",
    "f_subsets": "The number of questions decides: at n = {n_small}, {k_small} of {m_small} comparisons are "
                 "inconclusive (median half-width ±{hw_small} points); at n = {n_large}, only {k_large} of "
                 "{m_large} (±{hw_large} points); {settled} of them are settled by the larger sample.",
    "f_subsets_none": "From n = {n_small} to n = {n_large} the median interval half-width shrinks from "
                      "±{hw_small} to ±{hw_large} points, but no comparison is settled by it ({k_small} of "
                      "{m_small} and {k_large} of {m_large} inconclusive).",
    "f_val_selected": "The checkpoint chosen by validation reward, {system} (validation reward {reward}), on "
                      "test: {cells}.",
    "f_val_selected_cell": "shot {shot} {diff} points {ci} ({verdict})",
    "f_best_on_test": "By contrast the best checkpoint on test per shot differs by {cells}; chosen on the test "
                      "set, these are optimistic.",
    "f_best_cell": "shot {shot} {diff} ({system})",
    "f_summary_mode": "{k} comparisons have summary accuracies only (approximate, conservative tests).",
    "f_smoke": "This is a smoke run: none of these numbers says anything about a model.",
    "f_none": "No rule fired.",
    "r_val_reward": "Choose checkpoints by validation reward, not validation loss: here they pick different "
                    "epochs.",
    "r_weak_signal": "Strengthen the training signal: more samples per group (train.rollouts.group_size) or a "
                     "reward with more spread (train.reward.kind, train.reward.shots); check the reward cache.",
    "r_split_too_small": "This run already uses every test question (n = {n}); detecting ±{margin} points needs "
                         "about n ≈ {need}, more than the split holds: record these differences as not detected, or "
                         "test them on a larger split.",
    "kind_method": "**Method claims (tested over the training seeds)**",
    "kind_method_vs_baseline": "**Each method against the baseline {baseline} (tested over the training seeds)**",
    "kindname_method": "method", "kindname_method_vs_baseline": "method vs baseline",
    "seeds_desc": "; {k} training seeds ({seeds}), one lineage of checkpoints each",
    "r_more_n": "Evaluate on n ≈ {need} test questions (eval.n, or eval.questions: all) before judging these "
                "differences.",
    "r_undetectable": "The remaining {k} inconclusive differences are far below what this run can detect (minimum "
                      "detectable difference ±{mde} points); even the most detectable would need n ≈ {need} "
                      "questions: record them as not detected, neither gains nor drops.",
    "r_honest": "Report the checkpoint chosen on validation and its test result, not the best epoch picked on "
                "test.",
    "r_no_claim": "Do not claim a gain: no difference is significant after correction.",
    "r_remeasure": "These {k} comparisons rest on summaries only: to test them, re-measure the study's checkpoints "
                   "per question (`icl-kit study retest FILES… CHECKPOINTS… --params P`); a paired test needs about "
                   "n ≈ {need} questions to detect ±{margin} points.",
    "r_confirm": "Confirm the significant differences ({k}) on a fresh set of test questions before adopting them.",
    "r_smoke": "Re-run with full params (report.smoke: false) before reading any conclusion.",
    "r_none": "Nothing needs to change.",
    "conclusion": "{m} comparisons ({label}, n = {n}): {better} significant gains, {worse} significant drops, "
                  "{equiv} equivalent, {inconcl} with no detectable difference.",
    "conclusion_best": "Largest significant gain: {b} vs {a}, shot {shot}, {diff} points {ci}.",
    "conclusion_none": "No gain is significant after correction.",
    "conclusion_smoke": "Note: this is a smoke run; the numbers are meaningless.",
    "conclusion_sim": "Note: the results come from the simulated LVLM (demo world), not a model.",
    "list_sep": ", ", "and_more": "and {k} more", "sentence_sep": " ", "full_stop": ".",
}

ZH |= CLAIMS_ZH
EN |= CLAIMS_EN
PHRASES = {"zh": ZH, "en": EN}
