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
