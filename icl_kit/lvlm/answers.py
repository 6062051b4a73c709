"""LVLM answers with a persistent cache shared by training, evaluation and SFT data.

The cache key is (question id, ordered ICD ids, LVLM+protocol fingerprint), so an
answer is never computed twice across epochs, runs, resumed runs or evaluation
systems. Cache misses go to the LVLM in batches. Teacher-forced scores of a given
answer string (InfoScore, P(ground truth)) are cached the same way, keyed by
(question id, ordered ICD ids, fingerprint, answer), in a second table of the same file.
Rewards computed from these answers live in `icl_kit.train.rewards`.

P(a | prompt) comes from a score in one of two norms (`answer_prob`): the product of the answer's token
probabilities (sequence) or exp(mean token log-prob) (token_mean). A score row holds both (sum, mean and
token count), so neither key needs the norm. An answer row's `gt_prob` is always the sequence norm; a service
asked for token_mean re-derives it from the score rows, so the answers table means one thing.
"""

from __future__ import annotations

import math
import sqlite3
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from icl_kit.core.errors import KitError
from icl_kit.data.records import Record
from icl_kit.data.vqa_accuracy import vqa_accuracy
from icl_kit.lvlm.base import LVLM, Request, Score
from icl_kit.lvlm.work import Work

FULL_CREDIT_COUNT = 3  # an answer given by 3 annotators earns full VQA credit

PromptKey = tuple[int, tuple[int, ...]]  # (question id, ordered ICD ids)
ScoreKey = tuple[int, tuple[int, ...], str]  # (question id, ordered ICD ids, answer string scored)
SQL_BLOCK = 500  # question ids per SELECT ... IN (...) (sqlite allows 999 parameters)
PROB_NORMS = ("sequence", "token_mean")


@dataclass(frozen=True)
class Answer:
    """One cached LVLM answer to one prompt."""

    raw: str
    pred: str
    acc: float
    gt_prob: float | None = None

    @property
    def correct(self) -> bool:
        return self.acc > 0


class AnswerCache:
    """sqlite3 table of answers keyed by (question id, ICD ids, fingerprint)."""

    def __init__(self, path: str | Path | None, fingerprint: str) -> None:
        self.fingerprint = fingerprint
        self.path = Path(path) if path else None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(str(self.path) if self.path else ":memory:", timeout=60)
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS answers (question_id INTEGER, icd_ids TEXT, fingerprint TEXT, "
                "raw TEXT, pred TEXT, acc REAL, gt_prob REAL, "
                "PRIMARY KEY (question_id, icd_ids, fingerprint))"
            )
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS scores (question_id INTEGER, icd_ids TEXT, fingerprint TEXT, "
                "answer TEXT, sum_logprob REAL, mean_logprob REAL, n_tokens INTEGER, "
                "PRIMARY KEY (question_id, icd_ids, fingerprint, answer))"
            )
            self.db.commit()
        except sqlite3.DatabaseError as exc:
            raise KitError(f"Reward cache {self.path} is not a readable sqlite file ({exc}); delete it.") from None

    @staticmethod
    def _ids(icd_ids: Sequence[int]) -> str:
        """The stored text of an id list: json.dumps' layout ("[1, 2]"), written directly (it is on the hot path)."""
        return "[" + ", ".join(str(int(i)) for i in icd_ids) + "]"

    def get_many(self, keys: Iterable[PromptKey]) -> dict[PromptKey, Answer]:
        out: dict[PromptKey, Answer] = {}
        cur = self.db.cursor()
        for qid, icds in keys:
            row = cur.execute(
                "SELECT raw, pred, acc, gt_prob FROM answers WHERE question_id=? AND icd_ids=? AND fingerprint=?",
                (int(qid), self._ids(icds), self.fingerprint),
            ).fetchone()
            if row is not None:
                out[(qid, tuple(icds))] = Answer(*row)
        return out

    def put_many(self, items: Mapping[PromptKey, Answer]) -> None:
        """Insert or replace answers in one transaction (a kill loses at most this batch)."""
        rows = [
            (int(q), self._ids(icds), self.fingerprint, a.raw, a.pred, a.acc, a.gt_prob)
            for (q, icds), a in items.items()
        ]
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def get_scores(self, keys: Iterable[ScoreKey]) -> dict[ScoreKey, Score]:
        """Cached scores of `keys`: one query per block of question ids, not one per key (beam search asks
        for hundreds of prompts per question)."""
        want: dict[tuple[int, str, str], ScoreKey] = {(int(q), self._ids(icds), a): (q, tuple(icds), a)
                                                      for q, icds, a in keys}
        qids = sorted({k[0] for k in want})
        out: dict[ScoreKey, Score] = {}
        for start in range(0, len(qids), SQL_BLOCK):
            block = qids[start : start + SQL_BLOCK]
            rows = self.db.execute(
                "SELECT question_id, icd_ids, answer, sum_logprob, mean_logprob, n_tokens FROM scores WHERE "
                f"fingerprint=? AND question_id IN ({','.join('?' * len(block))})", (self.fingerprint, *block))
            for q, ids, a, *vals in rows:
                key = want.get((q, ids, a))
                if key is not None:
                    out[key] = Score(*vals)
        return out

    def put_scores(self, items: Mapping[ScoreKey, Score]) -> None:
        """Insert or replace scores in one transaction."""
        rows = [(int(q), self._ids(icds), self.fingerprint, ans, s.sum_logprob, s.mean_logprob, s.n_tokens)
                for (q, icds, ans), s in items.items()]
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def __len__(self) -> int:
        return int(self.db.execute(
            "SELECT COUNT(*) FROM answers WHERE fingerprint=?", (self.fingerprint,)
        ).fetchone()[0])

    def close(self) -> None:
        self.db.close()


