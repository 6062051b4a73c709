"""The embedded demo world: a small OK-VQA-layout dataset made on the spot, no downloads.

`build_demo_world(out)` writes, deterministically from a seed:

    OpenEnded_mscoco_{train,val}2014_questions.json   mscoco_{train,val}2014_annotations.json
    {train,val}2014/COCO_{split}2014_{image_id:012d}.jpg        (IMAGE_SIZE² JPEGs)
    demo_latent.json     per-question latent attributes (the loader ignores it)
    demo_manifest.json   the settings; written last, so a killed build is detected

train2014 is the demonstration pool, val2014 the test questions. Each image
shows 1-5 copies of one concept (demo_concepts.CONCEPTS) on a background;
questions are visual (color, count, object) or need a fact about the concept
(kb_property, kb_use, kb_place). Each has 10 annotator answers whose agreement
falls with the question's latent difficulty, so the most common answer's VQA
accuracy is 1.0, 0.9, ... as in real data. The latent sidecar feeds the
simulated LVLM (icl_kit.lvlm.simulated), never the selector.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import ndtr

from icl_kit.core.config import DataConfig
from icl_kit.core.errors import KitError
from icl_kit.core.runs import atomic_write_bytes, atomic_write_json
from icl_kit.data.demo.concepts import (
    CATEGORY_WORDS,
    CONCEPTS,
    QUESTION_TYPES,
    TEMPLATES,
    Concept,
    fact_answers,
)
from icl_kit.data.demo.render import render
from icl_kit.data.okvqa import file_names, image_path, load_split, resolve_roots
from icl_kit.data.vqa_accuracy import most_common_answer, normalize_answer, vqa_accuracy

DEMO_VERSION = 1  # bump when the world's content changes for a given seed
MANIFEST = "demo_manifest.json"
BUILDING = ".demo_building"  # present while a build runs; a leftover means a killed build
LATENT = "demo_latent.json"
SPLITS = ("train", "val")  # pool, test
ANSWERS = 10
MAX_IMAGE_ID = 600_000
JPEG_QUALITY = 90

# Latent difficulty (logit units) = type offset + concept offset + question noise.
TYPE_DIFFICULTY = {"color": -1.0, "count": -0.3, "object": -0.6,
                   "kb_property": 0.6, "kb_use": 0.3, "kb_place": 0.5}
CONCEPT_DIFFICULTY_SD = 0.4
QUESTION_DIFFICULTY_SD = 1.0
DIFFICULTY_SD = float(np.sqrt(np.var(list(TYPE_DIFFICULTY.values())) + CONCEPT_DIFFICULTY_SD**2
                              + QUESTION_DIFFICULTY_SD**2))
# Annotator agreement: how many of 10 give the canonical answer, P(m) for m = 2..10;
# harder questions agree less (correlation AGREEMENT_DIFFICULTY_CORR on the normal scale).
AGREEMENT_PROBS = (0.05, 0.10, 0.08, 0.08, 0.09, 0.10, 0.10, 0.12, 0.28)
MIN_AGREEMENT = 2
ALT_CAP = 2  # an alternative answer is given at most max(ALT_CAP, m - 1) times
AGREEMENT_DIFFICULTY_CORR = 0.5
WRONG_ANSWER_WEIGHT = 0.15  # an annotator's chance weight of a wrong answer vs a variant
WRONG_ALTERNATIVES = 2  # wrong answers some annotators may give
COUNT_WEIGHTS = (0.2, 0.3, 0.25, 0.15, 0.1)  # count questions: 1..5 objects
OTHER_COUNT_WEIGHTS = (0.6, 0.25, 0.15)  # other questions: 1..3 objects


# ------------------------------------------------------------------- one question
def _agreement(difficulty: float, rng: np.random.Generator) -> int:
    """Annotators (of 10) giving the top answer; falls with difficulty."""
    c = AGREEMENT_DIFFICULTY_CORR
    z = -c * difficulty / DIFFICULTY_SD + np.sqrt(1 - c * c) * rng.normal()
    cum = np.cumsum(AGREEMENT_PROBS)
    return MIN_AGREEMENT + int(np.searchsorted(cum, ndtr(z) * cum[-1]))


def _annotate(top: str, variants: tuple[str, ...], wrong: tuple[str, ...], m_top: int,
              rng: np.random.Generator) -> list[str]:
    """10 answers: `top` m_top times, the rest variants or wrong answers (ties possible at m_top = 2)."""
    alts = list(dict.fromkeys(a for a in variants if a != top))
    n_var = len(alts)
    alts += [w for w in wrong if w not in alts and w != top][:WRONG_ALTERNATIVES]
    weights = np.array([1.0 / (i + 1) for i in range(n_var)] + [WRONG_ANSWER_WEIGHT] * (len(alts) - n_var))
    cap = max(ALT_CAP, m_top - 1)
    assert cap * len(alts) >= ANSWERS - m_top, "too few alternative answers"
    counts = Counter({a: 0 for a in alts})
    for _ in range(ANSWERS - m_top):
        open_ = np.array([counts[a] < cap for a in alts])
        w = weights * open_
        counts[alts[rng.choice(len(alts), p=w / w.sum())]] += 1
    answers = [top] * m_top + [a for a in alts for _ in range(counts[a])]
    return [answers[i] for i in rng.permutation(ANSWERS)]


def _question(split: str, image_id: int, concept_difficulty: dict[str, float],
              rng: np.random.Generator) -> tuple[dict, dict, dict, Concept, int]:
    """(question entry, annotation entry, latent entry, concept, object count)."""
    qtype = QUESTION_TYPES[rng.integers(len(QUESTION_TYPES))]
    concept = CONCEPTS[rng.integers(len(CONCEPTS))]
    count_weights = COUNT_WEIGHTS if qtype == "count" else OTHER_COUNT_WEIGHTS
    count = 1 + int(rng.choice(len(count_weights), p=count_weights))
    template = TEMPLATES[qtype][concept.category]
    text = template[rng.integers(len(template))].format(
        cat=CATEGORY_WORDS[concept.category], plural=concept.plural)
    top, variants, wrong = fact_answers(concept, qtype, count)
    wrong = tuple(wrong[i] for i in rng.permutation(len(wrong)))
    difficulty = (TYPE_DIFFICULTY[qtype] + concept_difficulty[concept.name]
                  + QUESTION_DIFFICULTY_SD * rng.normal())
    answers = _annotate(top, variants, wrong, _agreement(difficulty, rng), rng)
    qid = image_id * 10 + 5  # OK-VQA style: image id followed by one digit
    question = {"image_id": image_id, "question": text, "question_id": qid}
    annotation = {
        "question_id": qid, "image_id": image_id, "question_type": qtype,
        "answer_type": "number" if qtype == "count" else "other",
        "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": j + 1}
                    for j, a in enumerate(answers)],
    }
    given = {normalize_answer(a) for a in answers}
    top = most_common_answer(answers)  # differs from the canonical one only on a tie
    top_credit = vqa_accuracy(top, answers)
    # Other annotators' answers that earn partial credit, below the top answer's.
    minority = [a for a, _ in Counter(answers).most_common() if vqa_accuracy(a, answers) < top_credit]
    latent = {
        "split": split, "question_type": qtype, "concept": concept.name, "category": concept.category,
        "count": count, "difficulty": round(float(difficulty), 4), "answer": top,
        "minority": minority, "wrong": [w for w in wrong if normalize_answer(w) not in given],
    }
    return question, annotation, latent, concept, count


# ------------------------------------------------------------------------ build
def _settings(n_train: int, n_test: int, seed: int) -> dict[str, Any]:
    return {"kind": "icl_kit demo world", "version": DEMO_VERSION,
            "n_train": n_train, "n_test": n_test, "seed": seed}


def is_complete(out: Path, settings: dict[str, Any]) -> bool:
    """True when `out` holds a finished world built with exactly these settings."""
    manifest = out / MANIFEST
    if not manifest.is_file() or (out / BUILDING).exists():
        return False
    try:
        return json.loads(manifest.read_text(encoding="utf-8")) == settings
    except (OSError, ValueError):
        return False


def _clear(out: Path) -> None:
    """Remove a previous (or half-built) world; refuse to touch a folder that is not one."""
    ours = (out / MANIFEST).exists() or (out / BUILDING).exists()
    if any(out.iterdir()) and not ours:
        raise KitError(f"{out} holds files but no demo world; choose an empty folder for data.root "
                       "or delete its contents.")
    for split in SPLITS:
        shutil.rmtree(out / f"{split}2014", ignore_errors=True)
        for name in file_names(split):
            (out / name).unlink(missing_ok=True)
    for name in (MANIFEST, LATENT):
        (out / name).unlink(missing_ok=True)


def build_demo_world(out: str | Path = "data/demo", n_train: int = 2000, n_test: int = 1000,
                     seed: int = 0, force: bool = False) -> Path:
    """Write the demo world to `out` (see module doc) and return `out`.

    Idempotent: a complete world with the same settings is left alone unless
    `force`. The manifest is written last, so a killed build is rebuilt.
    """
    out = Path(out)
    settings = _settings(n_train, n_test, seed)
    if n_train < 1 or n_test < 1:
        raise KitError(f"Demo world sizes n_train={n_train}, n_test={n_test} must both be at least 1.")
    if not force and is_complete(out, settings):
        return out
    if out.exists() and not out.is_dir():
        raise KitError(f"{out} is a file, not a folder; choose a folder for the demo world.")
    out.mkdir(parents=True, exist_ok=True)
    _clear(out)
    atomic_write_json(out / BUILDING, settings)
    rng = np.random.default_rng(seed)
    concept_difficulty = {c.name: float(CONCEPT_DIFFICULTY_SD * rng.normal()) for c in CONCEPTS}
    image_ids = rng.choice(np.arange(1, MAX_IMAGE_ID), size=n_train + n_test, replace=False)
    latent: dict[str, dict] = {}
    for split, ids in (("train", image_ids[:n_train]), ("val", image_ids[n_train:])):
        questions, annotations = [], []
        (out / f"{split}2014").mkdir(exist_ok=True)
        for image_id in ids.tolist():
            q, a, lat, concept, count = _question(split, image_id, concept_difficulty, rng)
            questions.append(q)
            annotations.append(a)
            latent[str(q["question_id"])] = lat
            render(concept, count, rng).save(image_path(out, split, image_id), quality=JPEG_QUALITY)
        q_name, a_name = file_names(split)
        atomic_write_json(out / q_name, {"data_subtype": f"{split}2014", "questions": questions})
        atomic_write_json(out / a_name, {"data_subtype": f"{split}2014", "annotations": annotations})
    atomic_write_bytes(out / LATENT, json.dumps({"settings": settings, "questions": latent}).encode())
    atomic_write_json(out / MANIFEST, settings)
    (out / BUILDING).unlink()
    return out


# --------------------------------------------------------------------- describe
def ensure_demo_world(cfg: DataConfig) -> Path | None:
    """Build the demo world that `data` names when `data.demo` is on (a no-op when it is complete)."""
    if not cfg.demo:
        return None
    root = resolve_roots(cfg)[0]
    return build_demo_world(root, n_train=cfg.demo_train, n_test=cfg.demo_test, seed=cfg.demo_seed)


def describe_world(root: str | Path) -> str:
    """Counts per split and question type, and how often annotators agree on the top answer."""
    root = Path(root)
    lines = [f"Demo world at {root}"]
    for split in SPLITS:
        records = load_split(root, split)
        types = Counter(r.question_type for r in records)
        agree = Counter(max(Counter(r.answers).values()) for r in records)
        best = Counter(round(vqa_accuracy(r.answer, r.answers), 1) for r in records)
        role = "pool" if split == "train" else "test"
        lines.append(f"  {split} ({role}): {len(records)} questions")
        lines.append("    per type: " + ", ".join(f"{t} {types[t]}" for t in sorted(types)))
        lines.append("    top-answer agreement (of 10): "
                     + ", ".join(f"{m}/10 {agree[m]}" for m in sorted(agree, reverse=True)))
        lines.append("    VQA accuracy of the top answer: "
                     + ", ".join(f"{v:.1f} {best[v]}" for v in sorted(best, reverse=True)))
    return "\n".join(lines)
