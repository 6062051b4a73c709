"""Candidate pools: RandSampler pools, similarity retrieval, random ICDs.

Every random draw is a function of (seed, stream, query id) only: each query
gets its own generator, so a query's pool does not depend on which other
queries are drawn, or in which order. Pool ids are sorted first, so it does
not depend on the order of the pool either.

`pools.json` holds `{query_id: [candidate ids]}` (JSON keys are strings; they
are read back as ints).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from icl_kit.core.errors import KitError
from icl_kit.core.runs import atomic_write_json
from icl_kit.core.sidecars import read_sidecar, sidecar_path

STREAM_POOLS = 0  # generator streams, so pools and random ICDs never share draws
STREAM_RANDOM_ICDS = 1
SIM_CHUNK = 1024  # queries per similarity block: bounds memory at SIM_CHUNK x N floats


def _sorted_pool(pool_ids: Iterable[int]) -> np.ndarray:
    pool = np.asarray(sorted(int(i) for i in pool_ids), dtype=np.int64)
    if pool.size and (np.diff(pool) == 0).any():
        raise KitError("pool_ids contain duplicates; each demonstration id must appear once.")
    return pool


def _draw(query_id: int, pool: np.ndarray, size: int, seed: int, stream: int) -> list[int]:
    """`size` distinct ids of the sorted `pool`, never `query_id`, from generator (seed, stream, qid)."""
    if query_id < 0 or seed < 0:
        raise KitError(f"query id {query_id} and seed {seed} must be non-negative integers.")
    pos = int(np.searchsorted(pool, query_id))
    self_in_pool = pos < pool.size and pool[pos] == query_id
    n_avail = pool.size - int(self_in_pool)
    if size > n_avail:
        raise KitError(
            f"Cannot draw {size} candidates for query {query_id} from {n_avail} other pool items; "
            "lower pools.size or use a larger pool."
        )
    rng = np.random.default_rng([seed, stream, query_id])
    picks = rng.choice(n_avail, size=size, replace=False)
    if self_in_pool:
        picks = picks + (picks >= pos)  # skip over the query's own slot
    return pool[picks].tolist()


def rand_pools(
    query_ids: Iterable[int], pool_ids: Iterable[int], size: int = 64, seed: int = 42
) -> dict[int, list[int]]:
    """RandSampler: for each query, `size` distinct pool ids (never the query itself).

    Deterministic in (seed, query id); independent of the order of queries and pool.
    """
    pool = _sorted_pool(pool_ids)
    return {int(q): _draw(int(q), pool, size, seed, STREAM_POOLS) for q in query_ids}


def random_icds(query_id: int, pool_ids: Iterable[int], k: int, seed: int) -> list[int]:
    """k distinct random ICD ids for one question (the random baseline), never the query itself."""
    return _draw(int(query_id), _sorted_pool(pool_ids), k, seed, STREAM_RANDOM_ICDS)


def similarity_topk(
    query_emb: torch.Tensor,
    pool_emb: torch.Tensor,
    pool_ids: Sequence[int],
    k: int,
    exclude_ids: Sequence[int] | None = None,
    most_similar_last: bool = False,
) -> list[list[int]]:
    """The k pool ids most cosine-similar to each query, most similar first.

    query_emb (Q, d), pool_emb (N, d), pool_ids (N,); exclude_ids (Q,) is the id to
    leave out for each query (its own id). `most_similar_last` reverses each list,
    as the existing study's top-k retriever orders its ICDs.
    """
    q = torch.nn.functional.normalize(torch.as_tensor(query_emb, dtype=torch.float32), dim=-1)
    p = torch.nn.functional.normalize(torch.as_tensor(pool_emb, dtype=torch.float32), dim=-1)
    ids = torch.as_tensor(list(pool_ids), dtype=torch.long)
    if q.dim() != 2 or p.dim() != 2 or q.shape[1] != p.shape[1] or ids.numel() != p.shape[0]:
        raise KitError(
            f"similarity_topk needs query_emb [Q, d], pool_emb [N, d] and N pool_ids; got "
            f"{list(q.shape)}, {list(p.shape)} and {ids.numel()} ids."
        )
    excl = None if exclude_ids is None else torch.as_tensor(list(exclude_ids), dtype=torch.long)
    if excl is not None and excl.numel() != q.shape[0]:
        raise KitError(f"exclude_ids must hold one id per query ({q.shape[0]}); got {excl.numel()}.")
    n_avail = p.shape[0] - (0 if excl is None else 1)
    if not 1 <= k <= n_avail:
        raise KitError(f"k={k} must be between 1 and {n_avail} (pool size minus the query itself).")
    out: list[list[int]] = []
    for start in range(0, q.shape[0], SIM_CHUNK):
        sims = q[start : start + SIM_CHUNK] @ p.T  # (b, N)
        if excl is not None:
            sims.masked_fill_(ids.unsqueeze(0) == excl[start : start + SIM_CHUNK].unsqueeze(1), -torch.inf)
        top = sims.topk(k, dim=1).indices  # (b, k), most similar first
        out += ids[top].tolist()
    return [row[::-1] for row in out] if most_similar_last else out


# ---------------------------------------------------------------------- files
def save_pools(path: str | Path, pools: dict[int, list[int]]) -> None:
    """Write `pools.json` atomically, queries in ascending id order (its sidecar: DataWorld.save_pools)."""
    atomic_write_json(path, {str(q): [int(i) for i in pools[q]] for q in sorted(pools)})


def meta_path(path: str | Path) -> Path:
    """`pools.meta.json`: the sidecar of pools.json (icl_kit.core.artefacts)."""
    return sidecar_path(path)


def load_pools_meta(path: str | Path) -> dict[str, Any] | None:
    """The sidecar beside pools.json (params, data, source), or None (none there, or an unreadable file)."""
    return read_sidecar("pools", path)


def load_pools(path: str | Path) -> dict[int, list[int]]:
    """Read `pools.json` back as {int query id: [int ids]}; a malformed file is a KitError."""
    path = Path(path)
    if not path.is_file():
        raise KitError(f"Pools file {path} does not exist; build the pools stage first.")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {int(q): [int(i) for i in ids] for q, ids in raw.items()}
    except (ValueError, TypeError, AttributeError):
        raise KitError(
            f"Pools file {path} is not a {{query_id: [candidate ids]}} JSON object; delete it to rebuild."
        ) from None
