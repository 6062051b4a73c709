"""The simulated LVLM (a demo-world simulator, not a model): calibration, consistency, errors.

Calibration targets (default demo world: seed 0, 2000 pool / 1000 test questions):
random ICDs at shots 1-4 within ±2 points of 50.6 / 47.0 / 45.5 / 44.9; zero-shot
below 1-shot random; hindsight-best pair of a 64-candidate pool >= random + 8 at
shot 2; similarity ICDs in between; SD of per-question (similarity - random) in
[0.2, 0.35].
"""


import numpy as np
import pytest
from scipy.special import logit

import icl_kit.lvlm.simulated as sim_mod
from icl_kit.core.config import LVLMConfig, PromptConfig
from icl_kit.core.errors import KitError
from icl_kit.data.demo.world import build_demo_world
from icl_kit.data.okvqa import load_split
from icl_kit.data.vqa_accuracy import vqa_accuracy, vqa_accuracy_batch
from icl_kit.lvlm.base import Request
from icl_kit.lvlm.simulated import SimulatedLVLM, make_simulated
from icl_kit.selection.encoders import SimpleEncoder
from icl_kit.selection.pools import rand_pools, random_icds, similarity_topk

RANDOM_TARGETS = {1: 50.6, 2: 47.0, 3: 45.5, 4: 44.9}
TOLERANCE = 2.0
HINDSIGHT_GAIN = 8.0
SD_RANGE = (0.20, 0.35)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The default demo world, shared by every test module of the session (idempotent build)."""
    root = build_demo_world(tmp_path_factory.getbasetemp() / "demo_default")
    return root, load_split(root, "train"), load_split(root, "val")


@pytest.fixture(scope="module")
def lvlm(world):
    return SimulatedLVLM(world[0] / "demo_latent.json")


@pytest.fixture(scope="module")
def calib(world, lvlm):
    """Per-question credit arrays and the ICD selections of each system."""
    _, pool, test = world
    qids = np.array([r.question_id for r in test])
    pool_ids = [r.question_id for r in pool]
    rows = lvlm.index(qids)
    top = np.array([vqa_accuracy(lvlm.top_answer[i], r.answers) for i, r in zip(rows, test, strict=True)])
    wrong = np.array([vqa_accuracy(lvlm.wrong_answer[i], r.answers) for i, r in zip(rows, test, strict=True)])
    enc = SimpleEncoder()
    similar = np.array(similarity_topk(enc.encode(test), enc.encode(pool), pool_ids, 4))
    return {
        "qids": qids, "top": top, "wrong": wrong,
        "random": np.array([random_icds(q, pool_ids, 4, seed=0) for q in qids]),
        "similar": similar,
        "pools": rand_pools(qids.tolist(), pool_ids, size=64, seed=42),
    }


def accuracy(lvlm, c, icds):
    """Per-question VQA accuracy (0..1) of prompts (query, icds)."""
    return np.where(lvlm.correct(c["qids"], icds), c["top"], c["wrong"])


def test_vectorised_credit_equals_generate(world, lvlm, calib):
    _, pool, test = world
    by_id = {r.question_id: r for r in pool}
    reqs = [Request(icds=tuple(by_id[i] for i in calib["random"][n, :2]), query=test[n]) for n in range(300)]
    gens = lvlm.generate(reqs)
    acc = vqa_accuracy_batch([g.answer for g in gens], [r.query.answers for r in reqs])
    expected = accuracy(lvlm, {k: v[:300] for k, v in calib.items() if k != "pools"}, calib["random"][:300, :2])
    np.testing.assert_array_equal(acc, expected)


def test_calibration_targets(lvlm, calib):
    n = len(calib["qids"])
    random = {k: accuracy(lvlm, calib, calib["random"][:, :k]) for k in range(1, 5)}
    similar = {k: accuracy(lvlm, calib, calib["similar"][:, :k]) for k in range(1, 5)}
    for k, target in RANDOM_TARGETS.items():
        assert abs(100 * random[k].mean() - target) <= TOLERANCE, (k, 100 * random[k].mean())
        sd = np.std(similar[k] - random[k], ddof=1)
        assert SD_RANGE[0] <= sd <= SD_RANGE[1], (k, sd)
    zero = accuracy(lvlm, calib, np.zeros((n, 0), dtype=np.int64))
    assert zero.mean() < random[1].mean()
    pairs = np.array([(i, j) for i in range(64) for j in range(64) if i != j])  # (4032, 2)
    best = np.empty(n)
    for i, q in enumerate(calib["qids"]):
        cand = np.asarray(calib["pools"][int(q)])[pairs]
        best[i] = calib["top"][i] if lvlm.correct(np.full(len(cand), q), cand).any() else calib["wrong"][i]
    assert 100 * (best.mean() - random[2].mean()) >= HINDSIGHT_GAIN
    assert random[2].mean() < similar[2].mean() < best.mean()


def test_relevance_model_by_hand(world, lvlm, monkeypatch):
    """eta differences with the jitter off equal the named constants."""
    monkeypatch.setattr(sim_mod, "JITTER_SD", 0.0)
    _, pool, test = world
    q = test[0]
    qt, qc = lvlm.qtype[lvlm.index([q.question_id])[0]], lvlm.concept[lvlm.index([q.question_id])[0]]
    ids = np.array([r.question_id for r in pool])
    t, c = lvlm.qtype[lvlm.index(ids)], lvlm.concept[lvlm.index(ids)]
    tc = ids[(t == qt) & (c == qc)][:2]
    ty = ids[(t == qt) & (c != qc)][:1]
    irr = ids[(t != qt) & (c != qc)][:1]
    eta = lambda icds: lvlm.logits(np.array([q.question_id]), np.array([icds]))[0]  # noqa: E731
    base = sim_mod.SHOT_BIAS[0] - lvlm.difficulty[lvlm.index([q.question_id])[0]]
    assert eta(np.zeros(0, dtype=np.int64)) == pytest.approx(base)
    assert eta(tc[:1]) - eta(irr) == pytest.approx(sim_mod.REL_TYPE_CONCEPT - sim_mod.REL_IRRELEVANT)
    assert eta(ty) - eta(irr) == pytest.approx(sim_mod.REL_TYPE - sim_mod.REL_IRRELEVANT)
    duplicate, complementary = eta(tc), eta([tc[0], ty[0]])
    assert duplicate == pytest.approx(eta(tc[:1]) - sim_mod.SHOT_BIAS[1] + sim_mod.SHOT_BIAS[2]
                                      + sim_mod.REDUNDANCY * sim_mod.REL_TYPE_CONCEPT)
    assert duplicate < complementary  # near-duplicates help less than complementary ICDs
    assert (lvlm.correct([q.question_id], [irr]) == (eta(irr) > logit(lvlm.u[lvlm.index([q.question_id])]))).all()


def test_deterministic_across_batches(world, lvlm):
    _, pool, test = world
    reqs = [Request(icds=(pool[i], pool[i + 1])[: i % 3], query=test[i]) for i in range(40)]
    alone = [lvlm.generate([r])[0] for r in reqs[:10]]
    batch = lvlm.generate(list(reversed(reqs)))[::-1]
    assert alone == batch[:10]
    assert SimulatedLVLM(lvlm.latent_path).generate(reqs) == batch


def test_raw_text_needs_postprocessing(world, lvlm):
    _, pool, test = world
    reqs = [Request(icds=(pool[i],), query=test[i]) for i in range(400)]
    gens = lvlm.generate(reqs)
    decorated = [g for g in gens if g.text != g.answer]
    assert 0.05 < len(decorated) / len(gens) < 0.3
    assert all(g.text.startswith(g.answer) and "Question" not in g.answer for g in gens)
    raw = SimulatedLVLM(lvlm.latent_path, PromptConfig(postprocess="none")).generate(reqs)
    assert [g.text for g in raw] == [g.text for g in gens]
    assert sum(g.answer != g.text for g in raw) == 0


def test_score_consistent_with_generate(world, lvlm):
    _, pool, test = world
    reqs = [Request(icds=(pool[i],), query=test[i]) for i in range(100)]
    gens = lvlm.generate(reqs)
    for r, g in zip(reqs, gens, strict=True):
        candidates = list(dict.fromkeys([g.answer, *r.query.answers, "no idea"]))
        scores = lvlm.score([r] * len(candidates), candidates)
        best = max(range(len(candidates)), key=lambda i: scores[i].sum_logprob)
        assert candidates[best] == g.answer
        assert sum(np.exp(s.sum_logprob) for s in scores) <= 1.0 + 1e-9
    s = lvlm.score(reqs[:1], ["fighting fires"])[0]
    assert s.n_tokens == 2 and s.mean_logprob == pytest.approx(s.sum_logprob / 2)
    with pytest.raises(KitError, match="2 requests but 1 answers"):
        lvlm.score(reqs[:2], ["x"])


def test_batched_generate_equals_one_at_a_time(world, lvlm):
    # speed is measured by benchmarks; here only that batching changes nothing
    _, pool, test = world
    reqs = [Request(icds=tuple(pool[(7 * i + j) % len(pool)] for j in range(i % 5)), query=test[i % len(test)])
            for i in range(200)]
    assert lvlm.generate(reqs) == [lvlm.generate([r])[0] for r in reqs]


def test_errors_and_fingerprint(world, lvlm, tmp_path):
    root, pool, test = world
    with pytest.raises(KitError, match="Question 123 is not in the demo world"):
        lvlm.correct(np.array([123]), np.zeros((1, 0), dtype=np.int64))
    with pytest.raises(KitError, match="needs the demo world's demo_latent.json"):
        make_simulated(LVLMConfig(backend="simulated"), tmp_path)
    (tmp_path / "demo_latent.json").write_text("{oops")
    with pytest.raises(KitError, match="is not valid JSON"):
        SimulatedLVLM(tmp_path / "demo_latent.json")
    made = make_simulated(LVLMConfig(backend="simulated"), root)
    assert made.fingerprint() == lvlm.fingerprint() and made.fingerprint().startswith("simulated-")
    assert SimulatedLVLM(lvlm.latent_path, seed=1).fingerprint() != lvlm.fingerprint()
    other = SimulatedLVLM(lvlm.latent_path, PromptConfig(icd_order="reversed"))
    assert other.fingerprint() != lvlm.fingerprint()
    for doc in (SimulatedLVLM.__doc__, sim_mod.__doc__, SimulatedLVLM.fingerprint.__doc__):
        assert "not a model" in doc.lower()
