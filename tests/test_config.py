"""Typed params: load, overrides, validation messages, round trip."""

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

PARAMS_DIR = Path(__file__).resolve().parents[1] / "params"


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
