"""Importing the study's RL data JSON into rollouts.jsonl."""

import json
from pathlib import Path

import pytest
from fake_world import record

from icl_kit.core.errors import KitError
from icl_kit.core.runs import read_jsonl
from icl_kit.study.formats.positions import SplitPositions
from icl_kit.study.rollouts import TrainSplit, convert_rl_data, import_rollouts

POOL_A = [501, 502, 503, 504]
POOL_B = [601, 602, 603]


def cand(pointer, method="beam", pred="cat", acc=1.0, correct=1, **extra):
    return {"pointer": pointer, "gen_method": method, "vqa_pred_answer": pred, "vqa_correct": correct,
            "vqa_acc_score": acc, **extra}


def study_data() -> dict:
    return {
        "_meta": {"k": 4, "note": "hand-built"},
        "20": {  # listed first but has the larger id: output is sorted by id
            "query": {"question_id": 20, "image_id": 7, "question": "what?", "gt_answers_raw": ["dog"] * 10},
            "candidate_pool_ids": POOL_B,
            "pointer_candidates": [
                cand([2, 0], "sample", "dog", 0.6, False, vqa_gt_prob=0.25),
                cand([1, 2], eval_failed=True, vqa_pred_answer=None),
            ],
        },
        "10": {
            "query": {"question_id": 10, "image_id": 3, "question": "who?", "gt_answers_raw": ["cat"] * 10},
            "candidate_pool_ids": POOL_A,
            "pointer_candidates": [cand([3, 1]), cand([0, 2], "random", "cow", 0.0, 0, vqa_gt_prob=None)],
        },
        "30": {  # every candidate failed: the query is dropped and counted
            "query": {"question_id": 30},
            "candidate_pool_ids": POOL_A,
            "pointer_candidates": [cand([0, 1], eval_failed=True)],
        },
    }


ANSWERS = {10: ("cat",) * 10, 20: ("dog",) * 9 + ("cow",), 30: ("x",) * 10}


def split() -> TrainSplit:
    """The train split these ids live in (question ids, as the file's keys equal its question_ids)."""
    answers = {**ANSWERS, **{i: ("y",) * 10 for i in POOL_A + POOL_B}}
    recs = [record(q, a) for q, a in answers.items()]
    return TrainSplit(SplitPositions(recs), answers, {}, 4)


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "rl_data.json"
    path.write_text(json.dumps(data))
    return path


def test_import_writes_the_documented_lines(tmp_path) -> None:
    summary = import_rollouts(write(tmp_path, study_data()), tmp_path / "run", split())
    rows = read_jsonl(summary.path)
    assert summary.path == tmp_path / "run" / "rollouts.jsonl"
    assert (summary.n_queries, summary.n_candidates, summary.n_failed_dropped, summary.n_empty_queries) == (2, 3, 2, 1)
    assert (summary.ids, summary.n_acc_differs, summary.pointer_lengths) == ("question_ids", 1, {2: 3})
    assert rows == [
        {"question_id": 10, "pool": POOL_A, "candidates": [
            {"icd_ids": [504, 502], "positions": [3, 1], "gen_method": "beam", "pred": "cat", "acc": 1.0,
             "study_acc": 1.0, "correct": True, "gt_prob": None, "eval_mode": None},
            {"icd_ids": [501, 503], "positions": [0, 2], "gen_method": "random", "pred": "cow", "acc": 0.0,
             "study_acc": 0.0, "correct": False, "gt_prob": None, "eval_mode": None},
        ]},
        {"question_id": 20, "pool": POOL_B, "candidates": [  # 9 of 10 say dog: official accuracy 1.0, stored 0.6
            {"icd_ids": [603, 601], "positions": [2, 0], "gen_method": "sample", "pred": "dog", "acc": 1.0,
             "study_acc": 0.6, "correct": True, "gt_prob": 0.25, "eval_mode": None},
        ]},
    ]


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda d: d["10"]["pointer_candidates"][0].update(pointer=[4, 0]), r"query 10: .*pointer \[4, 0\]"),
        (lambda d: d["10"]["pointer_candidates"][1].update(pointer=[1, 1]), r"query 10: .*distinct"),
        (lambda d: d["20"]["pointer_candidates"][0].update(vqa_acc_score=60), r"query 20: .*outside \[0, 1\]"),
        (lambda d: d["20"]["pointer_candidates"][0].pop("vqa_pred_answer"), r"query 20: .*vqa_pred_answer"),
        (lambda d: d["10"]["pointer_candidates"][0].update(vqa_correct="yes"), r"query 10: .*vqa_correct"),
        (lambda d: d["10"].update(candidate_pool_ids=[]), r"query 10: 'candidate_pool_ids' is empty"),
        # a question_id that differs from its key makes --ids auto read keys as positions (there are 10)
        (lambda d: d["10"]["query"].update(question_id=11), r"entries: query \d+: key holds \d+, outside the 10"),
        (lambda d: d.update({"abc": d["10"]}), r"query abc: key holds 'abc'"),
    ],
)
def test_malformed_entries_name_their_query_and_write_nothing(tmp_path, edit, match) -> None:
    data = study_data()
    edit(data)
    with pytest.raises(KitError, match=match):
        import_rollouts(write(tmp_path, data), tmp_path / "run", split())
    assert not (tmp_path / "run").exists()


def test_all_malformed_entries_reported_together() -> None:
    data = study_data()
    data["10"]["pointer_candidates"][0]["pointer"] = [9, 0]
    data["20"]["candidate_pool_ids"] = "oops"
    with pytest.raises(KitError, match=r"2 malformed entries: query 20: .*; query 10: "):
        convert_rl_data(data, split())


def test_existing_output_needs_force_and_is_replaced_whole(tmp_path) -> None:
    src = write(tmp_path, study_data())
    import_rollouts(src, tmp_path / "run", split())
    with pytest.raises(KitError, match="already exists"):
        import_rollouts(src, tmp_path / "run", split())
    bad = study_data()
    bad["10"]["pointer_candidates"][0]["pointer"] = [9, 0]
    with pytest.raises(KitError):
        import_rollouts(write(tmp_path, bad), tmp_path / "run", split(), force=True)
    assert len(read_jsonl(tmp_path / "run" / "rollouts.jsonl")) == 2  # the good file is untouched
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["rollouts.jsonl"]


def test_unreadable_sources(tmp_path) -> None:
    with pytest.raises(KitError, match="does not exist"):
        import_rollouts(tmp_path / "none.json", tmp_path / "run", split())
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(KitError, match="not valid JSON"):
        import_rollouts(tmp_path / "x.json", tmp_path / "run", split())
    with pytest.raises(KitError, match="no query with a usable candidate"):
        convert_rl_data({"_meta": {}}, split())


def test_explicit_question_ids_name_the_differing_id(tmp_path) -> None:
    data = study_data()
    data["10"]["query"]["question_id"] = 11
    with pytest.raises(KitError, match=r"query 10: query.question_id 11 differs from its key"):
        import_rollouts(write(tmp_path, data), tmp_path / "run", split(), ids="question_ids")
