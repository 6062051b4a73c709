"""What a run needs from outside the repository, checked before any work (no file is written).

A researcher starting the real study on a new box has, typically, none of: the OK-VQA files,
the COCO images, the study's config file (for its system prompt), the Qwen2.5-VL weights, the
CLIP weights. `check_inputs` names the first one missing and how to get it, in one sentence,
in seconds (no download, no model load), before `icl-kit run` creates the run folder.
"""

from __future__ import annotations

from pathlib import Path

from icl_kit.core.config import Params
from icl_kit.core.errors import KitError

OKVQA_URL = "https://okvqa.allenai.org"
COCO_URL = "https://cocodataset.org"
HOW_DATA = {
    "okvqa": f"OK-VQA's question and annotation files from {OKVQA_URL}",
    "vqav2": "VQAv2's question and annotation files from https://visualqa.org",
}


def check_data(params: Params) -> None:
    """The split files and the image folders exist (the demo world is built later, so it is skipped)."""
    from icl_kit.data.okvqa import IMAGE_ROOT_ENV, ROOT_ENV, file_names, resolve_roots

    d = params.data
    if d.demo:
        return
    env = ROOT_ENV[d.dataset]
    try:
        root, image_root = resolve_roots(d)
    except KitError:
        raise KitError(f"data.root is empty and ${env} is not set: download {HOW_DATA[d.dataset]} and set "
                       f"data.root (or export {env}) to their folder.") from None
    for split in dict.fromkeys((d.train_split, d.test_split)):
        for name in file_names(split, d.dataset):
            if not (Path(root) / name).is_file():
                raise KitError(f"{Path(root) / name} is missing: download {HOW_DATA[d.dataset]} into "
                               f"data.root={str(root)!r} (${env}).")
        images = Path(image_root) / f"{split}2014"
        if not images.is_dir():
            raise KitError(f"The COCO image folder {images} is missing: download {split}2014 images from "
                           f"{COCO_URL} and set data.image_root (or export {IMAGE_ROOT_ENV}) to the folder holding "
                           f"{split}2014/.")


def check_models(params: Params) -> None:
    """The system prompt file, the LVLM and the encoder can be found (locally, or on a reachable hub)."""
    from icl_kit.core.hub import locate_model
    from icl_kit.lvlm.prompts import system_text

    system_text(params.lvlm.prompt)  # a missing study config is a KitError naming it
    if params.lvlm.backend == "qwen":
        locate_model(params.lvlm.model, "Qwen2.5-VL model", "lvlm.model")
    if params.encoder.backend == "clip":
        locate_model(params.encoder.model, "CLIP model", "encoder.model")


def check_inputs(params: Params) -> None:
    """Every outside input of a run, in the order a researcher fetches them; the first missing is a KitError."""
    check_data(params)
    check_models(params)
