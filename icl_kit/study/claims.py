"""The claims a re-test puts to the numbers: the study's own (a claims YAML file) or every pair of its systems.

A claim is `{a, b, shot?, claimed?, label?}`: system B against system A at one shot (every shot both
have when `shot` is left out), with the difference the study claimed for it, in points. Claims become
the primary family of the run's statistics (`stats.comparisons`), so they are adjusted together and
nothing else dilutes them.

Default claims: every pair of imported systems of one world at every shot both have, in the study's
direction: B is the newer or trained system, A the older or the baseline (a random, zero-shot or
similarity retriever, or the flat random-baseline file, comes first; then by the run's date). Their
`claimed` is the difference the study's own files show.

A claims file (`--claims FILE`) is a YAML list, or a mapping with a `claims:` list, of such entries,
written as the study wrote them, e.g. `{a: baseline, b: grpo_epoch1, shot: 2, claimed: "+1.0"}`; the mapping
may also name the study's runs (`names: {FILE_OR_ENTRY: NAME}`, as `--name` does), so one file holds the
whole question put to the study.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from icl_kit.core.config import StatsConfig, claimed_points, load_yaml_text, validate_stats
from icl_kit.core.errors import KitError, few
from icl_kit.core.names import POINTS
from icl_kit.study.import_results import NamedRun

CLAIM_EXAMPLE = "claims: [{a: baseline, b: grpo_epoch1, shot: 2, claimed: '+1.0'}]"


def claim_label(a: str, b: str) -> str:
    """The default label of a claim: 'B vs A'."""
    return f"{b} vs {a}"


def reported_diff(runs: Sequence[NamedRun], a: str, b: str, shot: int) -> float | None:
    """B − A in points at `shot` from the imported numbers (None when either lacks the shot)."""
    by_name = {r.name: r for r in runs}
    ra, rb = by_name.get(a), by_name.get(b)
    if ra is None or rb is None or shot not in ra.run.shots or shot not in rb.run.shots:
        return None
    return round((rb.run.shots[shot] - ra.run.shots[shot]) * POINTS, 6)


def default_claims(runs: Sequence[NamedRun]) -> list[dict[str, Any]]:
    """Every pair of one world at every shot both have, older (or baseline) first; claimed = the files' diff."""
    order = sorted(runs, key=lambda r: (not r.run.is_baseline, r.run.when, str(r.run.path), r.run.key))
    claims = []
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            if a.world != b.world:
                continue
            for shot in sorted(set(a.run.shots) & set(b.run.shots)):
                claims.append({"a": a.name, "b": b.name, "shot": shot, "label": claim_label(a.name, b.name),
                               "claimed": reported_diff(runs, a.name, b.name, shot)})
    return claims


def read_claims(path: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """(claims, names as 'FILE_OR_ENTRY=NAME') of a YAML file, claims checked like stats.comparisons; a bad
    file is one KitError naming it."""
    path = Path(path)
    if not path.is_file():
        raise KitError(f"Claims file {path} does not exist; write one such as: {CLAIM_EXAMPLE}.")
    try:
        raw = load_yaml_text(path.read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - any YAML or encoding error is the same sentence
        raise KitError(f"Claims file {path} is not valid YAML; write it as: {CLAIM_EXAMPLE}.") from None
    claims = raw.get("claims") if isinstance(raw, dict) else raw
    names = raw.get("names", {}) if isinstance(raw, dict) else {}
    unknown = sorted(set(raw) - {"claims", "names"}) if isinstance(raw, dict) else []
    if not isinstance(claims, list) or not claims or unknown:
        raise KitError(f"Claims file {path} must hold a non-empty list of claims (and optionally names), e.g. "
                       f"{CLAIM_EXAMPLE}.")
    if not isinstance(names, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in names.items()):
        raise KitError(f"Claims file {path}: names must map FILE_OR_ENTRY to NAME, e.g. names: "
                       "{'metrics.json:2025-12-20': grpo_epoch1}.")
    try:
        validate_stats(StatsConfig(comparisons=claims))
    except KitError as exc:
        raise KitError(f"Claims file {path}: {str(exc).replace('stats.comparisons', 'claims')}") from None
    return [dict(c) for c in claims], [f"{k}={v}" for k, v in names.items()]


def resolve_claims(claims: Sequence[dict[str, Any]], runs: Sequence[NamedRun]) -> list[dict[str, Any]]:
    """Claims over the imported systems: names checked, label and claimed filled in, one entry per shot."""
    names = {r.name: r for r in runs}
    out: list[dict[str, Any]] = []
    for i, c in enumerate(claims):
        missing = [s for s in (c["a"], c["b"]) if s not in names]
        if missing:
            raise KitError(f"Claim {i + 1} ({c['b']} vs {c['a']}) names {missing}, which no imported run is called; "
                           f"choose from {few(sorted(names), 'run', 5)} (or name the runs with --name "
                           "FILE_OR_ENTRY=NAME).")
        shots = [c["shot"]] if c.get("shot") is not None else sorted(set(names[c["a"]].run.shots)
                                                                      & set(names[c["b"]].run.shots))
        for shot in shots:
            reported = reported_diff(runs, c["a"], c["b"], shot)
            if reported is None:
                raise KitError(f"Claim {i + 1} ({c['b']} vs {c['a']}) is at shot {shot}, which one of them has no "
                               "result for; drop the shot or correct the claim.")
            claimed = claimed_points(c.get("claimed"))
            out.append({"a": c["a"], "b": c["b"], "shot": shot, "label": c.get("label") or claim_label(c["a"], c["b"]),
                        "claimed": reported if claimed != claimed else claimed})  # nan: the files' own diff
    seen: set[tuple[str, int]] = set()
    for c in out:
        if (c["label"], c["shot"]) in seen:
            raise KitError(f"Two claims are both {c['label']!r} at shot {c['shot']}; give each claim its own label.")
        seen.add((c["label"], c["shot"]))
    return out
