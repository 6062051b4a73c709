"""Training seeds (`train.seeds`): one lineage per seed, each what a run of that seed alone makes; a kill in the
middle of a later seed resumes to the same checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from grpo_ddp_worker import hash_lvlm, tiny_params, tiny_world

from icl_kit.core.config import check_references, load_params
from icl_kit.core.errors import KitError
from icl_kit.train.trainer import train


def run_tiny(run_dir: Path, *overrides: str, stop: int | None = None):
    params = tiny_params(run_dir, ["train.rce.epochs=1", "train.grpo.epochs=1", "train.rollouts.max_queries=24",
                                   *overrides])
    return train(params, ctx=tiny_world(params, hash_lvlm()), stop_after_steps=stop, progress=False)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model_state_dict"]


def test_each_seed_trains_what_that_seed_alone_trains_and_resumes_after_a_kill(tmp_path):
    both = run_tiny(tmp_path / "both", "train.seeds=[0, 1]")
    names = sorted(p.name for p in (tmp_path / "both" / "checkpoints").iterdir())
    assert names == ["grpo_epoch1_seed0.pt", "grpo_epoch1_seed1.pt", "last_seed0.pt", "last_seed1.pt",
                     "rce_epoch1_seed0.pt", "rce_epoch1_seed1.pt"]
    assert len(both.checkpoints) == 4 and both.steps == 2 * 6
    assert (tmp_path / "both" / "train_log_seed1.jsonl").is_file()
    assert not (tmp_path / "both" / "train_log.jsonl").exists()
    run_tiny(tmp_path / "alone", "train.seed=1")
    for phase in ("rce", "grpo"):
        mine, its = weights(tmp_path / "both" / "checkpoints" / f"{phase}_epoch1_seed1.pt"), \
            weights(tmp_path / "alone" / "checkpoints" / f"{phase}_epoch1.pt")
        assert all(torch.equal(v, its[k]) for k, v in mine.items()), phase
    seed0 = weights(tmp_path / "both" / "checkpoints" / "grpo_epoch1_seed0.pt")
    assert not all(torch.equal(v, weights(tmp_path / "both" / "checkpoints" / "grpo_epoch1_seed1.pt")[k])
                   for k, v in seed0.items())  # two seeds, two runs
    killed = tmp_path / "killed"
    run_tiny(killed, "train.seeds=[0]")  # seed 0 first; adding a seed later changes nothing of it
    assert run_tiny(killed, "train.seeds=[0, 1]", stop=4).stopped  # seed 0 done, seed 1 killed at its step 4
    assert not (killed / "checkpoints" / "grpo_epoch1_seed1.pt").exists()
    run_tiny(killed, "train.seeds=[0, 1]")
    for name in ("rce_epoch1_seed0.pt", "grpo_epoch1_seed1.pt"):
        mine, its = weights(killed / "checkpoints" / name), weights(tmp_path / "both" / "checkpoints" / name)
        assert all(torch.equal(v, its[k]) for k, v in mine.items()), name


def test_seeds_are_distinct_and_methods_are_names_only_with_several():
    with pytest.raises(KitError, match="distinct seeds"):
        load_params(None, ["train.seeds=[0, 0]"])
    comparison = 'stats.comparisons=[{"a": "sft_epoch1", "b": "grpo_epoch1"}]'
    systems = 'eval.systems=["random", "checkpoints/sft_epoch*.pt", "checkpoints/grpo_epoch*.pt"]'
    check_references(load_params(None, ["train.seeds=[0, 1, 2]", "train.sft.epochs=1", "train.grpo.epochs=1",
                                        systems, comparison]))
    with pytest.raises(KitError, match="sft_epoch1"):  # one seed: the names carry _seed0, no method
        check_references(load_params(None, ["train.seeds=[0]", "train.sft.epochs=1", "train.grpo.epochs=1",
                                            systems, comparison]))
