"""The shared world of one run: records, embeddings, pools and the answer service.

Training and evaluation both start from `RunContext.build(params)`, so they see
the same data, the same candidate pools and the same reward cache.

Nothing is written into the run folder until `commit()`: a stage first reads the
data and runs its own checks (questions, resume state, files already there), and
only then commits, which writes params.yaml and provenance.json and the pools and
embeddings computed so far. A refused command therefore leaves the folder as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from icl_kit.core.config import Params
from icl_kit.core.errors import KitError
from icl_kit.core.runs import RunPaths, prepare_run
from icl_kit.data.records import Record
from icl_kit.lvlm.answers import AnswerService

log = logging.getLogger(__name__)


@dataclass
class RunContext:
    """Everything a stage needs, built once from params."""

    params: Params
    paths: RunPaths
    pool_records: list[Record]  # demonstration split (also the training queries)
    test_records: list[Record]  # test split, sorted by question id
    committed: bool = False  # the stage's checks passed and the run folder may be written
    _pending: dict[str, Callable[[], None]] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, params: Params, commit: bool = True) -> RunContext:
        """Read the data (building the demo world first when asked); commit the folder unless `commit=False`."""
        from icl_kit.data.demo.world import ensure_demo_world
        from icl_kit.data.okvqa import load_data

        ensure_demo_world(params.data)
        pool, test = load_data(params.data)
        ctx = cls(params=params, paths=RunPaths(Path(params.run_dir)), pool_records=pool, test_records=test)
        if commit:
            ctx.commit()
        return ctx

    @classmethod
    def for_ranks(cls, params: Params, ranks: Any, need_emb: bool = True,
                  check: Callable[[RunContext], Any] | None = None) -> RunContext:
        """Rank 0 reads the data and runs the stage's `check` with nothing written; when it passes, it commits
        the run folder (params, pools, embeddings). The other ranks then read that folder."""
        ctx = None
        if ranks.rank == 0:
            ctx = cls.build(params, commit=False)
            if check is not None:
                check(ctx)
            ctx.commit()
            _ = ctx.pools
            if need_emb:
                _ = ctx.embeddings
        ranks.barrier()
        if ctx is None:
            ctx = cls.build(params, commit=False)
            ctx.committed = True  # rank 0 committed the folder; this rank only reads what it wrote
        return ctx

    def commit(self) -> RunPaths:
        """The stage's checks passed: write params.yaml, provenance.json and what was computed so far."""
        if not self.committed:
            prepare_run(self.params, self.paths.root)
            self.committed = True
            for save in self._pending.values():
                save()
            self._pending.clear()
        return self.paths

    def _save(self, name: str, save: Callable[[], None]) -> None:
        """Save now when committed, else at `commit()` (a refused stage writes nothing)."""
        if self.committed:
            save()
        else:
            self._pending[name] = save

    # ------------------------------------------------------------------ lookups
    @cached_property
    def records(self) -> dict[int, Record]:
        """Every record by question id (pool and test)."""
        return {r.question_id: r for r in self.pool_records + self.test_records}

    @cached_property
    def pool_ids(self) -> list[int]:
        return [r.question_id for r in self.pool_records]

    @cached_property
    def data_root(self) -> Path:
        from icl_kit.data.okvqa import resolve_roots

        return Path(resolve_roots(self.params.data)[0])

    # --------------------------------------------------------------- embeddings
    @cached_property
    def embeddings(self) -> dict[int, int]:
        """Row index of each question id in `emb` (cached in embeddings.pt)."""
        return {qid: i for i, qid in enumerate(self._emb["ids"])}

    @cached_property
    def _emb(self) -> dict:
        from icl_kit.selection.encoders import build_encoder, cached_embeddings, embed_records, save_embeddings

        encoder = build_encoder(self.params.encoder)
        records = self.pool_records + self.test_records
        out = cached_embeddings(self.paths.embeddings, [r.question_id for r in records], encoder.name)
        fresh = out is None
        out = embed_records(records, encoder) if out is None else out
        dim = int(out["emb"].shape[1])
        if dim != self.params.selector.input_dim:
            cfg = self.params.encoder
            raise KitError(
                f"The encoder (encoder.backend={cfg.backend!r}, encoder.model={cfg.model!r}) makes {dim}-d "
                f"embeddings but selector.input_dim={self.params.selector.input_dim}; set selector.input_dim: {dim}."
            )
        if fresh:
            self._save("embeddings", lambda: save_embeddings(self.paths.embeddings, out, encoder.name))
        return out

    def emb(self, qids: list[int] | torch.Tensor) -> torch.Tensor:
        """Embeddings of question ids, [N, d] (or [B, K, d] for a [B, K] id tensor)."""
        ids = torch.as_tensor(qids)
        index = torch.tensor([self.embeddings[int(q)] for q in ids.flatten()], dtype=torch.long)
        return self._emb["emb"][index].reshape(*ids.shape, -1)

    # -------------------------------------------------------------------- pools
    @cached_property
    def pools(self) -> dict[int, list[int]]:
        """RandSampler pools for every training and test query, saved as pools.json."""
        from icl_kit.selection.pools import load_pools, rand_pools, save_pools

        p = self.params.pools
        queries = [r.question_id for r in self.pool_records + self.test_records]
        if self.paths.pools.exists():
            pools = load_pools(self.paths.pools)
            if set(pools) >= set(queries) and all(len(pools[q]) == p.size for q in queries):
                return pools
            log.info("pools.json does not cover these queries with size %d; rebuilding it", p.size)
        pools = rand_pools(queries, self.pool_ids, size=p.size, seed=p.seed)
        self._save("pools", lambda: save_pools(self.paths.pools, pools))
        return pools

    # -------------------------------------------------------------------- LVLM
    @cached_property
    def service(self) -> AnswerService:
        """The LVLM behind the persistent answer cache (rewards.sqlite, a run file: opening it commits)."""
        from icl_kit.lvlm.registry import build_lvlm

        self.commit()
        lvlm = build_lvlm(self.params, self.data_root)
        return AnswerService(
            lvlm,
            self.records,
            self.paths.rewards,
            batch_size=self.params.lvlm.batch_size,
            with_gt_prob=self.params.train.reward.kind == "gt_prob",
        )
