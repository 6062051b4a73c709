"""The study's result files (both layouts, built in study_fixtures from the study's description) imported as
summary-only systems: names, n, worlds, re-import and removal, bad input in one sentence."""

import json

import pandas as pd
import pytest
from study_fixtures import baseline_json, metrics_json

from icl_kit.cli import main
from icl_kit.core.errors import KitError
from icl_kit.evaluation.io import IMPORTED_FIELDS, imported_path, read_imported
from icl_kit.study.import_results import import_results, imported_rows, named_runs, parse_names

KEY = "2024-05-01 12:00:00.123-test_data_num=100-RandRetriever"
STUDY = {KEY: {"shot_num=1": 0.4567, "shot_num=2": 0.47, "shot_num=4": 0.5, "cider": 3.2}}


def rows(paths, names=(), **kw) -> pd.DataFrame:
    return imported_rows(named_runs(paths, parse_names(names), **kw))


def write(tmp_path, obj, name="metrics.json"):
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def test_metrics_json_gives_one_system_per_run_numbered_by_date(tmp_path) -> None:
    src = metrics_json(tmp_path / "metrics.json", {
        "LeverLMRetriever#1": {1: 0.632, 2: 0.65}, "LeverLMRetriever#2": {1: 0.64, 2: 0.6512},
        "ZeroShot": {0: 0.51}, "RandomRetriever": {1: 0.6, 2: 0.61}})
    got = rows([src])
    assert list(dict.fromkeys(got["system"])) == ["LeverLMRetriever#1", "LeverLMRetriever#2", "ZeroShot",
                                                  "RandomRetriever"]
    assert got[["shot", "n"]].values.tolist() == [[1, 100], [2, 100], [1, 100], [2, 100], [0, 100], [1, 100], [2, 100]]
    assert got["accuracy"].tolist() == pytest.approx([63.2, 65.0, 64.0, 65.12, 51.0, 60.0, 61.0])
    assert got["source"].iat[4] == "metrics.json:2025-12-22 10:11:12.123456-test_data_num=100-ZeroShot"
    assert set(got["world"]) == {"study_first100"} and list(got.columns) == IMPORTED_FIELDS


def test_numbering_is_by_date_across_files_not_by_file_order(tmp_path) -> None:
    late = write(tmp_path, {"2025-12-23 09:00:00-test_data_num=100-LeverLMRetriever": {"shot_num=1": 0.7}}, "a.json")
    early = write(tmp_path, {"2025-12-20 09:00:00-test_data_num=100-LeverLMRetriever": {"shot_num=1": 0.6}}, "b.json")
    got = rows([late, early])
    assert dict(zip(got["source"].str.split(":").str[0], got["system"], strict=True)) == {
        "a.json": "LeverLMRetriever#2", "b.json": "LeverLMRetriever#1"}


def test_names_by_file_by_file_and_entry_and_by_entry(tmp_path) -> None:
    src = metrics_json(tmp_path / "metrics.json", {"LeverLMRetriever#1": {1: 0.6}, "LeverLMRetriever#2": {1: 0.7}})
    flat = baseline_json(tmp_path / "Qwen_RandomRetriever_baseline_metrics.json", {1: 0.4})
    got = rows([src, flat], [f"{src.name}:2025-12-20=grpo_epoch1", "12-21 10:11=grpo_epoch50",
                             f"{flat}=random_full"], n=100)
    assert list(dict.fromkeys(got["system"])) == ["grpo_epoch1", "grpo_epoch50", "random_full"]
    assert got["n"].tolist() == [100, 100, 100] and set(got["world"]) == {"study_first100"}  # --n: the first 100


@pytest.mark.parametrize(("names", "message"), [
    (["2025=x"], r"'2025' names 2 runs .*add a part of the key that tells them apart"),
    (["nope=x"], r"'nope' names no run of the result files"),
    (["12-20=x", "12-21=x"], r"gives the name 'x' to two runs"),
    (["12-20=x", "12-20 10=y"], r"gives run .* two names \('x' and 'y'\)"),
    (["12-20"], r"must be FILE_OR_ENTRY=NAME"),
    (["12-20="], r"must be FILE_OR_ENTRY=NAME"),
    (["12-21=LeverLMRetriever#1"], r"'metrics.json:2025-12-20 .*' would be called 'LeverLMRetriever#1', a name "
                                   r"--name gave another run; name it too"),
])
def test_bad_names_are_one_sentence(tmp_path, names, message) -> None:
    src = metrics_json(tmp_path / "metrics.json", {"LeverLMRetriever#1": {1: 0.6}, "LeverLMRetriever#2": {1: 0.7}})
    if names == ["12-21=LeverLMRetriever#1"]:  # the other run would default to the same name
        src = metrics_json(tmp_path / "metrics.json", {"LeverLMRetriever#a": {1: 0.6}, "LeverLMRetriever#b": {1: 0.7},
                                                       "LeverLMRetriever#c": {1: 0.8}})
    with pytest.raises(KitError, match=message) as info:
        rows([src], names)
    assert str(info.value).endswith(".")


