"""Which comparisons a run makes: explicit ones (the primary family), the automatic ones, the worlds that keep
them apart, and the rows (pair, shot, subset) they come to. Pure: `icl_kit.stats.run` reads the files."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import reduce
from typing import Any

import numpy as np
import pandas as pd

from icl_kit.core.config import StatsConfig, claimed_points
from icl_kit.core.errors import KitError, few
from icl_kit.core.names import lineage
from icl_kit.evaluation.io import RUN_WORLD, STUDY_WORLD_PREFIX, imported_world
from icl_kit.stats.pooled import POOLED_SHOT
from icl_kit.stats.power import MIN_N

PRED_COLUMNS = ("system", "shot", "question_id", "acc")
SUMMARY_COLUMNS = ("system", "shot", "n", "accuracy")
ALL = "all"
PRIMARY, AUTOMATIC = "primary", "automatic"  # explicit comparisons; vs baseline and vs previous epoch
METHOD = "method"  # the automatic family of method claims (train.seeds): each method vs the baseline
METHOD_KINDS = ("method", "method_vs_baseline")  # rows tested over the seeds (icl_kit.stats.seeds)
Methods = Mapping[str, Mapping[int, str]]  # method -> {seed: system} (icl_kit.stats.seeds.seed_methods)
Scores = dict[tuple[str, int], pd.Series]  # (system, shot) -> acc indexed by question_id


# ------------------------------------------------------------------ pairs
@dataclass(frozen=True)
class Pair:
    """One comparison of B with A: kind, family, label; `shot` restricts it to one shot (None: every shot
    both have); `claimed` is the difference (points) the study claimed for it, when one was given."""

    a: str
    b: str
    kind: str
    family: str
    label: str = ""
    shot: int | None = None
    claimed: float = math.nan


def world_label(world: str) -> str:
    """What a world is, in words (for refusals): this run's evaluation or the study's reported numbers."""
    if world == RUN_WORLD:
        return "evaluated per question in this run"
    rest = world.removeprefix(STUDY_WORLD_PREFIX)
    questions = "its whole test split" if rest == "all" else f"its first {rest.removeprefix('first')} test questions"
    return f"the study's reported numbers on {questions}"


def system_worlds(scores: Scores, imported: pd.DataFrame | None) -> dict[str, str]:
    """system -> world: RUN_WORLD for every system with per-question scores, else its imported world."""
    worlds: dict[str, str] = {}
    if imported is not None and not imported.empty:
        world = imported["world"] if "world" in imported else [imported_world(n, False) for n in imported["n"]]
        worlds = dict(zip(imported["system"].astype(str), map(str, world), strict=True))
    return worlds | {s: RUN_WORLD for s, _ in scores}


def comparison_pairs(
    systems: Iterable[str],
    baseline: str,
    lineages: Mapping[str, Mapping[int, str]],
    explicit: Iterable[Pair] = (),
    worlds: Mapping[str, str] | None = None,
    automatic: bool = True,
    methods: Methods | None = None,
) -> list[Pair]:
    """Explicit pairs (primary family), then, with `automatic`, each system of the baseline's world vs the
    baseline and each epoch vs the previous one (automatic family) and, for a run of several training seeds,
    each method vs the baseline over the seeds (method family); duplicates dropped per family."""
    worlds = worlds or {}
    out = list(explicit)
    if automatic:
        out += [Pair(baseline, m, "method_vs_baseline", METHOD) for m in methods or {} if m != baseline]
        home = worlds.get(baseline, RUN_WORLD)
        out += [Pair(baseline, s, "vs_baseline", AUTOMATIC) for s in systems
                if s != baseline and worlds.get(s, RUN_WORLD) == home]
        for by_epoch in lineages.values():
            chain = list(by_epoch.values())
            out += [Pair(a, b, "epoch_vs_previous", AUTOMATIC) for a, b in zip(chain, chain[1:], strict=False)]
    seen: set[tuple] = set()
    return [c for c in out if (key := (c.a, c.b, c.family, c.shot)) not in seen and not seen.add(key)]


def common_ids(sa: pd.Series, sb: pd.Series, ids: set[Any] | None) -> pd.Index:
    common = sa.index.intersection(sb.index)
    if ids is not None:
        common = common[common.isin(list(ids))]
    return common.sort_values()


def explicit_pairs(cfg: StatsConfig, systems: list[str], pairs: Iterable[tuple[str, str]] = (),
                   worlds: Mapping[str, str] | None = None, methods: Methods | None = None) -> list[Pair]:
    """`stats.comparisons` (and programmatic `pairs`) as primary-family pairs. A system without results, or
    two systems of different worlds (this run's evaluation, the study's reported numbers on some questions),
    is a KitError: such a difference would compare two different experiments. A name that is a method of
    several training seeds (`methods`: 'grpo_epoch5' for grpo_epoch5_seed0, _seed1, ...) makes a method pair,
    tested over the seeds."""
    worlds, methods = worlds or {}, methods or {}
    entries = [dict(c) for c in cfg.comparisons] + [{"a": a, "b": b} for a, b in pairs]
    out = []
    for c in entries:
        missing = [s for s in (c["a"], c["b"]) if s not in systems and s not in methods]
        if missing:
            raise KitError(f"stats.comparisons names {missing}, which have no results; choose from "
                           f"{few(list(methods) + systems, 'system', 5)}.")
        if c["a"] in methods or c["b"] in methods:
            out.append(Pair(c["a"], c["b"], "method", PRIMARY, str(c.get("label") or ""), c.get("shot"),
                            claimed_points(c.get("claimed"))))
            continue
        wa, wb = worlds.get(c["a"], RUN_WORLD), worlds.get(c["b"], RUN_WORLD)
        if wa != wb:
            raise KitError(f"Comparison {c['b']} vs {c['a']} is refused: {c['a']} is {world_label(wa)}, {c['b']} "
                           f"is {world_label(wb)}, so the difference would mix two worlds; compare systems of one "
                           "world (re-measure the study's checkpoints in this run to compare them with it).")
        out.append(Pair(c["a"], c["b"], "explicit", PRIMARY, str(c.get("label") or ""), c.get("shot"),
                        claimed_points(c.get("claimed"))))
    return out


# ------------------------------------------------------------------ rows
def _pair_jobs(c: Pair, shots: list[int], scores: Scores, summ: Mapping, worlds: Mapping[str, str],
               subsets: list) -> list:
    jobs = []
    for k in shots if c.shot is None else [c.shot]:
        ka, kb = (c.a, k), (c.b, k)
        if ka in scores and kb in scores:
            for subset, ids in subsets:
                common = common_ids(scores[ka], scores[kb], ids)
                if len(common) >= MIN_N:
                    jobs.append((c, k, subset, common))
        elif ka in summ and kb in summ:  # both imported, of one world: one approximate row, filed under it
            jobs.append((c, k, worlds[c.a], None))
        elif c.shot is not None:
            lacking = c.a if ka not in scores and ka not in summ else c.b
            raise KitError(f"stats.comparisons asks for {c.b} vs {c.a} at shot {k}, but {lacking} has no result "
                           "at that shot; drop the shot or choose one both have.")
    return jobs


def pooled_shots(c: Pair, shots: list[int], scores: Scores) -> list[int]:
    """The shots a pair's pooled row covers: every shot where both have per-question scores, for an explicit
    pair over every shot (`shot` not given) with at least two; [] otherwise (no pooled row)."""
    both = [k for k in shots if (c.a, k) in scores and (c.b, k) in scores]
    return both if c.family == PRIMARY and c.shot is None and len(both) >= 2 else []


def _pooled_jobs(c: Pair, shots: list[int], scores: Scores, subsets: list) -> list:
    """(pair, POOLED_SHOT, subset, the questions both have at every pooled shot) of an explicit pair's pooled row."""
    both = pooled_shots(c, shots, scores)
    out = []
    for subset, ids in subsets if both else []:
        common = reduce(pd.Index.intersection, [common_ids(scores[(c.a, k)], scores[(c.b, k)], ids) for k in both])
        if len(common) >= MIN_N:
            out.append((c, POOLED_SHOT, subset, common.sort_values()))
    return out


