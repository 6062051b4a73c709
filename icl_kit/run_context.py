"""The run a stage works in, in three parts: the data world, the artefact store and the LVLM service.

- `ArtefactStore`: the run folder (`RunPaths`) and what may be written into it. Nothing is written until
  `commit()`: a stage first reads the data and runs its own checks (questions, resume state, files already
  there), and only then commits, which writes params.yaml and provenance.json and the pools and embeddings
  computed so far. A refused command therefore leaves the folder as it was. The fingerprinted artefacts
  (embeddings.pt, pools.json, rollouts.jsonl, sft_data.jsonl) are reused only when their sidecars
  (icl_kit.core.artefacts) say they were made with this run's params and data (`check`).
- `DataWorld`: the questions (demonstration and test splits), their embeddings and their candidate pools.
- the LVLM service (`RunContext.answer_service`): the model behind the persistent answer cache; a stage asks
  for the service it needs (training with its reward's gt_prob, evaluation without).

Training and evaluation both start from `RunContext.build(params)`, so they see the same data, the same
candidate pools and the same answer cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from icl_kit.core.artefacts import record
from icl_kit.core.config import Params, backend_traits
from icl_kit.core.errors import KitError, few
from icl_kit.core.runs import RunPaths, prepare_run
from icl_kit.core.sidecars import check_current, is_empty, replace_with_sidecar
from icl_kit.data.records import Record
from icl_kit.lvlm.answers import AnswerService

if TYPE_CHECKING:
    from icl_kit.core.config import RewardConfig
    from icl_kit.lvlm.base import LVLM

log = logging.getLogger(__name__)
DATA_SHAPED = ("embeddings", "pools")  # artefacts made for one set of questions (their sidecars name it)


class Barrier(Protocol):
    """What `RunContext.for_ranks` needs of the process group (icl_kit.core.dist.Ranks)."""

    rank: int

    def barrier(self) -> None: ...


def data_identity(pool_records: list[Record], test_records: list[Record]) -> dict[str, Any]:
    """The questions embeddings.pt and pools.json are made for: how many, and a hash of their ids in order."""
    ids = [[r.question_id for r in pool_records], [r.question_id for r in test_records]]
    digest = hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:16]
    return {"demonstrations": len(ids[0]), "test questions": len(ids[1]), "question ids": digest}


# ------------------------------------------------------------------------------------------ the artefact store
@dataclass
class ArtefactStore:
    """The run folder and its fingerprinted artefacts; writes wait for `commit()` (a refused stage writes
    nothing)."""

    params: Params
    paths: RunPaths
    data: dict[str, Any]  # data_identity of the run's questions, recorded beside embeddings and pools
    committed: bool = False  # the stage's checks passed and the run folder may be written
    _pending: dict[str, Callable[[], None]] = field(default_factory=dict, repr=False)

    def commit(self) -> RunPaths:
        """The stage's checks passed: write params.yaml, provenance.json and what was computed so far."""
        if not self.committed:
            prepare_run(self.params, self.paths.root)
            self.committed = True
            for save in self._pending.values():
                save()
            self._pending.clear()
        return self.paths

    def record(self, name: str, source: str = "built") -> dict[str, Any]:
        """The sidecar this run writes beside artefact `name` (icl_kit.core.artefacts.record)."""
        return record(name, self.params, self.data if name in DATA_SHAPED else None, source)

    def check(self, *names: str) -> None:
        """Refuse (one KitError, nothing written) when one of these fingerprinted artefacts of the run folder was
        made with other params, data or format version than this run's, or by an older kit."""
        check_current({n: (getattr(self.paths, n), self.record(n)) for n in names})

    def save(self, name: str, save: Callable[[], None]) -> None:
        """Save now when committed, else at `commit()`."""
        if self.committed:
            save()
        else:
            self._pending[name] = save


