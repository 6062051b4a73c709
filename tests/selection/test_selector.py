"""PointerSelector: parameter layout, known picks, hand-recomputed log-probs, sampling law."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from icl_kit.core.errors import KitError
from icl_kit.selection.selector import TEMPERATURE, PointerSelector

torch.set_num_threads(1)


def tiny(seed: int = 0, d: int = 6, h: int = 4, layers: int = 1, heads: int = 1, dropout: float = 0.0):
    torch.manual_seed(seed)
    return PointerSelector(d, h, layers, heads, dropout).eval()


def inputs(seed: int, b: int, k: int, d: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g), torch.randn(b, k, d, generator=g)


# ------------------------------------------------------------------ layout
def test_parameter_names_and_shapes_match_design() -> None:
    d, h = 512, 256
    shapes = {k: list(v.shape) for k, v in PointerSelector(d, h).state_dict().items()}
    assert shapes == {
        "input_proj.weight": [h, d],
        "cross_attn_layers.0.in_proj_weight": [3 * h, h],
        "cross_attn_layers.0.in_proj_bias": [3 * h],
        "cross_attn_layers.0.out_proj.weight": [h, h],
        "cross_attn_layers.0.out_proj.bias": [h],
        "attn_norms.0.weight": [h],
        "attn_norms.0.bias": [h],
        "query_proj.weight": [h, h],
        "cand_proj.weight": [h, h],
        "query_update_gate.weight": [h, 2 * h],
        "query_update_gate.bias": [h],
    }


def test_input_proj_absent_when_d_equals_h_and_layers_counted() -> None:
    keys = PointerSelector(8, 8, num_layers=3).state_dict().keys()
    assert not any(k.startswith("input_proj") for k in keys)
    assert {k.split(".")[1] for k in keys if k.startswith("cross_attn_layers")} == {"0", "1", "2"}


def test_init_and_config() -> None:
    m = PointerSelector(16, 8, 2, 2, 0.3)
    eye = torch.eye(8)
    for w in (m.query_proj.weight, m.cand_proj.weight):
        assert 0 < (w - eye).abs().max() < 0.1  # identity + N(0, 0.01)
    assert torch.equal(m.query_update_gate.bias, torch.zeros(8))
    assert m.config() == {"input_dim": 16, "hidden_dim": 8, "num_layers": 2, "num_heads": 2, "dropout": 0.3,
                          "query_update": "gate"}
    assert PointerSelector(**m.config()).config() == m.config()
    assert "temperature" not in dict(m.named_parameters()) and TEMPERATURE == 0.1


def test_bad_dims_rejected() -> None:
    with pytest.raises(KitError, match="num_heads"):
        PointerSelector(8, 6, num_heads=4)


@pytest.mark.parametrize("heads,layers", [(1, 1), (4, 2)])
def test_cross_attend_equals_torch_multihead_attention(heads: int, layers: int) -> None:
    m = tiny(1, d=8, h=8, layers=layers, heads=heads)
    with torch.no_grad():  # non-zero biases so the algebra around b_k, b_v is exercised
        for attn in m.cross_attn_layers:
            attn.in_proj_bias.normal_()
            attn.out_proj.bias.normal_()
    x, values = torch.randn(5, 8), torch.randn(5, 7, 8)
    ref = x.unsqueeze(1)
    for attn, norm in zip(m.cross_attn_layers, m.attn_norms, strict=True):
        ref = norm(ref + attn(ref, values, values)[0])
    torch.testing.assert_close(m.cross_attend(x, values), ref.squeeze(1), atol=1e-5, rtol=1e-5)


# -------------------------------------------------------------- known picks
def known_world(gate_bias: float) -> tuple[PointerSelector, torch.Tensor, torch.Tensor]:
    """d = h = 4, identity projections, attention output zeroed, constant gate g = sigmoid(bias).

    Vectors live in the zero-mean subspace, where LayerNorm only rescales, so the
    query state is exactly the query direction. Candidates (cosine with q = e1):
    A 0.955, B 0.700, C 0.540, D -1; cos(A, C) = 0.765 > cos(A, B) = 0.669.
    """
    m = tiny(d=4, h=4)
    with torch.no_grad():
        m.query_proj.weight.copy_(torch.eye(4))
        m.cand_proj.weight.copy_(torch.eye(4))
        m.cross_attn_layers[0].out_proj.weight.zero_()
        m.cross_attn_layers[0].out_proj.bias.zero_()
        m.query_update_gate.weight.zero_()
        m.query_update_gate.bias.fill_(gate_bias)
    e1 = torch.tensor([1.0, -1, 0, 0]) / math.sqrt(2)
    e2 = torch.tensor([0.0, 0, 1, -1]) / math.sqrt(2)
    e3 = torch.tensor([1.0, 1, -1, -1]) / 2
    a = math.cos(0.3) * e1 + math.sin(0.3) * e2
    b = 0.7 * e1 + math.sqrt(0.51) * e3
    c = math.cos(1.0) * e1 + math.sin(1.0) * e2
    cands = torch.stack([c, -e1, a, b])  # positions: C=0, D=1, A=2, B=3
    return m, e1.unsqueeze(0), cands.unsqueeze(0)


def test_known_picks_without_state_update_follow_query_cosine() -> None:
    m, q, cands = known_world(gate_bias=30.0)  # g = 1: the state stays the query
    assert m.select(q, cands, 4).tolist() == [[2, 3, 0, 1]]  # A, B, C, D


def test_known_picks_with_full_state_update_follow_last_pick() -> None:
    m, q, cands = known_world(gate_bias=-30.0)  # g = 0: the state becomes the last pick
    assert m.select(q, cands, 4).tolist() == [[2, 0, 3, 1]]  # A, then C (nearest A), B, D


def test_first_step_logprob_is_cosine_softmax() -> None:
    m, q, cands = known_world(gate_bias=0.0)
    cos = F.normalize(cands[0], dim=-1) @ F.normalize(q[0], dim=-1)
    expected = torch.log_softmax(cos / 0.1, dim=0)[2]
    logp, _ = m.step_logprobs(q, cands, torch.tensor([[2]]))
    torch.testing.assert_close(logp[0, 0], expected)


# ----------------------------------------------------------- log-probs
def test_sequence_logprob_matches_explicit_recomputation() -> None:
    m = tiny(2)
    q, c = inputs(3, 2, 5)
    seqs = torch.tensor([[3, 0, 4], [1, 2, 0]])
    with torch.no_grad():
        s, keys = m.encode(q, c)
    w, bias = m.query_update_gate.weight.detach(), m.query_update_gate.bias.detach()
    expected = []
    for b in range(2):
        state, used, total = s[b], [], 0.0
        for a in seqs[b].tolist():
            logits = torch.tensor([-math.inf if j in used else float(keys[b, j] @ state) / 0.1 for j in range(5)])
            total += float(torch.log_softmax(logits, dim=0)[a])
            g = torch.sigmoid(w @ torch.cat([state, keys[b, a]]) + bias)
            state = g * state + (1 - g) * keys[b, a]
            state = state / state.norm()
            used.append(a)
        expected.append(total)
    torch.testing.assert_close(m.sequence_logprob(q, c, seqs), torch.tensor(expected))


def test_step_entropy_matches_scipy_and_excludes_chosen() -> None:
    m = tiny(4)
    q, c = inputs(5, 1, 6)
    temp = 2.0
    seq = torch.tensor([[1, 4]])
    logp, ent = m.step_logprobs(q, c, seq, temperature=temp)
    s, keys = m.encode(q, c)
    p0 = torch.softmax(keys[0] @ s[0] / TEMPERATURE / temp, dim=0)
    assert ent[0, 0].item() == pytest.approx(stats.entropy(p0.detach().numpy()), rel=1e-5)
    assert logp[0, 0].item() == pytest.approx(math.log(p0[1].item()), rel=1e-5)
    assert ent[0, 1] < math.log(5) + 1e-6  # one of six candidates is masked at step 2


def test_step_logprobs_are_differentiable_and_finite() -> None:
    torch.manual_seed(0)
    m = PointerSelector(6, 4, 2, 2, dropout=0.1).train()
    q, c = inputs(6, 3, 5)
    seqs = torch.tensor([[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 0, 4, 1, 3]])
    logp, ent = m.step_logprobs(q, c, seqs)
    (-(logp.sum()) - 0.1 * ent.sum()).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert torch.isfinite(ent).all() and ent[:, -1].abs().max() < 1e-6  # last pick is forced


# ------------------------------------------------------------- sampling
def test_sample_frequencies_match_model_probabilities() -> None:
    m = tiny(7)
    q, c = inputs(8, 1, 4)
    temp, n = 8.0, 12000
    seqs = torch.tensor(list(itertools.permutations(range(4), 2)))  # all 12 ordered pairs
    probs = m.step_logprobs(q.expand(12, -1), c.expand(12, -1, -1), seqs, temperature=temp)[0]
    probs = probs.sum(1).exp().detach().double()
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert probs.min() * n > 5  # chi-square validity
    g = torch.Generator().manual_seed(123)
    draws = m.select(q.expand(n, -1), c.expand(n, -1, -1), 2, mode="sample", temperature=temp, generator=g)
    pair_index = {tuple(s): i for i, s in enumerate(seqs.tolist())}
    counts = torch.zeros(12)
    for row in draws.tolist():
        counts[pair_index[tuple(row)]] += 1
    expected = (probs / probs.sum() * n).numpy()
    assert stats.chisquare(counts.numpy(), expected).pvalue > 1e-3
    # the same counts are clearly rejected against the temperature-1 law: the test has power
    wrong = m.step_logprobs(q.expand(12, -1), c.expand(12, -1, -1), seqs)[0].sum(1).exp().detach().double()
    wrong_expected = (wrong / wrong.sum() * n).numpy()
    assert stats.chisquare(counts.numpy(), wrong_expected).pvalue < 1e-6


def test_sampling_is_seeded_and_never_repeats() -> None:
    m = tiny(9)
    q, c = inputs(10, 200, 5)
    draw = lambda seed: m.select(q, c, 5, "sample", 50.0, torch.Generator().manual_seed(seed))  # noqa: E731
    a = draw(1)
    assert torch.equal(a, draw(1)) and not torch.equal(a, draw(2))
    assert torch.equal(a.sort(dim=1).values, torch.arange(5).expand(200, 5))  # each row a permutation


# ------------------------------------------------------------- greedy
def test_greedy_shot_k_is_prefix_of_shot_k_plus_1() -> None:
    m = tiny(11)
    q, c = inputs(12, 50, 8)
    four = m.select(q, c, 4)
    for k in (1, 2, 3):
        assert torch.equal(m.select(q, c, k), four[:, :k])


def test_batched_equals_per_row() -> None:
    m = tiny(13, layers=2, heads=2)
    q, c = inputs(14, 130, 9)  # > one 64-query block
    seqs = m.select(q, c, 4)
    rows = torch.cat([m.select(q[i : i + 1], c[i : i + 1], 4) for i in range(130)])
    assert torch.equal(seqs, rows)
    lp = m.sequence_logprob(q, c, seqs)
    lp_rows = torch.cat([m.sequence_logprob(q[i : i + 1], c[i : i + 1], seqs[i : i + 1]) for i in range(130)])
    torch.testing.assert_close(lp, lp_rows, atol=1e-5, rtol=1e-5)
    beams, beam_lp = m.beam_search(q[:5], c[:5], 3, 4)
    for i in range(5):
        b1, l1 = m.beam_search(q[i : i + 1], c[i : i + 1], 3, 4)
        assert torch.equal(beams[i], b1[0])
        torch.testing.assert_close(beam_lp[i], l1[0], atol=1e-5, rtol=1e-5)


def test_select_from_a_shared_pool_equals_select_on_gathered_candidates() -> None:
    m = tiny(15)
    g = torch.Generator().manual_seed(16)
    pool, q = torch.randn(40, 6, generator=g), torch.randn(100, 6, generator=g)
    idx = torch.stack([torch.randperm(40, generator=g)[:7] for _ in range(100)])
    assert torch.equal(m.select(q, pool, 4, cand_index=idx), m.select(q, pool[idx], 4))
    with pytest.raises(KitError, match="eval mode"):
        m.train().select(q, pool, 4, cand_index=idx)


# ---------------------------------------------------------------- beams
def test_beam_search_agrees_with_greedy_and_brute_force() -> None:
    m = tiny(17)
    q, c = inputs(18, 3, 5)
    b1, _ = m.beam_search(q, c, 3, 1)
    assert torch.equal(b1[:, 0], m.select(q, c, 3))
    beams, lp = m.beam_search(q, c, 2, 5)  # beam = K: step 2 sees every ordered pair
    pairs = torch.tensor(list(itertools.permutations(range(5), 2)))
    for b in range(3):
        all_lp = m.sequence_logprob(q[b : b + 1].expand(20, -1), c[b : b + 1].expand(20, -1, -1), pairs)
        top = all_lp.topk(5)
        assert torch.equal(beams[b], pairs[top.indices])
        torch.testing.assert_close(lp[b], top.values, atol=1e-5, rtol=1e-5)
    beams, lp = m.beam_search(q, c, 4, 3)
    assert (lp[:, :-1] >= lp[:, 1:]).all()
    torch.testing.assert_close(lp.flatten(), m.sequence_logprob(q.repeat_interleave(3, 0),
                                                                c.repeat_interleave(3, 0), beams.reshape(9, 4)))
    assert all(len(set(s)) == 4 for s in beams.reshape(9, 4).tolist())


# -------------------------------------------------------------- modes
def test_dropout_only_in_train_mode() -> None:
    m = tiny(19, dropout=0.5)
    q, c = inputs(20, 4, 6)
    seqs = torch.tensor([[0, 1]] * 4)
    torch.testing.assert_close(m.sequence_logprob(q, c, seqs), m.sequence_logprob(q, c, seqs))
    m.train()
    assert not torch.allclose(m.sequence_logprob(q, c, seqs), m.sequence_logprob(q, c, seqs))


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda m, q, c: m.select(q, c, 7), "k=7"),
        (lambda m, q, c: m.select(q, c, 2, mode="top"), "mode"),
        (lambda m, q, c: m.select(q, c, 2, mode="sample", temperature=0.0), "temperature"),
        (lambda m, q, c: m.select(q[:, :5], c, 2), "query_emb"),
        (lambda m, q, c: m.sequence_logprob(q, c, torch.tensor([[1, 1]] * 2)), "repeat"),
        (lambda m, q, c: m.sequence_logprob(q, c, torch.tensor([[1, 6]] * 2)), "outside"),
        (lambda m, q, c: m.beam_search(q, c, 2, 7), "beam_size"),
    ],
)
def test_user_errors(call, match: str) -> None:
    m = tiny(21)
    q, c = inputs(22, 2, 6)
    with pytest.raises(KitError, match=match):
        call(m, q, c)
