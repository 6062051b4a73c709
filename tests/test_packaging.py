"""pyproject.toml and environment.yml declare the same environment."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _spec(req: str) -> str:
    """Name and version constraint, e.g. 'torch>=2.1' (spaces dropped)."""
    return _name(req) + req.strip()[len(_name(req)):].replace(" ", "")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_block = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda = {_name(r) for r in pip_block if not r.startswith("-e")}
    conda |= {_name(d) for d in env["dependencies"] if isinstance(d, str)} - {"python", "pip"}
    assert conda == declared, f"only in environment.yml: {conda - declared}; only in pyproject: {declared - conda}"
    # The version constraints agree too.
    declared_specs = {_spec(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    conda_specs = {_spec(r) for r in pip_block if not r.startswith("-e")}
    assert conda_specs == declared_specs, f"constraints differ: {conda_specs ^ declared_specs}"
    assert "python=3.11" in env["dependencies"]


def test_console_script_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["icl-kit"] == "icl_kit.cli:main"


# Import name -> distribution name, where they differ.
DISTRIBUTION = {"yaml": "pyyaml", "PIL": "pillow", "qwen_vl_utils": "qwen-vl-utils",
                "huggingface_hub": "huggingface-hub"}


# Imported only inside try/except ImportError, as an optional accelerator: not a dependency.
OPTIONAL = {"flash_attn"}


def _third_party_imports() -> set[str]:
    import ast
    import sys

    names: set[str] = set()
    for path in (ROOT / "icl_kit").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("icl_kit", "__future__")} - OPTIONAL


def test_every_imported_third_party_module_is_declared_in_both_files():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_block = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda = {_name(r) for r in pip_block if not r.startswith("-e")}
    missing = []
    for module in sorted(_third_party_imports()):
        dist = DISTRIBUTION.get(module, module).lower().replace("_", "-")
        if dist in declared and dist in conda:
            continue
        missing.append(f"{module} (distribution {dist})")
    assert missing == [], f"imported by icl_kit but declared in neither pyproject.toml nor environment.yml: {missing}"


def test_the_import_scan_sees_known_imports():
    """The scan itself finds what the code certainly imports (so an empty scan cannot pass)."""
    assert {"torch", "transformers", "scipy", "yaml", "mistune"} <= _third_party_imports()
