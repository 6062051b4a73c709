"""SFT: InfoScore, beam search through the cache, the SFT loss, the study-format import, the chain."""

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fake_world import ScriptedLVLM, record
from grpo_ddp_worker import fake_answer, tiny_params, tiny_world
from scipy.stats import wilcoxon
from study_fixtures import study_state_dict, write_lightning_ckpt

from icl_kit.core.config import SFTDataConfig, load_params
from icl_kit.core.dist import Ranks
from icl_kit.core.errors import KitError
from icl_kit.core.runs import read_jsonl
from icl_kit.lvlm.answers import AnswerService
from icl_kit.lvlm.simulated import OTHER_MASS
from icl_kit.run_context import RunContext
from icl_kit.selection.checkpoints import save_v3
from icl_kit.selection.selector import TEMPERATURE, PointerSelector
from icl_kit.study.beams import import_sft_data
from icl_kit.train.batch import Batch
from icl_kit.train.infoscore import answer_weights, beam_rank_score, extend, info_score, top_beams
from icl_kit.train.queries import split_queries
from icl_kit.train.sft import beam_weights, pick_losses, query_losses, sft_step
from icl_kit.train.sft_data import build_sft_data, search_chunk, sft_queries
from icl_kit.train.trainer import train


# ------------------------------------------------------------------ InfoScore
def test_info_score_and_the_beam_rules_by_hand():
    assert info_score(0.5, 0.2, "prob") == pytest.approx(0.3)
    assert info_score(0.5, 0.2, "logprob") == pytest.approx(math.log(2.5))
    assert info_score(0.0, 0.2, "logprob") < -600  # an underflowed probability stays finite
    assert extend((1, 2), 9, "left") == (9, 1, 2) and extend((1, 2), 9, "right") == (1, 2, 9)
    assert beam_rank_score([0.3, 0.1], "last_step") == 0.1
    assert beam_rank_score([0.3, 0.1], "cumulative") == pytest.approx(0.4)
    assert top_beams([0.1, 0.5, 0.5, 0.2], 3) == [1, 2, 3]  # ties keep the earlier index
    q = record(1, ["a"] * 6 + ["b"] * 2 + ["c"] * 2)
    assert answer_weights(q, "most_frequent") == {"a": 1.0}
    assert answer_weights(q, "vqa_weighted") == pytest.approx({"a": 1.0, "b": 2 / 3, "c": 2 / 3})
    with pytest.raises(KitError, match="sft_data.score"):
        info_score(0.1, 0.1, "ratio")


# --------------------------------------------------------------- beam search
QUERY, POOL = 1, [10, 11, 12]
# P(right | ICDs in selection order) for the hand-made search; any other prompt: DEFAULT_P
TABLE = {(): 0.1, (10,): 0.4, (11,): 0.3, (12,): 0.2,
         (11, 10): 0.5, (12, 10): 0.55, (10, 11): 0.5, (12, 11): 0.58}
DEFAULT_P, OTHER_ANSWERS = 0.05, {"left": 0.1, "up": 0.2}


def table_logprob(req, answer: str) -> float:
    if answer == "right":
        return math.log(TABLE.get(tuple(r.question_id for r in req.icds), DEFAULT_P))
    return math.log(OTHER_ANSWERS.get(answer, 1e-6))


def hand_service(path: Path, answers=("right",) * 10) -> tuple[AnswerService, ScriptedLVLM]:
    lvlm = ScriptedLVLM(lambda r: "right", "table-v1", logprob=table_logprob)
    records = {q: record(q, list(answers)) for q in [QUERY, *POOL]}
    return AnswerService(lvlm, records, path, batch_size=3), lvlm


def beams_of(line):
    return [(b["positions"], b["icd_ids"], b["step_scores"], b["score"]) for b in line["beams"]]


