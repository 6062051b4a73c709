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
    prob_norm: Literal["sequence", "token_mean"] = opt(
        "sequence", "P(y | ·) behind InfoScore: the product of the answer's token probabilities (sequence), or "
        "exp(mean token log-prob) (token_mean, what Lever-LM and the study use). With one answer string "
        "(answer: most_frequent) token_mean is P^(1/n), a monotone transform, so the candidates added to one "
        "context rank alike (score: logprob only rescales by 1/n); they differ for answer: vqa_weighted (answers "
        "of different lengths summed), across beams of different parents with score: prob, and in the scores' "
        "magnitudes."
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
    prob_norm: Literal["sequence", "token_mean"] = opt(
        "sequence", "gt_prob: P(a | prompt) of each ground-truth answer a as the product of its tokens' "
        "probabilities (sequence), or exp(mean token log-prob) (token_mean, Lever-LM's and the study's). For one "
        "answer string token_mean is P^(1/n), a monotone transform, so it ranks a query's prompts alike; it "
        "differs when several answers of different lengths are weighted and summed, and in the reward's "
        "magnitudes (closer to 1, compressed spreads), hence in every advantage but rank."
    )


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
    advantage: Literal["zscore", "rank", "mean_only", "batch_std", "rloo"] = opt(
        "zscore", "Advantage rule: zscore (GRPO, Shao et al. 2024), rank, mean_only (Dr. GRPO: r − group mean), "
        "batch_std (TRL scale_rewards='batch'), or rloo: A_i = r_i − mean of the OTHER rewards of the group (RLOO, "
        "Ahmadian et al. 2024, 'Back to Basics'; TRL's RLOOTrainer). rloo's baseline excludes the sequence itself "
        "(unbiased); it is n/(n−1) times mean_only, unscaled: no std floor or clip applies, so its size follows "
        "the reward's scale and a group's spread (a low-spread group weighs less, unlike zscore)."
    )
    std_floor: float = opt(0.1, "zscore: floor of the group std.", min=0.0)
    adv_clip: float = opt(5.0, "zscore: advantages clipped to ±this.", min=0.0)
    clip_eps: float = opt(0.2, "PPO clip ε (the lower side, 1 − ε; also the upper one unless clip_eps_high).",
                          min=0.0, max=1.0)
    clip_eps_high: float | None = opt(
        None, "Upper clip ε_high: the ratio is clipped to [1 − clip_eps, 1 + clip_eps_high]; null = clip_eps "
        "(symmetric). DAPO's clip-higher (Yu et al. 2025; TRL epsilon_high, e.g. 0.28 with ε = 0.2): a pick the old "
        "policy found unlikely may gain more probability per update, which keeps exploring (entropy falls more "
        "slowly) at the cost of a looser trust region on the rising side.", min=0.0,
    )
    ratio: Literal["product", "per_pick_mean"] = opt(
        "product", "Importance ratio of a k-pick selection: the product of the k per-pick ratios (the sequence's "
        "own ratio, PPO/GRPO), or their geometric mean exp(mean log-ratio) (GSPO, Zheng et al. 2025: the sequence "
        "ratio normalised by length; TRL importance_sampling_level='sequence'). The product's clip range "
        "[1 − ε, 1 + ε] bounds the joint change, so the range each pick may move tightens as k grows (about ε/k "
        "per pick); the geometric mean keeps one range per selection, the same for every k, so a long selection "
        "moves as far per pick as a short one (a looser trust region on the whole selection)."
    )
    entropy_coef: float = opt(
        0.0, "Entropy bonus c: c × mean entropy of each pick's softmax over the remaining candidates is "
        "subtracted from the loss (PPO's entropy bonus, Schulman et al. 2017; verl actor.entropy_coeff). It keeps "
        "the pick distributions spread (more exploration, fewer groups whose rewards all tie) at the cost of "
        "pulling the policy away from the reward's optimum; 0 = off.", min=0.0,
    )
    zero_spread: Literal["drop", "refill"] = opt(
        "drop", "Groups whose rewards all tie have zero advantage: drop them (the step trains on fewer groups), or "
        "refill: draw further training queries (not already in the step, in an order seeded by train.seed and the "
        "step) until the step has as many groups with reward spread as it drew queries (DAPO's dynamic "
        "sampling, Yu et al. 2025). refill keeps every step's batch full at the cost of extra LVLM rewards, at "
        "most refill_max_queries per step; a refilled query may also come up in another step of the epoch."
    )
    refill_max_queries: int = opt(
        64, "zero_spread: refill: extra training queries drawn per step at most (the step trains on fewer "
        "groups when they run out).", min=0,
    )
    kl_beta: float = opt(
        0.1, "KL coefficient β to the frozen reference policy; 0 = no KL term (TRL's default; Dr. GRPO and DAPO "
        "drop it): the reference is then neither kept nor evaluated and train/kl logs 0, which saves its pass and "
        "its copy but lets the policy drift from where GRPO started (kl_target cannot raise a β of 0).", min=0.0,
    )
    kl_target: float = opt(0.0, "Adapt β once per epoch towards this KL (0 = fixed β).", min=0.0)
    ppo_epochs: int = opt(1, "Updates per batch of groups (old log-probs fixed).", min=1)
    dropout_in_ratio: bool = opt(
        False, "Keep dropout on when computing log-probs for the ratio (old and new alike)."
    )


@dataclass
class TrainConfig:
    """Selector training: rollouts, rewards, SFT, RCE warm-up, GRPO."""

    seed: int = opt(0, "Seed of every training random choice.")
    seeds: list[int] = opt(
        [], "Train the same params once per seed listed (e.g. [0, 1, 2]; each replaces train.seed), one lineage "
        "each: checkpoints/{phase}_epoch{N}_seed{S}.pt, train_log_seed{S}.jsonl, checkpoints/last_seed{S}.pt, "
        "rollouts_seed{S}.jsonl. Statistics then test methods (e.g. grpo_epoch5 over the seeds) as well as "
        "checkpoints (docs/statistics.md, 'This checkpoint, or this method (training seeds)'). [] = one run "
        "with train.seed."
    )
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
