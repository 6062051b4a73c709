"""params/okvqa_qwen2_5_vl_3b_study.yaml: the study's protocol, and a first run that lacks inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from icl_kit.cli import main
from icl_kit.core.config import load_params
from icl_kit.core.errors import KitError
from icl_kit.data.okvqa import resolve_roots
from icl_kit.run_context import check_inputs

ROOT = Path(__file__).resolve().parents[2]
STUDY = ROOT / "params" / "okvqa_qwen2_5_vl_3b_study.yaml"
KIT = ROOT / "params" / "okvqa_qwen2_5_vl_3b.yaml"


def test_study_params_hold_the_study_protocol():
    p = load_params(STUDY)
    g, q, lv = p.lvlm.generation, p.lvlm.qwen, p.lvlm
    assert (g.inherit, g.num_beams, g.max_new_tokens, g.length_penalty, g.min_new_tokens) == (
        "checkpoint", 3, 5, 0.0, 0)
    assert (g.do_sample, g.repetition_penalty, g.temperature, g.top_k, g.top_p) == (None,) * 5  # inherited
    assert g.eos_token_id == [151645]
    assert (q.min_pixels, q.max_pixels, lv.batch_size, lv.shared_prefill, lv.device) == (None, None, 1, "off", "cuda")
    assert lv.prompt.system_prompt_file.endswith("configs/infer_model/qwen2.5_vl_3B.yaml:system_prompt")
    assert {"similarity_i2t", "similarity_i2i", "similarity_t2t"} <= set(p.eval.systems)
    assert "similarity" not in p.eval.systems and p.eval.similarity_order == "last"
    assert (p.eval.questions, p.eval.n) == ("first", 100)
    kit = load_params(KIT)
    assert kit.lvlm.device == "cuda" and kit.lvlm.generation.inherit == "none"


@pytest.fixture
def bare(tmp_path, monkeypatch):
    """A new box: no data, no study clone, no weights in an empty hub cache, hub offline."""
    import huggingface_hub.constants

    for var in ("OKVQA_PATH", "COCO_PATH", "LEVER_PLUS_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_run_without_data_is_one_sentence_before_any_work(bare, capsys):
    assert main(["run", str(STUDY)]) == 2
    err = capsys.readouterr().err.strip()
    assert "data.root is empty and $OKVQA_PATH is not set: download OK-VQA's question and annotation files" in err
    assert err.count("\n") == 0 and err.endswith(".")
    assert not (bare / "runs").exists()  # nothing written


def _okvqa_files(root: Path) -> None:
    for split in ("train", "val"):
        (root / f"OpenEnded_mscoco_{split}2014_questions.json").write_text(json.dumps({"questions": []}))
        (root / f"mscoco_{split}2014_annotations.json").write_text(json.dumps({"annotations": []}))


def test_each_missing_input_is_named_with_how_to_get_it(bare, monkeypatch):
    p = load_params(STUDY)
    data = bare / "okvqa"
    data.mkdir()
    monkeypatch.setenv("OKVQA_PATH", str(data))
    with pytest.raises(KitError, match=r"OpenEnded_mscoco_train2014_questions.json is missing: download OK-VQA"):
        check_inputs(p)
    _okvqa_files(data)
    monkeypatch.setenv("COCO_PATH", str(bare / "coco"))
    with pytest.raises(KitError, match=r"COCO image folder .*coco/train2014 is missing \(nor is it in .*coco/"
                                       r"mscoco2014/, where the study's \$COCO_PATH keeps it one level down\): "
                                       r"download train2014 images"):
        check_inputs(p)
    for split in ("train", "val"):  # the study's layout: $COCO_PATH/mscoco2014/{train,val}2014
        (bare / "coco" / "mscoco2014" / f"{split}2014").mkdir(parents=True)
    assert resolve_roots(p.data)[1] == bare / "coco" / "mscoco2014"
    with pytest.raises(KitError, match=r"system_prompt_file=.*LEVER_PLUS_PATH.*does not exist.*clone"):
        check_inputs(p)
    study = bare / "Lever-Plus" / "configs" / "infer_model"
    study.mkdir(parents=True)
    (study / "qwen2.5_vl_3B.yaml").write_text('system_prompt: "A stand-in written by the test."\n')
    monkeypatch.setenv("LEVER_PLUS_PATH", str(bare / "Lever-Plus"))
    with pytest.raises(KitError, match=r"lvlm.model='Qwen/Qwen2.5-VL-3B-Instruct' is not in the local hub cache "
                                       r"and HF_HUB_OFFLINE is set; .*`hf download Qwen/Qwen2.5-VL-3B-Instruct`"):
        check_inputs(p)


def test_pixel_bounds_cross_check():
    with pytest.raises(KitError, match="min_pixels=20000 exceeds lvlm.qwen.max_pixels=10000"):
        load_params(None, {"lvlm.qwen.min_pixels": 20000, "lvlm.qwen.max_pixels": 10000})
    assert load_params(None, {"lvlm.qwen.min_pixels": 20000, "lvlm.qwen.max_pixels": None}).lvlm.qwen.max_pixels is None