@pytest.mark.parametrize("rule, expected", [
    # children (left): (11,10) .1, (12,10) .15 of [10]; (10,11) .2, (12,11) .28 of [11]
    ("last_step", [([2, 1], [12, 11], [0.2, 0.28], 0.28), ([0, 1], [10, 11], [0.2, 0.2], 0.2)]),
    # cumulative: (12,11) .48, (12,10) .45, (11,10) .4, (10,11) .4
    ("cumulative", [([2, 1], [12, 11], [0.2, 0.28], 0.48), ([2, 0], [12, 10], [0.3, 0.15], 0.45)]),
])
def test_beam_search_finds_the_hand_computed_beams(tmp_path, rule, expected):
    service, lvlm = hand_service(tmp_path / "c.sqlite")
    cfg = SFTDataConfig(beam_size=2, max_shots=2, beam_score=rule)
    (line,) = search_chunk(service, [QUERY], {QUERY: POOL}, cfg)
    assert line["question_id"] == QUERY and line["pool"] == POOL
    got = beams_of(line)
    for (pos, ids, steps, score), (e_pos, e_ids, e_steps, e_score) in zip(got, expected, strict=True):
        assert (pos, ids) == (e_pos, e_ids)
        assert steps == pytest.approx(e_steps) and score == pytest.approx(e_score)
    # unique prompts: () + 3 singles + 4 pairs; the study's loop re-scores each parent: 1 + 3 + 2·(1 + 2)
    assert lvlm.scored == service.score_calls == 8


def test_right_order_and_logprob_scores(tmp_path):
    service, _ = hand_service(tmp_path / "c.sqlite")
    (line,) = search_chunk(service, [QUERY], {QUERY: POOL},
                           SFTDataConfig(beam_size=2, max_shots=2, construct_order="right"))
    # children (right): (10,11) .1, (10,12) −.35 of [10]; (11,10) .2, (11,12) −.25 of [11]
    assert [b[0] for b in beams_of(line)] == [[1, 0], [0, 1]]
    (line,) = search_chunk(service, [QUERY], {QUERY: POOL}, SFTDataConfig(beam_size=2, max_shots=2, score="logprob"))
    assert beams_of(line)[0][2] == pytest.approx([math.log(3.0), math.log(0.58 / 0.3)])


def test_vqa_weighted_answer_probability(tmp_path):
    service, _ = hand_service(tmp_path / "c.sqlite", answers=["right"] * 6 + ["left"] * 2 + ["up"] * 2)
    w = answer_weights(service.records[QUERY], "vqa_weighted")
    assert service.answer_probs([(QUERY, ())], [w]) == pytest.approx([0.1 + 2 / 3 * 0.1 + 2 / 3 * 0.2])


def test_build_is_cached_across_runs_and_resumes(tmp_path):
    cfg = SFTDataConfig(beam_size=2, max_shots=2, chunk=1)
    service, lvlm = hand_service(tmp_path / "c.sqlite")
    out = tmp_path / "sft_data.jsonl"
    stats = build_sft_data(service, [QUERY], {QUERY: POOL}, cfg, out, progress=False)
    assert (stats.written, stats.score_calls) == (1, 8) and stats.cache_hits == stats.score_lookups - 8
    first = out.read_bytes()
    out.unlink()
    again, lvlm2 = hand_service(tmp_path / "c.sqlite")  # a new run on the same cache
    stats = build_sft_data(again, [QUERY], {QUERY: POOL}, cfg, out, progress=False)
    assert stats.score_calls == 0 and lvlm2.scored == 0 and out.read_bytes() == first
    assert build_sft_data(again, [QUERY], {QUERY: POOL}, cfg, out, progress=False).written == 0  # resumes: done


def test_sft_queries_are_the_first_n_of_each_part():
    split = split_queries(range(10), 0.2)
    assert sft_queries(split, 3) == [0, 1, 2, 8, 9] and sft_queries(split, 0) == list(range(10))