def gt_prob_weights(answers: Sequence[str]) -> dict[str, float]:
    """min(count/3, 1) per distinct ground-truth answer."""
    return {a: min(c / FULL_CREDIT_COUNT, 1.0) for a, c in Counter(answers).items()}


def answer_keys(keys: Sequence[PromptKey], weights: Sequence[Mapping[str, float]]) -> list[ScoreKey]:
    """(question, ICDs, answer) of each prompt's weighted answers, prompt by prompt."""
    return [(q, icds, a) for (q, icds), w in zip(keys, weights, strict=True) for a in w]


def weighted_probs(scores: Iterable[Score], weights: Sequence[Mapping[str, float]],
                   norm: str = "sequence") -> list[float]:
    """Σ_a w_a · P(a | prompt) per prompt, from the scores of `answer_keys` in their order."""
    it = iter(scores)
    return [sum(wa * answer_prob(next(it), norm) for wa in w.values()) for w in weights]


def answer_prob(score: Score, norm: str = "sequence") -> float:
    """P(a | prompt) from a teacher-forced score of a's n tokens.

    sequence:   exp(Σ_t log p_t) = Π_t p_t                    (the answer's probability)
    token_mean: exp(Σ_t log p_t / n) = (Π_t p_t)^(1/n)         (Lever-LM's exp(−mean loss)); empty answer: 1
    """
    if norm == "sequence":
        return math.exp(score.sum_logprob)
    if norm == "token_mean":
        return math.exp(score.mean_logprob)
    raise KitError(f"prob_norm={norm!r} is unknown; choose one of {list(PROB_NORMS)}.")


