"""Importing the study's metrics JSON as summary-only systems: round trip and bad-input messages."""

import json

import pandas as pd
import pytest

from icl_kit.cli import main
from icl_kit.core.errors import KitError
from icl_kit.evaluation.import_results import import_results, parse_results
from icl_kit.evaluation.io import imported_path, read_imported

KEY = "2024-05-01 12:00:00.123-test_data_num=100-RandRetriever"
STUDY = {KEY: {"shot_num=1": 0.4567, "shot_num=2": 0.47, "shot_num=4": 0.5, "cider": 3.2}}


def write(tmp_path, obj, name="metrics.json"):
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def test_round_trip_percent_and_n(tmp_path):
    src = write(tmp_path, STUDY)
    run = tmp_path / "run"
    run.mkdir()
    import_results(src, "study_grpo", run)
    table = pd.read_csv(imported_path(run))
    assert list(table.columns) == ["system", "shot", "n", "accuracy", "source"]
    assert table["shot"].tolist() == [1, 2, 4]  # 'cider' is not an accuracy
    assert table["accuracy"].tolist() == pytest.approx([45.67, 47.0, 50.0])
    assert set(table["n"]) == {100}
    assert table["source"].iat[0] == f"metrics.json:{KEY}"
    pd.testing.assert_frame_equal(read_imported(run), table)


def test_reimport_replaces_only_that_system(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    import_results(write(tmp_path, STUDY), "a", run)
    import_results(write(tmp_path, STUDY), "b", run)
    other = {KEY.replace("=100", "=200"): {"shot_num=1": 0.25}}
    import_results(write(tmp_path, other, "m2.json"), "a", run)
    table = read_imported(run)
    assert table[table.system == "a"][["shot", "n", "accuracy"]].values.tolist() == [[1, 200, 25.0]]
    assert len(table[table.system == "b"]) == 3


def test_entry_picks_one_of_several_runs(tmp_path):
    two = {**STUDY, "2024-06-01-test_data_num=50-Sim": {"shot_num=1": 0.1}}
    src = write(tmp_path, two)
    with pytest.raises(KitError, match="holds 2 runs.*--entry"):
        parse_results(src, "x")
    rows = parse_results(src, "x", entry="06-01")
    assert rows[["shot", "n", "accuracy"]].values.tolist() == [[1, 50, 10.0]]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON at line 1"),
        ("[]", "non-empty object of runs"),
        ({KEY: [0.5]}, "must map 'shot_num=K'"),
        ({KEY: {"cider": 1.0}}, "no 'shot_num=K' accuracies"),
        ({KEY: {"shot_num=1": 45.6}}, "fraction in 0..1"),
        ({"2024-run": {"shot_num=1": 0.4}}, "does not say test_data_num=N"),
    ],
)
def test_bad_input_is_one_sentence(tmp_path, content, message):
    with pytest.raises(KitError, match=message) as info:
        parse_results(write(tmp_path, content), "x")
    assert str(info.value).count(". ") == 0 and str(info.value).endswith(".")


def test_missing_file_and_clash_with_evaluated_system(tmp_path):
    with pytest.raises(KitError, match="does not exist"):
        parse_results(tmp_path / "nope.json", "x")
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    (run / "eval" / "summary.csv").write_text("system,epoch,shot,n,accuracy\nrandom,,1,100,40.0\n")
    with pytest.raises(KitError, match="already has per-question results"):
        import_results(write(tmp_path, STUDY), "random", run)


def test_cli_import_results(tmp_path, capsys):
    src = write(tmp_path, STUDY)
    run = tmp_path / "run"
    run.mkdir()
    assert main(["import-results", str(src), "--system", "old", "--run", str(run)]) == 0
    assert "3 rows" in capsys.readouterr().out
    assert read_imported(run)["system"].unique().tolist() == ["old"]
    assert main(["import-results", str(tmp_path / "nope.json"), "--system", "old", "--run", str(run)]) == 2
    assert "does not exist" in capsys.readouterr().err