# ---------------------------------------------------------------------- SFT
def test_beam_weights_by_hand():
    mask = torch.tensor([[True, True, False], [True, True, True]])
    assert torch.allclose(beam_weights(mask, "uniform"), torch.tensor([[0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3]]))
    assert torch.allclose(beam_weights(mask, "rank"), torch.tensor([[2 / 3, 1 / 3, 0], [6 / 11, 3 / 11, 2 / 11]]))


def small_batch(seqs: list[list[int]], k: int = 6, d: int = 8) -> Batch:
    g = torch.Generator().manual_seed(3)
    s = torch.tensor([seqs])
    return Batch.dense(torch.randn(1, d, generator=g), torch.randn(1, k, d, generator=g), s,
                       torch.zeros(1, len(seqs)), torch.ones(1, len(seqs), dtype=torch.bool))


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_pick_losses_equal_torch_cross_entropy_over_the_available_candidates(eps):
    torch.manual_seed(0)
    policy = PointerSelector(8, 16, dropout=0.0).eval()
    b = small_batch([[4, 1]])
    got = pick_losses(policy, b, eps)[0, 0]  # (L,)
    state, keys = policy.encode(b.q, b.c)
    chosen = torch.zeros(1, 6, dtype=torch.bool)
    first = torch.einsum("bh,bkh->bk", state, keys) / TEMPERATURE  # the pointer's logits (cosine / T)
    ref1 = F.cross_entropy(first, torch.tensor([4]), label_smoothing=eps)
    state, _ = policy.advance(state, keys, chosen, torch.tensor([4]))
    second = torch.einsum("bh,bkh->bk", state, keys) / TEMPERATURE
    avail = [0, 1, 2, 3, 5]  # the pick 1 is index 1 among them
    ref2 = F.cross_entropy(second[:, avail], torch.tensor([1]), label_smoothing=eps)
    assert torch.allclose(got, torch.stack([ref1, ref2]), atol=1e-5)


def test_query_loss_weights_the_beams():
    torch.manual_seed(0)
    policy = PointerSelector(8, 16, dropout=0.0).eval()
    b = small_batch([[4, 1], [2, 3]])
    per_beam = pick_losses(policy, b, 0.0).sum(-1)[0]
    assert torch.allclose(query_losses(policy, b, 0.0, "rank"), (2 / 3) * per_beam[0] + (1 / 3) * per_beam[1])


def test_sft_steps_teach_the_selector_the_best_beam():
    torch.manual_seed(0)
    policy = PointerSelector(8, 16, dropout=0.0)
    b = small_batch([[4, 1]])
    opt = torch.optim.AdamW(policy.parameters(), lr=0.05)
    losses = [sft_step(policy, opt, b, 0.0, "uniform", 1.0, Ranks(), i)["train/loss"] for i in range(60)]
    assert losses[-1] < 0.1 * losses[0]
    assert policy.eval().select(b.q, b.c, 2).tolist() == [[4, 1]]


# ------------------------------------------------------------------ import
def demo_params(tmp_path: Path, **kw) -> object:
    base = {"runs_dir": str(tmp_path / "runs"), "run_name": "r", "data.root": str(tmp_path / "demo"),
            "data.demo": True, "data.demo_train": 40, "data.demo_test": 10,
            "encoder.backend": "simple", "encoder.dim": 32, "selector.input_dim": 32, "selector.hidden_dim": 32,
            "lvlm.backend": "simulated", "pools.size": kw.pop("pool_size", 8), "train.device": "cpu"}
    return load_params(None, {**base, **kw})


def study_beam_json(split_ids: list[int]) -> tuple[dict, dict]:
    """The study's beam file for anchors at positions 3 and 7, and the candidate-set cache of its pools."""
    pools = {"3": [5, 9, 12, 0, 20], "7": [1, 2, 30, 4, 8]}
    beams = {"3": {"id_list": [[9, 12, 3], [0, 12, 3]], "score_list": [0.4, 0.3],
                   "shot_scores": [[0.2, 0.4], [0.2, 0.3]], "few_shot_num": 2,
                   "beams": [{"shots": [{"id": 12, "score": 0.2}, {"id": 9, "score": 0.4}]},
                             {"shots": [{"id": 12, "score": 0.2}, {"id": 0, "score": 0.3}]}]},
             "7": {"id_list": [[30, 1, 7]], "score_list": [0.5], "shot_scores": [[0.1, 0.5]], "few_shot_num": 2}}
    return beams, pools


