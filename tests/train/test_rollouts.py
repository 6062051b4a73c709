"""Rollouts: query split, offline build (format, de-duplication, resume after a kill), loading, sampling."""

import pytest
import torch
from grpo_ddp_worker import fake_answer, hash_lvlm, tiny_params, tiny_world

import icl_kit.train.queries as qu
import icl_kit.train.rollouts as ro
from icl_kit.core.errors import KitError
from icl_kit.core.runs import read_jsonl
from icl_kit.selection.selector import PointerSelector
from icl_kit.train.rewards import batch_sequence_rewards

KIND = "hard_plus_soft"


def test_split_is_by_sorted_id_with_the_last_share_held_out():
    s = qu.split_queries([7, 3, 1, 9, 5, 2, 8, 4, 6, 10], val_fraction=0.2)
    assert s.train == [1, 2, 3, 4, 5, 6, 7, 8] and s.val == [9, 10]
    s = qu.split_queries(range(100, 0, -1), val_fraction=0.25, max_queries=8)
    assert s.train == [1, 2, 3, 4, 5, 6] and s.val == [7, 8]
    with pytest.raises(KitError, match="max_queries"):
        qu.split_queries([1], val_fraction=0.9)


def test_similarity_positions_hand_computed():
    q = torch.tensor([[1.0, 0.0]])
    c = torch.tensor([[[0.0, 1.0], [1.0, 0.1], [-1.0, 0.0], [1.0, 1.0]]])
    assert ro.similarity_positions(q, c, 3).tolist() == [[1, 3, 0]]


@pytest.fixture
def world(tmp_path):
    params = tiny_params(tmp_path / "run")
    w = tiny_world(params, hash_lvlm())
    w.table = qu.QueryTable(w.pool_ids, w.pools, w.emb)
    return w


def selector():
    torch.manual_seed(0)
    return PointerSelector(8, 16, dropout=0.0)


def test_query_table_rows_and_icd_ids(world):
    t = world.table
    q, c = t.batch(torch.tensor([2, 0]))
    assert torch.equal(q, world.emb([1002, 1000])) and torch.equal(c[0], world.emb(world.pools[1002]))
    keys = t.icd_ids(torch.tensor([2]), torch.tensor([[[3, 1], [0, 5]]]))
    pool = world.pools[1002]
    assert keys == [(1002, (pool[3], pool[1])), (1002, (pool[0], pool[5]))]


def test_offline_rollouts_format_dedup_and_scores(world):
    cfg = world.params.train
    path = world.paths.rollouts
    n = ro.build_offline_rollouts(selector(), world.table, world.pool_ids[:10], world.service, cfg, path, False)
    rows = read_jsonl(path)
    assert n == 10 and [r["question_id"] for r in rows] == world.pool_ids[:10]
    for r in rows:
        assert set(r) == {"question_id", "pool", "candidates"} and r["pool"] == world.pools[r["question_id"]]
        seqs = [tuple(cd["positions"]) for cd in r["candidates"]]
        assert len(seqs) == len(set(seqs)) and all(len(s) == 2 and len(set(s)) == 2 for s in seqs)
        methods = {cd["gen_method"] for cd in r["candidates"]}
        assert "beam" in methods and methods <= {"beam", "sample_t1", "sample_t1.3", "similarity", "random"}
        q, c = world.table.batch(torch.tensor([world.table.row[r["question_id"]]]))
        assert tuple(ro.similarity_positions(q, c, 2)[0].tolist()) in seqs  # kept, maybe under an earlier method
        for cd in r["candidates"]:
            assert set(cd) == {"icd_ids", "positions", "gen_method", "pred", "acc", "correct", "gt_prob"}
            assert cd["icd_ids"] == [r["pool"][p] for p in cd["positions"]]
            req = world.service.request((r["question_id"], tuple(cd["icd_ids"])))
            assert cd["pred"] == fake_answer(req) and cd["acc"] == (1.0 if cd["pred"] == "yes" else 0.0)
    first = rows[0]
    q, c = world.table.batch(torch.tensor([0]))
    beams = selector().eval().beam_search(q, c, 2, cfg.rollouts.beam_size)[0][0].tolist()
    assert [cd["positions"] for cd in first["candidates"] if cd["gen_method"] == "beam"] == beams


def test_a_killed_build_resumes_to_the_same_file(world, tmp_path, monkeypatch):
    monkeypatch.setattr(ro, "CHUNK", 8)
    cfg, qids = world.params.train, world.pool_ids[:30]
    ro.build_offline_rollouts(selector(), world.table, qids, world.service, cfg, tmp_path / "full.jsonl", False)
    killed = tmp_path / "killed.jsonl"
    dying = tiny_world(world.params, hash_lvlm(fail_after=150))
    dying.paths.rewards.unlink()  # no cached answers: the kill really happens mid-build
    with pytest.raises(KeyboardInterrupt):
        ro.build_offline_rollouts(selector(), world.table, qids, dying.service, cfg, killed, False)
    assert 0 < len(read_jsonl(killed)) < 30
    with open(killed, "a") as fh:
        fh.write('{"question_id": 99')  # and a line cut by the kill
    ro.build_offline_rollouts(selector(), world.table, qids, world.service, cfg, killed, False)
    assert killed.read_bytes() == (tmp_path / "full.jsonl").read_bytes()


def test_loaded_groups_carry_the_cached_rewards(world):
    cfg = world.params.train
    path = world.paths.rollouts
    qids = world.pool_ids[:6]
    ro.build_offline_rollouts(selector(), world.table, qids, world.service, cfg, path, False)
    g = ro.load_offline_groups(path, world.table, qids, world.service, KIND, [2])
    lines = read_jsonl(path)
    assert g.mask.sum(1).tolist() == [len(r["candidates"]) for r in lines]
    for b, r in enumerate(lines):
        keys = [(r["question_id"], tuple(cd["icd_ids"])) for cd in r["candidates"]]
        assert g.rewards[b, g.mask[b]].tolist() == batch_sequence_rewards(world.service, keys, KIND, [2])
    g1 = ro.load_offline_groups(path, world.table, qids, world.service, KIND, [1, 2])  # prefixes via the cache
    keys = [(lines[0]["question_id"], tuple(cd["icd_ids"])) for cd in lines[0]["candidates"]]
    assert g1.rewards[0, g1.mask[0]].tolist() == pytest.approx(batch_sequence_rewards(world.service, keys, KIND,
                                                                                       [1, 2]))
    with pytest.raises(KitError, match="no rollouts for query"):
        ro.load_offline_groups(path, world.table, world.pool_ids[:7], world.service, KIND, [2])
    with pytest.raises(KitError, match=f"query {qids[0]} has sequences of 2 ICDs, but train.reward.shots needs 3"):
        ro.load_offline_groups(path, world.table, qids, world.service, KIND, [1, 2, 3])  # not truncated prefixes


def test_online_samples_are_seeded_distinct_and_scored(world):
    sel = selector().train()
    rows = torch.tensor([0, 5, 9])
    a = ro.sample_sequences(sel, world.table, rows, 4, 2, torch.Generator().manual_seed(3), 1.0)
    b = ro.sample_sequences(sel, world.table, rows, 4, 2, torch.Generator().manual_seed(3), 1.0)
    assert a.shape == (3, 4, 2) and torch.equal(a, b) and sel.training
    assert (a[..., 0] != a[..., 1]).all()
    r = ro.score_groups(world.service, world.table, rows, a, KIND, [2])
    keys = world.table.icd_ids(rows, a)
    assert r.flatten().tolist() == batch_sequence_rewards(world.service, keys, KIND, [2])
