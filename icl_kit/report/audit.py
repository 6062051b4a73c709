"""`icl-kit audit`: what each of the study's files is, and the defects it shows (STUDY_FORMATS.md §10.2).

Reads any mix of the study's artifacts (checkpoints `.pt`/`.ckpt`, RL data, result files, RandSampler
caches) and reports, per file, its kind and generation and every defect the file itself shows:

| code            | §10.2 | what the file shows                                                             |
|-----------------|-------|---------------------------------------------------------------------------------|
| renamed_keys    | 3     | keys renamed by the study's converter: its inference ran untrained attention    |
| dropped_layers  | 3     | a converted file whose source had more layers than the one it kept              |
| fallback        | 8     | RL candidates scored in fallback mode (substring match, 0.5 for an empty answer) |
| off_metric      | 7     | RL candidates whose stored vqa_acc_score differs from the official VQA accuracy  |
| pointers_len2   | —     | RL pointers all of length 2: no sequence ever trains shots 3 and 4              |
| shots_beyond    | 1, 2  | LeverLM results at shots > K = 2, the study's inference pool (train items 0, 1) |
| mixed_runs      | 17    | a results file holding several runs of one retriever (checkpoints not recorded) |

Nothing else is reported: a finding needs evidence in the files. The wording (zh/en) is in `audit_text`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icl_kit.core.errors import KitError
from icl_kit.core.runs import atomic_open
from icl_kit.data.vqa_accuracy import vqa_accuracy
from icl_kit.evaluation.import_results import FLAT_SHOT_RE, KEY_RE, StudyRun, read_study_results
from icl_kit.selection import study_keys
from icl_kit.selection.checkpoints import file_layers, read_checkpoint_file, split_layout

STUDY_INFERENCE_K = 2  # §8.6: the LeverLM retriever's candidates are train items 0..K-1 with K = 2
ACC_TOLERANCE = 1e-6
CHECKPOINT_SUFFIXES = (".pt", ".ckpt", ".pth")


@dataclass(frozen=True)
class Finding:
    """One defect a file shows: its code, §10.2 number ('' when the table has none), count, phrase fields."""

    code: str
    defect: str
    count: int
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class Artifact:
    """One audited file: its kind and generation (codes phrased by audit_text), details and findings."""

    path: Path
    kind: str
    generation: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)


# ------------------------------------------------------------------ checkpoints
def audit_checkpoint(path: Path) -> Artifact:
    layout, state, hints = split_layout(read_checkpoint_file(path), path)
    art = Artifact(path, f"checkpoint_{layout}")
    keys = list(state)
    v4 = study_keys.v4_variant(keys)
    renamed = study_keys.renamed_keys(keys)
    if v4:
        art.generation = v4[0]
    else:
        art.generation = "gate" if any(k.startswith("query_update_gate.") for k in keys) else "none"
    layer_ids = {k.split(".")[1] for k in keys if k.startswith(("cross_attn_layers.", "attn_norms."))}
    art.details["layers"] = len(layer_ids) + (1 if renamed else 0)
    if renamed:
        art.findings.append(Finding("renamed_keys", "3", len(renamed)))
        more = study_keys.source_layers(state, path, hints, file_layers)
        if more:
            art.findings.append(Finding("dropped_layers", "3", more[0] - 1, {"layers": more[0], "where": more[1]}))
    return art


# --------------------------------------------------------------------- RL data
def is_rl_data(obj: Any) -> bool:
    return isinstance(obj, dict) and any(isinstance(v, dict) and "pointer_candidates" in v for v in obj.values())


def audit_rl_data(path: Path, obj: dict[str, Any]) -> Artifact:
    entries = {k: v for k, v in obj.items() if k != "_meta" and isinstance(v, dict)}
    pooled = sum("candidate_pool_ids" in v for v in entries.values())
    art = Artifact(path, "rl_data", "k64" if pooled == len(entries) else "d33" if not pooled else "mixed")
    lengths: Counter[int] = Counter()
    fallback = empty_half = off = n_cands = 0
    for entry in entries.values():
        answers = (entry.get("query") or {}).get("gt_answers_raw")
        for c in entry.get("pointer_candidates") or []:
            if not isinstance(c, dict):
                continue
            n_cands += 1
            lengths[len(c.get("pointer") or [])] += 1
            pred, stored = c.get("vqa_pred_answer"), c.get("vqa_acc_score")
            if c.get("vqa_eval_mode") == "fallback":
                fallback += 1
                empty_half += pred == "" and stored == 0.5
            if c.get("eval_failed") or not isinstance(pred, str) or not isinstance(stored, int | float) \
                    or not isinstance(answers, list) or not answers:
                continue
            off += abs(vqa_accuracy(pred, [str(a) for a in answers]) - float(stored)) > ACC_TOLERANCE
    art.details |= {"queries": len(entries), "candidates": n_cands}
    if fallback:
        art.findings.append(Finding("fallback", "8", fallback, {"empty_half": empty_half, "total": n_cands}))
    if off:
        art.findings.append(Finding("off_metric", "7", off, {"total": n_cands}))
    if n_cands and set(lengths) == {2}:
        art.findings.append(Finding("pointers_len2", "", n_cands))
    return art


# --------------------------------------------------------------------- results
def is_results(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and (all(FLAT_SHOT_RE.match(str(k)) for k in obj)
                                                    or all(KEY_RE.match(str(k)) for k in obj))


def audit_results(path: Path) -> Artifact:
    runs = read_study_results(path)
    art = Artifact(path, "results", runs[0].layout)
    art.details |= {"runs": len(runs), "retrievers": sorted({r.retriever for r in runs})}
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
    return art


# --------------------------------------------------------------------- caches
def audit_cache(path: Path, obj: Any) -> Artifact | None:
    """RandSampler caches (§2.1): an anchor list, or {anchor: [candidates]}."""
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
        raise KitError(f"Audit input {path} does not exist; pass the study's files (checkpoints, JSON).")
    if path.suffix in CHECKPOINT_SUFFIXES:
        return audit_checkpoint(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return Artifact(path, "unknown")
    if is_rl_data(obj):
        return audit_rl_data(path, obj)
    if is_results(obj):
        return audit_results(path)
    return audit_cache(path, obj) or Artifact(path, "unknown")


def audit(paths: list[str | Path], out: str | Path, language: str = "zh") -> tuple[Path, list[Artifact]]:
    """Audit every file, then write the markdown to `out` atomically. -> (out, artifacts)"""
    from icl_kit.report.audit_text import render

    if not paths:
        raise KitError("icl-kit audit needs at least one file; pass the study's checkpoints and JSON files.")
    arts = [audit_file(p) for p in paths]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out) as fh:
        fh.write(render(arts, language))
    return out, arts
