"""Names shared by the stages: lineages and their ranges as the report's title writes them."""

from icl_kit.core.names import collapse_epochs, lineage, natural_key


def test_lineage_and_natural_order() -> None:
    assert lineage("grpo_epoch12") == "grpo_epoch" and lineage("random") == "random"
    assert sorted(["grpo_epoch10", "grpo_epoch9"], key=natural_key) == ["grpo_epoch9", "grpo_epoch10"]


def test_collapse_epochs_writes_ranges_in_training_order() -> None:
    demo = ["grpo_epoch1", "grpo_epoch2", "grpo_epoch3", "grpo_epoch4", "grpo_epoch5", "random", "rce_epoch1",
            "sft_epoch1", "sft_epoch2", "sft_epoch3", "zero_shot"]
    assert collapse_epochs(demo) == ["sft_epoch1–3", "rce_epoch1", "grpo_epoch1–5", "random", "zero_shot"]
    assert collapse_epochs(["grpo_epoch1", "grpo_epoch3", "LeverLM#1"]) == ["grpo_epoch1, grpo_epoch3", "LeverLM#1"]
    assert collapse_epochs([]) == [] and collapse_epochs(["similarity"]) == ["similarity"]
