"""The GRPO options of the RL libraries (TRL, verl, DAPO, GSPO, RLOO) and the answer probability's norm: each
equation on tiny tensors with answers worked out by hand, each option training on the tiny world, and a kill and
resume with every option ending in the same bytes as an uninterrupted run."""

import math
import shutil
import sqlite3

import pytest
import torch
from fake_world import FakeWorld, ScriptedLVLM, record
from grpo_ddp_worker import N_POOL, POOL_BASE, fake_answer, hash_lvlm, tiny_params, tiny_world
from tiny_run import contents, differences

import icl_kit.train.steps as steps
from icl_kit.core.artefacts import shaping_params
from icl_kit.core.config import GRPOConfig, SFTDataConfig
from icl_kit.core.dist import Ranks
from icl_kit.core.errors import KitError
from icl_kit.core.runs import read_jsonl
from icl_kit.lvlm.answers import AnswerService, answer_prob
from icl_kit.lvlm.base import Score
from icl_kit.selection.selector import PointerSelector
from icl_kit.train.batch import Batch
from icl_kit.train.math import (
    clip_fraction,
    clip_sides,
    clipped_surrogate,
    entropy_bonus,
    group_advantages,
    selection_ratio,
)
from icl_kit.train.refill import cat_groups, refill, refill_order, refill_seed
from icl_kit.train.rollouts import Groups
from icl_kit.train.sft_data import search_chunk
from icl_kit.train.trainer import train

pytestmark = pytest.mark.usefixtures("one_thread")
T = torch.tensor


def close(a, b, tol=1e-5):
    return torch.allclose(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32), atol=tol)


# ------------------------------------------------------------------ 1. rloo
def test_rloo_is_the_reward_minus_the_mean_of_the_others():
    # [1, 2, 6]: 1 − (2+6)/2 = −3;  2 − (1+6)/2 = −1.5;  6 − (1+2)/2 = 4.5
    assert close(group_advantages(T([[1.0, 2.0, 6.0]]), "rloo", 0.1, 5.0), [[-3.0, -1.5, 4.5]])
    # [0, 0, 1, 1]: 0 − 2/3 = −2/3;  1 − 1/3 = 2/3 (= 4/3 · (r − 0.5)); no std floor or clip applies
    assert close(group_advantages(T([[0.0, 0.0, 1.0, 1.0]]), "rloo", 10.0, 0.1), [[-2 / 3, -2 / 3, 2 / 3, 2 / 3]])


def test_rloo_ragged_groups_and_a_group_of_one():
    rewards = T([[1.0, 3.0, 99.0], [5.0, -7.0, 8.0]])
    mask = T([[True, True, False], [True, False, False]])
    # row 0: 1 − 3 = −2, 3 − 1 = 2, padding 0;  row 1: one real sequence, no other to compare with: 0
    assert close(group_advantages(rewards, "rloo", 0.1, 5.0, mask), [[-2.0, 2.0, 0.0], [0.0, 0.0, 0.0]])


# ------------------------------------------------------------------ 2. clip_eps_high
def test_asymmetric_clip_by_hand():
    ratio, adv = T([[0.5, 1.5, 0.5, 1.5, 1.25]]), T([[-1.0, 1.0, 1.0, -1.0, 1.0]])
    # ε = 0.2, ε_high = 0.3: range [0.8, 1.3]
    #   ρ .5, A −1: min(−.5, −.8) = −.8   (clipped, low side)
    #   ρ 1.5, A 1: min(1.5, 1.3) = 1.3   (clipped, high side)
    #   ρ .5, A 1: min(.5, .8) = .5;  ρ 1.5, A −1: min(−1.5, −1.3) = −1.5;  ρ 1.25, A 1: min(1.25, 1.25) = 1.25
    assert close(clipped_surrogate(ratio, adv, 0.2, 0.3), [[-0.8, 1.3, 0.5, -1.5, 1.25]])
    low, high = clip_sides(ratio, adv, 0.2, 0.3)
    assert low.tolist() == [[1.0, 0.0, 0.0, 0.0, 0.0]] and high.tolist() == [[0.0, 1.0, 0.0, 0.0, 0.0]]
    assert clip_fraction(ratio, adv, 0.2, 0.3).tolist() == [[1.0, 1.0, 0.0, 0.0, 0.0]]  # = low + high
    # symmetric (null): range [0.8, 1.2]; ρ 1.25 with A 1 is now clipped to 1.2 as well
    assert close(clipped_surrogate(ratio, adv, 0.2), [[-0.8, 1.2, 0.5, -1.5, 1.2]])
    assert clip_sides(ratio, adv, 0.2)[1].tolist() == [[0.0, 1.0, 0.0, 0.0, 1.0]]
    # null is exactly ε_high = ε (today's behaviour, bit for bit)
    r = torch.rand(3, 4) * 2
    assert torch.equal(clipped_surrogate(r, adv[:, :4].expand(3, 4), 0.2, None),
                       clipped_surrogate(r, adv[:, :4].expand(3, 4), 0.2, 0.2))


