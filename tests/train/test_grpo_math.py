"""RCE/GRPO equations on tiny tensors whose answers were worked out by hand."""

import math

import pytest
import torch
from scipy.stats import entropy, rankdata

from icl_kit.core.config import GRPOConfig
from icl_kit.core.errors import KitError
from icl_kit.train.math import (
    adapt_beta,
    clip_fraction,
    clipped_surrogate,
    group_advantages,
    informative_groups,
    kl_k3,
    linear_tau,
    masked_mean,
    policy_ratio,
    rce_group_loss,
    rce_weights,
)

T = torch.tensor


def close(a, b, tol=1e-4):
    return torch.allclose(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32), atol=tol)



GRPO = GRPOConfig()  # the defaults of std_floor and adv_clip live in the config only


def advantages(rewards, mode, std_floor=GRPO.std_floor, clip=GRPO.adv_clip, mask=None):
    return group_advantages(rewards, mode, std_floor, clip, mask)


# ------------------------------------------------------------------ advantages
def test_zscore_hand_computed():
    # mean 1.5, population std sqrt(1.25) = 1.11803
    adv = advantages(T([[0.0, 1.0, 2.0, 3.0]]), "zscore")
    assert close(adv, [[-1.34164, -0.44721, 0.44721, 1.34164]])


def test_zscore_std_floor_and_clip():
    # std 0.01 is floored to 0.1: (±0.01)/0.1 = ±0.1
    assert close(advantages(T([[1.0, 1.02]]), "zscore", std_floor=0.1), [[-0.1, 0.1]])
    # nine 0s and one 10: mean 1, std 3 -> 10 maps to 3, clipped to 2; the 0s map to -1/3
    adv = advantages(T([[0.0] * 9 + [10.0]]), "zscore", std_floor=0.1, clip=2.0)
    assert close(adv, [[-1 / 3] * 9 + [2.0]])


def test_zscore_ragged_groups_ignore_padding():
    rewards = T([[0.0, 1.0, 2.0, 3.0], [5.0, 7.0, 99.0, -99.0]])
    mask = T([[True] * 4, [True, True, False, False]])
    adv = advantages(rewards, "zscore", mask=mask)
    assert close(adv[1], [-1.0, 1.0, 0.0, 0.0])  # mean 6, std 1; padding -> 0
    assert close(adv[0], advantages(rewards[:1], "zscore")[0])


def test_rank_matches_scipy_average_ranks():
    rewards = T([[3.0, 1.0, 2.0, 2.0]])
    assert close(advantages(rewards, "rank"), [[1.0, -1.0, 0.0, 0.0]])
    r = torch.randn(5, 7)
    expected = [(2 * (rankdata(row) - 1) / 6 - 1).tolist() for row in r.numpy()]
    assert close(advantages(r, "rank"), expected)


def test_rank_ragged():
    adv = advantages(T([[0.5, 0.1, 9.0]]), "rank", mask=T([[True, True, False]]))
    assert close(adv, [[1.0, -1.0, 0.0]])


def test_mean_only():
    assert close(advantages(T([[1.0, 2.0, 6.0]]), "mean_only"), [[-2.0, -1.0, 3.0]])


def test_batch_std_uses_std_over_the_batch():
    # group means 1, 1; all rewards [0, 2, 1, 1]: std sqrt(0.5)
    adv = advantages(T([[0.0, 2.0], [1.0, 1.0]]), "batch_std", std_floor=0.1)
    assert close(adv, [[-math.sqrt(2), math.sqrt(2)], [0.0, 0.0]])


def test_unknown_rule_is_a_kit_error():
    with pytest.raises(KitError, match="zscore"):
        advantages(T([[0.0, 1.0]]), "zcore")


def test_informative_groups_drop_ties():
    rewards = T([[1.0, 1.0, 1.0], [0.0, 1.0, 1.0], [2.0, 2.0, 7.0]])
    mask = T([[True] * 3, [True] * 3, [True, True, False]])
    assert informative_groups(rewards, mask).tolist() == [False, True, False]


def test_masked_mean_with_global_denominator():
    x, m = T([1.0, 2.0, 100.0]), T([True, True, False])
    assert close(masked_mean(x, m), 1.5)
    assert close(masked_mean(x, m, denom=6.0), 0.5)


# ------------------------------------------------------------------------ PPO
def test_ratio_and_clipped_surrogate():
    assert close(policy_ratio(T([math.log(0.3)]), T([math.log(0.2)])), [1.5])
    ratio = T([0.5, 1.0, 1.5, 1.5, 0.5])
    adv = T([1.0, -1.0, 1.0, -1.0, -1.0])
    # min(ρA, clip(ρ, 0.8, 1.2)A): 0.5 vs 0.8; -1 vs -1; 1.5 vs 1.2; -1.5 vs -1.2; -0.5 vs -0.8
    assert close(clipped_surrogate(ratio, adv, 0.2), [0.5, -1.0, 1.2, -1.5, -0.8])
    assert clip_fraction(ratio, adv, 0.2).tolist() == [0.0, 0.0, 1.0, 0.0, 1.0]


def test_kl_k3_hand_computed_and_unbiased():
    # Δ = log 0.25 − log 0.5 = −log 2: e^Δ − Δ − 1 = 0.5 + 0.693147 − 1
    assert close(kl_k3(T([math.log(0.5)]), T([math.log(0.25)])), [0.193147])
    assert close(kl_k3(T([-1.3]), T([-1.3])), [0.0])
    p, q = T([0.5, 0.3, 0.2]), T([0.25, 0.25, 0.5])
    expected = entropy(p.numpy(), q.numpy())  # KL(p || q)
    assert close((p * kl_k3(p.log(), q.log())).sum(), expected)


def test_adapt_beta():
    assert adapt_beta(0.1, kl=0.02, target=0.01) == pytest.approx(0.2)
    assert adapt_beta(0.1, kl=0.005, target=0.01) == pytest.approx(0.05)
    assert adapt_beta(0.1, kl=0.01, target=0.01) == 0.1
    assert adapt_beta(0.1, kl=5.0, target=0.0) == 0.1


# ------------------------------------------------------------------------ RCE
def test_rce_weights_softmax_over_reward_over_tau():
    e = math.e
    assert close(rce_weights(T([[0.0, 1.0]]), tau=1.0), [[1 / (1 + e), e / (1 + e)]])
    assert close(rce_weights(T([[0.0, 1.0]]), tau=0.5), [[1 / (1 + e**2), e**2 / (1 + e**2)]])
    w = rce_weights(T([[0.0, 1.0, 50.0]]), tau=1.0, mask=T([[True, True, False]]))
    assert close(w, [[1 / (1 + e), e / (1 + e), 0.0]])


def test_rce_group_loss():
    logp = T([[math.log(0.5), math.log(0.25), float("-inf")]])
    w = T([[0.25, 0.75, 0.0]])
    loss = rce_group_loss(logp, w, mask=T([[True, True, False]]))
    assert close(loss, [0.25 * math.log(2) + 0.75 * math.log(4)])


def test_linear_tau_schedule():
    assert [linear_tau(e, 5, 2.0, 0.5) for e in range(5)] == pytest.approx([2.0, 1.625, 1.25, 0.875, 0.5])
    assert linear_tau(0, 1, 2.0, 0.5) == 2.0
