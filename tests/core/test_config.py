"""Typed params: load, overrides, validation messages, round trip."""

import re
from pathlib import Path

import pytest

from icl_kit.core.config import (
    Params,
    apply_overrides,
    describe,
    dump_yaml,
    load_params,
    parse_override,
)
from icl_kit.core.errors import KitError

PARAMS_DIR = Path(__file__).resolve().parents[2] / "params"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


def test_defaults_are_the_study_protocol():
    p = load_params()
    assert p.lvlm.generation.num_beams == 3
    assert p.lvlm.generation.max_new_tokens == 5
    assert p.lvlm.generation.length_penalty == 0.0
    assert p.pools.size == 64 and p.pools.seed == 42
    assert p.selector.input_dim == 512 and p.selector.hidden_dim == 256
    assert p.eval.shots == [1, 2, 3, 4]


def test_typo_section_gets_suggestion(tmp_path):
    path = write(tmp_path, "trian:\n  seed: 1\n")
    with pytest.raises(KitError, match=r"Unknown key 'trian'\. Did you mean 'train'\?"):
        load_params(path)


def test_old_beam_data_section_name_is_refused_with_the_new_one(tmp_path):
    """'sft' named both the beam data and the SFT phase (train.sft); the beam data is now 'sft_data'."""
    path = write(tmp_path, "sft:\n  beam_size: 3\n")
    with pytest.raises(KitError, match=r"'sft' .* is now called 'sft_data'.*train\.sft; rename 'sft:' to 'sft_data:'"):
        load_params(path)
    with pytest.raises(KitError, match=r"now called 'sft_data'"):
        load_params(write(tmp_path, "seed: 0\n"), ["sft.beam_size=3"])
    assert load_params(write(tmp_path, "sft_data:\n  beam_size: 3\n")).sft_data.beam_size == 3
    assert load_params(write(tmp_path, "train:\n  sft:\n    epochs: 2\n")).train.sft.epochs == 2


def test_unknown_nested_key_lists_valid_keys(tmp_path):
    path = write(tmp_path, "train:\n  grpo:\n    lrr: 0.1\n")
    with pytest.raises(KitError) as err:
        load_params(path)
    msg = str(err.value)
    assert "'train.grpo.lrr'" in msg and "'lr'" in msg and "batch_groups" in msg


def test_wrong_type_names_key_value_and_rule(tmp_path):
    path = write(tmp_path, "pools:\n  size: sixty\n")
    with pytest.raises(KitError, match=r"pools\.size='sixty' must be an integer"):
        load_params(path)


def test_out_of_range_names_bounds():
    with pytest.raises(KitError, match=r"train\.grpo\.clip_eps=1\.5 is out of range; .*between 0\.0 and 1\.0"):
        load_params(None, {"train.grpo.clip_eps": 1.5})


def test_literal_choices_with_suggestion():
    with pytest.raises(KitError, match=r"choose one of .*Did you mean 'zscore'"):
        load_params(None, ["train.grpo.advantage=zscor"])


def test_bool_is_not_an_int():
    with pytest.raises(KitError, match="must be an integer"):
        load_params(None, {"pools.size": True})


def test_cross_field_heads_divide_hidden():
    with pytest.raises(KitError, match="num_heads=3 must divide"):
        load_params(None, {"selector.num_heads": 3})


def test_cross_field_shots_within_pool():
    with pytest.raises(KitError, match=r"eval\.shots=\[1, 99\]"):
        load_params(None, {"eval.shots": [1, 99]})


def test_dotted_override_from_cli_strings():
    p = load_params(None, ["train.grpo.lr=1e-5", "eval.shots=[1,2]", "report.language=en"])
    assert p.train.grpo.lr == pytest.approx(1e-5)
    assert p.eval.shots == [1, 2]
    assert p.report.language == "en"