# ------------------------------------------------------------------ 4. ratio
def test_product_and_per_pick_mean_ratios_by_hand():
    # two picks with log-ratios (ln 2, ln 8) and (ln 0.25, 0): product 16 and 0.25; geometric mean √16 = 4, √.25 = .5
    new = T([[math.log(2) + math.log(8), math.log(0.25)]])
    old = torch.zeros(1, 2)
    assert close(selection_ratio(new, old, 2, "product"), [[16.0, 0.25]], 1e-4)
    assert close(selection_ratio(new, old, 2, "per_pick_mean"), [[4.0, 0.5]])
    with pytest.raises(KitError, match="train.grpo.ratio"):
        selection_ratio(new, old, 2, "token")


def test_the_products_trust_region_tightens_per_pick_with_k():
    # every pick's ratio 1.1, A = 1, ε = 0.2: k = 2 gives a product 1.21 > 1.2 (clipped) but a geometric mean 1.1
    # (inside); k = 1 gives 1.1 either way. The product allows about ε/k per pick, the mean ε per selection.
    per_pick = math.log(1.1)
    for k, product_clipped in ((1, 0.0), (2, 1.0), (3, 1.0)):
        new, old, adv = T([[k * per_pick]]), torch.zeros(1, 1), torch.ones(1, 1)
        assert clip_sides(selection_ratio(new, old, k, "product"), adv, 0.2)[1].item() == product_clipped
        assert clip_sides(selection_ratio(new, old, k, "per_pick_mean"), adv, 0.2)[1].item() == 0.0


# ------------------------------------------------------------------ 3. entropy bonus
def test_entropy_bonus_by_hand():
    ent = T([[[0.6, 0.2], [1.0, 0.0]]])  # (B 1, G 2, L 2): per-sequence pick means 0.4 and 0.5
    assert entropy_bonus(ent, None, 0.5).item() == pytest.approx(0.5 * 0.45)  # mean 0.45
    assert entropy_bonus(ent, T([[True, False]]), 0.5).item() == pytest.approx(0.5 * 0.4)
    assert entropy_bonus(ent, None, 0.5, denom=4.0).item() == pytest.approx(0.5 * 0.9 / 4)  # global denominator


def uniform_batch(n_cand: int = 4) -> Batch:
    """One group of 4 two-pick sequences over `n_cand` identical candidates: every pick is uniform over the
    candidates left (identical keys give equal logits), whatever the selector's weights."""
    g = torch.Generator().manual_seed(0)
    c = torch.randn(1, 1, 8, generator=g).expand(1, n_cand, 8).contiguous()
    seqs = T([[[0, 1], [1, 2], [2, 3], [3, 0]]])
    return Batch.dense(torch.randn(1, 8, generator=g), c, seqs, T([[0.0, 0.0, 1.0, 1.0]]),
                       torch.ones(1, 4, dtype=torch.bool))


def test_entropy_coef_subtracts_the_mean_pick_entropy_from_the_loss():
    torch.manual_seed(0)
    policy, b = PointerSelector(8, 16, dropout=0.0), uniform_batch()
    adv = T([[-1.0, -1.0, 1.0, 1.0]])
    # ρ = 1 (no old log-probs): ppo = −mean(A) = 0; KL off. Picks uniform over 4 then 3 candidates:
    # entropies ln 4 and ln 3, mean per sequence ln(12)/2 = 1.242453; loss = −c · 1.242453
    loss, parts = steps._grpo_loss(policy, b, adv, None, None, GRPOConfig(entropy_coef=0.1), 0.0, 4.0, 0)
    assert loss.item() == pytest.approx(-0.1 * math.log(12) / 2, abs=1e-6)
    assert parts[5].item() == pytest.approx(math.log(12), abs=1e-6)  # logged: Σ_t H_t, divided by L later
    loss0, _ = steps._grpo_loss(policy, b, adv, None, None, GRPOConfig(), 0.0, 4.0, 0)
    assert abs(loss0.item()) < 1e-7  # default 0: no entropy term at all


