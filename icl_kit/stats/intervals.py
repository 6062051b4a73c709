"""Accuracy intervals of one system at one shot.

Per-question systems: Student-t interval of the mean per-question accuracy,

    acc ± t_{1-α/2, n-1} · sd(acc) / sqrt(n)          (points; clipped to 0..100)

Summary-only systems (imported, no per-question data): Wilson interval of a
binomial proportion with n trials, an approximation (VQA acc takes values in
{0, 1/3, 2/3, 1}, whose variance is at most the binomial one, so it is conservative).
"""

from __future__ import annotations

import math

import pandas as pd
from scipy import stats as st
from statsmodels.stats.proportion import proportion_confint

from icl_kit.core.config.params import ALPHA
from icl_kit.core.errors import KitError
from icl_kit.core.names import POINTS, natural_key

LEVEL = 1 - ALPHA  # the default level of an interval (stats.alpha's default)
INTERVAL_COLUMNS = ["system", "epoch", "shot", "n", "accuracy", "low", "high"]


def mean_interval(acc: pd.Series, level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high) in points of per-question accuracies in 0..1 (t interval, clipped)."""
    n = int(acc.size)
    mean = float(acc.mean())
    if n < 2:
        return mean * POINTS, math.nan, math.nan
    half = float(st.t.ppf(0.5 + level / 2, n - 1) * acc.std(ddof=1) / math.sqrt(n))
    return mean * POINTS, max(mean - half, 0.0) * POINTS, min(mean + half, 1.0) * POINTS


def accuracy_intervals(predictions: pd.DataFrame, level: float = LEVEL) -> pd.DataFrame:
    """(system, epoch, shot, n, accuracy, low, high) from predictions.jsonl rows."""
    missing = {"system", "shot", "acc"} - set(predictions.columns)
    if missing:
        raise KitError(f"predictions lack columns {sorted(missing)}; run the evaluation stage first.")
    rows = []
    for (system, shot), g in predictions.groupby(["system", "shot"], sort=False):
        epoch = g["epoch"].dropna().iloc[0] if "epoch" in g and g["epoch"].notna().any() else None
        acc, low, high = mean_interval(g["acc"].astype(float), level)
        rows.append({"system": system, "epoch": epoch, "shot": int(shot), "n": len(g),
                     "accuracy": acc, "low": low, "high": high})
    return order_rows(pd.DataFrame(rows, columns=INTERVAL_COLUMNS))


def summary_intervals(summary: pd.DataFrame, level: float = LEVEL) -> pd.DataFrame:
    """Wilson intervals for summary-only rows (system, shot, n, accuracy in percent)."""
    out = summary[["system", "shot", "n", "accuracy"]].copy()
    low, high = proportion_confint(out["accuracy"] / POINTS * out["n"], out["n"], alpha=1 - level,
                                   method="wilson")
    out["low"], out["high"], out["epoch"] = low * POINTS, high * POINTS, None
    return order_rows(out[INTERVAL_COLUMNS])


def order_rows(df: pd.DataFrame) -> pd.DataFrame:
    order = sorted(range(len(df)), key=lambda i: (natural_key(str(df["system"].iat[i])), int(df["shot"].iat[i])))
    return df.iloc[order].reset_index(drop=True)
