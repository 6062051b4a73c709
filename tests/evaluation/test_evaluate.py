"""The evaluator on a hand-made world (tests/eval_ddp_worker.py): known answers, resume, sharding."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from eval_ddp_worker import DDP_SYSTEMS, DIM, eval_world, fake_lvlm, world_params

from icl_kit.core.errors import KitError
from icl_kit.core.runs import read_jsonl
from icl_kit.evaluation.runner import evaluate
from icl_kit.selection.checkpoints import save_v3
from icl_kit.selection.convert import convert_v3_to_v2
from icl_kit.selection.selector import PointerSelector

SHOTS = (1, 2, 3)
HIDDEN = 16
WORKER = Path(__file__).parents[1] / "eval_ddp_worker.py"


def save_checkpoint(path: Path, seed: int, epoch: int) -> PointerSelector:
    """A v3 checkpoint of a seeded random selector."""
    torch.manual_seed(seed)
    sel = PointerSelector(input_dim=DIM, hidden_dim=HIDDEN, dropout=0.0).eval()
    save_v3(path, sel, epoch=epoch, phase="grpo", kl_beta=0.1, metrics={})
    return sel


def run(run_dir: Path, systems, lvlm=None, **eval_overrides):
    params = world_params(run_dir, systems, **eval_overrides)
    world = eval_world(params, lvlm or fake_lvlm())
    return evaluate(params, ctx=world, progress=False), world


def rows_by(path: Path) -> dict[tuple, dict]:
    return {(r["system"], r["shot"], r["question_id"]): r for r in read_jsonl(path)}


@pytest.fixture
def run_dir(tmp_path) -> Path:
    d = tmp_path / "run"
    save_checkpoint(d / "checkpoints" / "grpo_epoch2.pt", seed=1, epoch=1)
    save_checkpoint(d / "checkpoints" / "grpo_epoch1.pt", seed=0, epoch=0)
    return d


def test_shot_k_uses_first_k_of_one_selection(run_dir):
    res, world = run(run_dir, ["random", "similarity", "checkpoints/*.pt"])
    rows = rows_by(res.predictions)
    assert res.systems == ["random", "similarity", "grpo_epoch1", "grpo_epoch2"]  # globs sorted by epoch
    assert len(rows) == 4 * len(SHOTS) * 10 == res.cells
    for (system, shot, q), row in rows.items():
        full = rows[(system, max(SHOTS), q)]["icd_ids"]
        assert row["icd_ids"] == full[:shot]
        assert len(set(full)) == len(full) == max(SHOTS) and q not in full
    assert rows[("grpo_epoch2", 1, 1)]["epoch"] == 1
    assert rows[("grpo_epoch2", 1, 1)]["checkpoint"] == "checkpoints/grpo_epoch2.pt"
    assert rows[("random", 1, 1)]["epoch"] is None


def test_selections_match_references_and_pools_are_shared(run_dir):
    res, world = run(run_dir, ["similarity", "checkpoints/*.pt"])
    rows = rows_by(res.predictions)
    pool = torch.nn.functional.normalize(world.emb(world.pool_ids), dim=-1)
    for epoch, seed in ((1, 0), (2, 1)):
        torch.manual_seed(seed)
        sel = PointerSelector(input_dim=DIM, hidden_dim=HIDDEN, dropout=0.0).eval()
        for q in range(1, 11):
            cand = world.pools[q]  # the same RandSampler pool for every checkpoint
            idx = sel.select(world.emb([q]), world.emb([cand]), max(SHOTS))[0].tolist()
            assert rows[(f"grpo_epoch{epoch}", 3, q)]["icd_ids"] == [cand[i] for i in idx]
    for q in range(1, 11):
        cos = pool @ torch.nn.functional.normalize(world.emb([q]), dim=-1)[0]
        top = [world.pool_ids[i] for i in cos.argsort(descending=True)[:3].tolist()]
        assert rows[("similarity", 3, q)]["icd_ids"] == top  # most similar first


def _top(world, q: int, query_part: str, pool_part: str, k: int) -> list[int]:
    """Reference: the k pool ids of largest cosine between q's `query_part` and the pool's `pool_part`."""
    pool = torch.nn.functional.normalize(world.emb(world.pool_ids, pool_part), dim=-1)
    cos = pool @ torch.nn.functional.normalize(world.emb([q], query_part), dim=-1)[0]
    return [world.pool_ids[i] for i in cos.argsort(descending=True)[:k].tolist()]


@pytest.mark.parametrize("order", ["first", "last"])
def test_one_modality_similarity_systems_and_order(tmp_path, order):
    systems = ["similarity", "similarity_i2t", "similarity_i2i", "similarity_t2t"]
    res, world = run(tmp_path / "run", systems, similarity_order=order)
    rows = rows_by(res.predictions)
    assert res.systems == systems
    parts = {"similarity": ("emb", "emb"), "similarity_i2t": ("img", "txt"), "similarity_i2i": ("img", "img"),
             "similarity_t2t": ("txt", "txt")}
    for system, (qp, pp) in parts.items():
        for q in range(1, 11):
            for shot in SHOTS:
                top = _top(world, q, qp, pp, shot)  # shot k = the top k, whatever the order
                want = top[::-1] if order == "last" else top  # last: the most similar next to the query
                assert rows[(system, shot, q)]["icd_ids"] == want, (system, shot, q)
    # The four rankings differ on this world (seeded, independent embeddings per part).
    assert len({tuple(rows[(s, 3, 1)]["icd_ids"]) for s in systems}) == 4


def test_similarity_topk_pool_for_checkpoints(run_dir):
    res, world = run(run_dir, ["checkpoints/grpo_epoch1.pt"], pool="similarity_top5")
    pool = torch.nn.functional.normalize(world.emb(world.pool_ids), dim=-1)
    for (_, _, q), row in rows_by(res.predictions).items():
        cos = pool @ torch.nn.functional.normalize(world.emb([q]), dim=-1)[0]
        top5 = {world.pool_ids[i] for i in cos.argsort(descending=True)[:5].tolist()}
        assert set(row["icd_ids"]) <= top5


def test_v2_checkpoint_selects_like_its_v3_source(run_dir):
    convert_v3_to_v2(run_dir / "checkpoints" / "grpo_epoch1.pt")
    res, _ = run(run_dir, ["checkpoints/grpo_epoch1.pt", "checkpoints/grpo_epoch1_v2format.ckpt"])
    rows = rows_by(res.predictions)
    assert res.systems == ["grpo_epoch1", "grpo_epoch1_v2format"]
    for (system, shot, q), row in rows.items():
        if system == "grpo_epoch1":
            twin = rows[("grpo_epoch1_v2format", shot, q)]
            assert (twin["icd_ids"], twin["epoch"]) == (row["icd_ids"], row["epoch"])
    assert res.calls == res.cells // 2  # the v2 twin's prompts are all cache hits


def test_random_is_seeded_per_question(tmp_path):
    a, world = run(tmp_path / "a", ["random"])
    b, _ = run(tmp_path / "b", ["random"], n=5)
    c, _ = run(tmp_path / "c", ["random"], seed=1)
    ra, rb, rc = rows_by(a.predictions), rows_by(b.predictions), rows_by(c.predictions)
    assert all(ra[k]["icd_ids"] == rb[k]["icd_ids"] for k in rb)  # independent of which questions run
    assert any(ra[k]["icd_ids"] != rc[k]["icd_ids"] for k in rc)
    assert all(set(r["icd_ids"]) <= set(world.pool_ids) for r in ra.values())


def test_summary_is_mean_acc_in_percent_hand_checked(tmp_path):
    res, _ = run(tmp_path / "r", ["zero_shot"])
    # zero-shot answer of q is WORDS[q % 3]; q % 3 == 1 -> 'no' against 2x'no' + 8x'yes' -> acc 0.6,
    # otherwise an exact 10/10 match -> 1.0. Questions 1..10: four with q % 3 == 1 -> (4·0.6 + 6) / 10.
    table = pd.read_csv(res.summary)
    assert list(table.columns) == ["system", "epoch", "shot", "n", "accuracy"]
    assert table["shot"].tolist() == list(SHOTS) and set(table["n"]) == {10}
    assert table["accuracy"].tolist() == pytest.approx([84.0] * 3)
    pd.testing.assert_frame_equal(table, res.table.astype({"epoch": "float64"}), check_dtype=False)
    assert res.calls == 10 and res.cells == 30  # one prompt per question serves all three shots


def test_identical_checkpoints_cost_no_calls(run_dir):
    first, _ = run(run_dir, ["checkpoints/grpo_epoch1.pt"])
    assert first.calls == first.cells == 30
    shutil.copy(run_dir / "checkpoints" / "grpo_epoch1.pt", run_dir / "checkpoints" / "copy_epoch1.pt")
    second, _ = run(run_dir, ["checkpoints/grpo_epoch1.pt", "checkpoints/copy_epoch1.pt"])
    assert (second.calls, second.cells, second.skipped) == (0, 30, 30)
    rows = rows_by(second.predictions)
    assert all(rows[("copy_epoch1", s, q)]["acc"] == rows[("grpo_epoch1", s, q)]["acc"]
               for (_, s, q) in list(rows) if _ == "grpo_epoch1")


def test_resume_after_kill_equals_uninterrupted(run_dir, tmp_path):
    ref_dir = tmp_path / "ref"
    shutil.copytree(run_dir, ref_dir)
    ref, _ = run(ref_dir, DDP_SYSTEMS)
    with pytest.raises(KeyboardInterrupt):
        run(run_dir, DDP_SYSTEMS, lvlm=fake_lvlm(fail_after=37))
    pred = run_dir / "eval" / "predictions.jsonl"
    lines = pred.read_bytes().splitlines(keepends=True)
    assert 0 < len(lines) < ref.cells
    kept = lines[:3] + lines[4:]  # a lost line in the middle ...
    pred.write_bytes(b"".join(kept) + lines[3][:20])  # ... and a cut last line
    again, _ = run(run_dir, DDP_SYSTEMS)
    assert again.skipped == len(kept) and again.cells == ref.cells - len(kept)
    assert pred.read_bytes() == ref.predictions.read_bytes()
    assert (run_dir / "eval" / "summary.csv").read_bytes() == ref.summary.read_bytes()
    assert again.calls < again.cells  # answers made before the kill came from the cache


def test_changed_selection_is_refused(tmp_path):
    run(tmp_path / "r", ["random"])
    with pytest.raises(KitError, match="other ICDs than it selects now"):
        run(tmp_path / "r", ["random"], seed=1)


def test_rows_carry_image_id_and_a_rerun_adds_it_to_older_lines(tmp_path):
    """Each line names its question's image (stats.cluster: image); a file written before image_id was recorded
    gets it at the next evaluation, without LVLM calls, and then equals a fresh run's bytes."""
    import json

    first, world = run(tmp_path / "r", ["zero_shot", "random"])
    image_of = {r.question_id: r.image_id for r in world.world.test_records}
    lines = first.predictions.read_text().splitlines()
    rows = [json.loads(x) for x in lines]
    assert all(r["image_id"] == image_of[r["question_id"]] for r in rows)
    assert list(rows[0]).index("image_id") == list(rows[0]).index("question_id") + 1
    fresh = first.predictions.read_bytes()
    old = [{k: v for k, v in r.items() if k != "image_id"} for r in rows]
    first.predictions.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in old))
    again, _ = run(tmp_path / "r", ["zero_shot", "random"])
    assert (again.calls, again.cells) == (0, 0) and again.predictions.read_bytes() == fresh