def method_seeds(c: Pair, methods: Methods) -> list[int]:
    """The seeds a method pair is tested over: B's (and A's, when both are methods: those both have)."""
    sides = [set(methods[x]) for x in (c.a, c.b) if x in methods]
    return sorted(set.intersection(*sides))


def method_columns(c: Pair, shot: int, scores: Scores, methods: Methods) -> tuple[list, list] | None:
    """(A's, B's) per-seed score series of a method pair at `shot`, or None where one is missing."""
    seeds = method_seeds(c, methods)
    sides = [[(methods[x][s] if x in methods else x, shot) for s in seeds] for x in (c.a, c.b)]
    if len(seeds) < 2 or any(k not in scores for side in sides for k in side):
        return None
    return [scores[k] for k in sides[0]], [scores[k] for k in sides[1]]


def method_shots(c: Pair, shots: list[int], scores: Scores, methods: Methods) -> list[int]:
    """The shots a method pair's pooled row covers: every shot where each seed of both sides has scores, for an
    explicit pair over every shot with at least two (as `pooled_shots`); [] otherwise."""
    both = [k for k in shots if method_columns(c, k, scores, methods) is not None]
    return both if c.family == PRIMARY and c.shot is None and len(both) >= 2 else []


def _method_jobs(c: Pair, shots: list[int], scores: Scores, methods: Methods, subsets: list) -> list:
    """A method pair's rows: each shot, then (an explicit pair over every shot) pooled over the shots."""
    out = []
    pooled = method_shots(c, shots, scores, methods)
    for k, over in [(k, [k]) for k in (shots if c.shot is None else [c.shot])] + ([(POOLED_SHOT, pooled)]
                                                                                 if pooled else []):
        cols = [method_columns(c, j, scores, methods) for j in over]
        if any(col is None for col in cols):
            if c.shot is not None:
                raise KitError(f"stats.comparisons asks for {c.b} vs {c.a} at shot {k} over the training seeds, "
                               "but not every seed has a result at that shot; drop the shot or evaluate it.")
            continue
        series = [s for a, b in cols for s in a + b]  # type: ignore[misc]
        for subset, ids in subsets:
            common = reduce(pd.Index.intersection, [s.index for s in series])
            common = common[common.isin(list(ids))] if ids is not None else common
            if len(common) >= MIN_N:
                out.append((c, k, subset, common.sort_values()))
    return out


