"""OK-VQA / VQAv2 loader: hand-made files with known answers, and every user error."""

import json
from pathlib import Path

import pytest

from icl_kit.core.config import DataConfig
from icl_kit.core.errors import KitError
from icl_kit.data.okvqa import load_data, load_split, resolve_roots, select_questions

ANS_A = ["red"] * 6 + ["dark red"] * 4  # most common: red
ANS_B = ["two", "2", "2", "two", "3", "3", "4", "5", "6", "7"]  # tie two/2/... -> "two" (listed first)
ANS_C = ["dog"] * 10


def _answers(strings: list) -> list[dict]:
    return [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(strings)]


def write_split(root: Path, split: str = "val", prefix: str = "", questions=None, annotations=None):
    """Three questions (ids 30, 10, 20, deliberately unsorted) unless given."""
    if questions is None:
        questions = [{"image_id": 3, "question": "What animal?", "question_id": 30},
                     {"image_id": 1, "question": "What color?", "question_id": 10},
                     {"image_id": 2, "question": "How many?", "question_id": 20}]
    if annotations is None:
        annotations = [
            {"question_id": 10, "image_id": 1, "question_type": "what color", "answer_type": "other",
             "answers": _answers(ANS_A)},
            {"question_id": 20, "image_id": 2, "question_type": "how many", "answer_type": "number",
             "answers": _answers(ANS_B)},
            {"question_id": 30, "image_id": 3, "question_type": "what", "answer_type": "other",
             "answers": _answers(ANS_C)},
        ]
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{prefix}OpenEnded_mscoco_{split}2014_questions.json").write_text(
        json.dumps({"questions": questions}))
    (root / f"{prefix}mscoco_{split}2014_annotations.json").write_text(
        json.dumps({"annotations": annotations}))
    return root


def test_load_split_sorted_with_most_common_answer(tmp_path):
    recs = load_split(write_split(tmp_path), "val")
    assert [r.question_id for r in recs] == [10, 20, 30]
    assert [r.answer for r in recs] == ["red", "two", "dog"]
    assert recs[1].answers == tuple(ANS_B)
    assert recs[0].question == "What color?" and recs[0].question_type == "what color"
    assert recs[1].answer_type == "number"
    assert recs[2].image_path == tmp_path / "val2014" / "COCO_val2014_000000000003.jpg"


def test_image_root_and_vqav2_prefix(tmp_path):
    write_split(tmp_path, split="train", prefix="v2_")
    recs = load_split(tmp_path, "train", dataset="vqav2", image_root=tmp_path / "coco")
    assert recs[0].image_path == tmp_path / "coco" / "train2014" / "COCO_train2014_000000000001.jpg"
    with pytest.raises(KitError, match="OpenEnded_mscoco_train2014_questions.json is missing"):
        load_split(tmp_path, "train")  # okvqa names: no such file


def test_missing_files(tmp_path):
    with pytest.raises(KitError, match=r"Questions file .*OpenEnded_mscoco_val2014_questions.json is missing"):
        load_split(tmp_path, "val")
    write_split(tmp_path)
    (tmp_path / "mscoco_val2014_annotations.json").unlink()
    with pytest.raises(KitError, match=r"Annotations file .*mscoco_val2014_annotations.json is missing"):
        load_split(tmp_path, "val")


def test_malformed_json_names_file_and_line(tmp_path):
    write_split(tmp_path)
    (tmp_path / "mscoco_val2014_annotations.json").write_text('{"annotations": [\n{"question_id": 1,,}]}')
    with pytest.raises(KitError, match=r"mscoco_val2014_annotations.json is not valid JSON \(line 2"):
        load_split(tmp_path, "val")


def test_wrong_top_level_key(tmp_path):
    write_split(tmp_path)
    (tmp_path / "OpenEnded_mscoco_val2014_questions.json").write_text('{"data": []}')
    with pytest.raises(KitError, match="has no 'questions' list"):
        load_split(tmp_path, "val")


def test_question_without_annotation(tmp_path):
    qs = [{"image_id": 1, "question": "q", "question_id": 10}, {"image_id": 9, "question": "q", "question_id": 99}]
    write_split(tmp_path, questions=qs, annotations=None)
    (tmp_path / "mscoco_val2014_annotations.json").write_text(json.dumps({"annotations": [
        {"question_id": 10, "image_id": 1, "answers": _answers(ANS_C)}]}))
    with pytest.raises(KitError, match="Question 99 in .* has no annotation"):
        load_split(tmp_path, "val")


def test_annotation_without_question(tmp_path):
    write_split(tmp_path, questions=[{"image_id": 1, "question": "q", "question_id": 10}])
    with pytest.raises(KitError, match="Annotation of question (20|30) in .* has no question"):
        load_split(tmp_path, "val")


@pytest.mark.parametrize("answers", [ANS_C[:9], ANS_C + ["cat"], ANS_C[:9] + [None], ANS_C[:9] + [3]])
def test_answers_must_be_ten_strings(tmp_path, answers):
    anns = [{"question_id": 10, "image_id": 1, "answers": _answers(answers)}]
    write_split(tmp_path, questions=[{"image_id": 1, "question": "q", "question_id": 10}], annotations=anns)
    with pytest.raises(KitError, match="Annotation of question 10 .* must hold 10 answer strings"):
        load_split(tmp_path, "val")


