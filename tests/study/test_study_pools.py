"""pools.sampler=study_rand (the RandSampler's test vectors, docs/study.md "Pools") and `icl-kit study import-pools`
(its cache files)."""

import json

import pytest
from study_fixtures import study_rand_sampler, write_pool_cache

from icl_kit.cli import main
from icl_kit.core.config import load_params
from icl_kit.core.errors import KitError
from icl_kit.data.demo.world import build_demo_world
from icl_kit.run_context import RunContext
from icl_kit.selection.pools import load_pools_meta
from icl_kit.study.formats.positions import SplitPositions
from icl_kit.study.formats.sampler import study_rand_positions

N_TRAIN, N_TEST, SIZE, ANCHORS = 30, 12, 6, 8


def test_section_2_2_test_vectors_okvqa_sizes() -> None:
    anchors, train, _, redraws = study_rand_positions(9009, 800, 64, 42)
    assert anchors[:5] == [1824, 409, 4506, 4012, 3657]
    assert train[anchors[0]][:5] == [2803, 8751, 4010, 2677, 7573]
    assert redraws == 8


def test_equals_the_documents_sampler_and_continues_its_stream() -> None:
    anchors, train, test, redraws = study_rand_positions(200, 40, 16, 42, n_test=5)
    ref_anchors, ref_pools, ref_redraws = study_rand_sampler(200, 40, 16)
    assert anchors == ref_anchors and redraws == ref_redraws
    assert {a: train[a] for a in anchors} == ref_pools
    assert sorted(train) == list(range(200)) and len(test) == 5
    assert all(p not in pool and len(set(pool)) == 16 for p, pool in train.items())


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_demo_world(tmp_path_factory.mktemp("w") / "demo", N_TRAIN, N_TEST, seed=3)


def params(world, tmp_path, sampler: str = "study_rand"):
    return load_params(None, [f"data.root={world}", f"runs_dir={tmp_path}", "run_name=r", f"pools.size={SIZE}",
                              f"pools.sampler={sampler}", f"pools.anchors={ANCHORS}", "eval.shots=[1, 2]",
                              "train.reward.shots=[2]", "train.val_shots=[2]"])


def test_run_context_pools_are_the_study_draws_in_question_ids(world, tmp_path) -> None:
    ctx = RunContext.build(params(world, tmp_path))
    pos = SplitPositions(ctx.world.pool_records)
    anchors, train, test, _ = study_rand_positions(N_TRAIN, ANCHORS, SIZE, 42, n_test=N_TEST)
    assert all(ctx.world.pools[pos.qid(p)] == pos.qids(pool) for p, pool in train.items())
    test_ids = sorted(r.question_id for r in ctx.world.test_records)
    assert [ctx.world.pools[q] for q in test_ids] == [pos.qids(pool) for pool in test]
    meta = load_pools_meta(ctx.paths.pools)
    assert meta["params"] == {"pools.sampler": "study_rand", "pools.size": SIZE, "pools.seed": 42,
                              "pools.anchors": ANCHORS} and meta["source"] == "drawn"
    assert meta["data"]["demonstrations"] == N_TRAIN and meta["data"]["test questions"] == N_TEST
    with pytest.raises(KitError, match=r"pools\.json was made with other params \(pools\.sampler: 'study_rand' -> "
                                       r"'rand'\); .* delete it and pools\.meta\.json to rebuild it\."):
        _ = RunContext.build(params(world, tmp_path, "rand")).world.pools  # another sampler: the stale file is refused
    ctx.paths.pools.unlink()  # the documented fix
    again = RunContext.build(params(world, tmp_path, "rand"))
    assert again.world.pools != ctx.world.pools
    assert load_pools_meta(ctx.paths.pools)["params"]["pools.sampler"] == "rand"
    assert "pools.anchors" not in load_pools_meta(ctx.paths.pools)["params"]  # no effect with the rand sampler


def test_import_pools_reads_the_cache_and_refuses_mismatched_files(world, tmp_path, capsys) -> None:
    anchors, cached, _ = study_rand_sampler(N_TRAIN, ANCHORS, SIZE)
    cached = {a: list(reversed(p)) for a, p in cached.items()}  # differs from any draw: it must come from the file
    a_file, c_file = write_pool_cache(tmp_path / "cache", "okvqa", anchors, cached, SIZE)
    p = params(world, tmp_path)
    (tmp_path / "p.yaml").write_text(json.dumps({"data": {"root": str(world)}, "runs_dir": str(tmp_path),
                                                  "run_name": "r", "pools": {"size": SIZE, "sampler": "study_rand",
                                                                             "anchors": ANCHORS},
                                                  "eval": {"shots": [1, 2]}, "train": {"reward": {"shots": [2]},
                                                                                      "val_shots": [2]}}))
    assert main(["study", "import-pools", str(a_file), str(c_file), "--params", str(tmp_path / "p.yaml")]) == 0
    assert f"{ANCHORS} anchor pools from the study's cache" in capsys.readouterr().out
    ctx = RunContext.build(p)
    pos = SplitPositions(ctx.world.pool_records)
    assert all(ctx.world.pools[pos.qid(a)] == pos.qids(cached[a]) for a in anchors)
    drawn = study_rand_positions(N_TRAIN, ANCHORS, SIZE, 42)[1]
    others = [q for q in range(N_TRAIN) if q not in cached]
    assert all(ctx.world.pools[pos.qid(q)] == pos.qids(drawn[q]) for q in others)
    assert load_pools_meta(ctx.paths.pools)["source"].startswith("imported: okvqa-anchor_sample_num:8.json")
    before = ctx.paths.pools.read_bytes()
    c_file.write_text(json.dumps({str(a): cached[a] for a in anchors[1:]}))
    with pytest.raises(KitError, match=r"has 7 anchors but .* lists 8 others \(e.g. \[\d+\]\); pass files of one run"):
        ctx.world.import_pools(a_file, c_file)
    c_file.write_text(json.dumps({str(a): cached[a][:-1] for a in anchors}))
    with pytest.raises(KitError, match=r"the pool of anchor \d+ must hold 6 train positions in 0..29 without the "
                                       r"anchor \(pools.size=6\)"):
        ctx.world.import_pools(a_file, c_file)
    assert ctx.paths.pools.read_bytes() == before
