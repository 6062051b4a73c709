"""Checkpoints: v3/v2/bare layouts, strict errors, safe loading, the v3 -> v2 converter."""

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from icl_kit.cli import main
from icl_kit.core.errors import KitError
from icl_kit.selection import checkpoints, convert
from icl_kit.selection.checkpoints import V2_PREFIX, load_checkpoint, load_selector, save_v3
from icl_kit.selection.convert import convert_paths, convert_v3_to_v2, v2_path
from icl_kit.selection.selector import PointerSelector

pytestmark = pytest.mark.usefixtures("one_thread")


class NotAllowlisted:
    """A harmless class: pickling it by reference is what weights_only must refuse."""


def selector(d: int = 6, h: int = 4, layers: int = 1, heads: int = 1, seed: int = 0) -> PointerSelector:
    torch.manual_seed(seed)
    m = PointerSelector(d, h, layers, heads, dropout=0.2)
    with torch.no_grad():  # move every weight off its init so a dropped key would show
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return m.eval()


def probe(d: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(99)
    return torch.randn(20, d, generator=g), torch.randn(20, 9, d, generator=g)


def same_behaviour(a: PointerSelector, b: PointerSelector) -> bool:
    q, c = probe(a.input_dim)
    picks = a.select(q, c, 4)
    return torch.equal(picks, b.select(q, c, 4)) and torch.equal(
        a.sequence_logprob(q, c, picks), b.sequence_logprob(q, c, picks)
    )


def study_v3(path: Path, m: PointerSelector, epoch: int = 2) -> Path:
    """The existing study's v3 layout: exactly five keys, no selector config."""
    torch.save({"epoch": epoch, "phase": "grpo", "model_state_dict": m.state_dict(), "kl_beta": 0.1,
                "metrics": {"val_reward": 0.61}}, path)
    return path


# ------------------------------------------------------------------- v3
def test_save_v3_load_round_trip(tmp_path) -> None:
    m = selector(layers=2, heads=2)
    path = save_v3(tmp_path / "grpo_epoch0.pt", m, 0, "grpo", 0.1, {"reward": np.float64(0.5), "n": 3})
    raw = torch.load(path, weights_only=True)
    assert raw["selector_config"] == m.config() and raw["metrics"] == {"reward": 0.5, "n": 3}
    loaded, info = load_checkpoint(path)
    assert same_behaviour(m, loaded) and not loaded.training
    assert loaded.config() == m.config()  # heads and dropout come from the stored config
    assert (info["layout"], info["epoch"], info["phase"], info["kl_beta"]) == ("v3", 0, "grpo", 0.1)
    assert list(tmp_path.iterdir()) == [path]


def test_save_v3_rejects_bad_values(tmp_path) -> None:
    with pytest.raises(KitError, match="phase"):
        save_v3(tmp_path / "x.pt", selector(), 0, "warmup", 0.1, {})
    with pytest.raises(KitError, match="epoch"):
        save_v3(tmp_path / "x.pt", selector(), -1, "rce", 0.1, {})
    with pytest.raises(KitError, match="metrics.f"):
        save_v3(tmp_path / "x.pt", selector(), 0, "rce", 0.1, {"f": object()})


def test_study_v3_without_config_infers_dims_and_layers(tmp_path) -> None:
    m = selector(d=4, h=4, layers=3)  # d == h: no input_proj
    loaded, info = load_checkpoint(study_v3(tmp_path / "grpo_epoch3.pt", m))
    assert info["config"] == {"input_dim": 4, "hidden_dim": 4, "num_layers": 3, "num_heads": 1, "dropout": 0.1,
                              "query_update": "gate"}
    assert same_behaviour(m, loaded) and info["metrics"] == {"val_reward": 0.61}


def test_bare_state_dict_loads(tmp_path) -> None:
    m = selector()
    torch.save(m.state_dict(), tmp_path / "bare.pt")
    loaded, info = load_checkpoint(tmp_path / "bare.pt")
    assert info["layout"] == "state_dict" and info["epoch"] is None and same_behaviour(m, loaded)


# ------------------------------------------------------------------- v2
def test_study_v2_with_encoder_weight_loads_and_logs_once(tmp_path, caplog) -> None:
    m = selector()
    state = {V2_PREFIX + k: v for k, v in m.state_dict().items()}
    state["lever_lm.clip_model.visual.proj"] = torch.randn(8, 6)
    torch.save({"epoch": 4, "global_step": 1200, "pytorch-lightning_version": "2.0.9", "state_dict": state,
                "hyper_parameters": {"lr": 1e-4, "num_heads": 1}}, tmp_path / "study.ckpt")
    with caplog.at_level(logging.INFO, logger="icl_kit"):
        loaded, info = load_checkpoint(tmp_path / "study.ckpt")
    assert same_behaviour(m, loaded)
    assert (info["layout"], info["epoch"], info["global_step"]) == ("v2", 4, 1200)
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 1 and "ignored 1 non-selector" in notes[0] and "clip_model" in notes[0]


def test_v2_missing_selector_key_is_still_an_error(tmp_path) -> None:
    state = {V2_PREFIX + k: v for k, v in selector().state_dict().items() if k != "cand_proj.weight"}
    state["lever_lm.other.weight"] = torch.ones(1)
    torch.save({"epoch": 0, "state_dict": state}, tmp_path / "x.ckpt")
    with pytest.raises(KitError, match=r"missing cand_proj\.weight \[4, 4\]"):
        load_selector(tmp_path / "x.ckpt")


# ------------------------------------------------------------- converter
def test_convert_round_trip_keeps_names_and_behaviour(tmp_path) -> None:
    m = selector(heads=2)
    src = save_v3(tmp_path / "grpo_epoch1.pt", m, 1, "grpo", 0.05, {"val_reward": 0.7})
    dst = convert_v3_to_v2(src)
    assert dst == tmp_path / "grpo_epoch1_v2format.ckpt" == v2_path(src)
    raw = torch.load(dst, weights_only=True)
    assert sorted(raw["state_dict"]) == sorted(V2_PREFIX + k for k in m.state_dict())  # no renames
    assert (raw["epoch"], raw["global_step"]) == (1, 0) and raw["pytorch-lightning_version"]
    hp = raw["hyper_parameters"]
    assert (hp["v3_epoch"], hp["v3_phase"], hp["v3_metrics"]) == (1, "grpo", {"val_reward": 0.7})
    assert (hp["input_dim"], hp["hidden_dim"], hp["num_layers"], hp["num_heads"]) == (6, 4, 1, 2)
    loaded, info = load_checkpoint(dst)
    assert same_behaviour(m, loaded) and loaded.config() == m.config()
    assert (info["phase"], info["kl_beta"], info["metrics"]) == ("grpo", 0.05, {"val_reward": 0.7})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grpo_epoch1.pt", "grpo_epoch1_v2format.ckpt"]


def test_three_layer_checkpoint_stays_three_layers(tmp_path) -> None:
    m = selector(layers=3)
    dst = convert_v3_to_v2(study_v3(tmp_path / "a.pt", m), tmp_path / "out" / "b.ckpt")
    loaded = load_selector(dst)
    assert loaded.num_layers == 3 and same_behaviour(m, loaded)


def test_convert_refuses_existing_output_unless_forced(tmp_path) -> None:
    src = study_v3(tmp_path / "a.pt", selector())
    dst = convert_v3_to_v2(src)
    with pytest.raises(KitError, match="already exists; pass --force"):
        convert_v3_to_v2(src)
    os.utime(dst, (0, 0))
    assert convert_v3_to_v2(src, force=True) == dst and dst.stat().st_mtime > 0


def test_convert_refuses_non_v3_input(tmp_path) -> None:
    dst = convert_v3_to_v2(study_v3(tmp_path / "a.pt", selector()))
    with pytest.raises(KitError, match="is a v2 checkpoint, not v3"):
        convert_v3_to_v2(dst, tmp_path / "again.ckpt")


def test_convert_leaves_nothing_when_verification_fails(tmp_path, monkeypatch) -> None:
    src = study_v3(tmp_path / "a.pt", selector())

    def perturbed(path):
        m = checkpoints.load_checkpoint(path)[0]
        with torch.no_grad():
            m.query_update_gate.bias.add_(5.0)
        return m

    monkeypatch.setattr(convert, "load_selector", perturbed)
    with pytest.raises(KitError, match="does not select like the original"):
        convert_v3_to_v2(src)
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]  # no output, no temp file


