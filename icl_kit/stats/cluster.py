"""Clustered inference (`stats.cluster: image`): the questions of one image are not independent.

VQAv2 asks about 5 questions per image, OK-VQA about one. When one system answers an image's questions
better than another (it sees the image better), their differences move together, and a test that takes the
questions as independent units reads too small a spread: its p and interval are too small. With clusters
the units of a comparison are the G images:

- p: the sign-flip test flips whole clusters (`exact.sign_flip_p(clusters=...)`). Under the null each
  image's summed difference K_c is symmetric about 0, so S = sum_c +-K_c; the K_c are still integers of the
  1/30 lattice, and the null of S is the same exact convolution, over the cluster sums.
- interval: the configured method (`stats.interval`) applied to one value per cluster, the linearised
  ratio estimator z_c = d_bar + (G / n) (T_c - d_bar m_c) (T_c the cluster's summed difference, m_c its
  questions; `pseudo_values`). mean(z) = d_bar, and var(z) / G = G / (G - 1) sum_c (T_c - d_bar m_c)^2 / n^2
  is the CR1 cluster-robust variance of a mean (Stata's `mean, vce(cluster)`), on G - 1 degrees of freedom:
  with `t` this is the textbook cluster-robust t interval, with `t_changed` (the default) the same on
  (clusters holding a changed question - 1) df, with `score` the G values are tilted as questions are, with
  `bca` / `percentile` the clusters are resampled. Chosen over cluster totals scaled by n
  (z_c = T_c G / n), which adds the spread of the cluster sizes times the mean difference to the variance.
  Every cluster of one question gives z_c = d_c exactly, so the unclustered interval.
- MDE and n needed: the paired t power at G units with the SD of the z_c, that is, with the observed design
  effect (var(z) / G over var(d) / n, said in the note); n needed is returned in questions, as clusters of
  the observed mean size n / G.
- TOST: when a cluster has two or more questions, the larger of the exact per-question TOST p (whose tilted
  null guards the case of few changed questions) and the paired t TOST on the z_c (which carries the
  clustering); the equivalence verdict also needs the cluster-robust 1 - 2 alpha interval inside +-delta.
- The sign test and Wilcoxon stay per question (for reference).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np
import pandas as pd
from statsmodels.stats.weightstats import ttost_paired

from icl_kit.core.errors import KitError
from icl_kit.core.names import POINTS
from icl_kit.stats.diff_intervals import DEGENERATE_TOL

NO_IMAGE_ID = ("stats.cluster=image needs each question's image, and eval/predictions.jsonl has lines without image_id "
               "(written before the evaluation recorded it); run `icl-kit eval` again with the run's params, which "
               "adds image_id to the lines already there without asking the LVLM again, or set stats.cluster: none.")


def cluster_codes(clusters: Sequence[Hashable] | np.ndarray | None, n: int) -> np.ndarray | None:
    """Cluster ids (one per question) as codes 0..G-1 in order of first appearance; None stays None."""
    if clusters is None:
        return None
    ids = np.asarray(clusters)
    if ids.shape != (n,):
        raise KitError(f"clusters must give one id per paired question ({n}); got shape {ids.shape}.")
    if pd.isna(ids).any():
        raise KitError("clusters contain a missing id; give every question its image id.")
    return pd.factorize(ids)[0].astype(np.int64)


def pseudo_values(x: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """One value per cluster with mean(x) as their mean: mean(x) + (G / n)(X_c - mean(x) m_c), computed as
    X_c r - mean(x)(m_c r - 1) with r = G / n, so that clusters of one question give x itself, bit for bit."""
    g = int(codes.max()) + 1
    r = g / x.size
    sums = np.bincount(codes, weights=x, minlength=g)
    sizes = np.bincount(codes, minlength=g)
    return sums * r - float(x.mean()) * (sizes * r - 1)


def clustered_tost(t_p: float, ua: np.ndarray, ub: np.ndarray, n: int, margin: float) -> float:
    """TOST p with clusters: max(per-question exact p, paired t TOST on the cluster values) when some cluster
    has two or more questions (G < n) and the cluster values vary; else the per-question p."""
    if ua.size == n or np.ptp(ub - ua) <= DEGENERATE_TOL:
        return t_p
    return max(t_p, float(ttost_paired(ub, ua, -margin / POINTS, margin / POINTS)[0]))


def cluster_note(d: np.ndarray, z: np.ndarray) -> str:
    """'G clusters of m questions on average, design effect D' (D: variance of the mean with clusters over
    that with independent questions)."""
    n, g = d.size, z.size
    v_ind = float(np.var(d, ddof=1)) / n if n > 1 else math.nan
    v_clu = float(np.var(z, ddof=1)) / g if g > 1 else math.nan
    deff = f", design effect {v_clu / v_ind:.2f}" if v_ind > DEGENERATE_TOL**2 and math.isfinite(v_clu) else ""
    return f"{g} clusters of {n / g:.2f} questions on average{deff}"


def question_images(predictions: pd.DataFrame, cluster: str) -> pd.Series | None:
    """question_id -> image_id of the predictions when `stats.cluster` is 'image' (else None). Lines without
    image_id (files written before the evaluation recorded it) are a KitError naming the fix."""
    if cluster == "none" or predictions.empty:
        return None
    if "image_id" not in predictions.columns or predictions["image_id"].isna().any():
        raise KitError(NO_IMAGE_ID)
    pairs = predictions[["question_id", "image_id"]].drop_duplicates()
    twice = pairs["question_id"].duplicated()
    if twice.any():
        q = pairs.loc[twice, "question_id"].iloc[0]
        raise KitError(f"eval/predictions.jsonl gives question {q!r} two image ids; evaluate the run again in a "
                       "fresh eval folder.")
    return pairs.set_index("question_id")["image_id"]
