"""`icl-kit audit` on study-layout files with planted defects: it lists those, and nothing else."""

from study_fixtures import (
    baseline_json,
    metrics_json,
    rl_candidate,
    rl_query,
    study_convert,
    study_rand_sampler,
    study_state_dict,
    v4_state_dict,
    write_lightning_ckpt,
    write_pool_cache,
    write_rl_data,
    write_v3_pt,
)

from icl_kit.cli import main
from icl_kit.report.audit import audit

ANSWERS = ["red"] * 6 + ["blue"] * 4  # official accuracy: red 1.0, blue 1.0, "" 0.0, "green" 0.0


def planted(tmp_path):
    """Study files and the (file, code, count) findings planted in them."""
    d = tmp_path / "study"
    d.mkdir()
    files = [write_v3_pt(d / "grpo_epoch1.pt", study_state_dict(24, 16, 1)),
             write_v3_pt(d / "rce_epoch2.pt", study_state_dict(24, 16, 3, gate=True), phase="rce"),
             write_v3_pt(d / "v4.pt", v4_state_dict("V4-2")),
             write_lightning_ckpt(d / "sft_epoch=12.ckpt", study_state_dict(24, 16, 1))]
    files += [study_convert(files[0]), study_convert(files[1])]
    d33 = {5: rl_query(5, 105, ANSWERS, [
        rl_candidate([1, 2], "red", 1.0), rl_candidate([2, 3], "", 0.5, "fallback"),  # fallback: "" scored 0.5
        rl_candidate([3, 4], "blue red", 0.5, "fallback"),  # fallback substring match, official 0.0
        rl_candidate([4, 5], "green", 0.6)]),  # stored 0.6, official 0.0
        7: rl_query(7, 107, ANSWERS, [rl_candidate([1, 9], "blue", 1.0), rl_candidate([0, 1], "", 0.0, "error")])}
    k64 = {5: rl_query(5, 105, ANSWERS, [rl_candidate([0, 1], "red", 1.0), rl_candidate([1, 2, 3], "x", 0.0)],
                       pool=[10, 11, 12, 13])}
    files += [write_rl_data(d / "rl_data_RandSampler.json", d33), write_rl_data(d / "rl_data_k64_v3.json", k64, True)]
    shots4 = {1: 0.6, 2: 0.61, 3: 0.6, 4: 0.59}
    files += [metrics_json(d / "metrics.json", {"LeverLMRetriever#a": shots4, "LeverLMRetriever#b": shots4,
                                                "RandomRetriever": shots4, "ZeroShot": {0: 0.5}}),
              metrics_json(d / "v3_metrics.json", {"LeverLMRetriever": {1: 0.6, 2: 0.62}}),
              baseline_json(d / "Qwen_RandomRetriever_baseline_metrics.json", shots4)]
    anchors, pools, _ = study_rand_sampler(40, 5, 4)
    files += list(write_pool_cache(d / "cache", "okvqa", anchors, pools, 4))
    want = {("grpo_epoch1_v2format.ckpt", "renamed_keys", 6), ("rce_epoch2_v2format.ckpt", "renamed_keys", 6),
            ("rce_epoch2_v2format.ckpt", "dropped_layers", 2), ("rl_data_RandSampler.json", "fallback", 2),
            ("rl_data_RandSampler.json", "off_metric", 3), ("rl_data_RandSampler.json", "pointers_len2", 6),
            ("metrics.json", "shots_beyond", 2), ("metrics.json", "mixed_runs", 2)}
    return files, want


def test_audit_lists_the_planted_defects_and_nothing_else(tmp_path) -> None:
    files, want = planted(tmp_path)
    out, arts = audit(files, tmp_path / "audit.md", "en")
    got = [(a.path.name, f.code, f.count) for a in arts for f in a.findings]
    assert sorted(got) == sorted([*want, ("metrics.json", "shots_beyond", 2)])  # one per LeverLM run
    kinds = {a.path.name: (a.kind, a.generation) for a in arts}
    assert kinds["grpo_epoch1.pt"] == ("checkpoint_v3", "none") and kinds["rce_epoch2.pt"] == ("checkpoint_v3", "gate")
    assert kinds["v4.pt"][1] == "V4-2" and kinds["sft_epoch=12.ckpt"] == ("checkpoint_v2", "none")
    assert kinds["rl_data_RandSampler.json"] == ("rl_data", "d33") and kinds["rl_data_k64_v3.json"][1] == "k64"
    assert kinds["metrics.json"] == ("results", "metrics") and kinds["okvqa-anchor_sample_num:5.json"][0] == \
        "anchor_cache"
    md = out.read_text()
    assert f"{len(files)} files read; 9 findings." in md
    assert ("`rce_epoch2_v2format.ckpt`: its source had 3 layers (its source rce_epoch2.pt beside it); the converter "
            "dropped 2 of them (§10.2 #3).") in md
    assert ("`rl_data_RandSampler.json`: 2 of 6 candidates were scored in fallback mode (substring match), 1 of "
            "them an empty answer scored 0.5 (§10.2 #8).") in md
    assert "`metrics.json`: 2 runs of LeverLMRetriever (2025-12-20 10:11:12.123456 … 2025-12-21" in md
    assert "reports 2 shot(s) (3, 4) beyond the 2 candidates (train items 0..1)" in md
    assert md.count("⚠️") == 9 and md.count("No defect shown by this file.") == len(files) - 4


def test_cli_audit_writes_zh_by_default(tmp_path, capsys) -> None:
    files, _ = planted(tmp_path)
    out = tmp_path / "a.md"
    assert main(["audit", *map(str, files), "--out", str(out)]) == 0
    assert "9 findings" in capsys.readouterr().out
    md = out.read_text()
    assert md.startswith("# 研究产物审计") and "发现 9 项问题" in md
    assert "`grpo_epoch1_v2format.ckpt`：6 个键被研究的转换器改名" in md
    assert main(["audit", str(tmp_path / "nope.json"), "--out", str(tmp_path / "b.md")]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "b.md").exists()