def test_parse_override_yaml_values():
    assert parse_override("a.b=3") == ("a.b", 3)
    assert parse_override("a.b=1e-5") == ("a.b", 1e-5)
    assert parse_override("a.b=true") == ("a.b", True)
    assert parse_override("a.b=") == ("a.b", "")
    with pytest.raises(KitError, match="key=value"):
        parse_override("nonsense")


def test_override_into_a_value_is_rejected():
    with pytest.raises(KitError, match="is a value, not a section"):
        apply_overrides({"seed": 1}, {"seed.x": 2})


def test_yaml_round_trip(tmp_path):
    p = load_params(None, {"train.grpo.lr": 3e-4, "stats.subsets": [100]})
    path = write(tmp_path, dump_yaml(p))
    assert load_params(path) == p


def test_int_accepted_for_float():
    assert load_params(None, {"train.grpo.lr": 1}).train.grpo.lr == 1.0


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(KitError, match="does not exist"):
        load_params(tmp_path / "nope.yaml")
    bad = write(tmp_path, "train: [1,\n")
    with pytest.raises(KitError, match="not valid YAML at line"):
        load_params(bad)


def test_every_param_documented():
    rows = describe()
    assert len(rows) > 40
    assert all(help_text for _, _, help_text in rows), [k for k, _, h in rows if not h]


@pytest.mark.parametrize("name", sorted(p.name for p in PARAMS_DIR.glob("*.yaml")))
def test_shipped_params_files_load(name):
    assert isinstance(load_params(PARAMS_DIR / name), Params)


def test_exponent_floats_in_a_params_file(tmp_path):
    # PyYAML (YAML 1.1) alone reads `1e-5` as the string '1e-5'.
    path = write(tmp_path, "train:\n  grpo:\n    lr: 1e-5\n  rce:\n    lr: 3E+2\n  rollouts:\n"
                           "    temperatures: [1e0, 2.5e-1]\n")
    p = load_params(path)
    assert p.train.grpo.lr == 1e-5 and p.train.rce.lr == 300.0
    assert p.train.rollouts.temperatures == [1.0, 0.25]
    assert load_params(None, ["train.grpo.lr=2e-4"]).train.grpo.lr == 2e-4
    assert load_params(None, ["seed=7"]).seed == 7  # integers stay integers


def test_value_where_a_section_belongs(tmp_path):
    with pytest.raises(KitError, match=r"^train must be a section \(a mapping of keys to values\), not 5;"):
        load_params(write(tmp_path, "train: 5\n"))
    with pytest.raises(KitError, match=r"^train\.grpo must be a section .*not 1;"):
        load_params(None, ["train.grpo=1"])