# ------------------------------------------------------------------ 8. clip_ratio/low, clip_ratio/high
def test_logged_clip_ratios_count_selections_clipped_on_each_side():
    torch.manual_seed(0)
    policy, b = PointerSelector(8, 16, dropout=0.0), uniform_batch()
    adv = T([[-1.0, -1.0, 1.0, 1.0]])
    # every sequence has log π = ln(1/4) + ln(1/3); old = log π − ln ρ gives the ratios ρ = (.5, 1, 1, 1.5)
    target = T([[0.5, 1.0, 1.0, 1.5]])
    old = torch.full((1, 4), math.log(1 / 12)) - target.log()
    keys = steps.GRPO_SUM_KEYS
    _, parts = steps._grpo_loss(policy, b, adv, old, None, GRPOConfig(clip_eps=0.2), 0.0, 4.0, 0)
    got = dict(zip(keys, parts.tolist(), strict=True))
    # low: ρ .5 < .8 with A < 0 (1 of 4); high: ρ 1.5 > 1.2 with A > 0 (1 of 4)
    assert got["train/clip_ratio/low"] == 0.25 and got["train/clip_ratio/high"] == 0.25
    assert got["train/clip_frac"] == 0.5
    # ppo = −mean(−.8, −1, 1, 1.2) = −0.1
    assert got["train/ppo_loss"] == pytest.approx(-0.1, abs=1e-5)
    _, parts = steps._grpo_loss(policy, b, adv, old, None, GRPOConfig(clip_eps=0.2, clip_eps_high=0.6), 0.0, 4.0, 0)
    got = dict(zip(keys, parts.tolist(), strict=True))
    # ε_high .6: 1.5 < 1.6 is inside; ppo = −mean(−.8, −1, 1, 1.5) = −0.175
    assert got["train/clip_ratio/high"] == 0.0 and got["train/clip_ratio/low"] == 0.25
    assert got["train/ppo_loss"] == pytest.approx(-0.175, abs=1e-5)
    # per_pick_mean: ρ = (.5^(1/2), 1, 1, 1.5^(1/2)) = (.7071, 1, 1, 1.2247): .7071 < .8 low, 1.2247 > 1.2 high
    _, parts = steps._grpo_loss(policy, b, adv, old, None, GRPOConfig(ratio="per_pick_mean"), 0.0, 4.0, 0)
    got = dict(zip(keys, parts.tolist(), strict=True))
    assert got["train/ratio_mean"] == pytest.approx((0.5**0.5 + 2 + 1.5**0.5) / 4, abs=1e-5)
    assert got["train/clip_ratio/low"] == 0.25 and got["train/clip_ratio/high"] == 0.25


# ------------------------------------------------------------------ 6. kl_beta 0
class NoReference(torch.nn.Module):
    def eval(self):
        raise AssertionError("β = 0 must not evaluate the reference policy")


def test_kl_beta_zero_never_evaluates_the_reference():
    torch.manual_seed(0)
    policy, b = PointerSelector(8, 16, dropout=0.0), uniform_batch()
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-2)
    m = steps.grpo_step(policy, NoReference(), opt, b, GRPOConfig(kl_beta=0.0), 0.0, 1.0, Ranks(), 1, 0)
    assert m["train/kl"] == 0.0 and m["train/beta"] == 0.0 and m["train/updated"]


# ------------------------------------------------------------------ 5. refill
def groups_of(rows, tied):
    """One group of 2 sequences per query row; reward (0, 1), or (1, 1) for a row in `tied`."""
    rows = T(list(rows))
    rewards = T([[1.0, 1.0] if int(r) in tied else [0.0, 1.0] for r in rows])
    seqs, mask = torch.zeros(len(rows), 2, 1, dtype=torch.long), torch.ones(len(rows), 2, dtype=torch.bool)
    return Groups(rows, seqs, rewards, mask)


def test_refill_order_is_the_other_queries_in_a_seeded_order():
    order = refill_order(6, T([0, 1]), seed=5)
    assert sorted(order.tolist()) == [2, 3, 4, 5]
    assert torch.equal(order, refill_order(6, T([0, 1]), seed=5))
    assert refill_seed(0, 5) == 2**40 + 5 and refill_seed(1, 5) == 2**40 + 1_000_003 + 5