def test_system_resolution_errors(tmp_path):
    with pytest.raises(KitError, match="nor an existing checkpoint"):
        run(tmp_path / "r", ["checkpoints/nope.pt"])
    with pytest.raises(KitError, match="selects no system"):
        run(tmp_path / "r", ["checkpoints/*.pt"])
    res, _ = run(tmp_path / "r", ["zero_shot", "checkpoints/*.pt"])  # a glob matching nothing is skipped
    assert res.systems == ["zero_shot"]


def test_two_processes_equal_one(run_dir, tmp_path):
    one_dir = tmp_path / "one"
    shutil.copytree(run_dir, one_dir)
    one, _ = run(one_dir, DDP_SYSTEMS)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(WORKER.parent)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(WORKER), str(run_dir)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"calls={one.calls} cells={one.cells}" in out.stdout  # totals over both ranks
    eval_dir = run_dir / "eval"
    assert sorted(p.name for p in eval_dir.iterdir()) == ["predictions.jsonl", "summary.csv"]
    assert (eval_dir / "predictions.jsonl").read_bytes() == one.predictions.read_bytes()
    assert (eval_dir / "summary.csv").read_bytes() == one.summary.read_bytes()


# ------------------------------------------------------------------ intervals and figure
def test_t_interval_hand_computed():
    from icl_kit.stats.intervals import accuracy_intervals

    pred = pd.DataFrame({"system": "s", "epoch": None, "shot": 1, "acc": [1.0] * 6 + [0.0] * 4})
    iv = accuracy_intervals(pred)
    # mean 0.6, sd = sqrt(0.24 · 10/9) = 0.516398, t(0.975, 9) = 2.262157 -> half width 0.369410
    assert iv[["n", "accuracy", "low", "high"]].values.tolist()[0] == pytest.approx([10, 60.0, 23.059, 96.941],
                                                                                     abs=1e-3)


