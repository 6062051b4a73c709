"""OK-VQA / VQAv2 records from the official JSON files and COCO images.

Layout (docs/design.md, "Formats kept compatible with existing work"), for split `s` in {train, val}:

    {root}/OpenEnded_mscoco_{s}2014_questions.json   {"questions": [{image_id, question, question_id}]}
    {root}/mscoco_{s}2014_annotations.json           {"annotations": [{question_id, image_id,
                                                       question_type, answer_type, answers: [x10]}]}
    {image_root}/{s}2014/COCO_{s}2014_{image_id:012d}.jpg

VQAv2 is the same with a `v2_` prefix on both file names. Every problem a user
can cause (missing file, malformed JSON, files that do not match, wrong answer
count, empty split) is a KitError naming the file or question id. Images load
lazily through `Record.image()`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from icl_kit.core.config import DataConfig
from icl_kit.core.errors import KitError
from icl_kit.data.records import Record
from icl_kit.data.vqa_accuracy import most_common_answer

ANSWERS_PER_QUESTION = 10
ROOT_ENV = {"okvqa": "OKVQA_PATH", "vqav2": "VQAV2_PATH"}
IMAGE_ROOT_ENV = "COCO_PATH"
# The existing study's $COCO_PATH is one level above the kit's image root: its images are in
# $COCO_PATH/mscoco2014/{train,val}2014/ (docs/study.md, "Paths"). A root that holds only that sub-folder is
# read through it.
STUDY_IMAGE_SUBDIR = "mscoco2014"
SELECTIONS = ("first", "random", "all")


def file_names(split: str, dataset: str = "okvqa") -> tuple[str, str]:
    """(questions file, annotations file) names of one split."""
    if dataset not in ROOT_ENV:
        raise KitError(f"dataset={dataset!r} is not known; choose one of {list(ROOT_ENV)}.")
    prefix = "v2_" if dataset == "vqav2" else ""
    return (f"{prefix}OpenEnded_mscoco_{split}2014_questions.json",
            f"{prefix}mscoco_{split}2014_annotations.json")


def image_path(image_root: Path, split: str, image_id: int) -> Path:
    """COCO file name of an image: `{split}2014/COCO_{split}2014_{image_id:012d}.jpg`."""
    return image_root / f"{split}2014" / f"COCO_{split}2014_{image_id:012d}.jpg"


def resolve_roots(cfg: DataConfig) -> tuple[Path, Path]:
    """(data root, image root): the params first, then $OKVQA_PATH/$VQAV2_PATH and $COCO_PATH."""
    env = ROOT_ENV[cfg.dataset]
    root = cfg.root or os.environ.get(env, "")
    if not root:
        raise KitError(
            f"data.root is empty and ${env} is not set; set data.root to the folder with the "
            "question/annotation files (or data/demo with data.demo: true)."
        )
    image_root = Path(cfg.image_root or os.environ.get(IMAGE_ROOT_ENV, "") or root)
    return Path(root), study_image_root(image_root, cfg.train_split)


def study_image_root(image_root: Path, split: str) -> Path:
    """`image_root`, or its `mscoco2014/` sub-folder when the split's images are there and not directly below
    (the study's $COCO_PATH layout)."""
    nested = image_root / STUDY_IMAGE_SUBDIR
    if not (image_root / f"{split}2014").is_dir() and (nested / f"{split}2014").is_dir():
        return nested
    return image_root


# ---------------------------------------------------------------- reading files
def _read_list(path: Path, key: str, what: str, env: str) -> list[dict[str, Any]]:
    """The list under `key` of a JSON file; a missing or malformed file is a KitError."""
    if not path.is_file():
        raise KitError(f"{what} file {path} is missing; check data.root (or ${env}).")
    try:
        with open(path, encoding="utf-8") as fh:
            obj = json.load(fh)
    except json.JSONDecodeError as exc:
        raise KitError(
            f"{what} file {path} is not valid JSON (line {exc.lineno}, column {exc.colno}); "
            "re-download or repair it."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KitError(f"{what} file {path} cannot be read ({exc.__class__.__name__}).") from None
    items = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(items, list):
        raise KitError(f"{what} file {path} has no {key!r} list; is it an official {what.lower()} file?")
    return items


def _field(entry: Any, name: str, kind: type, path: Path, index: int) -> Any:
    if not isinstance(entry, dict) or name not in entry:
        raise KitError(f"{path}: entry {index} has no {name!r} field; repair the file.")
    value = entry[name]
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise KitError(f"{path}: entry {index} has {name}={value!r}, which is not a {kind.__name__}.")
    return value


def _index_by_id(items: list[dict[str, Any]], path: Path) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for i, entry in enumerate(items):
        qid = _field(entry, "question_id", int, path, i)
        if qid in out:
            raise KitError(f"{path}: question id {qid} appears twice; each question needs one entry.")
        out[qid] = entry
    return out


def _answers(ann: dict[str, Any], qid: int, path: Path) -> tuple[str, ...]:
    raw = ann.get("answers")
    answers = [a.get("answer") if isinstance(a, dict) else None for a in raw] if isinstance(raw, list) else []
    if len(answers) != ANSWERS_PER_QUESTION or not all(isinstance(a, str) for a in answers):
        raise KitError(
            f"Annotation of question {qid} in {path} must hold {ANSWERS_PER_QUESTION} answer strings, "
            f"found {len(answers)} usable ones; repair or drop that annotation."
        )
    return tuple(answers)


# -------------------------------------------------------------------- public API
def load_split(root: str | Path, split: str, *, dataset: str = "okvqa",
               image_root: str | Path | None = None) -> list[Record]:
    """All questions of one split as Records, sorted by question id.

    `answer` is the most frequent of the 10 answers (ties: the first listed).
    """
    root = Path(root)
    images = Path(image_root) if image_root else root
    q_name, a_name = file_names(split, dataset)
    q_path, a_path = root / q_name, root / a_name
    env = ROOT_ENV[dataset]
    questions = _index_by_id(_read_list(q_path, "questions", "Questions", env), q_path)
    annotations = _index_by_id(_read_list(a_path, "annotations", "Annotations", env), a_path)
    if not questions:
        raise KitError(f"Questions file {q_path} holds no questions; split {split!r} is empty.")
    for qid in questions.keys() - annotations.keys():
        raise KitError(f"Question {qid} in {q_path} has no annotation in {a_path}; the files do not match.")
    for qid in annotations.keys() - questions.keys():
        raise KitError(f"Annotation of question {qid} in {a_path} has no question in {q_path}; "
                       "the files do not match.")
    records = []
    for i, qid in enumerate(sorted(questions)):
        q, ann = questions[qid], annotations[qid]
        image_id = _field(q, "image_id", int, q_path, i)
        answers = _answers(ann, qid, a_path)
        records.append(Record(
            question_id=qid, image_id=image_id, question=_field(q, "question", str, q_path, i),
            answers=answers, answer=most_common_answer(answers),
            question_type=str(ann.get("question_type", "")), answer_type=str(ann.get("answer_type", "")),
            image_path=image_path(images, split, image_id),
        ))
    return records


def select_questions(records: Sequence[Record], how: str = "first", n: int = 100,
                     seed: int = 0) -> list[Record]:
    """A subset of `records`, sorted by question id.

    "first": the n smallest question ids (the existing study's "first N");
    "random": n drawn without replacement by a generator seeded with `seed`;
    "all": every record (n ignored).
    """
    if how not in SELECTIONS:
        raise KitError(f"Question selection {how!r} is not known; choose one of {list(SELECTIONS)}.")
    ordered = sorted(records, key=lambda r: r.question_id)
    if not ordered:
        raise KitError("There are no questions to select from; check the data split.")
    if how == "all":
        return ordered
    if not 1 <= n <= len(ordered):
        raise KitError(f"Asked for n={n} questions but the split holds {len(ordered)}; "
                       f"choose n in 1..{len(ordered)} or 'all'.")
    if how == "first":
        return ordered[:n]
    picks = np.random.default_rng(seed).choice(len(ordered), size=n, replace=False)
    return [ordered[i] for i in sorted(picks)]


def load_data(cfg: DataConfig) -> tuple[list[Record], list[Record]]:
    """(pool/train records, test records) as the params say. It only reads: with `data.demo`, the
    caller builds the demo world first (`icl_kit.data.demo.world.ensure_demo_world`)."""
    root, image_root = resolve_roots(cfg)
    train = load_split(root, cfg.train_split, dataset=cfg.dataset, image_root=image_root)
    test = load_split(root, cfg.test_split, dataset=cfg.dataset, image_root=image_root)
    return train, test
