"""Both selector generations against an independent re-implementation of docs/study.md, "Checkpoints".

The reference (`study_fixtures.reference_greedy`) is written from the document, not from icl_kit:
it runs torch's own nn.MultiheadAttention (not the kit's algebraic `cross_attend`), masks chosen
candidates with -100.0 as the study did, and for the gate-less one scores once and never updates the query.
"""

import pytest
import torch
import torch.nn.functional as F
from study_fixtures import reference_greedy

from icl_kit.selection.selector import PointerSelector, step_entropy
from icl_kit.train.batch import Batch
from icl_kit.train.steps import step_logprobs

pytestmark = pytest.mark.usefixtures("one_thread")
D, H = 12, 8


def random_selector(query_update: str, layers: int, seed: int) -> PointerSelector:
    """Every weight random (LayerNorm and biases too, so nothing sits at its default)."""
    torch.manual_seed(seed)
    m = PointerSelector(D, H, layers, 1, dropout=0.0, query_update=query_update)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5)
    return m.eval()


@pytest.mark.parametrize("query_update", ["none", "gate"])
@pytest.mark.parametrize("layers", [1, 3])
def test_greedy_equals_the_documents_forward(query_update: str, layers: int) -> None:
    g = torch.Generator().manual_seed(layers)
    q, cands = torch.randn(16, D, generator=g), torch.randn(16, 9, D, generator=g)
    for seed in range(3):
        m = random_selector(query_update, layers, seed)
        ref = reference_greedy(m.state_dict(), q, cands, 5)
        assert m.select(q, cands, 5).tolist() == ref


def test_none_has_no_gate_keys_and_gate_has_them() -> None:
    assert not any("gate" in k for k in PointerSelector(D, H, query_update="none").state_dict())
    assert sum("gate" in k for k in PointerSelector(D, H).state_dict()) == 2
    n_none = sum(p.numel() for p in PointerSelector(512, 256, query_update="none").parameters())
    n_gate = sum(p.numel() for p in PointerSelector(512, 256).parameters())
    assert (n_none, n_gate) == (525_824, 657_152)  # the study's parameter counts at L = 1 (docs/study.md)
    assert sum(p.numel() for p in PointerSelector(512, 256, 3, query_update="none").parameters()) == 1_053_184


def test_none_step_logits_are_the_first_steps_masked() -> None:
    """Gate-less: step-t log-probs are step 1's with the chosen renormalised away; greedy = top-k."""
    m = random_selector("none", 1, 0)
    g = torch.Generator().manual_seed(5)
    q, cands = torch.randn(4, D, generator=g), torch.randn(4, 7, D, generator=g)
    picks = m.select(q, cands, 7)
    state, keys = m.encode(q, cands)
    cos = torch.einsum("bh,bkh->bk", state, keys)
    assert torch.equal(picks, cos.argsort(dim=1, descending=True, stable=True))
    logp, _ = m.step_logprobs(q, cands, picks[:, :3])
    first = torch.log_softmax(cos / 0.1, dim=1)
    for t in range(3):
        rest = first.clone()
        rest[torch.arange(4)[:, None], picks[:, :t]] = float("-inf")
        want = torch.log_softmax(rest, dim=1).gather(1, picks[:, t:t + 1]).squeeze(1)
        torch.testing.assert_close(logp[:, t], want)


def test_none_dropout_sits_after_the_projections() -> None:
    """Train mode: keys = normalize(dropout(W_c v)), state = normalize(dropout(W_q q)) (gate-less, step 3)."""
    m = random_selector("none", 1, 1)
    m.dropout.p = 0.5
    m.train()
    g = torch.Generator().manual_seed(2)
    q, cands = torch.randn(3, D, generator=g), torch.randn(3, 5, D, generator=g)
    torch.manual_seed(9)
    state, keys = m.encode(q, cands)
    torch.manual_seed(9)  # the kit draws the candidates' mask first, then the query's
    v = cands @ m.input_proj.weight.T
    want_keys = F.normalize(F.dropout(v @ m.cand_proj.weight.T, 0.5), dim=-1)
    x = m.cross_attend(q @ m.input_proj.weight.T, v)
    want_state = F.normalize(F.dropout(x @ m.query_proj.weight.T, 0.5), dim=-1)
    torch.testing.assert_close(keys, want_keys)
    torch.testing.assert_close(state, want_state)


