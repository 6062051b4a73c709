"""The run folder's artefacts, declared once: what each file is, where it lies, which stage writes it, which
params shape it and its format version (docs/design.md, "The run folder").

`RunPaths` (icl_kit.core.runs) takes its attributes from this table: `RunPaths(root).<name>` is
`root / <path>`, and no other module spells a run-folder path. The four artefacts a later stage reuses or
extends instead of re-making (`embeddings.pt`, `pools.json`, `rollouts.jsonl`, `sft_data.jsonl`) carry a
sidecar `<stem>.meta.json` (`record`): the values of exactly the params that shape them, the format version,
the identity of the data they were made for (embeddings and pools), and a hash of those. A stage compares
the sidecar with its own params (`differences`) before it reads or extends the artefact, and refuses a
stale one (icl_kit.core.sidecars). `checkpoints/last.pt` keeps the same kind of record inside itself
(icl_kit.train.state), keyed by the same rule (`shaping_params`).

Nothing here reads or writes a file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from icl_kit.core.stages import EVAL, REPORT, STATS, TRAIN

EVERY = "*"  # shaped_by: every param
SIDECAR_SUFFIX = ".meta.json"
MAX_SHOWN = 3  # changed values named in a refusal


@dataclass(frozen=True)
class Artefact:
    """One row of the table: `name` is its RunPaths attribute, `path` is relative to the run folder."""

    name: str
    path: str
    stage: str  # the stage (or command) that writes it
    shaped_by: tuple[str, ...]  # params sections or dotted keys whose values it depends on (EVERY: all)
    version: int  # format version; a file of another version is refused where it is fingerprinted
    ignores: tuple[str, ...] = ()  # keys under shaped_by that do not change it (devices, batch sizes)
    sidecar: bool = False  # carries <stem>.meta.json, checked before it is reused or extended
    folder: bool = False
    per_seed: bool = False  # one per training seed when train.seeds lists several (`at`)

    @property
    def meta(self) -> str:
        """The sidecar's path: 'pools.json' -> 'pools.meta.json'."""
        return meta_path(self.path)

    def at(self, seed: int | str | None) -> str:
        """The path for training seed `seed` (train.seeds): 'train_log.jsonl' -> 'train_log_seed1.jsonl',
        'checkpoints/last.pt' -> 'checkpoints/last_seed1.pt'; the path itself for None or a shared artefact;
        seed '*': the glob of every seed's."""
        if seed is None or not self.per_seed:
            return self.path
        path = PurePosixPath(self.path)
        return str(path.with_name(f"{path.stem}_seed{seed}{path.suffix}"))


def meta_path(path: str) -> str:
    """An artefact's sidecar: 'pools.json' -> 'pools.meta.json'."""
    return str(PurePosixPath(path).with_suffix(SIDECAR_SUFFIX))


# Keys that change nothing while another key has a given value: (other key, value).
NO_EFFECT_WHEN = {
    "pools.anchors": ("pools.sampler", "rand"),
    "encoder.model": ("encoder.backend", "simple"),
    "encoder.dim": ("encoder.backend", "clip"),
    "lvlm.model": ("lvlm.backend", "simulated"),
    "lvlm.dtype": ("lvlm.backend", "simulated"),
    "lvlm.qwen": ("lvlm.backend", "simulated"),
    "lvlm.simulated": ("lvlm.backend", "qwen"),
}
# Keys that may change between a training run and its resume without changing what was computed so far.
RESUMABLE_CHANGES = ("train.device", "train.save_every_steps", "train.grpo.epochs", "lvlm.batch_size",
                     "sft_data.chunk", "lvlm.device", "encoder.device", "encoder.batch_size",
                     "lvlm.qwen.vision_cache_mb", "lvlm.qwen.prefix_cache_mb",
                     "train.seeds")  # train.seeds: which lineages a run trains, never what one of them computes
POOLS = ("pools.sampler", "pools.size", "pools.seed", "pools.anchors")
LVLM = ("seed", "lvlm")  # the answers and scores: the model, its prompt and decoding (`seed` seeds the simulator)
NOT_ANSWERS = ("lvlm.device", "lvlm.batch_size", "lvlm.shared_prefill", "lvlm.agreement_check",
               "lvlm.max_disagreement", "lvlm.qwen.prefix_cache_mb",
               "lvlm.qwen.vision_cache_mb")  # where and how fast, or checks of the answers: never the answers
NOT_EMBEDDINGS = ("encoder.device", "encoder.batch_size")
SFT_SEARCH = ("sft_data.score", "sft_data.answer", "sft_data.prob_norm", "sft_data.beam_size", "sft_data.max_shots",
              "sft_data.construct_order", "sft_data.beam_score")
ROLLOUTS = ("train.rollouts.mode", "train.rollouts.beam_size", "train.rollouts.temperatures",
            "train.rollouts.samples_per_temperature", "train.rollouts.n_random", "train.rollouts.val_fraction",
            "train.rollouts.max_queries")  # what is generated, and which queries share a chunk's seeded generator