# ------------------------------------------------------------------------------------------ the data world
@dataclass
class DataWorld:
    """The questions of a run, their embeddings (embeddings.pt) and candidate pools (pools.json)."""

    params: Params
    store: ArtefactStore
    pool_records: list[Record]  # demonstration split (also the training queries)
    test_records: list[Record]  # test split, sorted by question id

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
    def _emb(self) -> dict[str, Any]:
        from icl_kit.selection.encoders import build_encoder, cached_embeddings, embed_records, save_embeddings

        encoder = build_encoder(self.params.encoder)
        records, paths = self.pool_records + self.test_records, self.store.paths
        out = None
        if not is_empty(paths.embeddings):
            self.store.check("embeddings")
            out = cached_embeddings(paths.embeddings, [r.question_id for r in records], encoder.name)
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
            path, meta = paths.embeddings, self.store.record("embeddings")
            self.store.save("embeddings", lambda: replace_with_sidecar(
                "embeddings", path, meta, lambda: save_embeddings(path, out, encoder.name)))
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

        An existing pools.json is reused when its sidecar names these params and data (a file imported by
        `icl-kit study import-pools` keeps its source there); a stale one is refused (`ArtefactStore.check`).
        """
        from icl_kit.selection.pools import load_pools

        paths = self.store.paths
        if not is_empty(paths.pools):
            self.store.check("pools")
            pools, size = load_pools(paths.pools), self.params.pools.size
            short = [r.question_id for r in self.pool_records + self.test_records
                     if len(pools.get(r.question_id, ())) != size]
            if short:
                raise KitError(f"{paths.pools} holds no pool of pools.size={size} for {few(short, 'query')}; "
                               f"delete it and {paths.sidecar('pools').name} to rebuild it.")
            return pools
        pools = self.draw_pools()
        self.store.save("pools", lambda: self.save_pools(pools, "drawn"))
        return pools

    def save_pools(self, pools: dict[int, list[int]], source: str) -> None:
        """pools.json with its sidecar (source: 'drawn' or 'imported: FILES')."""
        from icl_kit.selection.pools import save_pools

        path, meta = self.store.paths.pools, self.store.record("pools", source)
        replace_with_sidecar("pools", path, meta, lambda: save_pools(path, pools))

    def draw_pools(self) -> dict[int, list[int]]:
        """The pools `pools.sampler` draws for every training and test query."""
        from icl_kit.selection.pools import rand_pools
        from icl_kit.study.formats.positions import SplitPositions
        from icl_kit.study.formats.sampler import study_rand_pools

        p = self.params.pools
        if p.sampler == "study_rand":
            test_ids = [r.question_id for r in self.test_records]
            return study_rand_pools(SplitPositions(self.pool_records), test_ids, p.anchors, p.size, p.seed)
        queries = [r.question_id for r in self.pool_records + self.test_records]
        return rand_pools(queries, self.pool_ids, size=p.size, seed=p.seed)

    def import_pools(self, anchors_file: str | Path, candidates_file: str | Path) -> tuple[Path, int]:
        """The study's cache files (docs/study.md, "Pools") -> pools.json: the anchors' pools from the cache,
        every other query's as `pools.sampler` draws it. Everything is checked before pools.json is written.
        -> (pools.json, number of anchors)"""
        from icl_kit.study.formats.positions import SplitPositions
        from icl_kit.study.formats.sampler import read_pool_cache

        positions = SplitPositions(self.pool_records)
        cached = read_pool_cache(anchors_file, candidates_file, len(positions), self.params.pools.size)
        pools = self.draw_pools()
        pools.update({positions.qid(a): positions.qids(pool) for a, pool in cached.items()})
        source = f"imported: {Path(anchors_file).name}, {Path(candidates_file).name}"
        self.save_pools(pools, source)
        self.__dict__["pools"] = pools  # the cached_property now holds the imported pools
        return self.store.paths.pools, len(cached)


# ------------------------------------------------------------------------------------------ the run
def _service_key(reward: RewardConfig | None) -> tuple[bool, str]:
    """(gt_prob computed, its prob_norm) of the answers a reward needs; evaluation's (None): no gt_prob."""
    if reward is None:
        return False, "sequence"
    return reward.kind == "gt_prob", reward.prob_norm