def test_convert_glob_skips_done_and_v2_inputs(tmp_path) -> None:
    for e in (1, 2, 3):
        save_v3(tmp_path / f"grpo_epoch{e}.pt", selector(seed=e), e, "grpo", 0.1, {})
    convert_v3_to_v2(tmp_path / "grpo_epoch1.pt")
    lines: list[str] = []
    written = convert_paths(str(tmp_path / "grpo_epoch*"), echo=lines.append)
    assert [p.name for p in written] == ["grpo_epoch2_v2format.ckpt", "grpo_epoch3_v2format.ckpt"]
    assert lines[0].startswith("skipped") and len(lines) == 3  # the _v2format input is not even listed
    assert all(line.startswith("skipped") for line in _run(convert_paths, str(tmp_path / "*.pt")))
    with pytest.raises(KitError, match="cannot be used with a glob"):
        convert_paths(str(tmp_path / "*.pt"), output="x.ckpt")
    with pytest.raises(KitError, match="No checkpoint matches"):
        convert_paths(str(tmp_path / "nothing*.pt"))


def _run(fn, *args) -> list[str]:
    lines: list[str] = []
    fn(*args, echo=lines.append)
    return lines


def test_cli_convert(tmp_path, capsys) -> None:
    src = study_v3(tmp_path / "grpo_epoch0.pt", selector())
    assert main(["study", "convert", "--v3-ckpt", str(src)]) == 0
    assert v2_path(src).is_file() and "converted" in capsys.readouterr().out
    assert main(["study", "convert", "--v3-ckpt", str(src)]) == 2
    assert "already exists" in capsys.readouterr().err