INITIAL_SELECTOR = ("selector", "train.seed", "train.init_checkpoint", "deterministic")
HEADROOM_LINES = (*POOLS, *LVLM, "encoder", "eval.shots", "eval.similarity_order", "train.reward.kind",
                  "train.reward.shots", "train.reward.prob_norm", "train.rollouts.val_fraction",
                  "train.rollouts.max_queries", "sft_data.score", "sft_data.answer", "sft_data.prob_norm",
                  "sft_data.beam_size", "sft_data.construct_order", "headroom.draws",
                  "headroom.seed")  # what one question's line holds (headroom.n only says how many lines are read)
HEADROOM_SUMMARY = (*HEADROOM_LINES, "headroom", "stats", "train.rollouts.group_size", "train.grpo.advantage",
                    "train.grpo.std_floor", "train.grpo.adv_clip")

TABLE: tuple[Artefact, ...] = (
    Artefact("params", "params.yaml", "every stage", (EVERY,), 1),
    Artefact("params_history", "params_history", "every stage", (EVERY,), 1, folder=True),
    Artefact("provenance", "provenance.json", "every stage", (), 1),
    Artefact("embeddings", "embeddings.pt", "train, eval", ("encoder",), 1, NOT_EMBEDDINGS, sidecar=True),
    Artefact("pools", "pools.json", "train, eval, sft-data, study import-pools", POOLS, 1, sidecar=True),
    Artefact("rewards", "rewards.sqlite", "train, eval, sft-data", LVLM, 1, NOT_ANSWERS),
    Artefact("lvlm_agreement", "lvlm_agreement.json", "train, eval, sft-data", LVLM, 1, NOT_ANSWERS),
    Artefact("lvlm_decoding", "lvlm_decoding.json", "train, eval, sft-data", LVLM, 1, NOT_ANSWERS),
    Artefact("lvlm_work", "lvlm_work.json", "train, eval, sft-data, headroom", LVLM, 1, NOT_ANSWERS),
    Artefact("rollouts", "rollouts.jsonl", "train, study import-rollouts",
             (*POOLS, *LVLM, "encoder", *INITIAL_SELECTOR, "train.reward.kind", "train.reward.shots",
              "train.reward.prob_norm", *ROLLOUTS), 1,
             (*NOT_ANSWERS, *NOT_EMBEDDINGS, "selector.dropout"), sidecar=True, per_seed=True),
    Artefact("sft_data", "sft_data.jsonl", "sft-data, train, study import-sft-data",
             (*POOLS, *LVLM, *SFT_SEARCH), 1, (*NOT_ANSWERS, "lvlm.generation"), sidecar=True),
    Artefact("train_log", "train_log.jsonl", "train", TRAIN.sections, 1, RESUMABLE_CHANGES, per_seed=True),
    Artefact("tensorboard", "tensorboard", "train", TRAIN.sections, 1, RESUMABLE_CHANGES, folder=True,
             per_seed=True),
    Artefact("checkpoints", "checkpoints", "train", TRAIN.sections, 3, RESUMABLE_CHANGES, folder=True),
    Artefact("last", "checkpoints/last.pt", "train", TRAIN.sections, 2, RESUMABLE_CHANGES, per_seed=True),
    Artefact("eval_dir", "eval", "eval", EVAL.sections, 1, folder=True),
    Artefact("predictions", "eval/predictions.jsonl", "eval", EVAL.sections, 1),
    Artefact("summary", "eval/summary.csv", "eval", EVAL.sections, 1),
    Artefact("imported", "eval/imported.csv", "study import-results", (), 1),
    Artefact("stats_dir", "stats", "stats", STATS.sections, 1, folder=True),
    Artefact("comparisons", "stats/comparisons.csv", "stats", STATS.sections, 2),  # 2: n_seeds (method rows)
    Artefact("stats_summary", "stats/summary.json", "stats", STATS.sections, 2),  # 2: with "format", config
    Artefact("report_dir", "report", "report", REPORT.sections, 1, folder=True),
    Artefact("report_md", "report/report.md", "report", REPORT.sections, 1),
    Artefact("report_html", "report/report.html", "report", REPORT.sections, 1),
    Artefact("report_json", "report/report.json", "report", REPORT.sections, 1),
    Artefact("figures", "report/figures", "report", REPORT.sections, 1, folder=True),
    Artefact("audit", "report/audit.md", "study audit, study retest", (), 1),
    Artefact("headroom_dir", "headroom", "headroom", HEADROOM_SUMMARY, 1, folder=True),
    Artefact("headroom_questions", "headroom/questions.jsonl", "headroom", HEADROOM_LINES, 1,
             (*NOT_ANSWERS, *NOT_EMBEDDINGS, "headroom.chunk")),  # its questions.meta.json: the stage checks it
    Artefact("headroom_summary", "headroom/summary.json", "headroom", HEADROOM_SUMMARY, 1,
             (*NOT_ANSWERS, *NOT_EMBEDDINGS, "headroom.chunk")),
    Artefact("notebooks", "notebooks", "run", (EVERY,), 1, folder=True),
    Artefact("stages", "stages.json", "run", (EVERY,), 1),
)
ARTEFACTS: dict[str, Artefact] = {a.name: a for a in TABLE}
FINGERPRINTED = tuple(a.name for a in TABLE if a.sidecar)