def test_duplicate_and_bad_ids(tmp_path):
    qs = [{"image_id": 1, "question": "q", "question_id": 10}] * 2
    write_split(tmp_path, questions=qs)
    with pytest.raises(KitError, match="question id 10 appears twice"):
        load_split(tmp_path, "val")
    write_split(tmp_path, questions=[{"image_id": 1, "question": "q", "question_id": "10"}])
    with pytest.raises(KitError, match="entry 0 has question_id='10', which is not a int"):
        load_split(tmp_path, "val")


def test_empty_split(tmp_path):
    write_split(tmp_path, questions=[], annotations=[])
    with pytest.raises(KitError, match="holds no questions; split 'val' is empty"):
        load_split(tmp_path, "val")


def test_missing_and_unreadable_image(tmp_path):
    recs = load_split(write_split(tmp_path), "val")
    with pytest.raises(KitError, match=r"COCO_val2014_000000000001.jpg for question 10 is missing"):
        recs[0].image()
    recs[0].image_path.parent.mkdir()
    recs[0].image_path.write_bytes(b"not a jpeg")
    with pytest.raises(KitError, match="for question 10 cannot be read"):
        recs[0].image()


def test_select_questions(tmp_path):
    recs = load_split(write_split(tmp_path), "val")
    shuffled = [recs[2], recs[0], recs[1]]
    assert [r.question_id for r in select_questions(shuffled, "first", 2)] == [10, 20]
    assert [r.question_id for r in select_questions(shuffled, "all", 1)] == [10, 20, 30]
    picks = [select_questions(shuffled, "random", 2, seed=s) for s in range(20)]
    assert picks[0] == select_questions(recs, "random", 2, seed=0)  # seeded, input order irrelevant
    assert len({tuple(r.question_id for r in p) for p in picks}) == 3  # all 3 pairs occur
    assert all(p == sorted(p, key=lambda r: r.question_id) for p in picks)
    with pytest.raises(KitError, match="n=4 questions but the split holds 3"):
        select_questions(recs, "first", 4)
    with pytest.raises(KitError, match="selection 'last' is not known"):
        select_questions(recs, "last", 1)
    with pytest.raises(KitError, match="no questions to select"):
        select_questions([], "all", 1)


def test_resolve_roots_env(tmp_path, monkeypatch):
    monkeypatch.delenv("OKVQA_PATH", raising=False)
    monkeypatch.delenv("COCO_PATH", raising=False)
    with pytest.raises(KitError, match=r"data.root is empty and \$OKVQA_PATH is not set"):
        resolve_roots(DataConfig())
    monkeypatch.setenv("OKVQA_PATH", str(tmp_path / "ok"))
    assert resolve_roots(DataConfig()) == (tmp_path / "ok", tmp_path / "ok")
    monkeypatch.setenv("COCO_PATH", str(tmp_path / "coco"))
    assert resolve_roots(DataConfig()) == (tmp_path / "ok", tmp_path / "coco")
    assert resolve_roots(DataConfig(root="r", image_root="i")) == (Path("r"), Path("i"))
    monkeypatch.setenv("VQAV2_PATH", str(tmp_path / "v2"))
    assert resolve_roots(DataConfig(dataset="vqav2"))[0] == tmp_path / "v2"


def test_load_data_reads_the_demo_world_the_caller_built(tmp_path, monkeypatch):
    from icl_kit.data.demo.world import ensure_demo_world

    monkeypatch.delenv("COCO_PATH", raising=False)
    cfg = DataConfig(root=str(tmp_path / "demo"), demo=True, demo_train=12, demo_test=10, demo_seed=3)
    with pytest.raises(KitError, match="is missing"):
        load_data(cfg)  # load_data only reads
    assert ensure_demo_world(cfg) == tmp_path / "demo"
    train, test = load_data(cfg)
    assert (len(train), len(test)) == (12, 10)
    assert train[0].image().size == (96, 96)
    assert not {r.question_id for r in train} & {r.question_id for r in test}
    with pytest.raises(KitError, match=r"train2014_questions.json is missing; check data.root \(or \$OKVQA"):
        load_data(DataConfig(root=str(tmp_path / "nothing")))


def test_image_size_reads_the_header_and_names_bad_files(tmp_path):
    from PIL import Image

    recs = load_split(write_split(tmp_path), "val")
    with pytest.raises(KitError, match=r"COCO_val2014_000000000001.jpg for question 10 is missing"):
        recs[0].image_size()
    recs[0].image_path.parent.mkdir()
    Image.new("RGB", (40, 30)).save(recs[0].image_path)
    assert recs[0].image_size() == (40, 30)
    recs[1].image_path.write_bytes(b"not a jpeg")
    with pytest.raises(KitError, match="COCO_val2014_000000000002.jpg for question 20 cannot be read"):
        recs[1].image_size()
