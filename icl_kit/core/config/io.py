"""Params files in and out: YAML reading (duplicate keys refused, YAML 1.2 floats), type and range
checks, dotted overrides, dump and describe."""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from icl_kit.core.config.params import Params, check_name
from icl_kit.core.config.references import validate_references
from icl_kit.core.errors import KitError


class _ParamsLoader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-5` (exponent, no dot) as a float, as YAML 1.2 does.

    PyYAML follows YAML 1.1, where `lr: 1e-5` is the *string* '1e-5'.
    It also refuses a key given twice in one mapping, where PyYAML keeps the last silently.
    """

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, yaml.Mark] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<:` merges may be overridden on purpose
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, typing.Hashable) and key in first:
                    raise DuplicateKeyError(key, first[key], key_node.start_mark)
                first[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping names one key twice; `problem_mark` is the second one."""

    def __init__(self, key: Any, first: yaml.Mark, second: yaml.Mark) -> None:
        super().__init__(None, None, f"key {key!r} is given twice (first at line {first.line + 1})", second)
        self.key, self.first_line, self.line = key, first.line + 1, second.line + 1


_ParamsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml_text(text: str) -> Any:
    """YAML text -> Python values, with YAML 1.2 exponent floats (see `_ParamsLoader`)."""
    return yaml.load(text, Loader=_ParamsLoader)  # noqa: S506 - a SafeLoader subclass


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(c) for c in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, value: Any, tp: Any, meta: dict[str, Any]) -> Any:
    """Check `value` against the field type `tp` and its rules; return the typed value."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value in meta.get("retired", {}):
            raise KitError(meta["retired"][value])
        if value not in choices:
            hint = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            tip = f" Did you mean {hint[0]!r}?" if hint else ""
            raise KitError(f"{key}={value!r} is not allowed; choose one of {list(choices)}.{tip}")
        return value
    if origin in (list, typing.List):  # noqa: UP006
        if not isinstance(value, list):
            raise KitError(f"{key}={value!r} must be a list of {_type_name(typing.get_args(tp)[0])}.")
        (item_tp,) = typing.get_args(tp)
        return [_coerce(f"{key}[{i}]", v, item_tp, meta) for i, v in enumerate(value)]
    if origin is dict:
        key_tp, value_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise KitError(f"{key}={value!r} must be a mapping of {_type_name(key_tp)} to {_type_name(value_tp)}.")
        return {_coerce(f"{key} key", k, key_tp, {}): _coerce(f"{key}[{k!r}]", v, value_tp, meta)
                for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        for arm in args[:-1]:  # `int | str`: the first arm that accepts the value
            try:
                return _coerce(key, value, arm, meta)
            except KitError:
                continue
        return _coerce(key, value, args[-1], meta)
    if tp is bool:
        if not isinstance(value, bool):
            raise KitError(f"{key}={value!r} must be true or false.")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise KitError(f"{key}={value!r} must be an integer.")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise KitError(f"{key}={value!r} must be a number.")
        value = float(value)
        if not math.isfinite(value):
            raise KitError(f"{key}={value!r} must be a finite number (not NaN or infinite); give a number.")
    elif tp is str:
        if not isinstance(value, str):
            raise KitError(f"{key}={value!r} must be a string (quote it in YAML).")
        check_name(key, value)
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and value < lo or hi is not None and value > hi:
        bounds = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
        raise KitError(f"{key}={value!r} is out of range; it must be {bounds}.")
    return value


# Sections renamed since an earlier release: the old name is refused with the new one.
RENAMED_SECTIONS = {
    "sft": "The top-level section 'sft' (InfoScore beam data) is now called 'sft_data', like the file it makes "
           "(sft_data.jsonl), so that it is not confused with the SFT phase train.sft; rename 'sft:' to 'sft_data:' "
           "(and overrides sft.KEY=... to sft_data.KEY=...).",
}


def _build(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    """Build dataclass `cls` from a mapping, rejecting unknown keys with a suggestion."""
    if not isinstance(raw, dict):
        where = prefix.rstrip(".") or "params"
        raise KitError(f"{where} must be a section (a mapping of keys to values), not {raw!r}; "
                       "put its keys indented under it.")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in fields and prefix + str(key) in RENAMED_SECTIONS:
            raise KitError(RENAMED_SECTIONS[prefix + str(key)])
        if key not in fields:
            hint = difflib.get_close_matches(str(key), list(fields), n=1)
            tip = f" Did you mean {hint[0]!r}?" if hint else ""
            raise KitError(
                f"Unknown key {dotted!r}.{tip} Valid keys of {prefix.rstrip('.') or 'the top level'}: "
                f"{', '.join(fields)}."
            )
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value or {}, f"{dotted}.")
        else:
            kwargs[key] = _coerce(dotted, value, tp, dict(fields[key].metadata))
    return cls(**kwargs)


# ------------------------------------------------------------------ overrides
def parse_override(text: str) -> tuple[str, Any]:
    """`'train.grpo.lr=1e-5'` -> `('train.grpo.lr', 1e-05)`; the value is parsed as YAML."""
    if "=" not in text:
        raise KitError(f"Override {text!r} must look like key=value, e.g. train.grpo.lr=1e-5.")
    key, _, raw = text.partition("=")
    try:
        value = load_yaml_text(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise KitError(f"Override {text!r}: the value {raw!r} is not valid YAML; quote it, e.g. "
                       f"{key.strip()}='\"{raw}\"'.") from None
    return key.strip(), value


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any] | list[str] | None) -> dict[str, Any]:
    """Set dotted keys in a nested mapping (a copy); validation happens in `load_params`."""
    items = overrides.items() if isinstance(overrides, dict) else map(parse_override, overrides or [])
    out = _deepcopy(raw)
    for key, value in items:
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise KitError(f"Override {key!r}: {part!r} is a value, not a section.")
            node = child
        node[parts[-1]] = value
    return out


def _deepcopy(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _deepcopy(v) if isinstance(v, dict) else v for k, v in d.items()}


# ------------------------------------------------------------------ load/dump
def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a params YAML file; a missing or malformed file is a KitError naming it."""
    path = Path(path)
    if not path.is_file():
        raise KitError(f"Params file {path} does not exist; pass a path such as params/demo.yaml.")
    try:
        raw = load_yaml_text(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise KitError(f"Params file {path} is not UTF-8 text; save it as a UTF-8 YAML file.") from None
    except DuplicateKeyError as exc:
        raise KitError(f"Params file {path} gives key {exc.key!r} twice (lines {exc.first_line} and {exc.line}); "
                       "keep one of them (YAML would silently drop the first).") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise KitError(f"Params file {path} is not valid YAML{where}; fix the syntax.") from None
    if raw is None:
        raise KitError(f"Params file {path} is empty (no keys, only blank lines or comments); write the params "
                       "into it (see params/demo.yaml), or leave --params out to use the defaults.")
    if not isinstance(raw, dict):
        raise KitError(f"Params file {path} must hold a mapping of sections, not {type(raw).__name__}.")
    return raw


def load_params(
    path: str | Path | None = None,
    overrides: dict[str, Any] | list[str] | None = None,
) -> Params:
    """Load params from YAML (or defaults when `path` is None), apply overrides, validate.

    Validation is whole: besides each key, what `stats` and `report` name must be something the configured
    run can have (`icl_kit.core.config.references`), so a bad reference is refused before any work."""
    raw = read_yaml(path) if path else {}
    params = from_dict(apply_overrides(raw, overrides))
    validate_references(params, path)
    return params


def from_dict(raw: dict[str, Any]) -> Params:
    """Build validated Params from a nested mapping. The cross-stage references are left to `load_params`:
    the kit's own builders (a re-test) name systems they import into the run folder in the same step."""
    return _build(Params, raw, "")


def to_dict(p: Any) -> dict[str, Any]:
    """Params (or a section) as a plain nested mapping."""
    return dataclasses.asdict(p)


def dump_yaml(p: Params) -> str:
    """The resolved params as YAML text (round-trips through `load_params`)."""
    return yaml.safe_dump(to_dict(p), sort_keys=False, allow_unicode=True)


def describe(cls: type = Params, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, help) for every param: the one place behaviours are documented."""
    rows: list[tuple[str, str, str]] = []
    hints = typing.get_type_hints(cls)
    defaults = cls()
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            rows += describe(hints[f.name], f"{prefix}{f.name}.")
        else:
            rows.append((f"{prefix}{f.name}", repr(getattr(defaults, f.name)), f.metadata.get("help", "")))
    return rows
