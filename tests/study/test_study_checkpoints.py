"""The study's checkpoint files (both selector generations, its converter's output), built in study_fixtures from
the study's description: load, explain, map, refuse."""

import logging

import pytest
import torch
from study_fixtures import (
    V4_EXTRA,
    reference_greedy,
    study_convert,
    study_state_dict,
    v4_state_dict,
    write_lightning_ckpt,
    write_v3_pt,
)

from icl_kit.cli import main
from icl_kit.core.errors import KitError
from icl_kit.evaluation.systems import resolve_systems
from icl_kit.selection.checkpoints import load_checkpoint, load_selector, read_checkpoint_file, save_v3
from icl_kit.selection.convert import convert_v3_to_v2
from icl_kit.selection.selector import PointerSelector

pytestmark = pytest.mark.usefixtures("one_thread")
D, H = 24, 16


def inputs(n: int = 10, k: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return torch.randn(n, D, generator=g), torch.randn(n, k, D, generator=g)


@pytest.mark.parametrize("layers", [1, 3])
def test_seed_era_checkpoint_loads_selects_converts_and_loads_back(tmp_path, layers: int) -> None:
    sd = study_state_dict(D, H, layers, gate=False, seed=layers)
    src = write_v3_pt(tmp_path / "grpo_epoch1.pt", sd)
    m, info = load_checkpoint(src)
    assert info["config"]["query_update"] == "none" and info["config"]["num_layers"] == layers
    assert m.query_update_gate is None
    q, c = inputs()
    assert m.select(q, c, 4).tolist() == reference_greedy(sd, q, c, 4)
    dst = convert_v3_to_v2(src)
    raw = read_checkpoint_file(dst)
    assert not any("gate" in k for k in raw["state_dict"]) and raw["hyper_parameters"]["query_update"] == "none"
    back, info2 = load_checkpoint(dst)
    assert info2["config"] == info["config"] and torch.equal(back.select(q, c, 4), m.select(q, c, 4))


def test_gated_checkpoint_selects_as_section_3_2(tmp_path) -> None:
    sd = study_state_dict(D, H, 3, gate=True, seed=2)
    m, info = load_checkpoint(write_v3_pt(tmp_path / "rce_epoch2.pt", sd, phase="rce"))
    q, c = inputs()
    assert info["config"]["query_update"] == "gate"
    assert m.select(q, c, 4).tolist() == reference_greedy(sd, q, c, 4)


def test_one_generation_never_loads_into_the_other(tmp_path) -> None:
    path = tmp_path / "a.pt"
    save_v3(path, PointerSelector(D, H), 0, "grpo", 0.1, {})
    obj = torch.load(path, weights_only=True)
    del obj["model_state_dict"]["query_update_gate.weight"], obj["model_state_dict"]["query_update_gate.bias"]
    torch.save(obj, path)  # a gated file that lost its gate: its stored config still says gate
    with pytest.raises(KitError, match=r"query_update=gate\): missing query_update_gate.weight \[16, 32\], "
                                       r"query_update_gate.bias \[16\]"):
        load_selector(path)
    seed_era = write_v3_pt(tmp_path / "b.pt", study_state_dict(D, H))
    with pytest.raises(KitError, match=r"is a query_update='none' selector \(its gate keys say so\) but 'gate' "
                                       r"was asked; set selector.query_update='none'\."):
        load_checkpoint(seed_era, query_update="gate")
    half = study_state_dict(D, H) | {"query_update_gate.bias": torch.zeros(H)}
    with pytest.raises(KitError, match=r"missing query_update_gate.weight \[16, 32\]"):
        load_selector(write_v3_pt(tmp_path / "c.pt", half))


@pytest.mark.parametrize("variant", sorted(V4_EXTRA))
def test_v4_files_are_refused_naming_the_variant(tmp_path, variant: str) -> None:
    path = write_v3_pt(tmp_path / "v4.pt", v4_state_dict(variant))
    with pytest.raises(KitError) as err:
        load_selector(path)
    msg = str(err.value)
    assert f"is a study {variant} selector (" in msg and "the kit does not support yet" in msg
    assert msg.count(". ") == 0  # one sentence


def test_study_converted_file_is_explained_in_one_sentence(tmp_path) -> None:
    dst = study_convert(write_v3_pt(tmp_path / "grpo_epoch1.pt", study_state_dict(D, H, 1, gate=True)))
    with pytest.raises(KitError) as err:
        load_selector(dst)
    msg = str(err.value)
    assert msg == (
        f"Checkpoint {dst} carries 6 keys renamed by the study's v3->v2 converter (cross_attn.*, attn_norm.*; "
        "docs/study.md, defect 3), which the study's own inference never mapped back, so every result it made "
        "with this file ran with untrained cross-attention and default LayerNorm; load the original .pt instead, "
        "or pass study_renames=True (CLI --study-renames, eval system 'path:study_renames') to map the names "
        "back to layer 0, which is right only for a file whose source held one layer."
    )


@pytest.mark.parametrize("gate", [False, True])
def test_study_renames_maps_one_layer_files_back(tmp_path, gate: bool) -> None:
    sd = study_state_dict(D, H, 1, gate=gate, seed=3)
    dst = study_convert(write_v3_pt(tmp_path / "grpo_epoch1.pt", sd))
    m, info = load_checkpoint(dst, study_renames=True)
    q, c = inputs()
    assert info["study_renames"] and info["config"]["query_update"] == ("gate" if gate else "none")
    assert m.select(q, c, 4).tolist() == reference_greedy(sd, q, c, 4)
    assert torch.equal(m.cross_attn_layers[0].in_proj_weight, sd["cross_attn_layers.0.in_proj_weight"])


def test_study_renames_refuses_a_file_whose_source_had_three_layers(tmp_path) -> None:
    src = write_v3_pt(tmp_path / "grpo_epoch1.pt", study_state_dict(D, H, 3))
    dst = study_convert(src)
    with pytest.raises(KitError, match=r"came from a 3-layer selector \(its source grpo_epoch1.pt beside it\), but "
                                       r"the study's converter kept only layer 0 and dropped the others"):
        load_selector(dst, study_renames=True)
    src.unlink()  # without the source, layers >= 3 (which the converter passes through) still show it
    sd = torch.load(dst, weights_only=True)
    sd["state_dict"]["lever_lm.pointer_selector.attn_norms.3.weight"] = torch.ones(H)
    torch.save(sd, dst)
    with pytest.raises(KitError, match=r"came from a 4-layer selector \(keys of layer 3 are still in the file\)"):
        load_selector(dst, study_renames=True)


def test_a_converted_file_without_evidence_of_its_layers_needs_study_layers_1(tmp_path) -> None:
    """A converted 3-layer file whose .pt is gone looks like a 1-layer one: refused unless the user says
    study_layers=1; with the one-layer source beside it, it maps without being told."""
    sd = study_state_dict(D, H, 1, seed=5)
    src = write_v3_pt(tmp_path / "grpo_epoch1.pt", sd)
    dst = study_convert(src)
    assert load_checkpoint(dst, study_renames=True)[1]["study_renames"]  # the .pt beside it shows one layer
    src.unlink()
    with pytest.raises(KitError, match=r"nothing in or beside it tells whether its source had one layer or three.*"
                                       r"study_layers=1 \(eval system 'path:study_layers=1', CLI --study-layers 1\)"):
        load_selector(dst, study_renames=True)
    q, c = inputs()
    m = load_selector(dst, study_layers=1)  # the user says so: mapped, and it selects as the source did
    assert m.select(q, c, 4).tolist() == reference_greedy(sd, q, c, 4)
    systems = resolve_systems([f"{dst.name}:study_layers=1"], tmp_path, names={dst.name: "grpo_epoch1"})
    assert [s.name for s in systems] == ["grpo_epoch1"]
    with pytest.raises(KitError, match="nothing in or beside it tells"):
        resolve_systems([f"{dst.name}:study_renames"], tmp_path)
    with pytest.raises(KitError, match=r"eval.names names \['other.pt'\]"):
        resolve_systems([f"{dst.name}:study_layers=1"], tmp_path, names={"other.pt": "x"})


def test_lightning_file_with_clip_copies_loads_and_logs_once(tmp_path, caplog) -> None:
    sd = study_state_dict(D, H, 1, gate=False, seed=4)
    path = write_lightning_ckpt(tmp_path / "sft_epoch=12_train=21.9_val=22.0.ckpt", sd)
    with caplog.at_level(logging.INFO, logger="icl_kit"):
        m, info = load_checkpoint(path)
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 1 and "ignored 4 non-selector weights (4 of them frozen CLIP copies" in notes[0]
    q, c = inputs()
    assert (info["layout"], info["epoch"]) == ("v2", 12) and m.select(q, c, 3).tolist() == reference_greedy(sd, q, c, 3)


def test_lightning_file_with_lora_weights_is_refused(tmp_path) -> None:
    path = write_lightning_ckpt(tmp_path / "lora.ckpt", study_state_dict(D, H), lora=True)
    with pytest.raises(KitError, match=r"also holds 1 LoRA/adapter weights \(e.g. lever_lm.img_model.base_model"
                                       r".*so its selector was trained on the tuned encoder's features"):
        load_selector(path)


def test_saved_checkpoints_carry_params_and_provenance(tmp_path) -> None:
    path = save_v3(tmp_path / "a.pt", PointerSelector(D, H, query_update="none"), 0, "rce", 0.0, {},
                   params={"seed": 1, "pools": {"size": 4}}, provenance={"git_commit": "abc", "torch": "2"})
    raw = read_checkpoint_file(path)
    assert raw["params"] == {"seed": 1, "pools": {"size": 4}} and raw["provenance"]["git_commit"] == "abc"
    assert raw["selector_config"]["query_update"] == "none"
    assert load_checkpoint(path)[1]["config"]["query_update"] == "none"


def test_cli_convert_and_eval_systems_take_study_renames(tmp_path, capsys) -> None:
    sd = study_state_dict(D, H, 1, seed=5)
    dst = study_convert(write_v3_pt(tmp_path / "grpo_epoch1.pt", sd))
    assert main(["study", "convert", "--v3-ckpt", str(dst)]) == 2
    assert "renamed by the study's v3->v2 converter" in capsys.readouterr().err
    assert main(["study", "convert", "--v3-ckpt", str(dst), "--study-renames"]) == 0
    mapped = tmp_path / "grpo_epoch1_mapped_v2format.ckpt"
    assert not any(k.startswith("lever_lm.pointer_selector.cross_attn.") for k in
                   read_checkpoint_file(mapped)["state_dict"])
    q, c = inputs()
    assert load_selector(mapped).select(q, c, 2).tolist() == reference_greedy(sd, q, c, 2)
    systems = resolve_systems([f"{dst.name}:study_renames", "random"], tmp_path)
    assert [s.name for s in systems] == ["grpo_epoch1_v2format", "random"]
    with pytest.raises(KitError, match="renamed by the study's v3->v2 converter"):
        resolve_systems([dst.name], tmp_path)


def test_cli_eval_study_renames_marks_every_checkpoint_system(monkeypatch) -> None:
    import icl_kit.evaluation.runner as runner

    seen = {}

    def fake_evaluate(params):
        seen["systems"] = params.eval.systems
        raise KitError("stop here")

    monkeypatch.setattr(runner, "evaluate", fake_evaluate)
    systems = '["random", "study/a_v2format.ckpt", "study/b.ckpt:study_renames"]'
    assert main(["eval", "--study-renames", "-p", f"eval.systems={systems}"]) == 2
    assert seen["systems"] == ["random", "study/a_v2format.ckpt:study_renames", "study/b.ckpt:study_renames"]
