"""The study's RL data in both layouts (docs/study.md, "RL data"), imported through the CLI into a demo-world run."""

import pytest
from study_fixtures import params_file, rl_candidate, rl_query, write_rl_data

from icl_kit.cli import main
from icl_kit.core.config import load_params
from icl_kit.core.errors import KitError
from icl_kit.core.runs import read_jsonl
from icl_kit.data.demo.world import build_demo_world
from icl_kit.data.vqa_accuracy import vqa_accuracy
from icl_kit.run_context import RunContext
from icl_kit.study.formats.positions import SplitPositions
from icl_kit.study.rollouts import import_rollouts, train_split


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_demo_world(tmp_path_factory.mktemp("w") / "demo", 30, 12, seed=5)


@pytest.fixture
def ctx(world, tmp_path):
    path = params_file(tmp_path / "p.yaml", world, tmp_path / "runs")
    return RunContext.build(load_params(path)), path


def d33_and_k64(ctx) -> tuple[dict, dict, SplitPositions]:
    pos = SplitPositions(ctx.world.pool_records)
    recs = {r.question_id: r for r in ctx.world.pool_records}

    def entry(p: int, pointers: list[list[int]], pool: list[int] | None = None) -> dict:
        qid = pos.qid(p)
        answers = list(recs[qid].answers)
        cands = []
        for j, ptr in enumerate(pointers):
            pred = answers[0] if j == 0 else ("" if j == 1 else "zzz")
            mode = ("vqaEval", "fallback", "vqaEval", "error")[j % 4]
            stored = vqa_accuracy(pred, answers) if mode == "vqaEval" else 0.5 if mode == "fallback" else 0.0
            extra = {"pointer_global": [pool[i] for i in ptr]} if pool else {}
            cands.append(rl_candidate(ptr, pred, stored, mode, **extra))
        return rl_query(p, qid, answers, cands, pool)

    d33 = {3: entry(3, [[5, 7], [7, 5], [9, 11], [1, 2]]), 10: entry(10, [[0, 4], [4, 6]])}
    pool = [20, 21, 22, 23, 24, 25]
    k64 = {3: entry(3, [[0, 1], [2, 3], [5, 4]], pool)}
    return d33, k64, pos


def test_d33_layout_global_pointers_get_pools_from_pointers_then_randsampler(ctx, tmp_path, capsys) -> None:
    c, path = ctx
    d33, _, pos = d33_and_k64(c)
    src = write_rl_data(tmp_path / "rl_data_RandSampler.json", d33)
    assert main(["study", "import-rollouts", str(src), "--params", str(path)]) == 0
    out = capsys.readouterr().out
    assert "2 queries, 5 candidates (5 of length 2; ids read as positions)" in out
    assert "dropped 1 eval_failed candidates" in out
    assert "2 stored scores differ from the official VQA accuracy" in out  # the two fallback 0.5 for ""
    assert "2 were scored in fallback mode and 1 in error mode; 2 queries had no pool" in out
    rows = read_jsonl(c.paths.rollouts)
    q3 = next(r for r in rows if r["question_id"] == pos.qid(3))
    distinct = pos.qids([5, 7, 9, 11])  # the error-mode candidate [1, 2] is dropped before the pool is built
    fill = [i for i in c.world.pools[pos.qid(3)] if i not in distinct][: 6 - 4]
    assert q3["pool"] == distinct + fill
    assert [cd["icd_ids"] for cd in q3["candidates"]] == [pos.qids([5, 7]), pos.qids([7, 5]), pos.qids([9, 11])]
    assert [cd["positions"] for cd in q3["candidates"]] == [[0, 1], [1, 0], [2, 3]]
    assert [(cd["acc"], cd["study_acc"], cd["eval_mode"]) for cd in q3["candidates"]][1] == (0.0, 0.5, "fallback")


def test_k64_layout_local_pointers_index_the_pool(ctx, tmp_path) -> None:
    c, _ = ctx
    _, k64, pos = d33_and_k64(c)
    s = import_rollouts(write_rl_data(tmp_path / "rl_data_k64_v3.json", k64, k64=True), c.paths.root,
                        train_split(c.world))
    (row,) = read_jsonl(s.path)
    assert row["pool"] == pos.qids([20, 21, 22, 23, 24, 25]) and s.n_pools_built == 0
    assert [cd["icd_ids"] for cd in row["candidates"]] == [pos.qids([20, 21]), pos.qids([22, 23]), pos.qids([25, 24])]


def test_every_entry_is_cross_checked_against_the_split(ctx, tmp_path) -> None:
    c, _ = ctx
    d33, k64, pos = d33_and_k64(c)
    d33[10]["query"]["question_id"] = pos.qid(11)
    with pytest.raises(KitError, match=rf"query 10: position 10 of the sorted train split is question {pos.qid(10)}, "
                                       rf"but query.question_id is {pos.qid(11)} \(a file made on another split"):
        import_rollouts(write_rl_data(tmp_path / "a.json", d33), c.paths.root, train_split(c.world))
    k64[3]["pointer_candidates"][0]["pointer_global"] = [21, 20]
    with pytest.raises(KitError, match=r"pointer \[0, 1\] gives \[20, 21\] in candidate_pool_ids, but "
                                       r"pointer_global is \[21, 20\]"):
        import_rollouts(write_rl_data(tmp_path / "b.json", k64), c.paths.root, train_split(c.world))
    d33, _, _ = d33_and_k64(c)
    d33[10]["pointer_candidates"][0]["pointer"] = [0, 30]
    with pytest.raises(KitError, match=r"pointer holds 30, outside the 30 positions of the train split"):
        import_rollouts(write_rl_data(tmp_path / "c.json", d33), c.paths.root, train_split(c.world))
    assert not c.paths.rollouts.exists()
