"""Typed params: one dataclass per stage, loaded from one YAML file.

Every field has a default and a help text (`help` in its metadata). Loading
rejects unknown keys (with a close-match suggestion), wrong types and
out-of-range values, naming the key, the value and what is allowed.
Dotted overrides (`train.grpo.lr=1e-5`) work from the CLI and from Python.

Layout: `fields` (opt, section), `lvlm` (model, prompt, decoding, backend sections), `train` (rewards,
rollouts, phases), `params` (the other sections, `Params`, cross-field rules), `references` (what `stats` and
`report` name, checked against what the run can have when params load), `io` (YAML in and out).
Everything is importable from `icl_kit.core.config`.
"""

from icl_kit.core.config.fields import (  # noqa: F401
    opt,
    section,
)
from icl_kit.core.config.io import (  # noqa: F401
    DuplicateKeyError,
    apply_overrides,
    describe,
    dump_yaml,
    from_dict,
    load_params,
    load_yaml_text,
    parse_override,
    read_yaml,
    to_dict,
)
from icl_kit.core.config.lvlm import (  # noqa: F401
    LVLM_SHARED_SECTIONS,
    BackendTraits,
    GenerationConfig,
    LVLMConfig,
    PromptConfig,
    QwenConfig,
    SimulatedConfig,
    backend_sections,
    backend_traits,
    check_template,
)
from icl_kit.core.config.params import (  # noqa: F401
    COMPARISON_KEYS,
    NAME_KEYS,
    SUBSET_RE,
    DataConfig,
    EncoderConfig,
    EvalConfig,
    Params,
    PoolsConfig,
    ReportConfig,
    SelectorConfig,
    StatsConfig,
    check_name,
    claimed_points,
    validate_cross_fields,
    validate_stats,
)
from icl_kit.core.config.references import (  # noqa: F401
    BASELINE_SYSTEMS,
    check_references,
    planned_systems,
    validate_references,
)
from icl_kit.core.config.train import (  # noqa: F401
    GRPOConfig,
    RCEConfig,
    RewardConfig,
    RolloutsConfig,
    SFTConfig,
    SFTDataConfig,
    TrainConfig,
)
