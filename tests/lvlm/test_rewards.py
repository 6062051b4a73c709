"""The answer cache (icl_kit/lvlm/answers.py) and rewards (icl_kit/train/rewards.py): no answer computed
twice, batched misses, reward kinds."""

import math
from pathlib import Path

import pytest

from icl_kit.core.errors import KitError
from icl_kit.data.records import Record
from icl_kit.lvlm.answers import Answer, AnswerService, gt_prob_weights
from icl_kit.lvlm.base import LVLM, Generation, Score
from icl_kit.train.rewards import batch_sequence_rewards, reward_value

CAT_DOG = ("cat",) * 2 + ("dog",) * 8  # VQA acc of "cat" = (2·1/3 + 8·2/3)/10 = 0.6; of "dog" = 1


def record(qid: int, answers=CAT_DOG) -> Record:
    return Record(qid, qid, f"q{qid}?", tuple(answers), answers[-1], "what", "other", Path("none.jpg"))


class CountingLVLM(LVLM):
    """Answers 'dog' when the prompt holds ICD 1, 'cat' when it holds ICD 2, else 'bird'."""

    def __init__(self, tag: str = "v1") -> None:
        self.tag = tag
        self.generate_batches: list[int] = []
        self.score_calls = 0

    def fingerprint(self) -> str:
        return f"counting-{self.tag}"

    def generate(self, requests):
        self.generate_batches.append(len(requests))
        out = []
        for r in requests:
            ids = {x.question_id for x in r.icds}
            ans = "dog" if 1 in ids else "cat" if 2 in ids else "bird"
            out.append(Generation(text=ans, answer=ans))
        return out

    def score(self, requests, answers):
        self.score_calls += len(requests)
        probs = {"cat": 0.1, "dog": 0.5}
        return [Score(math.log(probs[a]), math.log(probs[a]), 1) for a in answers]


@pytest.fixture
def records():
    return {i: record(i) for i in range(1, 11)}


def test_answers_are_never_computed_twice_across_instances(tmp_path, records):
    path = tmp_path / "rewards.sqlite"
    keys = [(10, (1, 2)), (10, (2, 3)), (9, (3,)), (10, (1, 2))]  # one duplicate
    first = CountingLVLM()
    a1 = AnswerService(first, records, path).answers(keys)
    assert sum(first.generate_batches) == 3  # the duplicate is asked once
    second = CountingLVLM()
    service2 = AnswerService(second, records, path)
    a2 = service2.answers(keys)
    assert second.generate_batches == [] and service2.calls == 0 and service2.lookups == 4
    assert a1 == a2
    assert [a.pred for a in a2] == ["dog", "cat", "bird", "dog"]


def test_another_fingerprint_is_another_cache_key(tmp_path, records):
    path = tmp_path / "rewards.sqlite"
    AnswerService(CountingLVLM("v1"), records, path).answers([(10, (1,))])
    other = CountingLVLM("v2")
    AnswerService(other, records, path).answers([(10, (1,))])
    assert other.generate_batches == [1]


def test_misses_go_to_the_lvlm_in_batches(tmp_path, records):
    lvlm = CountingLVLM()
    service = AnswerService(lvlm, records, tmp_path / "r.sqlite", batch_size=3)
    service.answers([(10, (2,))])  # cached before the batch below
    keys = [(10, (i,)) for i in range(1, 9)]  # 8 prompts, 1 cached -> 7 misses
    answers = service.answers(keys)
    assert lvlm.generate_batches == [1, 3, 3, 1]
    assert service.calls == 8 and len(service.cache) == 8
    assert [a.pred for a in answers] == ["dog", "cat"] + ["bird"] * 6


def test_reward_kinds_hand_computed(tmp_path, records):
    service = AnswerService(CountingLVLM(), records, tmp_path / "r.sqlite")
    cat, dog, bird = service.answers([(10, (2,)), (10, (1,)), (10, (3,))])
    assert cat.acc == pytest.approx(0.6) and dog.acc == pytest.approx(1.0) and bird.acc == 0.0
    assert reward_value(cat, "hard_plus_soft") == pytest.approx(1.6)
    assert reward_value(cat, "soft") == pytest.approx(0.6)
    assert reward_value(cat, "hard") == 1.0
    assert [reward_value(bird, k) for k in ("hard_plus_soft", "soft", "hard")] == [0.0, 0.0, 0.0]
    with pytest.raises(KitError, match="gt_prob"):
        reward_value(cat, "gt_prob")
    with pytest.raises(KitError, match="hard_plus_soft"):
        reward_value(cat, "hardest")


def test_gt_prob_weights_and_value(tmp_path, records):
    assert gt_prob_weights(CAT_DOG) == pytest.approx({"cat": 2 / 3, "dog": 1.0})
    assert gt_prob_weights(("a",) * 10) == {"a": 1.0}
    lvlm = CountingLVLM()
    service = AnswerService(lvlm, records, tmp_path / "r.sqlite", with_gt_prob=True)
    (ans,) = service.answers([(10, (3,))])
    # 2/3 · P(cat) + 1 · P(dog) = 2/3 · 0.1 + 0.5
    assert ans.gt_prob == pytest.approx(2 / 3 * 0.1 + 0.5)
    assert reward_value(ans, "gt_prob") == pytest.approx(0.566667, abs=1e-6)
    assert lvlm.score_calls == 2  # one per distinct ground-truth answer


def test_cached_answer_without_gt_prob_is_refreshed(tmp_path, records):
    path = tmp_path / "r.sqlite"
    AnswerService(CountingLVLM(), records, path).answers([(10, (3,))])
    lvlm = CountingLVLM()
    (ans,) = AnswerService(lvlm, records, path, with_gt_prob=True).answers([(10, (3,))])
    assert lvlm.generate_batches == [1] and ans.gt_prob is not None


def test_sequence_reward_is_the_mean_over_prefixes(tmp_path, records):
    service = AnswerService(CountingLVLM(), records, tmp_path / "r.sqlite")
    # prefix (3,) -> bird (0); prefix (3, 2) -> cat (1.6); prefix (3, 2, 1) -> dog (2.0)
    assert batch_sequence_rewards(service, [(10, (3, 2, 1))], "hard_plus_soft", [1, 2]) == pytest.approx([0.8])
    assert batch_sequence_rewards(service, [(10, (3, 2, 1))], "hard_plus_soft", [1, 2, 3]) == pytest.approx([1.2])
    batch = batch_sequence_rewards(service, [(10, (3, 2, 1)), (9, (1, 4))], "soft", [2])
    assert batch == pytest.approx([0.6, 1.0])


def test_unknown_question_is_a_kit_error(tmp_path, records):
    service = AnswerService(CountingLVLM(), records, tmp_path / "r.sqlite")
    with pytest.raises(KitError, match="777"):
        service.answers([(777, (1,))])


def test_answer_correct_means_positive_accuracy():
    assert Answer("x", "x", 0.3).correct and not Answer("x", "x", 0.0).correct