def test_the_study_beam_json_imports_by_position(tmp_path):
    params = demo_params(tmp_path)
    ctx = RunContext.build(params, commit=False)
    ids = sorted(r.question_id for r in ctx.world.pool_records)
    beams, pools = study_beam_json(ids)
    (tmp_path / "beams.json").write_text(json.dumps(beams))
    (tmp_path / "pools.json").write_text(json.dumps(pools))
    out, n_q, n_b = import_sft_data(tmp_path / "beams.json", ctx, tmp_path / "pools.json")
    assert (n_q, n_b) == (2, 3)
    rows = {r["question_id"]: r for r in read_jsonl(out)}
    a3 = rows[ids[3]]
    assert a3["pool"] == [ids[p] for p in pools["3"]]
    # id_list [icd_2, icd_1, anchor] is prompt order; positions index the anchor's pool
    assert a3["beams"][0] == {"icd_ids": [ids[9], ids[12]], "positions": [1, 2], "step_scores": [0.2, 0.4],
                              "score": 0.4}
    assert a3["beams"][1]["positions"] == [3, 2]
    assert rows[ids[7]]["beams"][0]["icd_ids"] == [ids[30], ids[1]]
    assert list(rows) == sorted(rows)


@pytest.mark.parametrize("mutate, match", [
    (lambda b, p: b["3"]["id_list"][0].__setitem__(2, 4), "ending with the anchor 3"),
    (lambda b, p: b["7"]["id_list"][0].__setitem__(0, 999), "outside the train split"),
    (lambda b, p: b["3"]["beams"][0]["shots"].reverse(), "reversed"),
    (lambda b, p: p["7"].remove(30), "not in the pool"),
])
def test_a_bad_study_file_is_refused_and_writes_nothing(tmp_path, mutate, match):
    params = demo_params(tmp_path)
    ctx = RunContext.build(params, commit=False)
    ids = sorted(r.question_id for r in ctx.world.pool_records)
    beams, pools = study_beam_json(ids)
    mutate(beams, pools)
    (tmp_path / "beams.json").write_text(json.dumps(beams))
    (tmp_path / "pools.json").write_text(json.dumps(pools))
    with pytest.raises(KitError, match=match):
        import_sft_data(tmp_path / "beams.json", ctx, tmp_path / "pools.json")
    assert not Path(params.run_dir).exists()  # nothing written: not even params.yaml


# ---------------------------------------------------------- the demo world
def test_beams_beat_random_sequences_on_held_out_reward_in_the_demo_world(tmp_path, tmp_path_factory):
    """Beams searched on P(top answer) also raise the VQA accuracy of the generated answers (not searched on)."""
    root = tmp_path_factory.getbasetemp() / "demo_default"  # the default world, shared with test_simulated
    params = demo_params(tmp_path, pool_size=64, **{"data.root": str(root), "data.demo_train": 2000,
                                                    "data.demo_test": 1000, "sft_data.beam_size": 3})
    ctx = RunContext.build(params)
    qids = ctx.world.pool_ids[:80]
    lines = search_chunk(ctx.answer_service(), qids, ctx.world.pools, params.sft_data)
    rng = np.random.default_rng(0)
    best = [(r["question_id"], tuple(r["beams"][0]["icd_ids"])) for r in lines]
    rand = [(q, tuple(int(i) for i in rng.choice(ctx.world.pools[q], 2, replace=False))) for q in qids]
    acc_b = np.array([a.acc for a in ctx.answer_service().answers(best)])
    acc_r = np.array([a.acc for a in ctx.answer_service().answers(rand)])
    assert acc_b.mean() - acc_r.mean() > 0.05
    assert wilcoxon(acc_b, acc_r, alternative="greater").pvalue < 0.01


