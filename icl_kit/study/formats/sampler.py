"""The study's RandSampler pools, draw for draw (docs/study.md, "Pools"), and its cache files.

`pools.sampler: study_rand` reproduces the study exactly with Python's `random` on positions of the
question-id-sorted train split:

1. `random.seed(seed)`; anchors = `random.sample(range(N), pools.anchors)` (draw order);
2. `random.seed(seed)` again; for each anchor in that order: `random.sample(range(N), K)`, redrawn whole
   while the anchor is in it (the RNG continues).

The study drew pools for its anchors only (its RL queries); every other query needs one too. They continue
the SAME stream after the last anchor, with the same rule: first the train positions that are not anchors,
ascending, then the test questions in ascending question id (a test question is never in the train split,
so it is never redrawn). The study itself had no test pools: its inference chose among train items
0..K-1 (docs/study.md, defect 1); the kit's `eval.pool: rand` uses these continued draws instead.

`icl-kit study import-pools` reads the study's own cache files instead (real runs used whatever was cached): the
anchors' pools come from the cache (`read_pool_cache`), every other query's as `pools.sampler` draws it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from icl_kit.core.errors import KitError
from icl_kit.study.formats.positions import SplitPositions


def study_anchor_draws(n_train: int, n_anchors: int, size: int, seed: int = 42) -> tuple[list[int], random.Random]:
    """The anchor positions (draw order) and the generator re-seeded for the pool draws (step 1)."""
    if not 1 <= n_anchors <= n_train or not 1 <= size < n_train:
        raise KitError(f"pools.anchors={n_anchors} and pools.size={size} must be between 1 and the train split's "
                       f"{n_train} questions (size below it); lower them.")
    rng = random.Random(seed)
    anchors = rng.sample(range(0, n_train), n_anchors)
    rng.seed(seed)
    return anchors, rng


def draw_pool(rng: random.Random, n_train: int, size: int, self_pos: int | None) -> tuple[list[int], int]:
    """One RandSampler draw: `size` positions, redrawn whole while `self_pos` is among them. -> (pool, redraws)"""
    pool, redraws = rng.sample(range(0, n_train), size), 0
    while self_pos is not None and self_pos in pool:
        pool, redraws = rng.sample(list(range(0, n_train)), size), redraws + 1
    return pool, redraws


def study_rand_positions(n_train: int, n_anchors: int, size: int, seed: int = 42,
                         n_test: int = 0) -> tuple[list[int], dict[int, list[int]], list[list[int]], int]:
    """-> anchors, {train position: pool}, test pools (in test order), redraws over the anchors.

    Anchors first (the study's draws), then the other train positions, then `n_test` test pools.
    """
    anchors, rng = study_anchor_draws(n_train, n_anchors, size, seed)
    train: dict[int, list[int]] = {}
    anchor_redraws = 0
    for a in anchors:
        train[a], r = draw_pool(rng, n_train, size, a)
        anchor_redraws += r
    is_anchor = set(anchors)
    for pos in range(n_train):
        if pos not in is_anchor:
            train[pos] = draw_pool(rng, n_train, size, pos)[0]
    test = [draw_pool(rng, n_train, size, None)[0] for _ in range(n_test)]
    return anchors, train, test, anchor_redraws


def study_rand_pools(positions: SplitPositions, test_ids: Sequence[int], n_anchors: int, size: int,
                     seed: int = 42) -> dict[int, list[int]]:
    """{question id: [candidate question ids]} for every train and test question (see module doc)."""
    _, train, test, _ = study_rand_positions(len(positions), n_anchors, size, seed, len(test_ids))
    out = {positions.qid(p): positions.qids(pool, f"pool of position {p}") for p, pool in train.items()}
    out |= {int(q): positions.qids(pool) for q, pool in zip(sorted(test_ids), test, strict=True)}
    return out


# ---------------------------------------------------------------- cache files
def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise KitError(f"{what} {path} does not exist; pass the study's cache file (docs/study.md, 'Pools').")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise KitError(f"{what} {path} is not valid JSON; re-copy it from the study's cache folder.") from None


def read_pool_cache(anchors_file: str | Path, candidates_file: str | Path, n_train: int,
                    size: int) -> dict[int, list[int]]:
    """The study's anchor list and candidate object -> {anchor position: [positions]}, every entry checked."""
    anchors = _read_json(Path(anchors_file), "Anchor cache")
    cands = _read_json(Path(candidates_file), "Candidate cache")
    if not isinstance(anchors, list) or not all(isinstance(a, int) and not isinstance(a, bool) for a in anchors):
        raise KitError(f"Anchor cache {anchors_file} must be a JSON list of train positions (ints).")
    if not isinstance(cands, dict):
        raise KitError(f"Candidate cache {candidates_file} must be a JSON object {{anchor: [positions]}}.")
    try:
        pools = {int(k): v for k, v in cands.items()}
    except ValueError:
        raise KitError(f"Candidate cache {candidates_file} has a key that is not an anchor position.") from None
    if set(pools) != set(anchors):
        raise KitError(f"Candidate cache {candidates_file} has {len(pools)} anchors but {anchors_file} lists "
                       f"{len(anchors)} others (e.g. {sorted(set(pools) ^ set(anchors))[:3]}); pass files of one run.")
    for a, pool in pools.items():
        bad = not isinstance(pool, list) or len(pool) != size or not all(
            isinstance(i, int) and 0 <= i < n_train for i in pool)
        if bad or a in pool or not 0 <= a < n_train:
            raise KitError(f"Candidate cache {candidates_file}: the pool of anchor {a} must hold {size} train "
                           f"positions in 0..{n_train - 1} without the anchor (pools.size={size}); check pools.size "
                           "and that the files were made on this train split.")
    return pools
