"""The shared world of one run: records, embeddings, pools and the answer service.

Training and evaluation both start from `RunContext.build(params)`, so they see
the same data, the same candidate pools and the same reward cache.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
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

    @classmethod
    def build(cls, params: Params, write_params: bool = True) -> RunContext:
        from icl_kit.data.demo.world import ensure_demo_world
        from icl_kit.data.okvqa import load_data

        ensure_demo_world(params.data)

        paths = prepare_run(params) if write_params else RunPaths(Path(params.run_dir))
        pool, test = load_data(params.data)
        return cls(params=params, paths=paths, pool_records=pool, test_records=test)

    @classmethod
    def for_ranks(cls, params: Params, ranks: Any, need_emb: bool = True) -> RunContext:
        """Rank 0 builds the run folder (params, pools, embeddings) first; the other ranks then read it."""
        ctx = None
        if ranks.rank == 0:
            ctx = cls.build(params)
            _ = ctx.pools
            if need_emb:
                _ = ctx.embeddings
        ranks.barrier()
        return ctx if ctx is not None else cls.build(params, write_params=False)

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
        from icl_kit.selection.encoders import build_encoder, embed_records

        encoder = build_encoder(self.params.encoder)
        out = embed_records(self.pool_records + self.test_records, encoder, self.paths.embeddings)
        dim = int(out["emb"].shape[1])
        if dim != self.params.selector.input_dim:
            raise KitError(
                f"Embeddings have d={dim} but selector.input_dim={self.params.selector.input_dim}; set them equal."
            )
        return out

    def emb(self, qids: list[int] | torch.Tensor, part: str = "emb") -> torch.Tensor:
        """Embeddings of question ids, [N, d] (or [B, K, d] for a [B, K] id tensor).

        `part`: 'emb' (fused image+question, the selector's input), 'img' or 'txt' (one modality).
        """
        if part not in self._emb:
            raise KitError(f"The encoder {self.params.encoder.backend!r} gives no per-modality embeddings "
                           f"({part!r}); the one-modality similarity systems need encoder.backend clip or simple.")
        ids = torch.as_tensor(qids)
        index = torch.tensor([self.embeddings[int(q)] for q in ids.flatten()], dtype=torch.long)
        return self._emb[part][index].reshape(*ids.shape, -1)

    # -------------------------------------------------------------------- pools
    @cached_property
    def pools(self) -> dict[int, list[int]]:
        """Candidate pools for every training and test query (pools.sampler), saved as pools.json.

        pools.json is reused when it covers these queries at this size and its meta names the same
        sampler (a file imported by `icl-kit import-pools` keeps its source in the meta).
        """
        from icl_kit.selection.pools import load_pools, load_pools_meta, save_pools

        queries = [r.question_id for r in self.pool_records + self.test_records]
        meta = self.pools_meta
        if self.paths.pools.exists():
            pools = load_pools(self.paths.pools)
            stored = load_pools_meta(self.paths.pools)
            same = stored is None or all(stored.get(k) == v for k, v in meta.items())
            if same and set(pools) >= set(queries) and all(len(pools[q]) == meta["size"] for q in queries):
                return pools
            log.info("pools.json was not made for these queries with %s; rebuilding it", meta)
        pools = self.draw_pools()
        save_pools(self.paths.pools, pools, {**meta, "source": "drawn"})
        return pools

    @property
    def pools_meta(self) -> dict[str, Any]:
        p = self.params.pools
        meta: dict[str, Any] = {"sampler": p.sampler, "size": p.size, "seed": p.seed}
        return meta | ({"anchors": p.anchors} if p.sampler == "study_rand" else {})

    def draw_pools(self) -> dict[int, list[int]]:
        """The pools `pools.sampler` draws for every training and test query."""
        from icl_kit.data.positions import SplitPositions
        from icl_kit.selection.pools import rand_pools
        from icl_kit.selection.study_pools import study_rand_pools

        p = self.params.pools
        if p.sampler == "study_rand":
            test_ids = [r.question_id for r in self.test_records]
            return study_rand_pools(SplitPositions(self.pool_records), test_ids, p.anchors, p.size, p.seed)
        queries = [r.question_id for r in self.pool_records + self.test_records]
        return rand_pools(queries, self.pool_ids, size=p.size, seed=p.seed)

    def import_pools(self, anchors_file: str | Path, candidates_file: str | Path) -> tuple[Path, int]:
        """The study's cache files (STUDY_FORMATS.md §2.1) -> pools.json: the anchors' pools from the cache,
        every other query's as `pools.sampler` draws it. Everything is checked before pools.json is written.
        -> (pools.json, number of anchors)"""
        from icl_kit.data.positions import SplitPositions
        from icl_kit.selection.pools import save_pools
        from icl_kit.selection.study_pools import read_pool_cache

        positions = SplitPositions(self.pool_records)
        cached = read_pool_cache(anchors_file, candidates_file, len(positions), self.params.pools.size)
        pools = self.draw_pools()
        pools.update({positions.qid(a): positions.qids(pool) for a, pool in cached.items()})
        source = f"imported: {Path(anchors_file).name}, {Path(candidates_file).name}"
        save_pools(self.paths.pools, pools, {**self.pools_meta, "source": source})
        self.__dict__["pools"] = pools  # the cached_property now holds the imported pools
        return self.paths.pools, len(cached)

    # -------------------------------------------------------------------- LVLM
    @cached_property
    def service(self) -> AnswerService:
        """The LVLM behind the persistent answer cache (rewards.sqlite)."""
        from icl_kit.lvlm.registry import build_lvlm

        lvlm = build_lvlm(self.params, self.data_root)
        self.record_lvlm(lvlm)
        return AnswerService(
            lvlm,
            self.records,
            self.paths.rewards,
            batch_size=self.params.lvlm.batch_size,
            with_gt_prob=self.params.train.reward.kind == "gt_prob",
        )

    def record_lvlm(self, lvlm: Any) -> None:
        """Write the LVLM's resolved settings and batch agreement to the run folder (rank 0 only)."""
        from icl_kit.lvlm.agreement import check_agreement, write_description

        if int(os.environ.get("RANK", "0")) != 0 or not self.paths.root.is_dir():
            return
        write_description(lvlm, self.paths.root)
        check_agreement(lvlm, self.params.lvlm, self.pool_records, self.test_records, self.paths.root,
                        self.params.seed)