def test_whole_split_runs_take_n_from_the_split_or_from_n(tmp_path) -> None:
    flat = baseline_json(tmp_path / "Qwen2_5_VL_3B_Instruct_RandomRetriever_baseline_metrics.json",
                         {1: 0.41, 2: 0.42, 3: 0.4, 4: 0.39})
    got = rows([flat], split_size=lambda: 5046)
    assert set(got["system"]) == {"RandomRetriever"} and set(got["n"]) == {5046} and set(got["world"]) == {"study_all"}
    assert got["shot"].tolist() == [1, 2, 3, 4] and got["accuracy"].tolist() == pytest.approx([41, 42, 40, 39])
    all_split = metrics_json(tmp_path / "m.json", {"LeverLMRetriever": {1: 0.5}}, n=-1)
    assert rows([all_split], split_size=lambda: 5046)["n"].tolist() == [5046]
    with pytest.raises(KitError, match="covers the whole test split, whose size is unknown here; pass --params"):
        rows([flat])
    assert rows([flat], n=300)["n"].tolist() == [300] * 4
    keyed = rows([write(tmp_path, STUDY)], n=7)  # --n only fills in what a file does not say
    assert set(keyed["n"]) == {100}


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not valid JSON at line 1"),
    ("[]", "non-empty object of runs"),
    ({KEY: [0.5]}, "must map 'shot_num=K'"),
    ({KEY: {"cider": 1.0}}, "no 'shot_num=K' accuracies"),
    ({KEY: {"shot_num=1": 45.6}}, r"shot_num=1=45.6 must be an accuracy fraction in 0..1"),
    ({"2024-run": {"shot_num=1": 0.4}}, "does not say test_data_num=N"),
])
def test_bad_input_is_one_sentence(tmp_path, content, message) -> None:
    with pytest.raises(KitError, match=message) as info:
        rows([write(tmp_path, content)])
    assert str(info.value).count(". ") == 0 and str(info.value).endswith(".")


def test_import_creates_the_run_folder_and_reimport_replaces_never_duplicates(tmp_path) -> None:
    src, run = write(tmp_path, STUDY), tmp_path / "runs" / "new"
    import_results([src], run)  # the folder does not exist yet
    table = pd.read_csv(imported_path(run))
    assert table["system"].unique().tolist() == ["RandRetriever"] and table["shot"].tolist() == [1, 2, 4]
    assert table["accuracy"].tolist() == pytest.approx([45.67, 47.0, 50.0])
    import_results([src], run, [f"{src.name}=grpo_epoch1"])  # the same run under a new name: replaced
    assert read_imported(run)["system"].unique().tolist() == ["grpo_epoch1"]
    other = write(tmp_path, {KEY.replace("=100", "=200"): {"shot_num=1": 0.25}}, "m2.json")
    import_results([other], run, ["m2.json=grpo_epoch1"])  # a name given again: that system is replaced
    assert read_imported(run)[["system", "shot", "n", "accuracy"]].values.tolist() == [["grpo_epoch1", 1, 200, 25.0]]
    import_results([src], run)
    assert sorted(read_imported(run)["system"].unique()) == ["RandRetriever", "grpo_epoch1"]
    import_results([], run, remove=["grpo_epoch1"])
    assert read_imported(run)["system"].unique().tolist() == ["RandRetriever"]
    pd.testing.assert_frame_equal(read_imported(run), pd.read_csv(imported_path(run)))


def test_clash_with_an_evaluated_system_and_unknown_removal(tmp_path) -> None:
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    (run / "eval" / "summary.csv").write_text("system,epoch,shot,n,accuracy\nrandom,,1,100,40.0\n")
    with pytest.raises(KitError, match="already has per-question results"):
        import_results([write(tmp_path, STUDY)], run, ["metrics.json=random"])
    with pytest.raises(KitError, match="--remove 'old': no imported system of that name"):
        import_results([], run, remove=["old"])
    assert not imported_path(run).exists()


def test_cli_import_results(tmp_path, capsys) -> None:
    src, run = write(tmp_path, STUDY), tmp_path / "run"
    assert main(["study", "import-results", str(src), "--name", f"{src}=old", "--run", str(run)]) == 0
    assert "3 rows of old" in capsys.readouterr().out
    assert main(["study", "import-results", str(tmp_path / "nope.json"), "--run", str(run)]) == 2
    assert "does not exist" in capsys.readouterr().err
    flat = baseline_json(tmp_path / "x_RandomRetriever_baseline_metrics.json", {1: 0.4})
    assert main(["study", "import-results", str(flat), "--run", str(run)]) == 2
    assert "covers the whole test split" in capsys.readouterr().err
    assert main(["study", "import-results", str(flat), "--run", str(run), "--name", f"{flat.name}=rand_full",
                 "--n", "5046"]) == 0
    assert sorted(read_imported(run)["system"].unique()) == ["old", "rand_full"]
    assert main(["study", "import-results", "--run", str(run), "--remove", "old"]) == 0
    assert read_imported(run)["system"].unique().tolist() == ["rand_full"]