# ---------------------------------------------------------------- the chain
def scored_lvlm() -> ScriptedLVLM:
    """The hash LVLM of the trainer tests with a score consistent with its answers."""
    return ScriptedLVLM(fake_answer, "hash-v1",
                        logprob=lambda r, a: math.log(0.8 if fake_answer(r) == a else 0.1))


CHAIN = ("train.sft.epochs=2", "train.sft.batch_groups=8", "train.sft.lr=0.01", "sft_data.beam_size=2",
         "train.grpo.epochs=1")


def run_chain(run_dir: Path, *overrides: str, stop: int | None = None):
    params = tiny_params(run_dir, [*CHAIN, *overrides])
    return train(params, ctx=tiny_world(params, scored_lvlm()), stop_after_steps=stop, progress=False)


def test_the_chain_sft_rce_grpo_resumes_after_kills_to_identical_bytes(tmp_path):
    killed = tmp_path / "r"  # both runs in this folder in turn: checkpoints hold the params, paths included
    full = run_chain(killed)
    names = [p.name for p in full.checkpoints]
    assert names == ["sft_epoch1.pt", "sft_epoch2.pt", "rce_epoch1.pt", "rce_epoch2.pt", "grpo_epoch1.pt"]
    assert full.steps == 30
    full_dir = killed.rename(tmp_path / "full")
    log = read_jsonl(full_dir / "train_log.jsonl")
    assert [r["phase"] for r in log if r["kind"] == "epoch"] == ["init", "sft", "sft", "rce", "rce", "grpo"]
    assert all("val/sft_loss" in r and "val/reward@2" in r for r in log if r["kind"] == "epoch")
    sft_epochs = [r["val/sft_loss"] for r in log if r["kind"] == "epoch"][:3]
    assert sft_epochs[2] < sft_epochs[0]  # SFT lowers the held-out beam loss
    for stop in (2, 9, 14, 27):  # mid SFT (before any save), SFT epoch 2, RCE epoch 1, GRPO
        assert run_chain(killed, stop=stop).stopped
    assert run_chain(killed).steps == 30
    for name in [*names, "last.pt"]:
        assert (killed / "checkpoints" / name).read_bytes() == (full_dir / "checkpoints" / name).read_bytes()
    assert (killed / "sft_data.jsonl").read_bytes() == (full_dir / "sft_data.jsonl").read_bytes()


def test_warm_start_is_grpos_kl_reference(tmp_path):
    torch.manual_seed(5)
    start = PointerSelector(8, 16, dropout=0.0)
    ckpt = tmp_path / "start.pt"
    save_v3(ckpt, start, epoch=0, phase="sft", kl_beta=0.0, metrics={})
    res = run_chain(tmp_path / "r", "train.sft.epochs=0", "train.rce.epochs=0", "train.grpo.lr=0.0",
                    f"train.init_checkpoint={ckpt}")
    out = torch.load(res.checkpoints[-1], weights_only=True)["model_state_dict"]
    assert all(torch.equal(v, out[k]) for k, v in start.state_dict().items())  # lr 0: still the warm start
    kls = [r["train/kl"] for r in read_jsonl(tmp_path / "r" / "train_log.jsonl") if r["kind"] == "step"]
    assert kls and all(k == 0.0 for k in kls if k is not None)  # the reference is the policy GRPO started from
    with pytest.raises(KitError, match="hidden_dim=16 \\(params: 32\\)"):
        run_chain(tmp_path / "r2", "selector.hidden_dim=32", f"train.init_checkpoint={ckpt}")