def test_non_utf8_params_file(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_bytes(b"seed: \xff\xfe\n")
    with pytest.raises(KitError, match="is not UTF-8 text"):
        load_params(path)


@pytest.mark.parametrize(("key", "template", "error"), [
    ("icd_template", "Q:{q} A:{answer}", "KeyError"),
    ("query_template", "Question:{question} Short answer:{answer}", "KeyError"),
    ("query_template", "Question:{question", "ValueError"),
    ("icd_template", "Q:{0}", "IndexError"),
])
def test_prompt_template_placeholders_checked_at_load(key, template, error):
    with pytest.raises(KitError, match=rf"lvlm\.prompt\.{key}=.* is not a valid template \({error}"):
        load_params(None, {f"lvlm.prompt.{key}": template})
    ok = load_params(None, {"lvlm.prompt.icd_template": "{{{question}}} -> {answer}"})
    assert ok.lvlm.prompt.icd_template.format(question="q", answer="a") == "{q} -> a"


@pytest.mark.parametrize("text,where", [
    ("seed: 1\nseed: 2\n", "'seed' twice (lines 1 and 2)"),
    ("train:\n  seed: 1\neval:\n  n: 5\ntrain:\n  grpo:\n    lr: 0.1\n", "'train' twice (lines 1 and 5)"),
    ("lvlm:\n  generation:\n    num_beams: 3\n    num_beams: 1\n", "'num_beams' twice (lines 3 and 4)"),
    ("eval: {n: 5, n: 6}\n", "'n' twice (lines 1 and 1)"),
])
def test_duplicate_keys_name_both_lines(tmp_path, text, where):
    with pytest.raises(KitError, match=re.escape(where)):
        load_params(write(tmp_path, text))


def test_yaml_merge_keys_may_still_override(tmp_path):
    text = "base: &b {n: 5}\n"  # an anchor in an unknown key fails for that reason, not as a duplicate
    with pytest.raises(KitError, match="Unknown key 'base'"):
        load_params(write(tmp_path, text))
    from icl_kit.core.config import load_yaml_text

    assert load_yaml_text("a: &x {n: 1}\nb:\n  <<: *x\n  n: 2\n") == {"a": {"n": 1}, "b": {"n": 2}}


@pytest.mark.parametrize("key,value", [("train.grpo.lr", float("nan")), ("stats.alpha", float("inf")),
                                       ("lvlm.generation.length_penalty", float("-inf")),
                                       ("train.rollouts.temperatures", [1.0, float("nan")])])
def test_nan_and_inf_are_refused(key, value):
    with pytest.raises(KitError, match=r"must be a finite number"):
        load_params(None, {key: value})


@pytest.mark.parametrize("text", ["", "\n  \n", "# only a comment\n", "---\n"])
def test_an_empty_params_file_says_so(tmp_path, text):
    with pytest.raises(KitError, match=r"p\.yaml is empty"):
        load_params(write(tmp_path, text))


@pytest.mark.parametrize("key,value,message", [
    ("run_name", "", "run_name='' is empty"), ("run_name", " ", "is empty"), ("run_name", ".", "one folder name"),
    ("run_name", "a/b", "one folder name"), ("runs_dir", "", "runs_dir='' is empty"),
    ("report.baseline", "", "report.baseline='' is empty"), ("eval.systems", ["random", " "], r"eval.systems\[1\]"),
    ("lvlm.model", "", "lvlm.model='' is empty"), ("data.test_split", "", "data.test_split='' is empty"),
])
def test_names_must_name_something(key, value, message):
    with pytest.raises(KitError, match=message):
        load_params(None, {key: value})


def test_empty_strings_stay_allowed_where_they_mean_something():
    p = load_params(None, {"data.root": "", "lvlm.prompt.system_prompt": "", "run_name": "a.b-c_1"})
    assert p.lvlm.prompt.system_prompt == "" and p.run_name == "a.b-c_1"


@pytest.mark.parametrize("pool,ok", [("similarity_top3", False), ("similarity_top4", True), ("similarity_top64", True),
                                     ("similarity_top65", False), ("similarity_top0", False)])
def test_similarity_topk_must_fit_between_shots_and_pool_size(pool, ok):
    overrides = {"eval.pool": pool, "eval.shots": [1, 4], "pools.size": 64}
    if ok:
        assert load_params(None, overrides).eval.pool == pool
    else:
        with pytest.raises(KitError, match=rf"eval.pool='{pool}' .* between max\(eval.shots\)=4 and pools.size=64"):
            load_params(None, overrides)


def test_an_override_that_is_not_yaml_is_one_sentence():
    with pytest.raises(KitError, match=r"Override 'eval.systems=\[random,': the value '\[random,' is not valid YAML"):
        parse_override("eval.systems=[random,")


# ------------------------------------------------------------------ cross-stage references (references.py)
def fresh(tmp_path: Path, **overrides) -> dict:
    """Overrides for a run in an empty runs_dir (the repository's own runs/ may hold results of any name)."""
    return {"runs_dir": str(tmp_path / "runs"), **overrides}


def test_the_issues_example_is_refused_when_the_params_load(tmp_path):
    path = write(tmp_path, f"runs_dir: {tmp_path / 'runs'}\ntrain:\n  grpo:\n    epochs: 2\n"
                           "stats:\n  comparisons:\n    - {a: random, b: grpo_epoch5}\n")
    with pytest.raises(KitError) as err:
        load_params(path)
    msg = str(err.value)
    assert msg.startswith("stats.comparisons[0].b='grpo_epoch5' names a checkpoint this run never makes: "
                          "train.grpo.epochs=2 makes 2 checkpoints (grpo_epoch1, grpo_epoch2)")
    assert msg.endswith("or set train.grpo.epochs to at least 5.") and msg.count(". ") == 0
    assert not (tmp_path / "runs").exists()  # refused before any work


@pytest.mark.parametrize("overrides,message", [
    ({"train.sft.epochs": 0, "eval.systems": ["random", "checkpoints/sft_epoch*.pt"],
      "stats.comparisons": [{"a": "random", "b": "sft_epoch1"}]},
     r"stats\.comparisons\[0\]\.b='sft_epoch1' .* train\.sft\.epochs=0 makes no checkpoints"),
    ({"train.rce.epochs": 2, "stats.comparisons": [{"a": "rce_epoch3", "b": "grpo_epoch1"}]},
     r"\.a='rce_epoch3' .* train\.rce\.epochs=2 makes 2 checkpoints \(rce_epoch1, rce_epoch2\)"),
    ({"stats.comparisons": [{"a": "random", "b": "rce_epoch2"}]},
     r"'rce_epoch2' names a checkpoint that eval\.systems does not evaluate .*add 'checkpoints/rce_epoch2\.pt'"),
    ({"eval.names": {"grpo_epoch3.pt": "best"}, "report.baseline": "grpo_epoch3"},
     r"report\.baseline='grpo_epoch3' names a checkpoint that eval\.names renames to 'best'; use 'best'"),
    ({"eval.systems": ["zero_shot", "random"], "stats.baseline": "similarity"},
     r"stats\.baseline='similarity' names the baseline similarity, which eval\.systems does not evaluate \(this "
     r"run evaluates 2 systems \(zero_shot, random\)\); add similarity to eval\.systems"),
    ({"eval.systems": ["zero_shot", "random"], "report.baseline": "similarity_i2t"},
     r"report\.baseline='similarity_i2t' names the baseline"),
    ({"eval.shots": [1, 2], "stats.comparisons": [{"a": "random", "b": "grpo_epoch1", "shot": 3}]},
     r"stats\.comparisons\[0\]\.shot=3 is not among eval\.shots=\[1, 2\], so random and grpo_epoch1 have no "
     r"results at it; choose one of \[1, 2\], or add 3 to eval\.shots\."),
    ({"eval.n": 100, "stats.subsets": [100, "first:500"]},
     r"stats\.subsets\[1\]='first:500' takes 500 questions but the run evaluates eval\.n=100 .*raise eval\.n"),
    ({"eval.questions": "random", "eval.n": 50, "stats.subsets": ["random:80:1"]}, r"stats\.subsets\[0\]"),
])
def test_references_the_run_cannot_have_are_refused(tmp_path, overrides, message):
    with pytest.raises(KitError, match=message):
        load_params(None, fresh(tmp_path, **overrides))


@pytest.mark.parametrize("overrides", [
    {},  # the defaults: random is evaluated, comparisons are empty
    {"stats.comparisons": [{"a": "random", "b": "grpo_epoch3", "shot": 2}]},
    {"eval.systems": ["zero_shot"]},  # the baselines left at their default: checked when the statistics run
    {"eval.systems": ["random"], "stats.baseline": "similarity", "stats.automatic": False},  # stats.baseline unused
    {"eval.systems": ["random", "/elsewhere/*.pt"], "stats.comparisons": [{"a": "random", "b": "grpo_epoch50"}]},
    {"eval.systems": ["random", "checkpoints/*.pt"], "train.grpo.epochs": 10,
     "stats.comparisons": [{"a": "grpo_epoch1", "b": "grpo_epoch10"}]},
    {"eval.systems": ["random", "ckpts/grpo_epoch7.pt:study_renames"], "report.baseline": "grpo_epoch7"},
    {"eval.names": {"grpo_epoch3.pt": "best"}, "stats.comparisons": [{"a": "random", "b": "best"}]},
    {"stats.comparisons": [{"a": "LeverLMRetriever#1", "b": "baseline", "shot": 8}]},  # may be imported later
    {"stats.baseline": "nope", "report.baseline": "randon"},  # not the kit's names: the stages check them
    {"eval.questions": "all", "stats.subsets": ["first:5000"]},  # the split's size is unknown here
])
def test_references_that_may_exist_load(tmp_path, overrides):
    load_params(None, fresh(tmp_path, **overrides))


def test_systems_the_run_folder_holds_are_references_it_can_have(tmp_path):
    """A run may hold imported study systems (eval/imported.csv) and results evaluated before (summary.csv),
    whose names no params know; a re-test's own params.yaml names them and must load again."""
    import csv

    run = tmp_path / "runs" / "demo"
    (run / "eval").mkdir(parents=True)
    with (run / "eval" / "imported.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["system", "shot", "n", "accuracy", "source", "world"],
                                  ["grpo_epoch50", 1, 100, 60.0, "metrics.json", "study_first100"]])
    (run / "eval" / "summary.csv").write_text("system,epoch,shot,n,accuracy\nsft_epoch2,2,1,100,50.0\n"
                                              "random,,3,100,40.0\ngrpo_epoch1,1,3,100,45.0\n")
    at_3 = {"eval.shots": [1, 2], "stats.comparisons": [{"a": "random", "b": "grpo_epoch1", "shot": 3}]}
    load_params(None, fresh(tmp_path, **at_3))  # an earlier evaluation left results at shot 3
    with pytest.raises(KitError, match=r"shot=3 is not among eval\.shots=\[1, 2\]"):
        load_params(None, fresh(tmp_path / "elsewhere", **at_3))
    overrides = {"stats.comparisons": [{"a": "sft_epoch2", "b": "grpo_epoch50"}], "report.baseline": "sft_epoch2"}
    with pytest.raises(KitError, match=r"stats\.comparisons\[0\]\.a='sft_epoch2'"):
        load_params(None, fresh(tmp_path / "elsewhere", **overrides))
    p = load_params(None, fresh(tmp_path, **overrides))
    (run / "params.yaml").write_text(dump_yaml(p))
    moved = tmp_path / "moved"
    run.rename(moved)  # a run folder read where its params file is, not only at runs_dir/run_name
    assert load_params(moved / "params.yaml") == p


def test_every_params_file_of_the_repository_loads():
    files = sorted(PARAMS_DIR.glob("*.yaml"))
    assert {f.name for f in files} >= {"demo.yaml", "retest_study.yaml", "okvqa_qwen2_5_vl_3b.yaml"}
    for path in files:
        load_params(path, {"runs_dir": "/nonexistent/runs"})
    demo = load_params(PARAMS_DIR / "demo.yaml", {"runs_dir": "/nonexistent/runs"})
    assert [c["b"] for c in demo.stats.comparisons] == ["sft_epoch3", "rce_epoch1", "grpo_epoch5", "grpo_epoch5"]


def test_the_references_know_what_evaluation_and_run_folders_know(tmp_path):
    from icl_kit.core.config import BASELINE_SYSTEMS
    from icl_kit.core.runs import RunPaths
    from icl_kit.evaluation.io import imported_path
    from icl_kit.evaluation.systems import BASELINES

    assert BASELINE_SYSTEMS == BASELINES
    assert RunPaths(tmp_path).imported == imported_path(tmp_path)