def jobs(scores: Scores, summ: Mapping, worlds: Mapping[str, str], comparisons: list[Pair], subsets: list,
         shots: list, methods: Methods | None = None) -> list:
    """(pair, shot, subset, common ids or None for summary mode) of every row that can be computed. An
    automatic row that repeats an explicit one (same A, B, shot and subset) is dropped: it is one question.
    An explicit pair over every shot also gets, after its per-shot rows, one row per subset pooled over the
    shots (shot POOLED_SHOT, `icl_kit.stats.pooled`), in the primary family."""
    jobs = [j for c in comparisons for j in (
        _method_jobs(c, shots, scores, methods or {}, subsets) if c.kind in METHOD_KINDS
        else _pair_jobs(c, shots, scores, summ, worlds, subsets) + _pooled_jobs(c, shots, scores, subsets))]
    primary = {(c.a, c.b, k, sub) for c, k, sub, _ in jobs if c.family == PRIMARY}
    return [j for j in jobs if j[0].family == PRIMARY or (j[0].a, j[0].b, j[1], j[2]) not in primary]


# ------------------------------------------------------------------ inputs (tables already read)
def _require(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KitError(f"{what} lacks column(s) {missing}; re-run the evaluator that writes it.")


def per_question_scores(predictions: pd.DataFrame) -> Scores:
    """(system, shot) -> Series of acc (0..1) indexed by question_id; duplicates are an error."""
    if predictions.empty:
        return {}
    _require(predictions, PRED_COLUMNS, "predictions")
    dup = predictions.duplicated(["system", "shot", "question_id"])
    if dup.any():
        row = predictions[dup].iloc[0]
        raise KitError(
            f"predictions hold question {row.question_id!r} twice for system {row.system!r} shot "
            f"{row.shot}; remove the duplicate lines from eval/predictions.jsonl."
        )
    return {(str(s), int(k)): g.set_index("question_id")["acc"].astype(float)
            for (s, k), g in predictions.groupby(["system", "shot"], sort=True)}


def summary_accuracies(summary: pd.DataFrame | None) -> dict[tuple[str, int], tuple[float, int]]:
    """(system, shot) -> (accuracy percent, n) from an eval/summary.csv-like table."""
    if summary is None or summary.empty:
        return {}
    _require(summary, SUMMARY_COLUMNS, "summary table")
    return {(str(r.system), int(r.shot)): (float(r.accuracy), int(r.n)) for r in summary.itertuples()}


def epoch_systems(predictions: pd.DataFrame) -> dict[str, dict[int, str]]:
    """Checkpoint lineages: name stem ('grpo_epoch3' -> 'grpo_epoch') -> {epoch: system}."""
    if "epoch" not in predictions.columns:
        return {}
    rows = predictions[["system", "epoch"]].dropna().drop_duplicates()
    out: dict[str, dict[int, str]] = {}
    for r in rows.itertuples():
        out.setdefault(lineage(r.system), {})[int(r.epoch)] = str(r.system)
    return {stem: dict(sorted(m.items())) for stem, m in sorted(out.items())}


def subset_ids(predictions: pd.DataFrame, specs: Iterable[int | str]) -> list[tuple[str, set[Any] | None]]:
    """("all", None) and one (name, ids) per `stats.subsets` entry smaller than the run.

    N or 'first:N' -> 'firstN' (the N smallest ids); 'random:N:SEED' -> 'randomN_seedSEED', N ids
    drawn without replacement from the sorted ids by numpy's generator seeded with SEED.
    """
    out: list[tuple[str, set[Any] | None]] = [(ALL, None)]
    if predictions.empty:
        return out
    ids = sorted(predictions["question_id"].unique())
    for spec in specs:
        parts = [str(spec)] if isinstance(spec, int) else str(spec).split(":")
        n = int(parts[-1] if len(parts) <= 2 else parts[1])
        if n >= len(ids):
            continue  # the same questions as "all"
        if parts[0] == "random":
            pick = np.random.default_rng(int(parts[2])).choice(len(ids), size=n, replace=False)
            out.append((f"random{n}_seed{parts[2]}", {ids[i] for i in pick}))
        else:
            out.append((f"first{n}", set(ids[:n])))
    return list(dict((name, (name, sub)) for name, sub in out).values())