@dataclass
class RunContext:
    """A stage's run: the data world, the artefact store, and the LVLM service it asks for."""

    world: DataWorld
    store: ArtefactStore
    _services: dict[tuple[bool, str], AnswerService] = field(default_factory=dict, repr=False)

    @property
    def params(self) -> Params:
        return self.store.params

    @property
    def paths(self) -> RunPaths:
        return self.store.paths

    @classmethod
    def build(cls, params: Params, commit: bool = True) -> RunContext:
        """Read the data (building the demo world first when asked); commit the folder unless `commit=False`."""
        from icl_kit.data.demo.world import ensure_demo_world
        from icl_kit.data.okvqa import load_data

        ensure_demo_world(params.data)
        pool, test = load_data(params.data)
        store = ArtefactStore(params, RunPaths(Path(params.run_dir)), data_identity(pool, test))
        ctx = cls(DataWorld(params, store, pool, test), store)
        if commit:
            store.commit()
        return ctx

    @classmethod
    def for_ranks(cls, params: Params, ranks: Barrier, need_emb: bool = True,
                  check: Callable[[RunContext], None] | None = None) -> RunContext:
        """Rank 0 reads the data and runs the stage's `check` with nothing written; when it passes, it commits
        the run folder (params, pools, embeddings). The other ranks then read that folder."""
        ctx = None
        if ranks.rank == 0:
            ctx = cls.build(params, commit=False)
            if check is not None:
                check(ctx)  # first: a stage's own check names every stale artefact it reads at once
            ctx.store.check("pools", *(("embeddings",) if need_emb else ()))
            ctx.store.commit()
            _ = ctx.world.pools
            if need_emb:
                _ = ctx.world.embeddings
        ranks.barrier()
        if ctx is None:
            ctx = cls.build(params, commit=False)
            ctx.store.committed = True  # rank 0 committed the folder; this rank only reads what it wrote
        return ctx

    def for_seed(self, seed: int | None) -> RunContext:
        """This run as training seed `seed` of train.seeds sees it: `train.seed` = seed, the seed's own
        train_log, last.pt, rollouts and tensorboard (`RunPaths.for_seed`); the data world, the LVLM and its
        answer services are shared. None: this context."""
        if seed is None:
            return self
        params = dataclasses.replace(self.params, train=dataclasses.replace(self.params.train, seed=seed))
        store = ArtefactStore(params, self.paths.for_seed(seed), self.store.data, self.store.committed)
        ctx = dataclasses.replace(self, store=store)  # the same world and answer services (one dict)
        if "lvlm" in self.__dict__:
            ctx.__dict__["lvlm"] = self.__dict__["lvlm"]  # the model already loaded
        return ctx

    # -------------------------------------------------------------------- LVLM
    @cached_property
    def lvlm(self) -> LVLM:
        """The LVLM of `lvlm.backend` (its settings and batch agreement recorded in the run folder)."""
        from icl_kit.lvlm.registry import build_lvlm

        self.store.commit()
        lvlm = build_lvlm(self.params, self.world.data_root)
        self.record_lvlm(lvlm)
        return lvlm

    def answer_service(self, reward: RewardConfig | None = None) -> AnswerService:
        """The LVLM behind the persistent answer cache (rewards.sqlite, a run file: opening it commits).

        `reward`: the training reward whose answers it gives (gt_prob computed for `kind: gt_prob`, in its
        `prob_norm`); None for evaluation, which scores answers only."""
        key = _service_key(reward)
        if key not in self._services:
            self._services[key] = AnswerService(self.lvlm, self.world.records, self.paths.rewards,
                                                batch_size=self.params.lvlm.batch_size, with_gt_prob=key[0],
                                                prob_norm=key[1])
        return self._services[key]

    def opened_service(self, reward: RewardConfig | None = None) -> AnswerService | None:
        """The service `answer_service(reward)` opened earlier; None before (asking never opens one)."""
        return self._services.get(_service_key(reward))

    def record_lvlm(self, lvlm: LVLM) -> None:
        """Write the LVLM's resolved settings and batch agreement to the run folder (rank 0 only)."""
        from icl_kit.lvlm.agreement import check_agreement, write_description

        if int(os.environ.get("RANK", "0")) != 0 or not self.paths.root.is_dir():
            return
        write_description(lvlm, self.paths.root)
        check_agreement(lvlm, self.params.lvlm, self.world.pool_records, self.world.test_records, self.paths.root,
                        self.params.seed)