@pytest.mark.parametrize("query_update", ["none", "gate"])
def test_every_decoder_agrees_batched_and_unbatched(query_update: str) -> None:
    m = random_selector(query_update, 3, 4)
    g = torch.Generator().manual_seed(3)
    q, cands = torch.randn(6, D, generator=g), torch.randn(6, 8, D, generator=g)
    picks = m.select(q, cands, 4)
    rows = [m.select(q[i:i + 1], cands[i:i + 1], 4) for i in range(6)]
    assert torch.equal(picks, torch.cat(rows))
    seqs, score = m.beam_search(q, cands, 4, beam_size=1)
    assert torch.equal(seqs[:, 0], picks)  # width-1 beam search is greedy
    torch.testing.assert_close(score[:, 0], m.sequence_logprob(q, cands, picks))
    one = torch.cat([m.sequence_logprob(q[i:i + 1], cands[i:i + 1], picks[i:i + 1]) for i in range(6)])
    torch.testing.assert_close(one, m.sequence_logprob(q, cands, picks))
    # the trainer's grouped log-probs run the same pointer step
    group = torch.stack([picks, picks.flip(1)], dim=1)  # (B, G=2, L)
    b = Batch.dense(q, cands, group, torch.zeros(6, 2), torch.ones(6, 2, dtype=torch.bool))
    lp, ent = step_logprobs(m, b)
    for j in range(2):
        want_lp, want_ent = m.step_logprobs(q, cands, group[:, j])
        torch.testing.assert_close(lp[:, j], want_lp)
        torch.testing.assert_close(ent[:, j], want_ent)


def test_step_entropy_is_finite_with_masked_entries() -> None:
    logp = torch.log_softmax(torch.tensor([[0.0, 0.0, float("-inf")]]), dim=-1)
    ent = step_entropy(logp, torch.tensor([[False, False, True]]))
    torch.testing.assert_close(ent, torch.tensor([0.6931471805599453]))


def test_unknown_generation_rejected() -> None:
    from icl_kit.core.errors import KitError

    with pytest.raises(KitError, match="query_update='gru' is unknown"):
        PointerSelector(D, H, query_update="gru")


def test_cli_train_with_query_update_none_writes_seed_era_checkpoints(tmp_path) -> None:
    from pathlib import Path

    from icl_kit.cli import main
    from icl_kit.selection.checkpoints import load_checkpoint, read_checkpoint_file

    demo = Path(__file__).parents[2] / "params" / "demo.yaml"
    sets = [f"data.root={tmp_path / 'demo'}", "data.demo_train=40", "data.demo_test=10", f"runs_dir={tmp_path}",
            "run_name=none", "encoder.dim=16", "selector.input_dim=16", "selector.hidden_dim=16", "pools.size=8",
            "selector.query_update=none", "train.device=cpu", "train.rce.epochs=1", "train.grpo.epochs=1",
            "train.grpo.batch_groups=8", "train.rollouts.group_size=4", "stats.comparisons=[]"]
    assert main(["train", "--params", str(demo), *[a for s in sets for a in ("-p", s)]]) == 0
    path = tmp_path / "none" / "checkpoints" / "grpo_epoch1.pt"
    selector, info = load_checkpoint(path)
    assert info["config"]["query_update"] == "none" and selector.query_update_gate is None
    raw = read_checkpoint_file(path)
    assert raw["params"]["selector"]["query_update"] == "none" and set(raw["provenance"]) >= {"git_commit", "torch"}