def test_warm_start_from_the_studys_sft_lightning_ckpt(tmp_path, caplog):
    """The study's SFT file (Lightning, `lever_lm.pointer_selector.` prefix, frozen CLIP copies) starts
    GRPO; the CLIP copies are ignored with one log line and the selector weights are exactly the file's."""
    sd = study_state_dict(d=8, h=16, gate=True, seed=3)
    ckpt = write_lightning_ckpt(tmp_path / "sft-epoch=12.ckpt", sd, clip=True)
    with caplog.at_level(logging.INFO):
        res = run_chain(tmp_path / "r", "train.sft.epochs=0", "train.rce.epochs=0", "train.grpo.lr=0.0",
                        f"train.init_checkpoint={ckpt}")
    out = torch.load(res.checkpoints[-1], weights_only=True)["model_state_dict"]
    assert sorted(out) == sorted(sd) and all(torch.equal(sd[k], out[k]) for k in sd)
    assert "CLIP" in caplog.text


def test_the_simulators_score_rises_with_its_logit_and_matches_its_answers(tmp_path, tmp_path_factory):
    """InfoScore needs P(top answer) to order prompts as the simulator's answers do (it was not changed)."""
    root = tmp_path_factory.getbasetemp() / "demo_default"
    params = demo_params(tmp_path, pool_size=64, **{"data.root": str(root), "data.demo_train": 2000,
                                                    "data.demo_test": 1000})
    ctx = RunContext.build(params)
    lvlm = ctx.lvlm
    rng = np.random.default_rng(1)
    pools = ctx.world.pools
    keys = [(q, tuple(int(i) for i in rng.choice(pools[q], 2, replace=False))) for q in ctx.world.pool_ids[:300]]
    reqs = [ctx.answer_service().request(k) for k in keys]
    p_top = np.exp([s.sum_logprob for s in lvlm.score(reqs, [r.query.answer for r in reqs])])
    margin = lvlm.margin(np.array([q for q, _ in keys]), np.array([ids for _, ids in keys]))
    # P(top) = sigmoid(margin)·(1 − OTHER_MASS): the top answer is generated iff it is the likelier one
    assert np.array_equal(p_top > 0.5 * (1 - OTHER_MASS), margin > 0)
    assert np.array_equal(np.array([g.answer for g in lvlm.generate(reqs)]) == [r.query.answer for r in reqs],
                          margin > 0)
    q = ctx.world.pool_ids[0]  # within one query, the score orders single ICDs exactly as the simulator's logit
    icds = [(q, (int(c),)) for c in ctx.world.pools[q]]
    s = np.array([x.sum_logprob for x in lvlm.score([ctx.answer_service().request(k) for k in icds],
                                                    [ctx.world.records[q].answer] * len(icds))])
    eta = lvlm.logits(np.full(len(icds), q), np.array([ids for _, ids in icds]))
    assert (np.argsort(s, kind="stable") == np.argsort(eta, kind="stable")).all()


def test_cli_sft_data_resumes_and_import_errors_are_one_line(tmp_path, capsys):
    from icl_kit.cli import main

    pf = tmp_path / "p.yaml"
    pf.write_text(json.dumps({"runs_dir": str(tmp_path / "runs"), "run_name": "c", "data": {
        "root": str(tmp_path / "demo"), "demo": True, "demo_train": 40, "demo_test": 10},
        "encoder": {"backend": "simple", "dim": 32}, "selector": {"input_dim": 32, "hidden_dim": 32},
        "lvlm": {"backend": "simulated"}, "pools": {"size": 8}, "sft_data": {"max_queries": 3, "beam_size": 2}}))
    assert main(["sft-data", "--params", str(pf)]) == 0
    assert "6 queries searched" in capsys.readouterr().out  # the first 3 training and 3 validation queries
    assert len(read_jsonl(tmp_path / "runs" / "c" / "sft_data.jsonl")) == 6
    assert main(["sft-data", "--params", str(pf)]) == 0
    out = capsys.readouterr().out
    assert "0 queries searched" in out and "0 LVLM scores" in out
    assert main(["study", "import-sft-data", str(tmp_path / "nope.json"), "--params", str(pf), "--force"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not exist" in err