# ------------------------------------------------------------------ inputs from outside the repository
# What a run needs from outside the repository, checked before any work (no file is written). A
# researcher starting the real study on a new box has, typically, none of: the OK-VQA files, the COCO
# images, the study's config file (for its system prompt), the Qwen2.5-VL weights, the CLIP weights.
# `check_inputs` names the first one missing and how to get it, in one sentence, in seconds (no
# download, no model load), before `icl-kit run` creates the run folder.
OKVQA_URL = "https://okvqa.allenai.org"
COCO_URL = "https://cocodataset.org"
HOW_DATA = {
    "okvqa": f"OK-VQA's question and annotation files from {OKVQA_URL}",
    "vqav2": "VQAv2's question and annotation files from https://visualqa.org",
}


def check_data(params: Params) -> None:
    """The split files and the image folders exist (the demo world is built later, so it is skipped)."""
    from icl_kit.data.okvqa import IMAGE_ROOT_ENV, ROOT_ENV, STUDY_IMAGE_SUBDIR, file_names, resolve_roots

    d = params.data
    if d.demo:
        return
    env = ROOT_ENV[d.dataset]
    try:
        root, image_root = resolve_roots(d)
    except KitError:
        raise KitError(f"data.root is empty and ${env} is not set: download {HOW_DATA[d.dataset]} and set "
                       f"data.root (or export {env}) to their folder.") from None
    for split in dict.fromkeys((d.train_split, d.test_split)):
        for name in file_names(split, d.dataset):
            if not (Path(root) / name).is_file():
                raise KitError(f"{Path(root) / name} is missing: download {HOW_DATA[d.dataset]} into "
                               f"data.root={str(root)!r} (${env}).")
        images = Path(image_root) / f"{split}2014"
        if not images.is_dir():
            nested = Path(image_root) / STUDY_IMAGE_SUBDIR
            raise KitError(f"The COCO image folder {images} is missing (nor is it in {nested}/, where the study's "
                           f"${IMAGE_ROOT_ENV} keeps it one level down): "
                           f"download {split}2014 images from {COCO_URL} and set data.image_root (or export "
                           f"{IMAGE_ROOT_ENV}) to the folder holding {split}2014/.")


def check_models(params: Params) -> None:
    """The system prompt file, the LVLM and the encoder can be found (locally, or on a reachable hub)."""
    from icl_kit.core.hub import locate_model
    from icl_kit.lvlm.prompts import system_text

    system_text(params.lvlm.prompt)  # a missing study config is a KitError naming it
    weights = backend_traits(params.lvlm).weights
    if weights is not None:
        locate_model(params.lvlm.model, weights, "lvlm.model")
    if params.encoder.backend == "clip":
        locate_model(params.encoder.model, "CLIP model", "encoder.model")


def check_inputs(params: Params) -> None:
    """Every outside input of a run, in the order a researcher fetches them; the first missing is a KitError."""
    check_data(params)
    check_models(params)