# ---------------------------------------------------------------------------- params
def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Params (a dataclass) or a nested mapping as {dotted key: value}."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    out: dict[str, Any] = {}
    for k, v in obj.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(p == EVERY or key == p or key.startswith(p + ".") for p in prefixes)


def _has_effect(key: str, flat: dict[str, Any]) -> bool:
    return not any(_under(key, (prefix,)) and flat.get(other) == value
                   for prefix, (other, value) in NO_EFFECT_WHEN.items())


def shaping_params(art: Artefact | str, params: Any) -> dict[str, Any]:
    """{dotted key: value} of the params that shape `art`, as plain JSON values."""
    art = ARTEFACTS[art] if isinstance(art, str) else art
    flat = flatten(params)
    keep = {k: v for k, v in flat.items()
            if _under(k, art.shaped_by) and not _under(k, art.ignores) and _has_effect(k, flat)}
    return json.loads(json.dumps(keep, sort_keys=True, default=str))


def record(name: str, params: Any, data: dict[str, Any] | None = None, source: str = "built") -> dict[str, Any]:
    """The sidecar of artefact `name` made now: what shapes it (params, data, format version), its hash, and
    where it came from ('built', 'drawn', 'imported: FILE'); equal inputs give equal bytes."""
    art = ARTEFACTS[name]
    body = {"artefact": art.path, "format_version": art.version, "params": shaping_params(art, params),
            "data": json.loads(json.dumps(data or {}, sort_keys=True, default=str))}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    return {**body, "fingerprint": digest, "source": source}


def upgrade(name: str, raw: Any) -> dict[str, Any] | None:
    """A sidecar as `record` writes it; pools.meta.json of kits before the table ({sampler, size, seed, anchors?,
    source}) is read as the same params without a data identity; anything else is None."""
    if not isinstance(raw, dict):
        return None
    if name == "pools" and "format_version" not in raw and {"sampler", "size", "seed"} <= raw.keys():
        params = {f"pools.{k}": raw[k] for k in ("sampler", "size", "seed", "anchors") if k in raw}
        return {"artefact": ARTEFACTS[name].path, "format_version": 1, "params": params, "data": {},
                "source": raw.get("source", "drawn")}
    if not isinstance(raw.get("params"), dict) or "format_version" not in raw:
        return None
    return raw


# ----------------------------------------------------------------------- comparison
def changed_values(old: dict[str, Any], new: dict[str, Any], label: str = "{}") -> list[str]:
    """'key: old -> new' for every key present in both whose value differs (a key added to the kit later, with
    its default, is no difference)."""
    return [f"{label.format(k)}: {old[k]!r} -> {new[k]!r}" for k in sorted(old.keys() & new.keys())
            if old[k] != new[k]]


def differences(stored: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between a sidecar and the one the stage would write: format version, params, data."""
    if stored.get("format_version") != now["format_version"]:
        return [f"format version: {stored.get('format_version')!r} -> {now['format_version']!r}"]
    return (changed_values(stored.get("params", {}), now["params"])
            + changed_values(stored.get("data", {}), now["data"], label="the data's {}"))


def shown(changes: list[str]) -> str:
    """The first MAX_SHOWN changes, '; '-separated, '; ...' when there are more."""
    return "; ".join(changes[:MAX_SHOWN]) + ("; ..." if len(changes) > MAX_SHOWN else "")


def _names(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def stale_sentence(paths: list[str], sidecars: list[str], changes: list[str]) -> str:
    """One sentence: these artefacts were made with other params (the changes); the fixes."""
    one = len(paths) == 1
    it = "it" if one else "them"
    delete = f"it and {sidecars[0]}" if one else f"them and their sidecars ({', '.join(sidecars)})"
    return (f"{_names(paths)} {'was' if one else 'were'} made with other params ({shown(changes)}); restore "
            f"those params, choose a new run_name, or delete {delete} to rebuild {it}.")


def unknown_sentence(paths: list[str], sidecars: list[str]) -> str:
    """One sentence: these artefacts have no sidecar (an older kit made them); the fixes."""
    one = len(paths) == 1
    it = "it" if one else "them"
    they = "it was" if one else "they were"
    return (f"{_names(paths)} {'has' if one else 'have'} no {_names(sidecars)} (an older icl-kit made "
            f"{it}), so the params {they} made with are unknown; delete {it} to rebuild {it}, or choose a new "
            "run_name.")
