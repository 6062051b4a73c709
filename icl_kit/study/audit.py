"""`icl-kit study audit`: what each of the study's files is, and the defects it shows (docs/study.md, "Defects").

Reads any mix of the study's files and folders (walked) and reports, per file (headed by its path as the
user pointed at it), its kind and generation and every defect the file itself shows:

| code               | defect | what the file shows                                                            |
|--------------------|--------|--------------------------------------------------------------------------------|
| renamed_keys       | 3      | keys renamed by the study's converter: its inference ran untrained attention   |
| dropped_layers     | 3      | a converted file whose source had more layers than the one it kept             |
| sft_parity_targets | 4      | an SFT Lightning file (CLIP copies; losses in the name): targets were index mod 2 |
| random_selector    | 5      | RL candidates proposed by the generator's selector, which was randomly initialised |
| infoscore_mask     | 6      | Qwen InfoScore beams: the score's mask missed the chat input (negative scores)  |
| lenient_scorer     | 7      | result accuracies scored by the study's lenient scorer, not the official metric |
| off_metric         | 7      | RL candidates whose stored vqa_acc_score differs from the official VQA accuracy |
| correct_if_any     | 8      | RL candidates counted correct (vqa_correct = 1) with accuracy below 1          |
| fallback           | 8      | RL candidates scored in fallback mode (substring match, 0.5 for an empty answer) |
| pointers_len2      | —      | RL pointers all of length 2: no sequence ever trains shots 3 and 4             |
| shots_beyond       | 1, 2   | LeverLM results at shots > K = 2, the study's inference pool (train items 0, 1) |
| mixed_runs         | 17     | a results file holding several runs of one retriever (checkpoints not recorded) |
| interval_width     | 20     | runs on n questions: how wide a 95% interval of one accuracy and of a difference is |

Nothing else is reported: a finding needs evidence in the files. The wording (zh/en) is in `audit_text`.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from icl_kit.core.errors import KitError
from icl_kit.core.names import POINTS
from icl_kit.core.runs import atomic_open
from icl_kit.data.vqa_accuracy import vqa_accuracy
from icl_kit.selection.checkpoints import file_layers, read_checkpoint_file, split_layout
from icl_kit.stats.intervals import summary_intervals
from icl_kit.stats.summary import compare_summary
from icl_kit.study.formats import keys as study_keys
from icl_kit.study.formats.results import StudyRun, is_results, read_study_results
from icl_kit.study.inputs import collect, is_checkpoint

STUDY_INFERENCE_K = 2  # the LeverLM retriever's candidates are train items 0..K-1 with K = 2 (defect 1)
ACC_TOLERANCE = 1e-6
LOSS_NAME_RE = re.compile(r"_train=(?P<train>\d+(?:\.\d+)?)_val=(?P<val>\d+(?:\.\d+)?)")
TWO_CANDIDATE_CE_MAX = math.log(2)  # the most a 2-candidate cross-entropy reaches unless a target is masked
GENERATOR_METHODS = ("beam", "sample")  # RL candidates proposed by the generator's (randomly initialised) selector
BEAM_KEYS = {"id_list", "score_list"}
WIDTH_LEVEL = 0.95


@dataclass(frozen=True)
class Finding:
    """One defect a file shows: its code, defect number ('' when none), count, phrase fields."""

    code: str
    defect: str
    count: int
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class Artifact:
    """One audited file: its path as shown, kind and generation (codes phrased by audit_text), findings."""

    path: Path
    kind: str
    generation: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    shown: str = ""


# ------------------------------------------------------------------ checkpoints
def audit_checkpoint(path: Path) -> Artifact:
    obj = read_checkpoint_file(path)
    layout, state, hints = split_layout(obj, path)
    art = Artifact(path, f"checkpoint_{layout}")
    keys = list(state)
    v4 = study_keys.v4_variant(keys)
    renamed = study_keys.renamed_keys(keys)
    art.generation = v4[0] if v4 else "gate" if any(k.startswith("query_update_gate.") for k in keys) else "none"
    layer_ids = {k.split(".")[1] for k in keys if k.startswith(("cross_attn_layers.", "attn_norms."))}
    art.details["layers"] = len(layer_ids) + (1 if renamed else 0)
    if renamed:
        art.findings.append(Finding("renamed_keys", "3", len(renamed)))
        more = study_keys.source_layers(state, path, hints, file_layers)
        if more and more[0] > 1:
            art.findings.append(Finding("dropped_layers", "3", more[0] - 1, {"layers": more[0], "where": more[1]}))
    if layout == "v2":
        parity = sft_parity(path, obj)
        if parity:
            art.findings.append(parity)
    return art


def sft_parity(path: Path, obj: Any) -> Finding | None:
    """An SFT Lightning file (frozen CLIP copies beside the selector, or losses in its name): its targets were
    `index mod 2` over the sequence's own two ICDs (defect 4); losses far above ln 2 are the tell."""
    state = obj.get("state_dict") if isinstance(obj, dict) else None
    clip = sum(str(k).startswith(study_keys.CLIP_PREFIXES) for k in state) if isinstance(state, dict) else 0
    m = LOSS_NAME_RE.search(path.name)
    if not clip and m is None:
        return None
    losses = (float(m.group("train")), float(m.group("val"))) if m else None
    return Finding("sft_parity_targets", "4", 1, {"clip": clip, "losses": losses, "ln2": TWO_CANDIDATE_CE_MAX})


