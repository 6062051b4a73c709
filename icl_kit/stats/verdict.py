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


def p_ci_disagree(p: float, low: float, high: float, alpha: float) -> bool:
    """Whether a row's p and its 1 - alpha interval say different things about 0: p < alpha while the interval
    covers 0, or p >= alpha while it excludes 0. They can: the exact sign-flip p tests that B and A are
    exchangeable (each difference as likely + as -), the interval is for the mean difference, and with few
    changed questions the two part (six gains of +1 among 100, none lost: p = 2/2^6 = 0.031, the interval
    [-0.1, +12.1]). A missing p or end is no disagreement."""
    if not all(x == x for x in (p, low, high)):  # NaN
        return False
    return bool((p < alpha) != (low > 0 or high < 0))


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
