"""The LVLM interface every backend implements: batched generate and score."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from icl_kit.data.records import Record
from icl_kit.lvlm.work import Work


@dataclass(frozen=True)
class Request:
    """One prompt: demonstrations in prompt order, then the query."""

    icds: tuple[Record, ...]
    query: Record

    @property
    def key(self) -> tuple[int, tuple[int, ...]]:
        """(query question id, ordered ICD question ids): identifies the prompt content."""
        return self.query.question_id, tuple(r.question_id for r in self.icds)


@dataclass(frozen=True)
class Generation:
    """What the model wrote (`text`) and the post-processed answer (`answer`)."""

    text: str
    answer: str


@dataclass(frozen=True)
class Score:
    """Teacher-forced log-probability of an answer's tokens given the prompt."""

    sum_logprob: float
    mean_logprob: float
    n_tokens: int


class LVLM(ABC):
    """A vision-language model that answers prompts built from ICDs and a query."""

    @abstractmethod
    def fingerprint(self) -> str:
        """A stable hash of the model and prompt protocol; part of every reward-cache key."""

    @abstractmethod
    def generate(self, requests: Sequence[Request]) -> list[Generation]:
        """Answer every request (batched inside); same order as `requests`."""

    @abstractmethod
    def score(self, requests: Sequence[Request], answers: Sequence[str]) -> list[Score]:
        """Log-probability of `answers[i]` given `requests[i]`'s prompt."""

    def generate_scored(self, requests: Sequence[Request],
                        answers: Sequence[Sequence[str]]) -> tuple[list[Generation], list[list[Score]]]:
        """Answer every request AND score its `answers[i]` (e.g. a reward's ground truths): the same results as
        `generate` then `score`; a backend that can computes each prompt once for both (the Qwen backend)."""
        flat = [(i, a) for i, given in enumerate(answers) for a in given]
        scores = iter(self.score([requests[i] for i, _ in flat], [a for _, a in flat]))
        return self.generate(requests), [[next(scores) for _ in given] for given in answers]

    def work_done(self) -> Work:
        """A copy of the work counted so far (icl_kit.lvlm.work); a backend without a `work` counts nothing."""
        work = getattr(self, "work", None)
        return Work(**vars(work)) if work is not None else Work(label="not counted by this backend")
