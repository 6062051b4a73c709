"""The embedded demo world: deterministic, read back by the real loader, realistic answers."""

import json

import pytest

import icl_kit.data.demo.world as demo
from icl_kit.core.errors import KitError
from icl_kit.data.demo.world import LATENT, MANIFEST, build_demo_world, describe_world
from icl_kit.data.okvqa import load_split
from icl_kit.data.vqa_accuracy import vqa_accuracy

N_TRAIN, N_TEST = 150, 60
JSON_FILES = ("OpenEnded_mscoco_train2014_questions.json", "mscoco_train2014_annotations.json",
              "OpenEnded_mscoco_val2014_questions.json", "mscoco_val2014_annotations.json", LATENT)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_demo_world(tmp_path_factory.mktemp("w") / "demo", N_TRAIN, N_TEST, seed=7)


def test_same_seed_same_bytes(world, tmp_path):
    other = build_demo_world(tmp_path / "again", N_TRAIN, N_TEST, seed=7)
    for name in JSON_FILES:
        assert (world / name).read_bytes() == (other / name).read_bytes(), name
    first = sorted((world / "val2014").iterdir())[0]
    assert first.read_bytes() == (other / "val2014" / first.name).read_bytes()
    changed = build_demo_world(tmp_path / "seed8", N_TRAIN, N_TEST, seed=8)
    assert (world / JSON_FILES[0]).read_bytes() != (changed / JSON_FILES[0]).read_bytes()


def test_loader_reads_world_back(world):
    train, test = load_split(world, "train"), load_split(world, "val")
    assert (len(train), len(test)) == (N_TRAIN, N_TEST)
    ids = [r.question_id for r in train + test]
    images = [r.image_id for r in train + test]
    assert len(set(ids)) == len(ids) and len(set(images)) == len(images)
    assert all(r.question_id == 10 * r.image_id + 5 for r in train)
    assert test[0].image().size == (96, 96) and test[0].image_path.name.startswith("COCO_val2014_")
    assert {r.question_type for r in train} == {"color", "count", "object", "kb_property", "kb_use",
                                                 "kb_place"}
    assert all(len(r.answers) == 10 for r in train)


def test_answer_agreement_is_realistic(world):
    records = load_split(world, "train") + load_split(world, "val")
    best = {round(vqa_accuracy(r.answer, r.answers), 1) for r in records}
    assert best <= {0.3, 0.6, 0.9, 1.0} and {0.6, 0.9, 1.0} <= best
    full = sum(len(set(r.answers)) == 1 for r in records) / len(records)
    assert 0.15 < full < 0.5  # unanimous questions are common but not the rule


def test_latent_sidecar_matches_files(world):
    latent = json.loads((world / LATENT).read_text())["questions"]
    records = load_split(world, "train") + load_split(world, "val")
    assert set(latent) == {str(r.question_id) for r in records}
    for r in records:
        lat = latent[str(r.question_id)]
        assert lat["answer"] == r.answer and lat["question_type"] == r.question_type
        top = vqa_accuracy(r.answer, r.answers)
        assert all(0 < vqa_accuracy(m, r.answers) < top for m in lat["minority"])  # partial credit
        assert all(vqa_accuracy(w, r.answers) == 0 for w in lat["wrong"])


def test_knowledge_fact_from_the_table(world):
    latent = json.loads((world / LATENT).read_text())["questions"]
    facts = {("banana", "kb_property"): "potassium", ("fire truck", "kb_use"): "fighting fires",
             ("elephant", "kb_place"): "africa"}
    for (concept, qtype), answer in facts.items():
        canon = demo.fact_answers(demo.CONCEPTS[[c.name for c in demo.CONCEPTS].index(concept)], qtype, 1)
        assert canon[0] == answer
    found = [v for v in latent.values() if v["concept"] == "banana" and v["question_type"] == "kb_property"]
    assert found and all(v["answer"] in ("potassium", "potasium", "vitamin b6") for v in found)


def test_idempotent_and_killed_build_is_rebuilt(world, tmp_path, monkeypatch):
    out = build_demo_world(tmp_path / "w", 12, 10, seed=1)
    before = (out / MANIFEST).stat().st_mtime_ns

    def boom(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(demo, "render", boom)
    assert build_demo_world(out, 12, 10, seed=1) == out  # complete: nothing rendered
    assert (out / MANIFEST).stat().st_mtime_ns == before
    with pytest.raises(RuntimeError, match="killed"):
        build_demo_world(out, 12, 10, seed=1, force=True)  # a build killed half-way
    assert not (out / MANIFEST).exists() and (out / demo.BUILDING).exists()
    monkeypatch.undo()
    build_demo_world(out, 12, 10, seed=1)
    assert (out / MANIFEST).exists() and not (out / demo.BUILDING).exists()
    assert len(load_split(out, "val")) == 10
    build_demo_world(out, 12, 11, seed=1)  # other settings: rebuilt
    assert len(load_split(out, "val")) == 11
    assert len(list((out / "val2014").iterdir())) == 11


def test_refuses_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(KitError, match="holds files but no demo world"):
        build_demo_world(tmp_path, 12, 10)
    assert (tmp_path / "mine.txt").read_text() == "keep"


def test_cli_demo_data_errors_are_one_line(tmp_path, capsys):
    from icl_kit.cli import main

    (tmp_path / "afile").write_text("keep")
    assert main(["demo-data", "--out", str(tmp_path / "afile"), "--n-train", "12", "--n-test", "10"]) == 2
    assert main(["demo-data", "--out", str(tmp_path / "w"), "--n-train", "0"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"icl-kit: error: {tmp_path / 'afile'} is a file, not a folder; choose a folder for "
                   "the demo world.",
                   "icl-kit: error: Demo world sizes n_train=0, n_test=1000 must both be at least 1."]
    assert (tmp_path / "afile").read_text() == "keep"


def test_describe_world(world):
    text = describe_world(world)
    assert f"train (pool): {N_TRAIN} questions" in text and f"val (test): {N_TEST} questions" in text
    assert "top-answer agreement (of 10): 10/10" in text
    assert "VQA accuracy of the top answer: 1.0" in text