def test_refill_draws_until_the_step_is_full_or_the_bound():
    taken = T([0, 1])
    # the step's own queries both tie; every other query has spread: need 2, one draw of 2 fills it
    first = groups_of([0, 1], tied={0, 1})
    g, drawn = refill(lambda idx: groups_of(idx.tolist(), tied={0, 1}), first, taken, 6, 5, max_queries=64)
    assert drawn == 2 and g.rows.tolist()[:2] == [0, 1]
    assert g.rows.tolist()[2:] == refill_order(6, taken, 5)[:2].tolist()
    # every other query ties as well: all 4 are drawn (2, then 2 more), none fills; the bound 3 stops at 3
    first = groups_of([0, 1], tied={0})
    draw = lambda idx: groups_of(idx.tolist(), tied=set(range(6)))  # noqa: E731
    assert refill(draw, first, taken, 6, 5, max_queries=64)[1] == 4
    g, drawn = refill(draw, first, taken, 6, 5, max_queries=3)
    assert drawn == 3 and len(g.rows) == 5
    # nothing to refill, or a bound of 0: the step's own groups as they are
    full = groups_of([0, 1], tied=set())
    g, drawn = refill(draw, full, taken, 6, 5, max_queries=64)
    assert g is full and drawn == 0
    assert refill(draw, first, taken, 6, 5, max_queries=0)[1] == 0
    assert len(cat_groups([first, first]).rows) == 4


# ------------------------------------------------------------------ 7. prob_norm
def test_answer_prob_in_both_norms_by_hand():
    s = Score(sum_logprob=math.log(0.25), mean_logprob=math.log(0.5), n_tokens=2)  # two tokens of p = 0.5
    assert answer_prob(s, "sequence") == pytest.approx(0.25)  # 0.5 · 0.5
    assert answer_prob(s, "token_mean") == pytest.approx(0.5)  # exp(mean(ln .5, ln .5))
    assert answer_prob(Score(0.0, 0.0, 0), "token_mean") == 1.0 == answer_prob(Score(0.0, 0.0, 0), "sequence")
    with pytest.raises(KitError, match="prob_norm"):
        answer_prob(s, "per_token")


TOKENS = {"right": 2, "left": 1, "up": 1, "yes": 2, "no": 1}  # tokens of each answer string
TABLE = {(): 0.1, (10,): 0.4, (11,): 0.3, (12,): 0.2, (11, 10): 0.5, (12, 10): 0.55, (10, 11): 0.5, (12, 11): 0.58}
QUERY, POOL = 1, [10, 11, 12]


class TokenLVLM(ScriptedLVLM):
    """A ScriptedLVLM whose answers have TOKENS tokens: sum = logprob, mean = logprob / n."""

    def score(self, requests, answers):
        self.scored += len(requests)
        return [Score(lp, lp / TOKENS[a], TOKENS[a]) for lp, a in
                ((self.logprob(r, a), a) for r, a in zip(requests, answers, strict=True))]


def table_logprob(req, answer):
    if answer == "right":
        return math.log(TABLE.get(tuple(r.question_id for r in req.icds), 0.05))
    return math.log({"left": 0.1, "up": 0.2}[answer])


def table_service(path, answers, prob_norm="sequence", with_gt_prob=False):
    lvlm = TokenLVLM(lambda r: "right", "table-tokens-v1", logprob=table_logprob)
    records = {q: record(q, list(answers)) for q in [QUERY, *POOL]}
    return AnswerService(lvlm, records, path, batch_size=3, with_gt_prob=with_gt_prob, prob_norm=prob_norm), lvlm


def test_gt_prob_in_token_mean_comes_from_the_cached_scores(tmp_path):
    answers = ["right"] * 6 + ["left"] * 2 + ["up"] * 2  # weights 1, 2/3, 2/3
    path = tmp_path / "c.sqlite"
    service, _ = table_service(path, answers, "token_mean", with_gt_prob=True)
    (a,) = service.answers([(QUERY, ())])
    # token_mean: "right" (2 tokens, P 0.1) -> √0.1 = 0.316228; "left" 0.1, "up" 0.2 (1 token each)
    # 0.316228 + 2/3 · 0.1 + 2/3 · 0.2 = 0.516228
    assert a.gt_prob == pytest.approx(math.sqrt(0.1) + 0.2)
    # the answers table keeps the sequence value: 0.1 + 2/3 · 0.1 + 2/3 · 0.2 = 0.3, read back with no LVLM call
    again, lvlm = table_service(path, answers, "sequence", with_gt_prob=True)
    assert again.answers([(QUERY, ())])[0].gt_prob == pytest.approx(0.3)
    assert lvlm.seen == 0 and lvlm.scored == 0
    with pytest.raises(KitError, match="prob_norm"):
        table_service(path, answers, "mean")