# ------------------------------------------------------------- bad inputs
def write_state(tmp_path: Path, edit) -> Path:
    state = selector().state_dict()
    edit(state)
    torch.save({"epoch": 0, "phase": "rce", "model_state_dict": state, "kl_beta": 0.0, "metrics": {}},
               tmp_path / "bad.pt")
    return tmp_path / "bad.pt"


def test_missing_extra_and_misshaped_keys_in_one_error(tmp_path) -> None:
    def edit(s):
        del s["query_update_gate.bias"]
        s["foo.bar"] = torch.ones(2)
        s["cand_proj.weight"] = torch.ones(4, 3)

    with pytest.raises(KitError) as err:
        load_selector(write_state(tmp_path, edit))
    msg = str(err.value)
    assert "missing query_update_gate.bias [4]" in msg
    assert "unexpected foo.bar" in msg
    assert "wrong shape cand_proj.weight [4, 3] (expected [4, 4])" in msg
    assert "d=6, h=4, 1 layer" in msg


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda s: s.pop("attn_norms.0.bias"), r"missing attn_norms\.0\.bias \[4\]"),
        (lambda s: s.update({"cross_attn_layers.1.in_proj_bias": torch.ones(12)}),
         r"missing cross_attn_layers\.1\.in_proj_weight \[12, 4\]"),
        (lambda s: s.update({"query_proj.weight": torch.ones(4, 5)}), r"wrong shape query_proj\.weight \[4, 5\]"),
        (lambda s: s.update({"temperature": torch.tensor([0.1])}), "unexpected temperature"),
    ],
)
def test_each_bad_key_is_named(tmp_path, edit, match) -> None:
    with pytest.raises(KitError, match=match):
        load_selector(write_state(tmp_path, edit))


def test_truncated_file(tmp_path) -> None:
    src = save_v3(tmp_path / "a.pt", selector(), 0, "rce", 0.1, {})
    data = src.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(KitError, match="truncated or not a PyTorch checkpoint"):
        load_selector(tmp_path / "cut.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(KitError, match="truncated or not a PyTorch checkpoint"):
        load_selector(tmp_path / "empty.pt")


def test_file_needing_arbitrary_unpickling_is_refused(tmp_path) -> None:
    torch.save({"model_state_dict": selector().state_dict(), "extra": NotAllowlisted()}, tmp_path / "code.pt")
    with pytest.raises(KitError, match="needs arbitrary unpickling .*NotAllowlisted.*could run code"):
        load_selector(tmp_path / "code.pt")


def test_other_files_and_paths(tmp_path) -> None:
    with pytest.raises(KitError, match="is a directory"):
        load_selector(tmp_path)
    with pytest.raises(KitError, match="does not exist"):
        load_selector(tmp_path / "nope.pt")
    (tmp_path / "notes.json").write_text('{"a": 1}')
    with pytest.raises(KitError, match="not a PyTorch checkpoint"):
        load_selector(tmp_path / "notes.json")
    torch.save({"optimizer": {"lr": 1.0}}, tmp_path / "opt.pt")
    with pytest.raises(KitError, match="neither 'model_state_dict'"):
        load_selector(tmp_path / "opt.pt")
    torch.save({"state_dict": {"encoder.w": torch.ones(1)}}, tmp_path / "enc.ckpt")
    with pytest.raises(KitError, match="holds no 'lever_lm.pointer_selector"):
        load_selector(tmp_path / "enc.ckpt")


def test_numpy_scalar_metrics_load_under_weights_only(tmp_path):
    # study checkpoints may hold metrics computed with numpy (np.float64 from np.mean): plain data, not code
    import numpy as np

    from icl_kit.selection.checkpoints import load_checkpoint
    from icl_kit.selection.selector import PointerSelector

    sel = PointerSelector(input_dim=8, hidden_dim=8)
    path = tmp_path / "grpo_epoch1.pt"
    torch.save({"epoch": 0, "phase": "grpo", "model_state_dict": sel.state_dict(), "kl_beta": np.float64(0.1),
                "metrics": {"val_reward": np.float64(0.52), "n": np.int64(3), "acc": np.float32(0.5)}}, path)
    _, info = load_checkpoint(path)
    assert float(info["metrics"]["val_reward"]) == 0.52 and int(info["metrics"]["n"]) == 3
