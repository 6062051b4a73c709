"""lvlm_work.json (icl_kit.lvlm.work_record): each stage's recorded work adds up; a damaged file is refused."""

from __future__ import annotations

import json

import pytest

from icl_kit.core.errors import KitError
from icl_kit.lvlm.work import COUNTS, Work
from icl_kit.lvlm.work_record import add_work, read_work


def test_work_of_a_stage_adds_up_per_stage(tmp_path):
    path = tmp_path / "lvlm_work.json"
    first = Work(prompts=3, images=7, images_encoded=5, image_cache_hits=2, vision_patches=400, prefill_tokens=900)
    add_work(path, "eval", first)
    add_work(path, "eval", Work(prompts=2, images=2, images_encoded=0, image_cache_hits=2, prefill_tokens=100))
    add_work(path, "train", Work(prompts=1, images=1, label="simulated: no model ran"))
    work = read_work(path)
    assert work["eval"].counts() == [5, 9, 5, 4, 400, 1000] + [0] * (len(COUNTS) - 6)
    assert work["train"].label == "simulated: no model ran" and work["train"].prompts == 1
    add_work(path, "train", Work())  # nothing done: nothing recorded
    assert read_work(path) == work and read_work(tmp_path / "none.json") == {}
    add_work(tmp_path / "missing" / "lvlm_work.json", "eval", first)  # no run folder: nothing written
    assert not (tmp_path / "missing").exists()


def test_a_damaged_record_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "lvlm_work.json"
    path.write_text(json.dumps({"eval": {"prompts": 1}}))
    with pytest.raises(KitError, match=r"lvlm_work\.json is not an lvlm_work\.json of this kit; delete it"):
        read_work(path)
