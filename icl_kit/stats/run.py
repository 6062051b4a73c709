"""Run-level statistics: every comparison of a run, adjusted as one family, written to stats/.

Reads `eval/predictions.jsonl` (one line per system, shot, question; `acc` in 0..1)
and optionally `eval/summary.csv` (system, shot, n, accuracy in percent) for
systems known only by summaries (imported old results). Writes
`stats/comparisons.csv` (one row per system A, system B, shot, subset; an explicit pair over every shot
also gets one row pooled over the shots, `shot` = -1 and `shots` listing them, `icl_kit.stats.pooled`) and
`stats/summary.json` (verdict counts, best-epoch max-T per shot and joint over the shots, the "honest number").
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from functools import reduce
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm  # plain bar: no ipywidgets needed in notebooks

from icl_kit.core.config import StatsConfig
from icl_kit.core.errors import KitError, few
from icl_kit.core.names import POINTS, method_of, seed_of
from icl_kit.core.runs import RunPaths, atomic_open, atomic_write_json, json_safe, read_jsonl
from icl_kit.evaluation.io import PRED_FIELDS, read_imported
from icl_kit.evaluation.select import run_folder, run_params
from icl_kit.stats.best_epoch import max_t_best_epoch, max_t_joint
from icl_kit.stats.cluster import question_images
from icl_kit.stats.intervals import LEVEL, accuracy_intervals, order_rows, summary_intervals
from icl_kit.stats.paired import adjust, compare_paired, compare_summary, verdict
from icl_kit.stats.pairs import (  # noqa: F401 - re-exported: the run's comparisons are asked for here
    ALL,
    AUTOMATIC,
    METHOD_KINDS,
    PRIMARY,
    Methods,
    Pair,
    Scores,
    comparison_pairs,
    epoch_systems,
    explicit_pairs,
    jobs,
    method_columns,
    method_shots,
    per_question_scores,
    pooled_shots,
    subset_ids,
    summary_accuracies,
    system_worlds,
    world_label,
)
from icl_kit.stats.pooled import POOLED_SHOT, compare_pooled, shots_field
from icl_kit.stats.power import MIN_N
from icl_kit.stats.results import RunResults
from icl_kit.stats.schema import COLUMNS, StatsSummary, comparisons_frame, stats_summary
from icl_kit.stats.seeds import compare_seeds, seed_methods

VAL_REWARD_KEY = "val/reward"  # train_log.jsonl: per-epoch lines carry "epoch" and this key



def _paired_row(sa: pd.Series, sb: pd.Series, common: pd.Index, cfg: StatsConfig, family_size: int,
                images: pd.Series | None = None) -> dict:
    return compare_paired(sa.loc[common].to_numpy(), sb.loc[common].to_numpy(), n_boot=cfg.n_boot,
                          n_perm=cfg.n_perm, seed=cfg.seed, alpha=cfg.alpha, interval=cfg.interval,
                          equivalence_margin=cfg.equivalence_margin, power=cfg.power, family_size=family_size,
                          clusters=None if images is None else images.loc[common].to_numpy())


def _pooled_row(scores: Scores, c: Pair, shots: list[int], common: pd.Index, cfg: StatsConfig, family_size: int,
                images: pd.Series | None = None) -> dict:
    """B vs A pooled over `shots` on the questions both have at each (`icl_kit.stats.pooled`)."""
    a = np.stack([scores[(c.a, k)].loc[common].to_numpy() for k in shots])  # (K, n)
    b = np.stack([scores[(c.b, k)].loc[common].to_numpy() for k in shots])
    return compare_pooled(a, b, n_boot=cfg.n_boot, n_perm=cfg.n_perm, seed=cfg.seed, alpha=cfg.alpha,
                          interval=cfg.interval, equivalence_margin=cfg.equivalence_margin, power=cfg.power,
                          family_size=family_size, clusters=None if images is None else images.loc[common].to_numpy())


def _method_row(scores: Scores, c: Pair, shots: list[int], common: pd.Index, methods: Methods, cfg: StatsConfig,
                family_size: int) -> dict:
    """B vs A as methods over the training seeds (`icl_kit.stats.seeds`), at one shot or, each question's scores
    averaged over `shots`, pooled over them."""
    def side(i: int) -> np.ndarray:  # (seeds, questions), the mean over the shots
        return np.mean([np.stack([s.loc[common].to_numpy() for s in method_columns(c, k, scores, methods)[i]])
                        for k in shots], axis=0)

    return compare_seeds(side(0), side(1), alpha=cfg.alpha, power=cfg.power, family_size=family_size)


def _summary_of(key: tuple[str, int], scores: Scores, summ: Mapping) -> tuple[float, int] | None:
    if key in scores:
        return float(scores[key].mean() * 100), int(scores[key].size)
    return summ.get(key)


# ------------------------------------------------------------------ run
def run_stats(
    predictions: pd.DataFrame,
    cfg: StatsConfig,
    *,
    summary: pd.DataFrame | None = None,
    pairs: Iterable[tuple[str, str]] = (),
    epoch_chain: bool = True,
    progress: bool = False,
) -> pd.DataFrame:
    """All comparisons of a run, p adjusted within each family, verdicts assigned.

    Comparisons: `cfg.comparisons` and `pairs` (family "primary"; those over every shot also pooled over the
    shots, one row per subset with shot POOLED_SHOT, in the same family); with `cfg.automatic`, every system of
    the baseline's world vs `cfg.baseline` at every shot both have and, with `epoch_chain`, each checkpoint
    epoch vs the previous one of its lineage (family "automatic"). Paired when both sides have per-question
    scores (subsets "all" and each `cfg.subsets` entry smaller than the run); two imported systems of one
    world are compared from their summaries (approximate), filed under their world as the subset (e.g.
    'study_first100'). Systems of different worlds are never compared. Family = (subset, family): p and
    TOST p are corrected with `cfg.correction` within it; MDE and n needed use alpha / (family size). With
    `cfg.cluster` 'image', paired rows take the predictions' image_id as clusters (`icl_kit.stats.cluster`).
    """
    scores, images = per_question_scores(predictions), question_images(predictions, cfg.cluster)
    summ = summary_accuracies(summary)
    worlds = system_worlds(scores, summary)
    systems = sorted({s for s, _ in set(scores) | set(summ)})
    if not systems:
        raise KitError("The run has no results to compare; evaluate systems or import the study's results first.")
    if cfg.automatic and cfg.baseline not in systems:
        raise KitError(f"stats.baseline={cfg.baseline!r} has no results; choose one of the "
                       f"{few(systems, 'system', 5)}, or set stats.automatic: false to compare only "
                       "stats.comparisons.")
    lineages = epoch_systems(predictions) if epoch_chain else {}
    methods = seed_methods(s for s, _ in scores)
    comparisons = comparison_pairs(systems, cfg.baseline, lineages,
                                   explicit_pairs(cfg, systems, pairs, worlds, methods), worlds, cfg.automatic,
                                   methods)
    shots = sorted({k for _, k in set(scores) | set(summ)})
    todo = jobs(scores, summ, worlds, comparisons, subset_ids(predictions, cfg.subsets), shots, methods)
    sizes = pd.Series([(sub, c.family) for c, _, sub, _ in todo]).value_counts().to_dict() if todo else {}
    rows = []
    for c, shot, subset, common in tqdm(todo, desc="stats", disable=not progress):
        m = sizes[(subset, c.family)]
        method = c.kind in METHOD_KINDS
        pooled = [shot] if shot != POOLED_SHOT else method_shots(c, shots, scores, methods) if method \
            else pooled_shots(c, shots, scores)
        if method:
            res = _method_row(scores, c, pooled, common, methods, cfg, m)
        elif shot == POOLED_SHOT:
            res = _pooled_row(scores, c, pooled, common, cfg, m, images)
        elif common is not None:
            res = _paired_row(scores[(c.a, shot)], scores[(c.b, shot)], common, cfg, m, images)
        else:
            (acc_a, n_a), (acc_b, n_b) = _summary_of((c.a, shot), scores, summ), _summary_of((c.b, shot), scores, summ)
            res = compare_summary(acc_a / POINTS, acc_b / POINTS, n_a, n_b=n_b, alpha=cfg.alpha, power=cfg.power,
                                  equivalence_margin=cfg.equivalence_margin, family_size=m)
        rows.append({**res, "system_a": c.a, "system_b": c.b, "shot": shot, "subset": subset, "kind": c.kind,
                     "family": c.family, "family_size": m, "label": c.label, "claimed": c.claimed,
                     "shots": shots_field(pooled)})
    df = pd.DataFrame(rows, columns=COLUMNS)
    return assign_verdicts(df, cfg)


def assign_verdicts(df: pd.DataFrame, cfg: StatsConfig) -> pd.DataFrame:
    """Adjust p and TOST p within each family (subset, family); set the verdict from the adjusted values."""
    df = df.copy()
    for _, idx in df.groupby(["subset", "family"], sort=False).groups.items():
        df.loc[idx, "p_adj"] = adjust(df.loc[idx, "p"].to_numpy(float), cfg.correction)
        df.loc[idx, "tost_p_adj"] = adjust(df.loc[idx, "tost_p"].to_numpy(float), cfg.correction)
    df["verdict"] = [verdict(r.p_adj, r.tost_p_adj, r.diff, cfg.alpha, cfg.equivalence_margin, r.tost_low,
                             r.tost_high) for r in df.itertuples()]
    return df


# ------------------------------------------------------------------ best epoch
def best_epoch_tests(predictions: pd.DataFrame, cfg: StatsConfig) -> list[dict[str, Any]]:
    """Per lineage and shot: is the best epoch better than the baseline after selection (max-T, `scope`
    'shot')? Then per lineage tested at two or more shots, one joint max-T over every (epoch, shot) with one
    sign flip per question shared by all of them (`scope` 'joint', `shot` 'all', `best_shot` the shot picked):
    the test of "the best checkpoint at some shot", which the per-shot rows are not."""
    scores = per_question_scores(predictions)
    out = []
    for stem, by_epoch in epoch_systems(predictions).items():
        epochs, frames = list(by_epoch), {}
        for shot in sorted({k for _, k in scores}):
            keys = [(s, shot) for s in by_epoch.values()]
            if len(keys) < 2 or (cfg.baseline, shot) not in scores or any(k not in scores for k in keys):
                continue
            frame = pd.concat([scores[(cfg.baseline, shot)]] + [scores[k] for k in keys], axis=1,
                              join="inner").sort_index()
            if len(frame) < MIN_N:
                continue
            frames[shot] = frame
            res = max_t_best_epoch(frame.iloc[:, 1:].to_numpy().T, frame.iloc[:, 0].to_numpy(),
                                   n_perm=cfg.n_perm, seed=cfg.seed)  # one-sided, "better"; exact when feasible
            out.append({"lineage": stem, "scope": "shot", "shot": shot, "best_epoch": epochs[res["best_index"]],
                        "best_system": keys[res["best_index"]][0], "epochs": epochs, **res})
        joint = _joint_best_epoch(stem, by_epoch, frames, cfg) if len(frames) >= 2 else None
        out += [joint] if joint else []
    return out


def _joint_best_epoch(stem: str, by_epoch: Mapping[int, str], frames: Mapping[int, pd.DataFrame],
                      cfg: StatsConfig) -> dict[str, Any] | None:
    """The joint max-T of a lineage over the shots of `frames` (baseline, then each epoch, by question), on the
    questions every shot has (`icl_kit.stats.best_epoch.max_t_joint`); None with fewer than MIN_N of them."""
    shots = sorted(frames)
    common = reduce(pd.Index.intersection, [frames[k].index for k in shots]).sort_values()
    if len(common) < MIN_N:
        return None
    cube = np.stack([frames[k].loc[common].to_numpy().T for k in shots])  # (S, 1 + E, n)
    res = max_t_joint(cube[:, 1:], cube[:, 0], n_perm=cfg.n_perm, seed=cfg.seed)
    e = res["best_epoch_index"]
    return {"lineage": stem, "scope": "joint", "shot": "all", "shots": shots,
            "best_shot": shots[res["best_shot_index"]], "best_epoch": list(by_epoch)[e],
            "best_system": list(by_epoch.values())[e], "epochs": list(by_epoch), **res}


def honest_number(
    val_rewards: Mapping[int, float],
    comparisons: pd.DataFrame,
    lineage: Mapping[int, str],
    baseline: str,
    subset: str = ALL,
) -> dict[str, Any]:
    """How the best-on-VALIDATION epoch fares on test vs the baseline (no test-set selection).

    Contrasted with the best-on-test epoch per shot, whose gain is optimistic by selection.
    """
    usable = {e: r for e, r in val_rewards.items() if e in lineage and np.isfinite(r)}
    if not usable:
        raise KitError(f"No validation reward matches the evaluated {few(lineage, 'epoch', 5)}; "
                       "evaluate the checkpoints the training log lists.")
    best_epoch = max(sorted(usable), key=lambda e: usable[e])  # ties: earliest
    system = lineage[best_epoch]
    rows = comparisons[(comparisons.system_a == baseline) & (comparisons.subset == subset)
                       & (comparisons.kind == "vs_baseline")]
    mine = rows[rows.system_b == system]
    ours = rows[rows.system_b.isin(list(lineage.values()))]
    best_test = ours.loc[ours.groupby("shot")["diff"].idxmax()] if len(ours) else ours
    fields = ["shot", "system_b", "diff", "ci_low", "ci_high", "p_adj", "verdict"]
    return {"best_val_epoch": best_epoch, "system": system, "val_reward": usable[best_epoch],
            "on_test": _records(mine[fields]), "best_on_test": _records(best_test[fields])}


def read_val_rewards(train_log: str | Path, phase: str | None = None) -> dict[int, float]:
    """{epoch: validation reward} from train_log.jsonl epoch lines (last wins).

    The trainer logs `val/reward@K` per validation shot K; their mean is the epoch's reward.
    A plain `val/reward` (older logs) is read as is. `phase` keeps only that phase's lines.
    """
    out: dict[int, float] = {}
    for r in read_jsonl(train_log):
        if r.get("epoch") is None or (phase is not None and r.get("phase") != phase):
            continue
        shots = [float(v) for k, v in r.items() if k.startswith(VAL_REWARD_KEY + "@") and v is not None]
        if shots:
            out[int(r["epoch"])] = sum(shots) / len(shots)
        elif r.get(VAL_REWARD_KEY) is not None:
            out[int(r["epoch"])] = float(r[VAL_REWARD_KEY])
    return out


# ------------------------------------------------------------------ outputs
def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return json_safe(df.to_dict(orient="records"))


def summarise(df: pd.DataFrame, cfg: StatsConfig, best_epoch: list[dict[str, Any]] | None = None,
              honest: dict[str, dict[str, Any]] | None = None) -> StatsSummary:
    """stats/summary.json of the comparisons `df` made with `cfg` (icl_kit.stats.schema)."""
    counts = {sub: g["verdict"].value_counts().to_dict() for sub, g in df.groupby("subset", sort=False)}
    families = {f"{sub}/{fam}": len(g) for (sub, fam), g in df.groupby(["subset", "family"], sort=False)}
    return StatsSummary(len(df), families, counts, cfg, best_epoch or [], honest or {})


def write_outputs(run_dir: str | Path, df: pd.DataFrame, summary: StatsSummary) -> Path:
    """Write stats/comparisons.csv and stats/summary.json atomically; return the stats folder."""
    paths = RunPaths(Path(run_dir))
    with atomic_open(paths.comparisons, "w") as fh:
        df[COLUMNS].to_csv(fh, index=False)
    atomic_write_json(paths.stats_summary, json_safe(summary.to_json()))
    return paths.stats_dir


def read_comparisons(run_dir: str | Path) -> pd.DataFrame:
    """stats/comparisons.csv, checked against its schema (icl_kit.stats.schema)."""
    path = RunPaths(Path(run_dir)).comparisons
    return comparisons_frame(pd.read_csv(path), str(path))


def read_stats_summary(run_dir: str | Path) -> StatsSummary:
    """stats/summary.json, checked against its schema (icl_kit.stats.schema)."""
    path = RunPaths(Path(run_dir)).stats_summary
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raw = None
    return stats_summary(raw, str(path))


def stats_are_current(run_dir: str | Path, cfg: StatsConfig) -> bool:
    """Were the run's stats/ made with `cfg`? (stats/summary.json records the config it was made with.)"""
    if not RunPaths(Path(run_dir)).stats_summary.is_file():
        return False
    try:
        recorded = read_stats_summary(run_dir).config
    except KitError:
        return False  # another version's summary: made again
    return _json(recorded) == _json(cfg)