def test_infoscore_beams_in_token_mean_by_hand(tmp_path):
    service, _ = table_service(tmp_path / "c.sqlite", ["right"] * 10)
    cfg = SFTDataConfig(beam_size=2, max_shots=2, prob_norm="token_mean")
    (line,) = search_chunk(service, [QUERY], {QUERY: POOL}, cfg)
    # P = √p ("right" has 2 tokens): () .316228; step 1: (10) .632456 -> +.316228, (11) .547723 -> +.231495,
    # (12) .447214 -> +.130986: beams [10], [11]. Step 2 (left): of [10]: (11,10) √.5 − .632456 = .074651,
    # (12,10) √.55 − .632456 = .109164; of [11]: (10,11) √.5 − .547723 = .159384, (12,11) √.58 − .547723 = .213854
    best, second = line["beams"]
    assert best["icd_ids"] == [12, 11] and second["icd_ids"] == [10, 11]  # the same beams as sequence ...
    assert best["step_scores"] == pytest.approx([0.231495, 0.213854], abs=1e-6)  # ... with other scores
    assert second["step_scores"] == pytest.approx([0.231495, 0.159384], abs=1e-6)
    (seq_line,) = search_chunk(service, [QUERY], {QUERY: POOL}, SFTDataConfig(beam_size=2, max_shots=2))
    assert seq_line["beams"][0]["step_scores"] == pytest.approx([0.2, 0.28])  # sequence: .3 − .1, .58 − .3


def test_each_prob_norm_shapes_its_own_artefact(tmp_path):
    params = tiny_params(tmp_path / "r", ["train.reward.prob_norm=token_mean", "sft_data.prob_norm=token_mean"])
    assert shaping_params("rollouts", params)["train.reward.prob_norm"] == "token_mean"
    assert "sft_data.prob_norm" not in shaping_params("rollouts", params)
    assert shaping_params("sft_data", params)["sft_data.prob_norm"] == "token_mean"
    assert "train.reward.prob_norm" not in shaping_params("sft_data", params)


# ------------------------------------------------------------------ tiny runs
GRPO_ONLY = ("train.rce.epochs=0", "train.grpo.epochs=1")  # 6 GRPO steps of 8 groups


def run_tiny(run_dir, *overrides, stop=None, world=None):
    params = tiny_params(run_dir, [*GRPO_ONLY, *overrides])
    ctx = (world or (lambda p: tiny_world(p, hash_lvlm())))(params)
    return train(params, ctx=ctx, stop_after_steps=stop, progress=False)


def grpo_steps(run_dir):
    return [r for r in read_jsonl(run_dir / "train_log.jsonl") if r["kind"] == "step" and r["phase"] == "grpo"]


@pytest.mark.parametrize("overrides", [
    ("train.grpo.advantage=rloo",),
    ("train.grpo.clip_eps_high=0.28", "train.grpo.ppo_epochs=2", "train.grpo.lr=0.05"),
    ("train.grpo.entropy_coef=0.01",),
    ("train.grpo.ratio=per_pick_mean", "train.grpo.ppo_epochs=2", "train.grpo.lr=0.05"),
    ("train.grpo.zero_spread=refill",),
    ("train.grpo.zero_spread=refill", "train.rollouts.mode=offline"),
    ("train.grpo.kl_beta=0", "train.grpo.kl_target=0.01"),
], ids=lambda o: ",".join(x.split("=")[0].split(".")[-1] + "=" + x.split("=")[1] for x in o))
def test_each_option_trains_on_the_tiny_world(tmp_path, overrides):
    res = run_tiny(tmp_path / "r", *overrides)
    rows = grpo_steps(tmp_path / "r")
    assert res.steps == 6 and len(rows) == 6 and all(r["train/updated"] for r in rows)
    assert all(math.isfinite(r["train/loss"]) and 0 <= r["train/clip_ratio/low"] <= 1
               and 0 <= r["train/clip_ratio/high"] <= 1 for r in rows)
    assert all(r["train/clip_ratio/low"] + r["train/clip_ratio/high"] == pytest.approx(r["train/clip_frac"])
               for r in rows)
    if "train.grpo.zero_spread=refill" in overrides:
        # 8 groups with spread after refilling d extra queries: d of the 8 + d groups tie, a share of d / (8 + d)
        assert any(r["train/refill_queries"] > 0 for r in rows)
        assert all(r["train/frac_reward_zero_std"] * (8 + r["train/refill_queries"])
                   == pytest.approx(r["train/refill_queries"]) for r in rows)
    if "train.grpo.kl_beta=0" in overrides:
        assert all(r["train/kl"] == 0.0 and r["train/beta"] == 0.0 for r in rows)
        last = torch.load(tmp_path / "r" / "checkpoints" / "last.pt", weights_only=True)
        assert last["ref_model"] is None  # no frozen reference is kept
    if any("ppo_epochs=2" in o for o in overrides):
        assert any(r["train/ratio_mean"] != 1.0 for r in rows)


