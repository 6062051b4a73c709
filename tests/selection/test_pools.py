"""Candidate pools: RandSampler determinism and uniformity, similarity top-k, pools.json."""

import json
import random
import time

import numpy as np
import pytest
import torch
from scipy import stats

from icl_kit.core.errors import KitError
from icl_kit.selection.pools import load_pools, rand_pools, random_icds, save_pools, similarity_topk

POOL = list(range(1000, 1300))


def test_rand_pools_shape_distinct_and_excludes_query() -> None:
    queries = POOL[:50] + [5, 6]  # training queries are pool members; test queries are not
    pools = rand_pools(queries, POOL, size=64, seed=42)
    assert sorted(pools) == sorted(queries)
    for q, ids in pools.items():
        assert len(ids) == 64 == len(set(ids))
        assert q not in ids and set(ids) <= set(POOL)


def test_rand_pools_independent_of_query_and_pool_order() -> None:
    queries = POOL[:40] + [1, 2, 3]
    ref = rand_pools(queries, POOL, 16, 7)
    shuffled_q, shuffled_p = queries[:], POOL[:]
    random.Random(0).shuffle(shuffled_q)
    random.Random(1).shuffle(shuffled_p)
    assert rand_pools(shuffled_q, shuffled_p, 16, 7) == ref
    assert rand_pools(queries[:3], POOL, 16, 7) == {q: ref[q] for q in queries[:3]}
    assert rand_pools(queries, POOL, 16, 8) != ref


def test_rand_pools_are_uniform_over_the_pool() -> None:
    pool = list(range(100))
    pools = rand_pools(range(1000, 3000), pool, size=10, seed=3)
    counts = np.bincount(np.concatenate([np.array(v) for v in pools.values()]), minlength=100)
    assert stats.chisquare(counts).pvalue > 1e-3  # expected 200 per id
    # and a training query is never its own candidate, while the others stay uniform
    own = rand_pools(range(100), pool, size=99, seed=3)
    assert all(sorted(v) == [i for i in pool if i != q] for q, v in own.items())


def test_rand_pools_ten_thousand_queries_is_fast() -> None:
    start = time.perf_counter()
    pools = rand_pools(range(200_000, 210_000), range(9009), size=64, seed=42)
    assert len(pools) == 10_000
    assert time.perf_counter() - start < 20  # ~0.2 s here; a loose sanity bound, not a benchmark


def test_rand_pools_errors() -> None:
    with pytest.raises(KitError, match="Cannot draw 64"):
        rand_pools([1000], POOL[:64], size=64)  # the query itself leaves only 63
    with pytest.raises(KitError, match="duplicates"):
        rand_pools([1], [2, 2, 3], size=1)


def test_random_icds_seeded_and_excluding_query() -> None:
    a = random_icds(1005, POOL, 4, seed=0)
    assert a == random_icds(1005, list(reversed(POOL)), 4, seed=0)
    assert len(set(a)) == 4 and 1005 not in a
    assert a != random_icds(1005, POOL, 4, seed=1)
    assert a != rand_pools([1005], POOL, 4, seed=0)[1005]  # its own stream


def test_similarity_topk_known_order_and_exclusion() -> None:
    pool_emb = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0], [0.6, 0.8]])
    ids = [10, 11, 12, 13, 14]
    query = torch.tensor([[2.0, 0.0], [0.0, 3.0]])  # cosine ignores the norm
    assert similarity_topk(query, pool_emb, ids, 3) == [[10, 11, 14], [12, 14, 11]]
    assert similarity_topk(query, pool_emb, ids, 3, exclude_ids=[10, 99]) == [[11, 14, 12], [12, 14, 11]]
    assert similarity_topk(query, pool_emb, ids, 2, exclude_ids=[10, 12], most_similar_last=True) == [
        [14, 11],
        [11, 14],
    ]


def test_similarity_topk_matches_numpy_reference_in_chunks() -> None:
    g = torch.Generator().manual_seed(0)
    q, p = torch.randn(2100, 8, generator=g), torch.randn(300, 8, generator=g)  # > one 1024-query block
    ids = list(range(300))
    got = similarity_topk(q, p, ids, 5)
    qn, pn = q.numpy() / np.linalg.norm(q.numpy(), axis=1, keepdims=True), p.numpy()
    pn = pn / np.linalg.norm(pn, axis=1, keepdims=True)
    assert got == np.argsort(-(qn @ pn.T), axis=1, kind="stable")[:, :5].tolist()


def test_similarity_topk_errors() -> None:
    with pytest.raises(KitError, match="k=5"):
        similarity_topk(torch.ones(1, 2), torch.ones(5, 2), range(5), 5, exclude_ids=[0])
    with pytest.raises(KitError, match="pool_emb"):
        similarity_topk(torch.ones(1, 2), torch.ones(5, 3), range(5), 1)


def test_pools_json_round_trip_and_errors(tmp_path) -> None:
    pools = rand_pools([1001, 5], POOL, 8, 1)
    path = tmp_path / "pools.json"
    save_pools(path, pools)
    assert load_pools(path) == pools
    assert list(json.loads(path.read_text())) == ["5", "1001"]
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind
    path.write_text("[1, 2]")
    with pytest.raises(KitError, match="not a"):
        load_pools(path)
    with pytest.raises(KitError, match="does not exist"):
        load_pools(tmp_path / "missing.json")
