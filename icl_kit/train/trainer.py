"""Selector training: SFT on InfoScore beams, RCE warm-up, GRPO post-training; per-epoch checkpoints; exact resume.

    train(params) -> TrainResult          (CLI: `icl-kit train --params P [-p key=value]`)

Training queries are the demonstration split sorted by id: the first (1 − val_fraction)
train, the rest validate. An epoch is one pass over the training queries in a seeded
order, `batch_groups` query groups per optimiser step.

Phases run in the order sft -> rce -> grpo in one run (a phase with 0 epochs is skipped). The
policy starts fresh, or from `train.init_checkpoint` (any checkpoint icl_kit.selection.checkpoints
loads); GRPO's KL reference is the policy GRPO started from (after SFT/RCE, or the warm start).

SFT (icl_kit.train.sft) trains on sft_data.jsonl (icl_kit.train.sft_data; made here first when
`sft_data.build` and lines are missing): its training queries are the file's queries in the training
part of the split, its validation loss (val/sft_loss, logged every epoch of every phase) those in
the validation part; each query's candidates are the pool stored with its beams.

Groups (see icl_kit.train.rollouts): `rollouts.mode: offline` uses the fixed set in
rollouts.jsonl (built once from the initial selector, or imported); `online` samples
`group_size` sequences per query per step from the current policy. RCE uses the same
source as GRPO: in online mode its groups are fresh samples scored through the cache.

Per epoch: val/rce_loss (RCE loss of the validation queries' offline groups at τ_end, so
epochs are comparable), val/reward@k and val/acc@k (greedy selection at max(val_shots),
shot k = first k, through the same LVLM and cache: choose checkpoints by val/reward),
then checkpoints/{sft,rce,grpo}_epoch{N}.pt (v3, N = epoch + 1) and last.pt (resume state,
also every `save_every_steps` steps). A re-run with the same params resumes from last.pt
and ends with the same checkpoints as an uninterrupted run.

Sequences have L = max(train.reward.shots) picks: positions past the longest rewarded
prefix would carry no reward signal. Validation selects max(train.val_shots) greedily.

train_log.jsonl: one line per step {"kind": "step", "phase", "epoch" (0-based), "step" (global, 1-based),
"train/loss", "train/ppo_loss", "train/kl", "train/beta", "train/reward_mean", "train/reward_std", "train/adv_std",
"train/adv_max", "train/frac_reward_zero_std", "train/ratio_mean", "train/clip_frac", "train/clip_ratio/low",
"train/clip_ratio/high", "train/entropy", "train/grad_norm", "train/updated", "train/refill_queries" (zero_spread:
refill), "lvlm/prompts", "lvlm/calls", "lvlm/cache_hits", "time/prompts_per_s" (train.outputs.WorkLog)} (RCE
steps: loss, tau, entropy, grad norm, rewards; SFT steps: loss, grad norm, train/beam_score_mean), and
one per epoch {"kind": "epoch", "phase" ("init" = before training), val/..., "time/epoch_s",
"checkpoint"}; TensorBoard too when installed.

Several processes (`torchrun`, `accelerate launch`): data-parallel over groups, see
icl_kit.core.dist; rank 0 writes the files.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from icl_kit.core.config import Params, to_dict
from icl_kit.core.devices import resolve_device, set_deterministic
from icl_kit.core.dist import Ranks
from icl_kit.core.errors import KitError
from icl_kit.core.names import PHASES
from icl_kit.core.provenance import provenance
from icl_kit.core.runs import append_jsonl, read_jsonl
from icl_kit.lvlm.answers import AnswerService
from icl_kit.run_context import RunContext
from icl_kit.selection.checkpoints import save_v3
from icl_kit.selection.selector import PointerSelector
from icl_kit.train.batch import Batch
from icl_kit.train.math import adapt_beta, linear_tau
from icl_kit.train.outputs import TrainResult, WorkLog, best_checkpoint, combine, tensorboard_writer
from icl_kit.train.preflight import preflight
from icl_kit.train.queries import QueryTable, split_queries
from icl_kit.train.refill import refill_step
from icl_kit.train.rollouts import (
    Groups,
    build_offline_rollouts,
    load_offline_groups,
    sample_sequences,
    score_groups,
    sequence_length,
)
from icl_kit.train.sft import sft_step, validation_sft_loss, warm_start
from icl_kit.train.sft_data import build_sft_data, load_sft_split, sft_queries
from icl_kit.train.state import (
    EpochAcc,
    Position,
    load_last,
    save_last,
    set_rng_state,
    train_fingerprint,
    truncate_log,
    warn_threads,
)
from icl_kit.train.steps import NonFiniteError, grpo_step, rce_step
from icl_kit.train.validate import validate

log = logging.getLogger(__name__)

DROPOUT_SEED_STRIDE = 1_000_003  # dropout seed of a GRPO step = seed·stride + global step
EPOCH_SEED_STRIDE = 7919  # data order of (phase, epoch) = seed + stride·(1 + epoch + 1000·ORDER_INDEX[phase])
ORDER_INDEX = {"rce": 0, "grpo": 1, "sft": 2}  # sft came later: rce/grpo keep the data order they always had


class _Stop(Exception):
    """stop_after_steps reached (a simulated kill)."""


# ------------------------------------------------------------------ entry point
def train(params: Params, *, ctx: RunContext | None = None, stop_after_steps: int | None = None,
          progress: bool = True) -> TrainResult:
    """Train (or resume training) the selector of `params`; see the module doc.

    `stop_after_steps` stops once the global optimiser step count reaches it, without saving
    (as a kill would); the next call resumes from the last saved state.
    """
    set_deterministic(params.deterministic)
    ranks = Ranks.start()
    try:
        if ctx is None:
            ctx = RunContext.for_ranks(params, ranks, check=preflight)
        else:
            preflight(ctx)
        results = []
        for seed in params.train.seeds or [None]:  # train.seeds: one lineage per seed, in turn
            seed_ctx = ctx.for_seed(seed)
            results.append(Trainer(seed_ctx.params, seed_ctx, ranks, progress).run(stop_after_steps))
            if results[-1].stopped:
                break
        return combine(results)
    finally:
        ranks.close()


# ---------------------------------------------------------------------- trainer
class Trainer:
    """One training run: state, phases, epochs, steps. Rank 0 writes every file."""

    def __init__(self, params: Params, ctx: RunContext, ranks: Ranks, progress: bool = True) -> None:
        self.params, self.ctx, self.ranks = params, ctx, ranks
        self.cfg = cfg = params.train
        self.progress = progress and ranks.main
        self.device = resolve_device(cfg.device)
        self.paths = ctx.paths
        self.last_path = self.paths.last
        self.length = sequence_length(cfg)
        self.split = split_queries(ctx.world.pool_ids, cfg.rollouts.val_fraction, cfg.rollouts.max_queries)
        self.offline = cfg.rollouts.mode == "offline"
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        random.seed(cfg.seed)
        self.policy = PointerSelector(**vars(params.selector)).to(self.device)
        warm_start(self.policy, cfg.init_checkpoint)
        self.sample_gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.table = QueryTable(self.split.train + self.split.val, self._pools(), ctx.world.emb)
        self._build_rollouts()
        self.train_rows = torch.tensor([self.table.row[q] for q in self.split.train])
        self.val_groups = self._offline_groups(self.split.val) if self.split.val else None
        self.train_groups = self._offline_groups(self.split.train) if self.offline else None
        self.sft_table, self.sft_train, self.sft_val = self._sft_data() if cfg.sft.epochs else (None, None, None)
        self.fingerprint = train_fingerprint(params)
        self.pos, self.acc = Position(), EpochAcc()
        self.beta = cfg.grpo.kl_beta
        self.provenance = provenance() if ranks.main else {}  # saved in every checkpoint
        self.ref: torch.nn.Module | None = None
        self.opt = self._optimizer(self.pos.phase)
        self.writer = tensorboard_writer(self.paths.tensorboard) if ranks.main else None
        self.log_lines, self.work_log = 0, WorkLog(self.paths.lvlm_work if ranks.main else None)
        self._restore()

    # ---------------------------------------------------------------- set-up
    @property
    def service(self) -> AnswerService:  # the training reward's answers (opening it commits the run folder)
        return self.ctx.answer_service(self.cfg.reward)

    def _pools(self) -> dict[int, list[int]]:
        """pools.json, overridden by the pools stored in rollouts.jsonl (imported rollouts keep theirs)."""
        pools = dict(self.ctx.world.pools)
        for row in read_jsonl(self.paths.rollouts):
            pools[int(row["question_id"])] = [int(i) for i in row["pool"]]
        return pools

    def _build_rollouts(self) -> None:
        """Offline rollouts from the initial selector: every query in offline mode, validation ones in online."""
        qids = self.split.train + self.split.val if self.offline else self.split.val
        if self.ranks.main and qids:
            n = build_offline_rollouts(self.policy, self.table, qids, self.service, self.cfg,
                                       self.paths.rollouts, progress=self.progress,
                                       record=self.ctx.store.record("rollouts"))
            if n:
                log.info("rollouts: wrote %d queries to %s", n, self.paths.rollouts)
        self.ranks.barrier()

    def _sft_data(self) -> tuple[QueryTable, Groups, Groups | None]:
        """SFT beams: made first when missing (sft_data.build), then split into training and validation queries."""
        path = self.paths.sft_data
        if self.ranks.main and self.params.sft_data.build:
            qids = sft_queries(self.split, self.params.sft_data.max_queries)
            build_sft_data(self.service, qids, self.ctx.world.pools, self.params.sft_data, path,
                           progress=self.progress, record=self.ctx.store.record("sft_data"))
        self.ranks.barrier()
        return load_sft_split(path, self.split, self.ctx.world.emb, self.cfg.sft.beams_used)

    def _offline_groups(self, qids: list[int]) -> Groups:
        r = self.cfg.reward
        return load_offline_groups(self.paths.rollouts, self.table, qids, self.service, r.kind, r.shots)

    def _optimizer(self, phase: str) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.policy.parameters(), lr=self._phase_cfg(phase).lr,
                                 weight_decay=self.cfg.weight_decay)

    def _phase_cfg(self, phase: str) -> Any:
        """The params section of a phase (train.sft, train.rce or train.grpo)."""
        return getattr(self.cfg, phase)

    def _restore(self) -> None:
        """Continue from last.pt when present; otherwise start clean (a stale log is emptied)."""
        state = load_last(self.last_path, self.fingerprint)
        if state is None:
            if self.ranks.main:
                truncate_log(self.paths.train_log, 0)
            return
        self.pos, self.acc = Position(**state["position"]), EpochAcc.saved(state["epoch_acc"])
        self.beta = state["kl_beta"]
        self.policy.load_state_dict(state["model"])
        if state["ref_model"] is not None:
            self.ref = self._frozen_copy()
            self.ref.load_state_dict(state["ref_model"])
        self.opt = self._optimizer(self.pos.phase)
        self.opt.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"], self.sample_gen)
        warn_threads(state, self.last_path)
        self.log_lines = len(truncate_log(self.paths.train_log, state["log_lines"])) if self.ranks.main \
            else state["log_lines"]
        log.info("continuing from %s: global step %d (%s, %d epochs done, %d steps into the next)",
                 self.last_path, self.pos.global_step, self.pos.phase, self.pos.epoch, self.pos.step)

    def _frozen_copy(self) -> torch.nn.Module:
        ref = copy.deepcopy(self.policy).eval()
        for p in ref.parameters():
            p.requires_grad_(False)
        return ref

    # ------------------------------------------------------------------- loop
    def run(self, stop_after_steps: int | None = None) -> TrainResult:
        self.stop_after = stop_after_steps
        try:
            if self.log_lines == 0:
                self._log({"kind": "epoch", "phase": "init", "epoch": -1, "step": 0, **self._validate()})
                self._save_last()
            for phase in PHASES:
                if PHASES.index(self.pos.phase) > PHASES.index(phase):
                    continue
                if self.pos.phase != phase:
                    self._start_phase(phase)
                while self.pos.epoch < self._epochs(phase):
                    self._epoch(phase)
        except _Stop:
            return self._result(stopped=True)
        finally:
            if self.writer is not None:
                self.writer.flush()
        return self._result()

    def _epochs(self, phase: str) -> int:
        return self._phase_cfg(phase).epochs

    def _start_phase(self, phase: str) -> None:
        """GRPO starts from the current policy: it becomes the frozen reference; a fresh optimiser."""
        self.pos = Position(phase, 0, 0, self.pos.global_step)
        self.acc = EpochAcc()
        self.opt = self._optimizer(phase)
        self.ref = self._frozen_copy() if phase == "grpo" and self.cfg.grpo.kl_beta > 0 else None  # β 0: no KL
        self.beta = self.cfg.grpo.kl_beta

    def _epoch(self, phase: str) -> None:
        bg = self._phase_cfg(phase).batch_groups
        n = len(self.sft_train.rows) if phase == "sft" else len(self.train_rows)
        n_steps = math.ceil(n / bg)
        order_seed = self.cfg.seed + EPOCH_SEED_STRIDE * (1 + self.pos.epoch + 1000 * ORDER_INDEX[phase])
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(order_seed))
        bar = tqdm(total=n_steps, initial=self.pos.step, disable=not self.progress,
                   desc=f"{phase} epoch {self.pos.epoch + 1}/{self._epochs(phase)}")
        for s in range(self.pos.step, n_steps):
            t0 = time.perf_counter()
            self.work_log.begin_step(self.ctx.opened_service(self.cfg.reward))
            metrics = self._step(phase, perm[s * bg : (s + 1) * bg])
            self.pos.step += 1
            self.pos.global_step += 1
            seconds = time.perf_counter() - t0
            self.acc.seconds, self.acc.n_steps = self.acc.seconds + seconds, self.acc.n_steps + 1
            self.acc.kl_sum += metrics.get("train/kl") or 0.0
            self._log({"kind": "step", "phase": phase, "epoch": self.pos.epoch, "step": self.pos.global_step,
                       **metrics, **self.work_log.step(self.ctx.opened_service(self.cfg.reward), seconds)})
            bar.update(1)
            shown = "train/loss" if phase == "sft" else "train/reward_mean"
            bar.set_postfix({shown.split("/")[1]: f"{metrics[shown]:.3f}"})
            every = self.cfg.save_every_steps
            if every and self.pos.global_step % every == 0:
                self._save_last()
            if self.stop_after is not None and self.pos.global_step >= self.stop_after:
                bar.close()
                raise _Stop
        bar.close()
        self._end_epoch(phase)

    def _step(self, phase: str, idx: torch.Tensor) -> dict[str, Any]:
        step = self.pos.global_step + 1
        if phase == "sft":
            g = self.sft_train.take(idx)
            batch = self.sft_table.groups_batch(g.rows, g.seqs, g.rewards, g.mask, self.device)
        else:
            batch, extra = self._batch(idx, refill_at=step if phase == "grpo" else 0)
        try:
            if phase == "sft":
                s = self.cfg.sft
                return sft_step(self.policy, self.opt, batch, s.label_smoothing, s.beam_weight, self.cfg.grad_clip,
                                self.ranks, step)
            if phase == "rce":
                tau = linear_tau(self.pos.epoch, self.cfg.rce.epochs, self.cfg.rce.tau_start, self.cfg.rce.tau_end)
                return rce_step(self.policy, self.opt, batch, tau, self.cfg.grad_clip, self.ranks, step)
            return {**grpo_step(self.policy, self.ref, self.opt, batch, self.cfg.grpo, self.beta, self.cfg.grad_clip,
                                self.ranks, step, dropout_seed=self.cfg.seed * DROPOUT_SEED_STRIDE + step), **extra}
        except NonFiniteError as exc:
            good = self.last_path if self.last_path.is_file() else "none (no state was saved yet)"
            raise KitError(
                f"Training stopped at step {step} ({phase} epoch {self.pos.epoch + 1}): {exc}; the last good "
                f"state is {good} and nothing was saved after it; lower the learning rate or check the rewards."
            ) from None

    def _batch(self, idx: torch.Tensor, refill_at: int = 0) -> tuple[Batch, dict[str, int]]:
        """The Batch of training queries `idx`, and at GRPO step `refill_at` refilled (icl_kit.train.refill)."""
        g, extra = self._groups(idx), {}
        if refill_at:
            g, extra = refill_step(self.cfg.grpo, self._groups, g, idx, len(self.train_rows), self.cfg.seed, refill_at)
        return self.table.groups_batch(g.rows, g.seqs, g.rewards, g.mask, self.device), extra

    def _groups(self, idx: torch.Tensor) -> Groups:
        """Groups of the training queries `idx` (offline: the fixed set; online: sampled and scored now)."""
        if self.offline:
            return self.train_groups.take(idx)
        rows = self.train_rows[idx]
        seqs = sample_sequences(self.policy, self.table, rows, self.cfg.rollouts.group_size, self.length,
                                self.sample_gen, self.cfg.rollouts.online_temperature)
        rewards = self._score(rows, seqs)
        return Groups(rows, seqs, rewards, torch.ones(rewards.shape, dtype=torch.bool))

    def _score(self, rows: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        """Rewards (B, G); each rank asks the LVLM for its share of the groups, then all ranks hold all."""
        r = self.cfg.reward
        mine = self.ranks.mine(len(rows))
        rewards = torch.zeros(seqs.shape[:2])
        if len(mine):
            rewards[mine] = score_groups(self.service, self.table, rows[mine], seqs[mine], r.kind, r.shots)
        return self.ranks.sum_(rewards)

    def _end_epoch(self, phase: str) -> None:
        val = self._validate()
        n = max(self.acc.n_steps, 1)
        kl_epoch = self.acc.kl_sum / n
        beta_used = self.beta if phase == "grpo" else 0.0
        path = self.paths.epoch_checkpoint(phase, self.pos.epoch + 1)
        metrics = {**val, "train/kl_epoch": kl_epoch, "step": self.pos.global_step}
        if self.ranks.main:
            save_v3(path, self.policy, epoch=self.pos.epoch, phase=phase, kl_beta=beta_used, metrics=metrics,
                    params=to_dict(self.params), provenance=self.provenance)
        if phase == "grpo":
            self.beta = adapt_beta(self.beta, kl_epoch, self.cfg.grpo.kl_target)
        self._log({"kind": "epoch", "phase": phase, "epoch": self.pos.epoch, "step": self.pos.global_step, **val,
                   "train/kl_epoch": kl_epoch, "train/beta": beta_used, "train/beta_next": self.beta,
                   "time/epoch_s": self.acc.seconds, "checkpoint": str(path.relative_to(self.paths.root))})
        self.work_log.log(self.ctx.opened_service(self.cfg.reward), f"train: {phase} epoch {self.pos.epoch + 1}")
        self.pos = Position(phase, self.pos.epoch + 1, 0, self.pos.global_step)
        self.acc = EpochAcc()
        self._save_last()

    def _validate(self) -> dict[str, float]:
        out = {}
        if self.sft_val is not None:
            out["val/sft_loss"] = validation_sft_loss(self.policy, self.sft_table, self.sft_val,
                                                      self.cfg.sft.beam_weight, self.device)
        if self.val_groups is not None:
            out.update(validate(self.policy, self.table, self.val_groups, self.service, self.cfg, self.ranks,
                                self.device))
        return out

    # ------------------------------------------------------------------ output
    def _log(self, row: dict[str, Any]) -> None:
        self.log_lines += 1
        if not self.ranks.main:
            return
        append_jsonl(self.paths.train_log, [row])
        if self.writer is not None:
            for k, v in row.items():
                if "/" in k and isinstance(v, int | float) and not isinstance(v, bool):
                    self.writer.add_scalar(k, v, row["step"])

    def _save_last(self) -> None:
        if self.ranks.main:
            save_last(self.last_path, fingerprint=self.fingerprint, pos=self.pos, acc=self.acc, beta=self.beta,
                      policy=self.policy, ref=self.ref, opt=self.opt, sample_gen=self.sample_gen,
                      log_lines=self.log_lines)
        self.ranks.barrier()

    def _result(self, stopped: bool = False) -> TrainResult:
        rows = read_jsonl(self.paths.train_log) if self.ranks.main else []
        table = pd.DataFrame([r for r in rows if r.get("kind") == "epoch"])
        ckpts = [self.paths.root / c for c in table.get("checkpoint", pd.Series(dtype=str)).dropna()]
        return TrainResult(self.paths.root, ckpts, self.last_path, table, best_checkpoint(table, self.paths.root,
                           self.cfg.val_shots), self.pos.global_step, stopped)
