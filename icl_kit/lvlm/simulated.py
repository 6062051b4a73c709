"""The simulated LVLM of the demo world: a calibrated stand-in, NOT a model.

It exists so the kit runs end to end with no downloads, and so the training and
statistics machinery can be tested against known behaviour. It never looks at
images or text: it reads the demo world's latent sidecar (`demo_latent.json`)
and decides each answer from a small logistic model.

For query q and ICDs c_1..c_k (prompt order):

    eta  = SHOT_BIAS[k] - difficulty_q + sum_i w_i * rel(c_i, q) + JITTER_SD * z(q, c_1..c_k)
    correct  <=>  u_q < sigmoid(eta)

    rel(c, q) = REL_TYPE_CONCEPT  same question type and concept
                REL_TYPE          same type, other concept
                REL_CONCEPT       same concept, other type
                REL_IRRELEVANT    neither (negative: an irrelevant ICD costs a little)
    w_i = REDUNDANCY ** (#earlier ICDs with c_i's type and concept), for rel > 0 only

u_q is ONE uniform draw per question (common random numbers): every prompt for
q is compared with the same u_q, so a better prompt only turns wrong answers
into right ones, as with a real model; z is a small per-prompt standard-normal
jitter hashed from the ordered ids. A correct answer is the top annotator
answer; a wrong one is fixed per question: a minority annotator answer (partial
VQA credit) or a plausible wrong answer (no credit). The raw text sometimes
carries model-like trailing text that the study's post-processing removes.
Constants were tuned on the default demo world (seed 0, 2000 pool / 1000 test)
to the targets in tests/lvlm/test_simulated.py.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
from scipy.special import expit, logit, ndtri

from icl_kit.core.config import LVLMConfig, PromptConfig
from icl_kit.core.errors import KitError
from icl_kit.lvlm.base import LVLM, Generation, Request, Score
from icl_kit.lvlm.prompts import ordered_icds, postprocess
from icl_kit.lvlm.registry import register_backend
from icl_kit.lvlm.work import Work

SIM_VERSION = 1  # bump when the simulator's behaviour changes (part of the fingerprint)
LATENT_FILE = "demo_latent.json"

# ---------------------------------------------------------- the logistic model
# SHOT_BIAS[k] for k ICDs; prompts longer than the table use the last entry. Tuned so
# that random ICDs give 50.6 / 47.0 / 45.5 / 44.9 at shots 1-4 and zero-shot gives 45.0.
SHOT_BIAS: tuple[float, ...] = (-0.86, -0.465, -0.614, -0.658, -0.631)
REL_TYPE_CONCEPT = 0.30
REL_TYPE = 0.15
REL_CONCEPT = 0.05
REL_IRRELEVANT = -0.10
REDUNDANCY = 0.3
JITTER_SD = 0.15
P_MINORITY = 0.4  # a wrong answer is a minority annotator answer (when there is one)

# ------------------------------------------------------------------ scoring
# P(top) = sigmoid(m) (1 - OTHER_MASS), P(wrong) = (1 - sigmoid(m)) (1 - OTHER_MASS),
# any other string OTHER_MASS / OTHER_STRINGS, with margin m = logit(p) - logit(u_q):
# the generated answer is always the one scored highest.
OTHER_MASS = 0.05
OTHER_STRINGS = 100

# ------------------------------------------------------------------ raw text
# How an answer `a` (and a second answer `b`) is written; all but the first are
# trailing text that the study's post-processing cuts off.
DECORATIONS = ("{a}", "{a}, Question", "{a}\nQuestion:", "{a} Short answer", "{a}, {b}")
DECORATION_PROBS = (0.85, 0.05, 0.04, 0.03, 0.03)

# hash streams: independent draws from the same seed
_U, _WRONG, _JITTER, _TEXT, _WHICH = 1, 2, 3, 4, 5
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays: a well-spread deterministic hash."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _hash(seed: int, stream: int, ids: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """uint64 hash of each row of `ids` (B,) or (B, K); masked-out entries are skipped."""
    ids = np.atleast_2d(np.asarray(ids, dtype=np.int64).T).T  # (B, K)
    with np.errstate(over="ignore"):
        h = _mix(np.full(ids.shape[0], seed * 1_000_003 + stream, dtype=np.uint64))
        for j in range(ids.shape[1]):
            step = _mix(h ^ (ids[:, j].astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)))
            h = step if mask is None else np.where(mask[:, j], step, h)
    return h & _MASK64


def _uniform(h: np.ndarray) -> np.ndarray:
    """uint64 hashes -> floats strictly inside (0, 1)."""
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) / float(2**53)


class SimulatedLVLM(LVLM):
    """Simulated LVLM for the demo world (a simulator for demos and tests, NOT a model).

    `latent_path` is the demo world's `demo_latent.json`; `seed` fixes the
    per-question draws. Same request -> same answer, in any batch.
    """

    def __init__(self, latent_path: str | Path, prompt_cfg: PromptConfig | None = None,
                 seed: int = 0) -> None:
        self.latent_path = Path(latent_path)
        self.prompt_cfg = prompt_cfg or PromptConfig()
        self.seed = int(seed)
        raw = _read_latent(self.latent_path)
        self._latent_sha = hashlib.sha256(raw).hexdigest()
        questions = json.loads(raw)["questions"]
        qids = sorted(int(q) for q in questions)
        rows = [questions[str(q)] for q in qids]
        self.qids = np.asarray(qids, dtype=np.int64)  # (Q,) sorted
        types = sorted({r["question_type"] for r in rows})
        concepts = sorted({r["concept"] for r in rows})
        self.qtype = np.array([types.index(r["question_type"]) for r in rows])  # (Q,)
        self.concept = np.array([concepts.index(r["concept"]) for r in rows])  # (Q,)
        self.difficulty = np.array([r["difficulty"] for r in rows], dtype=np.float64)  # (Q,)
        self.u = _uniform(_hash(self.seed, _U, self.qids))  # (Q,) common random numbers
        self.top_answer = [r["answer"] for r in rows]
        self.wrong_answer = self._wrong_answers(rows)
        self.work = Work(label="simulated: no model ran, no tokens or FLOPs")  # prompts and their images only

    # ------------------------------------------------------------ latent lookups
    def _wrong_answers(self, rows: list[dict]) -> list[str]:
        """The one wrong answer each question gets: a minority answer or a plausible wrong one."""
        v = _uniform(_hash(self.seed, _WRONG, self.qids))  # minority or not
        w = _uniform(_hash(self.seed, _WHICH, self.qids))  # which one
        out = []
        for r, vq, wq in zip(rows, v, w, strict=True):
            minority, wrong = r["minority"], r["wrong"] or ["unknown"]
            pick = minority if minority and vq < P_MINORITY else wrong
            out.append(pick[int(wq * len(pick))])
        return out

    def index(self, question_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Row of each question id in the latent table; unknown ids are a KitError."""
        ids = np.asarray(question_ids, dtype=np.int64)
        pos = np.searchsorted(self.qids, ids).clip(0, len(self.qids) - 1)
        bad = self.qids[pos] != ids
        if bad.any():
            raise KitError(
                f"Question {int(ids[bad][0])} is not in the demo world's {self.latent_path}; the "
                "simulated LVLM only answers questions of the demo world it was built for."
            )
        return pos

    # ------------------------------------------------------------------- model
    def logits(self, query_ids: np.ndarray, icd_ids: np.ndarray) -> np.ndarray:
        """eta of each prompt (module doc), float64 (B,).

        query_ids (B,); icd_ids (B, K) in prompt order, padded with -1 after the
        last ICD of shorter prompts.
        """
        query_ids = np.asarray(query_ids, dtype=np.int64)
        icd_ids = np.asarray(icd_ids, dtype=np.int64).reshape(len(query_ids), -1)  # (B, K)
        mask = icd_ids >= 0  # (B, K)
        q = self.index(query_ids)  # (B,)
        c = np.where(mask, self.index(np.where(mask, icd_ids, self.qids[0])), 0)  # (B, K)
        same_t = self.qtype[c] == self.qtype[q][:, None]  # (B, K)
        same_c = self.concept[c] == self.concept[q][:, None]
        rel = np.select([same_t & same_c, same_t, same_c],
                        [REL_TYPE_CONCEPT, REL_TYPE, REL_CONCEPT], REL_IRRELEVANT)  # (B, K)
        key = self.qtype[c] * 1000 + self.concept[c]  # (B, K) the ICD's (type, concept)
        earlier = np.zeros_like(rel)
        for j in range(1, key.shape[1]):
            earlier[:, j] = ((key[:, :j] == key[:, j:j + 1]) & mask[:, :j]).sum(axis=1)
        weight = np.where(rel > 0, REDUNDANCY**earlier, 1.0)
        k = mask.sum(axis=1)
        bias = np.asarray(SHOT_BIAS)[np.minimum(k, len(SHOT_BIAS) - 1)]
        z = ndtri(_uniform(_hash(self.seed, _JITTER, np.column_stack([query_ids, icd_ids]),
                                 np.column_stack([np.ones_like(k, bool), mask]))))
        return bias - self.difficulty[q] + (weight * rel * mask).sum(axis=1) + JITTER_SD * z

    def margin(self, query_ids: np.ndarray, icd_ids: np.ndarray) -> np.ndarray:
        """logit(sigmoid(eta)) - logit(u_q) = eta - logit(u_q); correct iff > 0. (B,)"""
        return self.logits(query_ids, icd_ids) - logit(self.u[self.index(query_ids)])

    def correct(self, query_ids: np.ndarray, icd_ids: np.ndarray) -> np.ndarray:
        """Whether each prompt's answer is the top annotator answer, bool (B,)."""
        return self.margin(query_ids, icd_ids) > 0

    def answers(self, query_ids: np.ndarray, correct: np.ndarray) -> list[str]:
        """The clean answer string of each prompt given its outcome."""
        rows = self.index(query_ids)
        return [self.top_answer[r] if ok else self.wrong_answer[r] for r, ok in zip(rows, correct, strict=True)]

    # -------------------------------------------------------------- LVLM API
    def _ids(self, requests: Sequence[Request]) -> tuple[np.ndarray, np.ndarray]:
        """(query ids (B,), ICD ids (B, K) in prompt order, -1 padded); counts the prompts and their images."""
        self.work.prompts += len(requests)
        self.work.images += sum(len(r.icds) + 1 for r in requests)
        width = max((len(r.icds) for r in requests), default=0)
        icds = np.full((len(requests), width), -1, dtype=np.int64)
        for i, r in enumerate(requests):
            ordered = [c.question_id for c in ordered_icds(r.icds, self.prompt_cfg.icd_order)]
            icds[i, :len(ordered)] = ordered
        return np.array([r.query.question_id for r in requests], dtype=np.int64), icds

    def generate(self, requests: Sequence[Request]) -> list[Generation]:
        """Answer every request; the raw text sometimes has trailing text (see DECORATIONS)."""
        if not requests:
            return []
        qids, icds = self._ids(requests)
        ok = self.correct(qids, icds)
        clean = self.answers(qids, ok)
        other = self.answers(qids, ~ok)
        v = _uniform(_hash(self.seed, _TEXT, np.column_stack([qids, icds]),
                           np.column_stack([np.ones(len(qids), bool), icds >= 0])))
        style = np.searchsorted(np.cumsum(DECORATION_PROBS), v * sum(DECORATION_PROBS))
        out = []
        for a, b, s in zip(clean, other, style, strict=True):
            text = DECORATIONS[min(int(s), len(DECORATIONS) - 1)].format(a=a, b=b)
            out.append(Generation(text=text, answer=postprocess(text, self.prompt_cfg.postprocess)))
        return out

    def score(self, requests: Sequence[Request], answers: Sequence[str]) -> list[Score]:
        """log P(answer | prompt) under the simulator (module doc); words stand in for tokens."""
        if len(requests) != len(answers):
            raise KitError(f"score got {len(requests)} requests but {len(answers)} answers; pass one each.")
        if not requests:
            return []
        qids, icds = self._ids(requests)
        p_top = expit(self.margin(qids, icds))
        rows = self.index(qids)
        out = []
        for ans, r, p in zip(answers, rows, p_top, strict=True):
            a = ans.strip().lower()
            if a == self.top_answer[r].lower():
                prob = p * (1 - OTHER_MASS)
            elif a == self.wrong_answer[r].lower():
                prob = (1 - p) * (1 - OTHER_MASS)
            else:
                prob = OTHER_MASS / OTHER_STRINGS
            n = max(1, len(ans.split()))
            lp = math.log(max(prob, 1e-300))
            out.append(Score(sum_logprob=lp, mean_logprob=lp / n, n_tokens=n))
        return out

    def fingerprint(self) -> str:
        """Hash of the simulator (NOT a model): version, constants, seed, latent file, prompt protocol."""
        payload = {
            "backend": "simulated-lvlm (demo-world simulator, not a model)", "version": SIM_VERSION,
            "constants": [SHOT_BIAS, REL_TYPE_CONCEPT, REL_TYPE, REL_CONCEPT, REL_IRRELEVANT,
                          REDUNDANCY, JITTER_SD, P_MINORITY, OTHER_MASS, OTHER_STRINGS,
                          DECORATIONS, DECORATION_PROBS],
            "seed": self.seed, "latent_sha256": self._latent_sha, "prompt": asdict(self.prompt_cfg),
        }
        return "simulated-" + hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _read_latent(path: Path) -> bytes:
    if not path.is_file():
        raise KitError(
            f"The simulated LVLM needs the demo world's {LATENT_FILE}, not found at {path}; "
            "build the demo world there (data.demo: true) or use lvlm.backend: qwen."
        )
    raw = path.read_bytes()
    try:
        obj = json.loads(raw)
    except ValueError:
        raise KitError(f"{path} is not valid JSON; rebuild the demo world with `icl-kit demo-data --force`.") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("questions"), dict):
        raise KitError(f"{path} has no 'questions' table; rebuild the demo world with `icl-kit demo-data --force`.")
    return raw


@register_backend("simulated")
def make_simulated(cfg: LVLMConfig, data_root: str | Path | None, seed: int = 0) -> SimulatedLVLM:
    """The simulated LVLM for the demo world at `data_root` (lvlm.backend: simulated).

    Its seed is `lvlm.simulated.seed`, else the run's top-level `seed`.
    """
    if not data_root:
        raise KitError("lvlm.backend 'simulated' needs data.root to point at a demo world; set data.root.")
    sim_seed = seed if cfg.simulated.seed is None else cfg.simulated.seed
    return SimulatedLVLM(Path(data_root) / LATENT_FILE, cfg.prompt, seed=sim_seed)
