"""The study's result files in both layouts (STUDY_FORMATS.md §9.1, §9.2), built in study_fixtures."""

import json

import pytest
from study_fixtures import baseline_json, metrics_json

from icl_kit.cli import main
from icl_kit.core.errors import KitError
from icl_kit.evaluation.import_results import import_results, parse_results
from icl_kit.evaluation.io import read_imported


def test_metrics_json_gives_one_system_per_retriever_and_run(tmp_path) -> None:
    src = metrics_json(tmp_path / "metrics.json", {
        "LeverLMRetriever#1": {1: 0.632, 2: 0.65}, "LeverLMRetriever#2": {1: 0.64, 2: 0.6512},
        "ZeroShot": {0: 0.51}, "RandomRetriever": {1: 0.6, 2: 0.61}})
    rows = parse_results(src)
    assert list(dict.fromkeys(rows["system"])) == [
        "LeverLMRetriever@2025-12-20 10:11:12.123456", "LeverLMRetriever@2025-12-21 10:11:12.123456",
        "ZeroShot", "RandomRetriever"]
    assert rows[["shot", "n"]].values.tolist() == [[1, 100], [2, 100], [1, 100], [2, 100], [0, 100], [1, 100],
                                                   [2, 100]]
    assert rows["accuracy"].tolist() == pytest.approx([63.2, 65.0, 64.0, 65.12, 51.0, 60.0, 61.0])
    assert rows["source"].iat[4] == "metrics.json:2025-12-22 10:11:12.123456-test_data_num=100-ZeroShot"


def test_whole_split_runs_take_n_from_the_split(tmp_path) -> None:
    flat = baseline_json(tmp_path / "Qwen2_5_VL_3B_Instruct_RandomRetriever_baseline_metrics.json",
                         {1: 0.41, 2: 0.42, 3: 0.4, 4: 0.39})
    rows = parse_results(flat, split_size=lambda: 5046)
    assert set(rows["system"]) == {"RandomRetriever"} and set(rows["n"]) == {5046}
    assert rows["shot"].tolist() == [1, 2, 3, 4] and rows["accuracy"].tolist() == pytest.approx([41, 42, 40, 39])
    all_split = metrics_json(tmp_path / "m.json", {"LeverLMRetriever": {1: 0.5}}, n=-1)
    assert parse_results(all_split, split_size=lambda: 5046)["n"].tolist() == [5046]
    with pytest.raises(KitError, match="covers the whole test split, whose size is unknown here; pass --params"):
        parse_results(flat)
    assert parse_results(flat, n=300)["n"].tolist() == [300] * 4


def test_percentages_are_refused_as_fractions(tmp_path) -> None:
    src = metrics_json(tmp_path / "m.json", {"LeverLMRetriever": {1: 63.2}})
    with pytest.raises(KitError, match=r"shot_num=1=63.2 must be an accuracy fraction in 0..1\."):
        parse_results(src)
    flat = tmp_path / "b.json"
    flat.write_text(json.dumps({"shot_num_1": float("nan")}))
    with pytest.raises(KitError, match="must be an accuracy fraction"):
        parse_results(flat, n=10)


def test_import_several_runs_and_the_cli(tmp_path, capsys) -> None:
    src = metrics_json(tmp_path / "metrics.json", {"LeverLMRetriever": {1: 0.6}, "RandomRetriever": {1: 0.55}})
    run = tmp_path / "run"
    run.mkdir()  # import-results adds to an existing run folder (it never creates one)
    import_results(src, None, run)
    assert read_imported(run)["system"].tolist() == ["LeverLMRetriever", "RandomRetriever"]
    flat = baseline_json(tmp_path / "x_RandomRetriever_baseline_metrics.json", {1: 0.4})
    assert main(["import-results", str(flat), "--run", str(run), "--system", "rand_full"]) == 2
    assert "covers the whole test split" in capsys.readouterr().err
    assert main(["import-results", str(flat), "--run", str(run), "--system", "rand_full", "--n", "5046"]) == 0
    assert "1 rows of rand_full" in capsys.readouterr().out
    assert sorted(read_imported(run)["system"]) == ["LeverLMRetriever", "RandomRetriever", "rand_full"]