def test_wilson_interval_for_summary_only_rows():
    from icl_kit.stats.intervals import summary_intervals

    iv = summary_intervals(pd.DataFrame({"system": ["old"], "shot": [1], "n": [100], "accuracy": [45.0]}))
    # Wilson, 45/100, z = 1.96: centre 0.451852, half width 0.095707
    assert [iv["low"].iat[0], iv["high"].iat[0]] == pytest.approx([35.6145, 54.7559], abs=1e-3)


def test_plot_and_table_from_a_run(run_dir, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from icl_kit.evaluation.plots import accuracy_table, plot_accuracy_by_epoch
    from icl_kit.stats.run import run_intervals
    from icl_kit.study.import_results import import_results

    run(run_dir, ["zero_shot", "random", "checkpoints/*.pt"])
    study = tmp_path / "study.json"
    study.write_text('{"2024-test_data_num=100-x": {"shot_num=1": 0.5, "shot_num=2": 0.5, "shot_num=3": 0.5}}')
    import_results([study], run_dir, [f"{study.name}=study"])
    iv = run_intervals(run_dir)
    fig = plot_accuracy_by_epoch(iv)
    assert len(fig.axes) == len(SHOTS)
    ax = fig.axes[0]
    assert len(ax.lines) == 4  # one lineage (grpo_epoch1..2) + three horizontal lines
    assert list(ax.lines[0].get_xdata()) == [0, 1]  # epochs as read from the files
    table = accuracy_table(iv)
    assert table.index.tolist() == ["grpo_epoch1", "grpo_epoch2", "random", "study", "zero_shot"]
    assert table.columns.tolist() == ["1-shot", "2-shot", "3-shot"]
    assert table.loc["zero_shot", "1-shot"].startswith("84.0 [")
    assert table.loc["study", "1-shot"] == "50.0 [40.4, 59.6]"  # Wilson, 50/100


def test_the_seeds_of_a_phase_share_its_places_and_its_colour():
    """train.seeds: grpo_epoch1_seed0 and grpo_epoch1_seed1 sit at 'grpo 1', drawn in one colour, named once."""
    import matplotlib

    matplotlib.use("Agg")
    from icl_kit.evaluation.plots import plot_accuracy_by_epoch, training_positions

    systems = [f"{p}_epoch{e}_seed{s}" for p in ("sft", "grpo") for e in (1, 2) for s in (0, 1)]
    epochs = [int(name.split("epoch")[1][0]) - 1 for name in systems]
    xs, ticks = training_positions(pd.Series(systems), pd.Series(epochs))
    assert ticks == ["sft 1", "sft 2", "grpo 1", "grpo 2"] and xs[("grpo_epoch", 0)] == 2
    iv = pd.DataFrame({"system": systems + ["random"], "epoch": epochs + [None], "shot": 1,
                       "accuracy": 50.0, "low": 45.0, "high": 55.0})
    ax = plot_accuracy_by_epoch(iv).axes[0]
    lines = [ln for ln in ax.lines if ln.get_marker() == "o"]  # the four seed lineages (not the baseline)
    assert sorted(list(ln.get_xdata()) for ln in lines) == [[0, 1], [0, 1], [2, 3], [2, 3]]
    assert len({ln.get_color() for ln in lines}) == 2
    assert [t for t in ax.get_legend_handles_labels()[1] if "seeds" in t] == ["sft (2 seeds)", "grpo (2 seeds)"]


def test_demo_world_end_to_end_via_cli(tmp_path, capsys):
    """The real stack: demo world, simple encoder, simulated LVLM, RunContext, `icl-kit eval`."""
    from icl_kit.cli import main

    demo = Path(__file__).resolve().parents[2] / "params" / "demo.yaml"
    args = ["eval", "--params", str(demo), "-p", f"runs_dir={tmp_path}", "-p", f"data.root={tmp_path / 'data'}",
            "-p", "data.demo_train=120", "-p", "data.demo_test=30", "-p", "eval.questions=all",
            "-p", "eval.systems=[zero_shot, random, similarity, checkpoints/grpo_epoch*.pt]",
            "-p", "stats.comparisons=[]"]  # demo.yaml's comparisons name the SFT and RCE checkpoints left out here
    assert main(args) == 0
    assert "360 cells filled" in capsys.readouterr().out  # 3 systems x 4 shots x 30 questions
    table = pd.read_csv(tmp_path / "demo" / "eval" / "summary.csv")
    pred = pd.DataFrame(read_jsonl(tmp_path / "demo" / "eval" / "predictions.jsonl"))
    by_hand = pred.groupby(["system", "shot"])["acc"].mean().mul(100).reset_index()
    assert table[["system", "shot"]].values.tolist() == by_hand[["system", "shot"]].values.tolist()
    assert table["accuracy"].tolist() == pytest.approx(by_hand["acc"].tolist())
    assert main(args) == 0
    assert "0 cells filled with 0 LVLM calls (360 already done)" in capsys.readouterr().out


def test_tiny_qwen_smoke(tmp_path):
    """The real Qwen2.5-VL code path (tiny random checkpoint, CPU): cells answered, cache reused."""
    from icl_kit.core.config import load_params
    from icl_kit.lvlm.base import Request
    from icl_kit.run_context import RunContext

    root = Path(__file__).resolve().parents[2]
    params = load_params(root / "params" / "smoke_tiny_qwen.yaml", {
        "runs_dir": str(tmp_path), "data.root": str(tmp_path / "data"), "data.demo_train": 40,
        "data.demo_test": 10, "lvlm.model": str(root / "tests" / "fixtures" / "tiny-qwen2.5-vl"),
        "eval.n": 6, "eval.systems": ["zero_shot", "random", "checkpoints/*.pt"]})
    torch.manual_seed(0)
    save_v3(params.run_dir / "checkpoints" / "grpo_epoch1.pt", PointerSelector(64, 32), 0, "grpo", 0.1, {})
    ctx = RunContext.build(params)
    res = evaluate(params, ctx=ctx, progress=False)
    assert res.cells == 3 * 2 * 6 and res.calls < res.cells  # zero-shot prompts serve both shots
    w = res.work  # what the LVLM did (icl_kit.lvlm.work): each question's image is encoded once for all systems
    assert w.prompts == res.calls and w.images == w.images_encoded + w.image_cache_hits and w.image_cache_hits > 0
    assert w.prefill_tokens > w.pad_tokens >= 0 and w.decode_tokens > 0 and "at Qwen2.5-VL-3B's size" in w.describe()
    rows = read_jsonl(res.predictions)
    for r in rows[:: len(rows) // 3]:  # batched answers equal one-at-a-time answers
        req = Request(icds=tuple(ctx.world.records[i] for i in r["icd_ids"]), query=ctx.world.records[r["question_id"]])
        assert ctx.lvlm.generate([req])[0].answer == r["pred"]
    again = evaluate(params, ctx=ctx, progress=False)
    assert (again.calls, again.cells, again.skipped) == (0, 0, res.cells)
    assert again.work.prompts == again.work.images == 0