class AnswerService:
    """Answers prompts through the cache; misses go to the LVLM in batches.

    `calls` counts prompts actually sent to the LVLM, `lookups` every prompt asked for (the rest were cache
    hits); `score_calls` and `score_lookups` count (prompt, answer) scores the same way.
    `prob_norm` is the norm of the answers' gt_prob (`answer_prob`; train.reward.prob_norm).
    """

    def __init__(
        self,
        lvlm: LVLM,
        records: Mapping[int, Record],
        cache_path: str | Path | None,
        batch_size: int = 16,
        with_gt_prob: bool = False,
        prob_norm: str = "sequence",
    ) -> None:
        if prob_norm not in PROB_NORMS:
            raise KitError(f"prob_norm={prob_norm!r} is unknown; choose one of {list(PROB_NORMS)}.")
        self.lvlm = lvlm
        self.records = records
        self.cache = AnswerCache(cache_path, lvlm.fingerprint())
        self.batch_size = batch_size
        self.with_gt_prob = with_gt_prob
        self.prob_norm = prob_norm
        self.calls = 0
        self.lookups = 0
        self.score_calls = 0
        self.score_lookups = 0

    def work(self) -> Work:
        """The LVLM's work so far (cumulative, this process; icl_kit.lvlm.work): a stage logs `after - before`."""
        done = getattr(self.lvlm, "work_done", None)
        return done() if done is not None else Work(label="not counted by this backend")

    def request(self, key: PromptKey) -> Request:
        qid, icds = key
        try:
            return Request(icds=tuple(self.records[i] for i in icds), query=self.records[qid])
        except KeyError as exc:
            raise KitError(f"Question id {exc.args[0]} is not in the loaded data; check pools.json and data.") from None

    def answers(self, keys: Sequence[PromptKey]) -> list[Answer]:
        """Answers for `keys` (same order); each distinct uncached prompt costs one LVLM call."""
        keys = [(int(q), tuple(int(i) for i in icds)) for q, icds in keys]
        self.lookups += len(keys)
        unique = list(dict.fromkeys(keys))
        found = self.cache.get_many(unique)
        missing = [k for k in unique if k not in found or (self.with_gt_prob and found[k].gt_prob is None)]
        for start in range(0, len(missing), self.batch_size):
            batch = missing[start : start + self.batch_size]
            fresh = self._ask(batch)
            self.cache.put_many(fresh)
            found.update(fresh)
        if self.with_gt_prob and self.prob_norm != "sequence":
            found = self._renormed(unique, found)
        return [found[k] for k in keys]

    def _renormed(self, keys: list[PromptKey], found: dict[PromptKey, Answer]) -> dict[PromptKey, Answer]:
        """The answers with gt_prob in `prob_norm`, from the cached scores (the stored gt_prob is `sequence`)."""
        weights = [gt_prob_weights(self.records[q].answers) for q, _ in keys]
        probs = self.answer_probs(keys, weights, self.prob_norm)
        return {k: replace(found[k], gt_prob=p) for k, p in zip(keys, probs, strict=True)}

    def _ask(self, keys: list[PromptKey]) -> dict[PromptKey, Answer]:
        requests = [self.request(k) for k in keys]
        self.calls += len(keys)
        if self.with_gt_prob:
            gens, probs = self._generated_gt_probs(keys, requests)
        else:
            gens, probs = self.lvlm.generate(requests), [None] * len(keys)
        return {
            k: Answer(raw=g.text, pred=g.answer, acc=vqa_accuracy(g.answer, list(r.query.answers)), gt_prob=p)
            for k, g, r, p in zip(keys, gens, requests, probs, strict=True)
        }

    def scores(self, keys: Sequence[ScoreKey]) -> list[Score]:
        """Teacher-forced scores of answer strings (same order); each distinct uncached one costs one score.

        Misses go to `lvlm.score` in batches of `batch_size`, sorted by prompt so a batch holds similar
        lengths, and are stored in one transaction at the end.
        """
        keys = [(int(q), tuple(int(i) for i in icds), str(a)) for q, icds, a in keys]
        self.score_lookups += len(keys)
        unique = list(dict.fromkeys(keys))
        found = self.cache.get_scores(unique)
        missing = sorted((k for k in unique if k not in found), key=lambda k: (len(k[1]), k))
        fresh: dict[ScoreKey, Score] = {}
        for start in range(0, len(missing), self.batch_size):
            batch = missing[start : start + self.batch_size]
            out = self.lvlm.score([self.request((q, icds)) for q, icds, _ in batch], [a for *_, a in batch])
            fresh.update(zip(batch, out, strict=True))
            self.score_calls += len(batch)
        self.cache.put_scores(fresh)  # one transaction per call: a kill loses at most this call's scores
        found.update(fresh)
        return [found[k] for k in keys]

    def answer_probs(self, keys: Sequence[PromptKey], weights: Sequence[Mapping[str, float]],
                     norm: str = "sequence") -> list[float]:
        """Σ_a w_a · P(a | prompt) per prompt (P by `answer_prob` in `norm`): P of a weighted set of answers,
        through `scores`."""
        return weighted_probs(self.scores(answer_keys(keys, weights)), weights, norm)

    def _generated_gt_probs(self, keys: list[PromptKey], requests: list[Request]) -> tuple[list, list[float]]:
        """The generations and gt_probs (Σ min(count/3, 1) · exp(log P(answer | prompt)) over each query's distinct
        answers) of new prompts: the answers' scores come from the same prompt forward as the generation
        (`LVLM.generate_scored`) where they are not cached already; a cached score is never replaced."""
        weights = [gt_prob_weights(r.query.answers) for r in requests]
        score_keys = answer_keys(keys, weights)
        self.score_lookups += len(score_keys)
        found = self.cache.get_scores(score_keys)
        gens, scored = self.lvlm.generate_scored(requests, [list(w) for w in weights])
        fresh = {k: s for k, s in zip(score_keys, (s for row in scored for s in row), strict=True) if k not in found}
        self.score_calls += len(fresh)
        self.cache.put_scores(fresh)
        found.update(fresh)
        return gens, weighted_probs((found[k] for k in score_keys), weights)
