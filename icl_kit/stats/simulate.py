"""Synthetic VQA-like per-question scores, for checking the tests' error rates and power."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import optimize
from scipy import stats as st

LEVELS = 3  # VQA accuracy steps: min(1, matches / 3) -> {0, 1/3, 2/3, 1}


def simulate_scores(
    rng: np.random.Generator,
    n_sims: int,
    n: int,
    shifts: Sequence[float],
    *,
    base_logit: float = 0.3,
    difficulty_sd: float = 2.5,
    noise_sd: float = 0.5,
) -> np.ndarray:
    """Synthetic per-question VQA scores of several systems on the same questions.

    For simulation s, question i, system j:
      z[s, i] ~ N(0, difficulty_sd^2)          shared difficulty -> correlation between systems
      e[j, s, i] ~ N(0, noise_sd^2)            system-specific luck
      q = sigmoid(base_logit + shifts[j] + z + e),  score = Binomial(3, q) / 3
    Systems with equal shifts are exchangeable (a true null). Returns (J, n_sims, n).
    Defaults give accuracy ~54%, between-system correlation ~0.7 and an SD of paired
    differences ~0.31, inside the 0.2-0.35 that real runs show.
    """
    z = rng.normal(0.0, difficulty_sd, size=(1, n_sims, n))
    e = rng.normal(0.0, noise_sd, size=(len(shifts), n_sims, n))
    logit = base_logit + np.asarray(shifts, float)[:, None, None] + z + e
    return rng.binomial(LEVELS, 1.0 / (1.0 + np.exp(-logit))) / LEVELS


VQA_LEVELS = np.array([0.0, 0.3, 0.6, 0.9, 1.0])  # official VQA accuracy when 0, 1, 2, 3, >= 4 annotators match
GAUSS_HERMITE_POINTS = 80  # quadrature nodes of the exact expectation over the difficulty


def _level_index(rng: np.random.Generator, logit: np.ndarray) -> np.ndarray:
    """Index into VQA_LEVELS ~ Binomial(4, sigmoid(logit)): a harder question matches fewer annotators."""
    return rng.binomial(len(VQA_LEVELS) - 1, 1.0 / (1.0 + np.exp(-logit)))


def simulate_vqa_pair(
    rng: np.random.Generator,
    n_sims: int,
    n: int,
    *,
    changed: float,
    shift: float = 0.0,
    base_logit: float = 0.3,
    difficulty_sd: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Two systems' official-VQA-like scores on the same questions, (n_sims, n) each.

    Question i has a difficulty z_i ~ N(0, difficulty_sd^2) shared by both systems. A's level
    index ~ Binomial(4, sigmoid(base_logit + z)), score VQA_LEVELS[index] (0/0.3/0.6/0.9/1).
    B answers like A except on a share `changed` of questions (drawn per question), where it
    draws its own level with logit base_logit + shift + z. shift = 0: A and B are exchangeable
    (a true null; few changed questions = a sparse null); the true mean difference is
    `true_vqa_diff(changed, shift, ...)`.
    """
    z = rng.normal(0.0, difficulty_sd, size=(n_sims, n))
    a = VQA_LEVELS[_level_index(rng, base_logit + z)]
    redrawn = VQA_LEVELS[_level_index(rng, base_logit + shift + z)]
    b = np.where(rng.uniform(size=(n_sims, n)) < changed, redrawn, a)
    return a, b


def _expected_level(logit: np.ndarray) -> np.ndarray:
    """E[VQA_LEVELS[Binomial(4, sigmoid(logit))]], elementwise."""
    k = np.arange(len(VQA_LEVELS))
    pmf = st.binom.pmf(k[None, :], len(VQA_LEVELS) - 1, 1.0 / (1.0 + np.exp(-logit))[:, None])
    return pmf @ VQA_LEVELS


def true_vqa_diff(changed: float, shift: float, *, base_logit: float = 0.3, difficulty_sd: float = 2.0) -> float:
    """The exact population mean of b - a (0..1) of `simulate_vqa_pair`, by Gauss–Hermite quadrature over z.

    E[b - a] = changed * E_z[ E[level | base + shift + z] - E[level | base + z] ].
    """
    x, w = np.polynomial.hermite_e.hermegauss(GAUSS_HERMITE_POINTS)  # weight exp(-x^2 / 2)
    z = difficulty_sd * x
    gap = _expected_level(base_logit + shift + z) - _expected_level(base_logit + z)
    return float(changed * (w @ gap) / w.sum())


MAX_SHIFT = 20.0  # logit shift: far past any reachable true difference


def shift_for_diff(changed: float, diff: float, *, base_logit: float = 0.3, difficulty_sd: float = 2.0) -> float:
    """The `shift` of `simulate_vqa_pair` whose true mean difference (0..1) is `diff` (0 -> 0, a true null), by
    root finding on `true_vqa_diff`; ValueError when `diff` is beyond what a share `changed` of changed questions
    can reach."""
    if diff == 0:
        return 0.0
    lo, hi = (0.0, MAX_SHIFT) if diff > 0 else (-MAX_SHIFT, 0.0)
    return float(optimize.brentq(lambda s: true_vqa_diff(changed, s, base_logit=base_logit,
                                                         difficulty_sd=difficulty_sd) - diff, lo, hi))
