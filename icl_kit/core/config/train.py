"""Params of training: the SFT beam data, rewards, rollouts, and each phase (SFT, RCE, GRPO)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from icl_kit.core.config.fields import opt, section


# ---------------------------------------------------------------------------- sft
@dataclass
class SFTDataConfig:
    """InfoScore beam-search data for supervised fine-tuning (sft_data.jsonl; Lever-LM's generate_data)."""

    score: Literal["prob", "logprob"] = opt(
        "prob", "InfoScore as a difference of probabilities (Lever-LM) or of log-probabilities."
    )
    answer: Literal["most_frequent", "vqa_weighted"] = opt(
        "most_frequent", "Answer y scored: the most frequent of the 10 (as an ICD shows it), or every distinct "
        "answer weighted by min(1, count/3)."
    )
    beam_size: int = opt(5, "Beams kept per step.", min=1)
    max_shots: int = opt(2, "ICDs per beam (search steps).", min=1, max=4)
    construct_order: Literal["left", "right"] = opt(
        "left", "Each step's new ICD goes before the chosen ones (left, Lever-LM: the first chosen ends next to "
        "the query) or after them (right)."
    )
    beam_score: Literal["last_step", "cumulative"] = opt(
        "last_step", "Rank children by the last step's InfoScore (Lever-LM) or the sum of their step scores."
    )
    max_queries: int = opt(
        0, "Beam data for the first N training and the first N validation queries (sorted id); 0 = all.", min=0
    )
    build: bool = opt(
        True, "Make missing beam data with the LVLM before SFT; false = train only on what sft_data.jsonl holds "
        "(e.g. the study's beams imported with `icl-kit study import-sft-data`)."
    )
    chunk: int = opt(64, "Queries searched per batch of LVLM scores (one append to sft_data.jsonl each).", min=1)


# -------------------------------------------------------------------------- train
@dataclass
class RewardConfig:
    """How an LVLM answer becomes a reward."""

    kind: Literal["hard_plus_soft", "soft", "hard", "gt_prob"] = opt(
        "hard_plus_soft", "correct + acc (study default), acc, correct, or P(ground truth)."
    )
    shots: list[int] = opt([2], "Prefix lengths whose rewards are averaged, e.g. [1, 2, 3, 4].")


@dataclass
class RolloutsConfig:
    """Where GRPO's groups of ICD sequences come from."""

    mode: Literal["online", "offline"] = opt("online", "Sample per step (online) or a fixed set (offline).")
    group_size: int = opt(8, "Sequences sampled per query per step (online).", min=2)
    temperatures: list[float] = opt([1.0, 1.3], "Offline: sampling temperatures.")
    samples_per_temperature: int = opt(4, "Offline: samples per temperature.", min=0)
    online_temperature: float = opt(1.0, "Online: sampling temperature of the policy's groups.", min=1e-6)
    beam_size: int = opt(4, "Offline: beam sequences from the selector.", min=0)
    n_random: int = opt(2, "Offline: random sequences.", min=0)
    val_fraction: float = opt(0.2, "Held-out share of training queries (by sorted id).", min=0.0, max=0.9)
    max_queries: int = opt(0, "Use only the first N training queries (0 = all).", min=0)


@dataclass
class SFTConfig:
    """Supervised fine-tuning of the selector on the InfoScore beams (before RCE)."""

    epochs: int = opt(0, "SFT epochs (0 skips SFT).", min=0)
    lr: float = opt(1e-4, "AdamW learning rate (Lever-LM's).", min=0.0)
    label_smoothing: float = opt(0.0, "Label smoothing of each pick's cross-entropy.", min=0.0, max=1.0)
    beams_used: int = opt(0, "Train on the best N beams of each query (0 = all stored).", min=0)
    beam_weight: Literal["uniform", "rank"] = opt(
        "uniform", "Weight of a query's beams in its loss: equal, or 1/rank (normalised; best beam first)."
    )
    batch_groups: int = opt(32, "Queries (all their beams) per optimiser step.", min=1)


@dataclass
class RCEConfig:
    """Reward-weighted cross-entropy warm-up."""

    epochs: int = opt(5, "RCE epochs (0 skips the warm-up).", min=0)
    lr: float = opt(1e-4, "AdamW learning rate.", min=0.0)
    tau_start: float = opt(2.0, "Softmax temperature of the reward weights at the start.", min=1e-6)
    tau_end: float = opt(0.5, "... and at the end (linear).", min=1e-6)
    batch_groups: int = opt(32, "Query groups per optimiser step.", min=1)


@dataclass
class GRPOConfig:
    """GRPO post-training."""

    epochs: int = opt(3, "GRPO epochs.", min=0)
    lr: float = opt(1e-4, "AdamW learning rate.", min=0.0)
    batch_groups: int = opt(32, "Query groups per optimiser step (vectorised).", min=1)
    advantage: Literal["zscore", "rank", "mean_only", "batch_std"] = opt("zscore", "Advantage rule.")
    std_floor: float = opt(0.1, "zscore: floor of the group std.", min=0.0)
    adv_clip: float = opt(5.0, "zscore: advantages clipped to ±this.", min=0.0)
    clip_eps: float = opt(0.2, "PPO clip ε.", min=0.0, max=1.0)
    kl_beta: float = opt(0.1, "KL coefficient β to the frozen reference policy.", min=0.0)
    kl_target: float = opt(0.0, "Adapt β once per epoch towards this KL (0 = fixed β).", min=0.0)
    ppo_epochs: int = opt(1, "Updates per batch of groups (old log-probs fixed).", min=1)
    dropout_in_ratio: bool = opt(
        False, "Keep dropout on when computing log-probs for the ratio (old and new alike)."
    )


@dataclass
class TrainConfig:
    """Selector training: rollouts, rewards, SFT, RCE warm-up, GRPO."""

    seed: int = opt(0, "Seed of every training random choice.")
    device: str = opt("auto", "'auto' (CUDA when present, else CPU), 'cpu' or 'cuda[:i]'.")
    weight_decay: float = opt(0.01, "AdamW weight decay.", min=0.0)
    grad_clip: float = opt(1.0, "Gradient-norm clip.", min=0.0)
    val_shots: list[int] = opt([2], "Shots at which greedy validation reward is measured per epoch.")
    save_every_steps: int = opt(
        50, "Also save checkpoints/last.pt every N optimiser steps (resume mid-epoch); 0 = at epoch ends only.", min=0
    )
    init_checkpoint: str = opt(
        "", "Start from this selector checkpoint (any the kit loads: v3 .pt, v2/Lightning .ckpt, bare state "
        "dict) instead of a fresh one; '' = fresh."
    )
    reward: RewardConfig = section(RewardConfig)
    rollouts: RolloutsConfig = section(RolloutsConfig)
    sft: SFTConfig = section(SFTConfig)
    rce: RCEConfig = section(RCEConfig)
    grpo: GRPOConfig = section(GRPOConfig)