def test_gt_prob_reward_in_token_mean_trains_on_the_tiny_world(tmp_path):
    # "yes" has 2 tokens, each of P 0.6 when the hash LVLM says yes, else 0.2 (sequence: 0.36 or 0.04)
    def logprob(req, answer):
        return 2 * math.log(0.6 if fake_answer(req) == answer else 0.2)

    def world(params):
        lvlm = TokenLVLM(fake_answer, "hash-tokens-v1", logprob=logprob)
        return FakeWorld.make(params, lvlm, [record(POOL_BASE + i, ["yes"] * 10) for i in range(N_POOL)], [],
                              dim=8, pool_size=8, batch_size=16)  # its service for training: gt_prob in token_mean

    run = tmp_path / "r"
    res = run_tiny(run, "train.reward.kind=gt_prob", "train.reward.prob_norm=token_mean", world=world)
    assert res.steps == 6 and all(r["train/updated"] for r in grpo_steps(run))
    # rollouts (validation queries) hold the token_mean rewards √.36 = .6 and √.04 = .2 ...
    stored = {round(c["gt_prob"], 6) for line in read_jsonl(run / "rollouts.jsonl") for c in line["candidates"]}
    assert stored == {0.6, 0.2}
    # ... the cache's answers keep the sequence value (.36 or .04), so the table means one thing
    with sqlite3.connect(run / "rewards.sqlite") as db:
        cached = {round(v, 6) for (v,) in db.execute("SELECT gt_prob FROM answers")}
    assert cached == {0.36, 0.04}


# ------------------------------------------------------------------ kill and resume
@pytest.mark.parametrize("opts", [
    ("train.grpo.zero_spread=refill", "train.grpo.advantage=rloo", "train.grpo.epochs=2"),
    ("train.grpo.clip_eps_high=0.28", "train.grpo.ppo_epochs=2", "train.grpo.entropy_coef=0.01",
     "train.grpo.ratio=per_pick_mean", "train.grpo.kl_beta=0", "train.grpo.epochs=2"),
], ids=["refill+rloo", "clip_high+entropy+per_pick_mean+no_kl"])
def test_kill_and_resume_with_each_grpo_option_ends_in_the_same_bytes(tmp_path, opts):
    run = tmp_path / "r"
    assert run_tiny(run, *opts).steps == 12
    whole = contents(run)
    shutil.rmtree(run)
    # kills before the first mid-epoch save (3), just after one (5: resumes from 4), and mid epoch 2 (11: from 8)
    for stop in (3, 5, 11):
        res = run_tiny(run, *opts, stop=stop)
        assert res.stopped and res.steps == stop
    assert run_tiny(run, *opts).steps == 12
    assert differences(whole, contents(run)) == []
    if "train.grpo.zero_spread=refill" in opts:
        assert any(r["train/refill_queries"] > 0 for r in grpo_steps(run))


def test_each_grpo_step_logs_what_it_asked_of_the_lvlm(tmp_path):
    """lvlm/prompts = queries × group size × rewarded shots; calls + cache hits = prompts (train.outputs.WorkLog)."""
    run = tmp_path / "r"
    run_tiny(run)
    steps = grpo_steps(run)
    params = tiny_params(run, list(GRPO_ONLY))
    group, shots = params.train.rollouts.group_size, len(params.train.reward.shots)
    first = steps[0]
    assert first["lvlm/prompts"] == params.train.grpo.batch_groups * group * shots
    assert all(s["lvlm/calls"] + s["lvlm/cache_hits"] == s["lvlm/prompts"] for s in steps)
    assert all(s["time/prompts_per_s"] > 0 for s in steps)