def _json(cfg: StatsConfig) -> Any:
    return json.loads(json.dumps(json_safe(dataclasses.asdict(cfg))))


def load_run_tables(run_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(predictions, summary-only systems or None) of a run folder.

    Summary-only systems are the imported old results (`eval/imported.csv`); systems
    with predictions are always compared per question. Missing predictions is a KitError.
    """
    paths = RunPaths(Path(run_dir))
    rows = read_jsonl(paths.predictions)
    imported = read_imported(run_dir)
    if not rows and imported.empty:
        raise KitError(f"{paths.predictions} is missing or empty and nothing was imported; run the evaluation "
                       "stage first (or import the study's results with `icl-kit study import-results`).")
    return pd.DataFrame(rows), (None if imported.empty else imported)


def stats_for_run(
    run_dir: str | Path, cfg: StatsConfig, *, progress: bool = True
) -> tuple[pd.DataFrame, StatsSummary]:
    """The whole stage on a run folder: comparisons, best-epoch max-T, honest number, outputs.

    Returns (comparisons, summary); both are written to stats/ (comparisons.csv, summary.json).
    """
    predictions, summary_only = load_run_tables(run_dir)
    df = run_stats(predictions, cfg, summary=summary_only, progress=progress)
    honest = {}
    for stem, by_epoch in epoch_systems(predictions).items():
        phase = method_of(stem).removesuffix("_epoch")  # grpo_epoch(_seed1) -> the trainer's "grpo" epoch lines
        val = read_val_rewards(RunPaths(Path(run_dir), seed_of(stem)).train_log, phase=phase)
        if set(val) & set(by_epoch):
            honest[stem] = honest_number(val, df, by_epoch, cfg.baseline)
    summary = summarise(df, cfg, best_epoch_tests(predictions, cfg), honest)
    write_outputs(run_dir, df, summary)
    return df, summary


def run_intervals(run_dir: str | Path, level: float = LEVEL) -> pd.DataFrame:
    """Intervals of every system of a run at `level` (the report passes 1 - stats.alpha): evaluated
    (predictions.jsonl) and imported (imported.csv)."""
    rows = read_jsonl(RunPaths(Path(run_dir)).predictions)
    imported = read_imported(run_dir)
    if not rows and imported.empty:
        raise KitError(f"{run_dir}/eval/predictions.jsonl is missing or empty and nothing was imported; run the "
                       "evaluation stage first.")
    parts = ([accuracy_intervals(pd.DataFrame(rows), level)] if rows else []) + \
        ([summary_intervals(imported, level)] if len(imported) else [])
    return order_rows(pd.concat(parts, ignore_index=True)) if len(parts) > 1 else parts[0]


def save_stats_figure(fig: Any, run_dir: str | Path, name: str) -> Path:
    """Save a figure of notebook 03 as `stats/<name>` in the run folder (atomic); return its path."""
    from icl_kit.stats.plots import save_figure

    return save_figure(fig, RunPaths(Path(run_dir)).stats_dir / name)


# ------------------------------------------------------------------ a run's results
def load_run(run_dir: str | Path) -> RunResults:
    """A run folder's results, read-only: its params and the tables of eval/ and stats/ (None for those not
    made yet). `run_dir` is the folder (or a RunResults / Params naming it); nothing is written. A folder
    without params.yaml is a KitError."""
    root = run_folder(run_dir)
    params = run_params(root)
    paths = RunPaths(root)
    rows = read_jsonl(paths.predictions) if paths.predictions.is_file() else None
    return RunResults(
        run_dir=root,
        params=params,
        comparisons=read_comparisons(root) if paths.comparisons.is_file() else None,
        summary=read_stats_summary(root) if paths.stats_summary.is_file() else None,
        accuracy=pd.read_csv(paths.summary) if paths.summary.is_file() else None,
        predictions=None if rows is None else pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(PRED_FIELDS)),
    )
