"""`icl-kit study audit` on study-layout files with planted defects (built in study_fixtures from the study's
description): it lists each planted defect with its count, and nothing else; folders are walked and each file is
headed by its path as the user pointed at it."""

import pytest
from statsmodels.stats.proportion import proportion_confint
from study_fixtures import (
    baseline_json,
    metrics_json,
    rl_candidate,
    rl_query,
    study_convert,
    study_rand_sampler,
    study_state_dict,
    v4_state_dict,
    write_beam_json,
    write_lightning_ckpt,
    write_pool_cache,
    write_rl_data,
    write_v3_pt,
)

from icl_kit.cli import main
from icl_kit.study.audit import audit

ANSWERS = ["red"] * 6 + ["blue"] * 4  # official accuracy: red 1.0, blue 1.0, "" 0.0, "green" 0.0
SFT_NAME = ("Qwen2_5_VL_3B_Instruct_RandSampler_infoscore_left_beam5_shot2_cand64_sample800_epoch=12_"
            "train=21.93316_val=21.99296.ckpt")
BEAMS_NAME = ("vqa-okvqa-Qwen2_5-VL-3B-Instruct-RandSampler-scorer:infoscore-construct_order:left-beam_size:5-"
              "max_shot:2-candidate_num:64-sample_num:3.json")


def planted(root):
    """The study's files in sub-folders, and the (shown path, code, count) findings planted in them."""
    d = root / "study"
    for sub in ("ckpt", "sft", "rl", "results/a", "results/b", "beams", "cache"):
        (d / sub).mkdir(parents=True)
    ckpt = [write_v3_pt(d / "ckpt/grpo_epoch1.pt", study_state_dict(24, 16, 1)),
            write_v3_pt(d / "ckpt/rce_epoch2.pt", study_state_dict(24, 16, 3, gate=True), phase="rce"),
            write_v3_pt(d / "ckpt/v4.pt", v4_state_dict("V4-2"))]
    study_convert(ckpt[0]), study_convert(ckpt[1])
    write_lightning_ckpt(d / "sft" / SFT_NAME, study_state_dict(24, 16, 1))  # SFT file: CLIP copies, losses ~22
    d33 = {5: rl_query(5, 105, ANSWERS, [
        rl_candidate([1, 2], "red", 1.0),  # beam: proposed by the generator's random selector
        rl_candidate([2, 3], "", 0.5, "fallback"),  # fallback: "" scored 0.5; correct at 0.5; off the metric
        rl_candidate([3, 4], "blue red", 0.5, "fallback"),  # fallback substring match, official 0.0
        rl_candidate([4, 5], "green", 0.6)]),  # stored 0.6, official 0.0; correct at 0.6
        7: rl_query(7, 107, ANSWERS, [rl_candidate([1, 9], "blue", 1.0, method="retrieval"),
                                      rl_candidate([0, 1], "", 0.0, "error", method="random")])}
    k64 = {5: rl_query(5, 105, ANSWERS, [rl_candidate([0, 1], "red", 1.0, method="retrieval"),
                                         rl_candidate([1, 2, 3], "x", 0.0, method="sample")], pool=[10, 11, 12, 13])}
    write_rl_data(d / "rl/rl_data_RandSampler.json", d33), write_rl_data(d / "rl/rl_data_k64_v3.json", k64, True)
    shots4 = {1: 0.6, 2: 0.61, 3: 0.6, 4: 0.59}
    metrics_json(d / "results/a/metrics.json", {"LeverLMRetriever#a": shots4, "LeverLMRetriever#b": shots4,
                                                "RandomRetriever": shots4, "ZeroShot": {0: 0.5}})
    metrics_json(d / "results/b/metrics.json", {"LeverLMRetriever": {1: 0.6, 2: 0.62}})
    baseline_json(d / "results/Qwen_RandomRetriever_baseline_metrics.json", shots4)
    write_beam_json(d / "beams" / BEAMS_NAME, {  # the study's Qwen InfoScores: negative, kept smallest
        3: [([12, 9], [-0.2, -0.4]), ([12, 0], [-0.2, -0.3])], 7: [([1, 30], [0.1, 0.5])]})
    anchors, pools, _ = study_rand_sampler(40, 5, 4)
    write_pool_cache(d / "cache", "okvqa", anchors, pools, 4)
    s = "study/"
    want = {(s + "ckpt/grpo_epoch1_v2format.ckpt", "renamed_keys", 6),
            (s + "ckpt/rce_epoch2_v2format.ckpt", "renamed_keys", 6),
            (s + "ckpt/rce_epoch2_v2format.ckpt", "dropped_layers", 2),
            (s + "sft/" + SFT_NAME, "sft_parity_targets", 1),
            (s + "rl/rl_data_RandSampler.json", "random_selector", 4),
            (s + "rl/rl_data_RandSampler.json", "fallback", 2),
            (s + "rl/rl_data_RandSampler.json", "correct_if_any", 3),
            (s + "rl/rl_data_RandSampler.json", "off_metric", 3),
            (s + "rl/rl_data_RandSampler.json", "pointers_len2", 6),
            (s + "rl/rl_data_k64_v3.json", "random_selector", 1),
            (s + "results/a/metrics.json", "lenient_scorer", 13),
            (s + "results/a/metrics.json", "mixed_runs", 2),
            (s + "results/a/metrics.json", "interval_width", 4),
            (s + "results/b/metrics.json", "lenient_scorer", 2),
            (s + "results/b/metrics.json", "interval_width", 1),
            (s + "results/Qwen_RandomRetriever_baseline_metrics.json", "lenient_scorer", 4),
            (s + "beams/" + BEAMS_NAME, "infoscore_mask", 3)}  # 3 beams' scores, 2 negative
    beyond = [(s + "results/a/metrics.json", "shots_beyond", 2)] * 2  # one per LeverLM run
    return want, beyond


