"""The verdict of one comparison from its adjusted p-values and its TOST interval."""

from __future__ import annotations

import re


def verdict(p_adj: float, tost_p_adj: float, diff: float, alpha: float, margin: float, tost_low: float,
            tost_high: float) -> str:
    """'better' / 'worse' (B vs A) if p_adj < alpha; 'equivalent (±δ)' if the adjusted TOST p < alpha
    AND the 1 - 2 alpha interval [tost_low, tost_high] lies inside ±δ; else 'inconclusive'."""
    if p_adj < alpha:  # nan compares False: never significant
        return "better" if diff > 0 else "worse"
    if tost_p_adj < alpha and -margin < tost_low and tost_high < margin:
        return f"equivalent (±{margin:.1f})"
    return "inconclusive"


EQUIV_RE = re.compile(r"equivalent\s*\(±\s*([0-9.]+)\)")


def verdict_kind(verdict: str) -> str:
    """'better' | 'worse' | 'equivalent' | 'inconclusive' from a comparisons.csv verdict."""
    v = str(verdict).strip().lower()
    if v in ("better", "worse", "inconclusive"):
        return v
    if v.startswith("equivalent"):
        return "equivalent"
    return "inconclusive"


def verdict_margin(verdict: str, default: float) -> float:
    m = EQUIV_RE.search(str(verdict))
    return float(m.group(1)) if m else default


def claim_holds(verdict: str, diff: float, claimed: float | None = None) -> bool:
    """A claim holds when its verdict is a significant difference in the claimed direction (the sign of
    `claimed`, or of the measured `diff` when nothing was claimed). Equivalence never makes a gain hold."""
    kind = verdict_kind(verdict)
    direction = diff if claimed is None or claimed != claimed else claimed  # nan: nothing claimed
    return (kind == "better" and direction > 0) or (kind == "worse" and direction < 0)