# --------------------------------------------------------------------- RL data
def is_rl_data(obj: Any) -> bool:
    return isinstance(obj, dict) and any(isinstance(v, dict) and "pointer_candidates" in v for v in obj.values())


def _rl_counts(entries: dict[str, Any]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for entry in entries.values():
        answers = (entry.get("query") or {}).get("gt_answers_raw")
        for c in entry.get("pointer_candidates") or []:
            if not isinstance(c, dict):
                continue
            counts["candidates"] += 1
            counts[f"len{len(c.get('pointer') or [])}"] += 1
            pred, stored = c.get("vqa_pred_answer"), c.get("vqa_acc_score")
            counts["generator"] += c.get("gen_method") in GENERATOR_METHODS
            if c.get("vqa_eval_mode") == "fallback":
                counts["fallback"] += 1
                counts["empty_half"] += pred == "" and stored == 0.5
            if isinstance(stored, int | float) and c.get("vqa_correct") == 1 and 0 < stored < 1:
                counts["correct_if_any"] += 1
            if c.get("eval_failed") or not isinstance(pred, str) or not isinstance(stored, int | float) \
                    or not isinstance(answers, list) or not answers:
                continue
            counts["off"] += abs(vqa_accuracy(pred, [str(a) for a in answers]) - float(stored)) > ACC_TOLERANCE
    return counts


def audit_rl_data(path: Path, obj: dict[str, Any]) -> Artifact:
    entries = {k: v for k, v in obj.items() if k != "_meta" and isinstance(v, dict)}
    pooled = sum("candidate_pool_ids" in v for v in entries.values())
    art = Artifact(path, "rl_data", "k64" if pooled == len(entries) else "d33" if not pooled else "mixed")
    c = _rl_counts(entries)
    total = c["candidates"]
    art.details |= {"queries": len(entries), "candidates": total}
    if c["generator"]:
        art.findings.append(Finding("random_selector", "5", c["generator"], {"total": total}))
    if c["fallback"]:
        art.findings.append(Finding("fallback", "8", c["fallback"], {"empty_half": c["empty_half"], "total": total}))
    if c["correct_if_any"]:
        art.findings.append(Finding("correct_if_any", "8", c["correct_if_any"], {"total": total}))
    if c["off"]:
        art.findings.append(Finding("off_metric", "7", c["off"], {"total": total}))
    if total and c["len2"] == total:
        art.findings.append(Finding("pointers_len2", "", total))
    return art


# --------------------------------------------------------------- InfoScore beams
def is_beam_data(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        str(k).isdigit() and isinstance(v, dict) and BEAM_KEYS <= set(v) for k, v in obj.items())


def audit_beams(path: Path, obj: dict[str, Any]) -> Artifact:
    """The InfoScore beam JSON (the SFT data): with Qwen, its scores' mask missed the chat input (defect 6)."""
    scores = [float(s) for v in obj.values() for s in v.get("score_list") or [] if isinstance(s, int | float)]
    beams = Counter(len(v.get("id_list") or []) for v in obj.values())
    shots = Counter(int(v["few_shot_num"]) for v in obj.values() if isinstance(v.get("few_shot_num"), int))
    art = Artifact(path, "sft_beams", details={"anchors": len(obj), "beams": beams.most_common(1)[0][0],
                                                 "shots": shots.most_common(1)[0][0] if shots else "?"})
    negative = sum(s < 0 for s in scores)
    if negative or "qwen" in path.name.lower():
        art.findings.append(Finding("infoscore_mask", "6", len(scores), {"negative": negative}))
    return art


# --------------------------------------------------------------------- results
def audit_results(path: Path) -> Artifact:
    runs = read_study_results(path)
    art = Artifact(path, "results", runs[0].layout)
    art.details |= {"runs": len(runs), "retrievers": sorted({r.retriever for r in runs})}
    art.findings.append(Finding("lenient_scorer", "7", sum(len(r.shots) for r in runs)))
    for run in runs:
        beyond = sorted(s for s in run.shots if s > STUDY_INFERENCE_K)
        if run.retriever.startswith("LeverLM") and beyond:
            art.findings.append(Finding("shots_beyond", "1, 2", len(beyond),
                                        {"run": run.key, "shots": beyond, "k": STUDY_INFERENCE_K}))
    by_retriever: dict[str, list[StudyRun]] = {}
    for run in runs:
        by_retriever.setdefault(run.retriever, []).append(run)
    for retriever, group in sorted(by_retriever.items()):
        if len(group) > 1:
            art.findings.append(Finding("mixed_runs", "17", len(group),
                                        {"retriever": retriever, "first": group[0].when, "last": group[-1].when}))
    art.findings += interval_widths(runs)
    return art


def interval_widths(runs: Sequence[StudyRun]) -> list[Finding]:
    """Per question count n of the runs: the 95% half-width of one accuracy (Wilson) and of a difference between
    two runs (independent proportions, as the summaries allow), at the runs' median accuracy."""
    out = []
    for n in sorted({r.n for r in runs if r.n is not None}):
        accs = [100 * a for r in runs if r.n == n for a in r.shots.values()]
        p = float(pd.Series(accs).median())
        iv = summary_intervals(pd.DataFrame({"system": ["x"], "shot": [1], "n": [n], "accuracy": [p]}), WIDTH_LEVEL)
        one = float(iv["high"].iat[0] - iv["low"].iat[0]) / 2
        diff = compare_summary(p / POINTS, p / POINTS, n, alpha=1 - WIDTH_LEVEL)
        out.append(Finding("interval_width", "20", sum(r.n == n for r in runs),
                           {"n": n, "acc": p, "one": one, "diff": (diff["ci_high"] - diff["ci_low"]) / 2,
                            "level": WIDTH_LEVEL * POINTS}))
    return out


# --------------------------------------------------------------------- caches
def audit_cache(path: Path, obj: Any) -> Artifact | None:
    """RandSampler caches: an anchor list, or {anchor: [candidates]}."""
    if isinstance(obj, list) and obj and all(isinstance(i, int) and not isinstance(i, bool) for i in obj):
        return Artifact(path, "anchor_cache", details={"anchors": len(obj)})
    if isinstance(obj, dict) and obj and all(str(k).isdigit() and isinstance(v, list) for k, v in obj.items()):
        sizes = sorted({len(v) for v in obj.values()})
        return Artifact(path, "candidate_cache", details={"anchors": len(obj), "size": sizes[0]})
    return None


# ------------------------------------------------------------------------ all
def audit_file(path: str | Path) -> Artifact:
    """The kind, generation and findings of one file (an unrecognised file is listed as such)."""
    path = Path(path)
    if not path.is_file():
        raise KitError(f"Audit input {path} does not exist; pass the study's files or folders.")
    if is_checkpoint(path):
        return audit_checkpoint(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return Artifact(path, "unknown")
    if is_rl_data(obj):
        return audit_rl_data(path, obj)
    if is_results(obj):
        return audit_results(path)
    if is_beam_data(obj):
        return audit_beams(path, obj)
    return audit_cache(path, obj) or Artifact(path, "unknown")


def audit(paths: Sequence[str | Path], out: str | Path, language: str = "zh") -> tuple[Path, list[Artifact]]:
    """Audit every file (folders walked), then write the markdown to `out` atomically. -> (out, artifacts)"""
    from icl_kit.study.audit_text import render

    arts = []
    for item in collect(paths):
        art = audit_file(item.path)
        art.shown = item.shown
        arts.append(art)
    out = Path(out)
    with atomic_open(out) as fh:
        fh.write(render(arts, language))
    return out, arts