def test_audit_lists_every_planted_defect_and_nothing_else(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    want, beyond = planted(tmp_path)
    out, arts = audit(["study"], tmp_path / "audit.md", "en")  # a folder: walked
    got = [(a.shown, f.code, f.count) for a in arts for f in a.findings]
    assert sorted(got) == sorted([*want, *beyond])
    kinds = {a.shown.removeprefix("study/"): (a.kind, a.generation) for a in arts}
    assert kinds["ckpt/grpo_epoch1.pt"] == ("checkpoint_v3", "none") and kinds["ckpt/rce_epoch2.pt"] == (
        "checkpoint_v3", "gate")
    assert kinds["ckpt/v4.pt"][1] == "V4-2" and kinds["sft/" + SFT_NAME] == ("checkpoint_v2", "none")
    assert kinds["rl/rl_data_RandSampler.json"] == ("rl_data", "d33") and kinds["rl/rl_data_k64_v3.json"][1] == "k64"
    assert kinds["results/a/metrics.json"] == ("results", "metrics") and kinds["beams/" + BEAMS_NAME][0] == "sft_beams"
    assert kinds["cache/okvqa-anchor_sample_num:5.json"][0] == "anchor_cache"
    md = out.read_text()
    assert f"{len(arts)} files read; {len(want) + 2} findings." in md and len(arts) == 14
    assert md.count("## `study/results/a/metrics.json`") == 1 and md.count("## `study/results/b/metrics.json`") == 1
    assert ("its source had 3 layers (its source rce_epoch2.pt beside it); the converter dropped 2 of them "
            "(defect 3).") in md
    assert ("an SFT file of the study's supervised stage (4 frozen CLIP weights beside the selector; losses train "
            "21.93, val 21.99 in its name, far above ln 2 = 0.69") in md
    assert "4 of 6 candidates (gen_method beam or sample) were proposed by the generator's selector" in md
    assert "3 of 6 candidates count as correct (vqa_correct = 1) with an accuracy below 1" in md
    assert "its 3 InfoScores, 2 of them negative, were computed with a mask" in md
    assert "its 13 accuracies were scored by the study's scorer" in md
    assert ("2 of 6 candidates were scored in fallback mode (substring match), 1 of them an empty answer scored "
            "0.5") in md
    assert "2 runs of LeverLMRetriever (2025-12-20 10:11:12.123456 … 2025-12-21" in md
    assert "reports 2 shot(s) (3, 4) beyond the 2 candidates (train items 0..1)" in md
    assert md.count("⚠️") == len(want) + 2 and md.count("No defect shown by this file.") == 5  # 3 .pt files, 2 caches


def test_interval_width_at_n_100_by_hand(tmp_path) -> None:
    """4 runs at n = 100, median accuracy 60%: Wilson half-width of one accuracy (statsmodels), and of a
    difference of two independent proportions 1.96 · sqrt(2 · 0.6 · 0.4 / 100) = 13.58 points."""
    want, _ = planted(tmp_path)
    _, arts = audit([tmp_path / "study/results/a/metrics.json"], tmp_path / "a.md", "en")
    width = next(f for f in arts[0].findings if f.code == "interval_width").fields
    low, high = proportion_confint(60, 100, alpha=0.05, method="wilson")
    assert width["n"] == 100 and width["acc"] == pytest.approx(60.0)
    assert width["one"] == pytest.approx((high - low) / 2 * 100)
    assert width["diff"] == pytest.approx(1.959964 * (2 * 0.6 * 0.4 / 100) ** 0.5 * 100, rel=1e-5)
    assert "the 95% interval of one accuracy is ±9.4 points and of a difference between two such runs ±13.6" in \
        (tmp_path / "a.md").read_text()


def test_cli_audit_writes_zh_by_default(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    want, beyond = planted(tmp_path)
    out = tmp_path / "a.md"
    assert main(["study", "audit", "study/ckpt", "study/results", "--out", str(out)]) == 0
    assert "8 files, 11 findings" in capsys.readouterr().out
    md = out.read_text()
    assert md.startswith("# 研究文件审计") and "发现 11 项问题" in md
    assert "## `study/ckpt/grpo_epoch1_v2format.ckpt`\n" in md and "6 个键被研究的转换器改名" in md
    assert main(["study", "audit", "nope.json", "--out", str(tmp_path / "b.md")]) == 2
    assert "nope.json does not exist (neither a file nor a folder)" in capsys.readouterr().err
    assert not (tmp_path / "b.md").exists()
