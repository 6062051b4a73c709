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


def _all_requirements(project: dict) -> list[str]:
    """The runtime dependencies and every extra (what `make setup` installs)."""
    return project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in _all_requirements(project)}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_block = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda = {_name(r) for r in pip_block if not r.startswith("-e")}
    conda |= {_name(d) for d in env["dependencies"] if isinstance(d, str)} - {"python", "pip"}
    assert conda == declared, f"only in environment.yml: {conda - declared}; only in pyproject: {declared - conda}"
    # The version constraints agree too.
    declared_specs = {_spec(r) for r in _all_requirements(project)}
    conda_specs = {_spec(r) for r in pip_block if not r.startswith("-e")}
    assert conda_specs == declared_specs, f"constraints differ: {conda_specs ^ declared_specs}"
    assert "python=3.11" in env["dependencies"]


def _environment_sections() -> dict[str, set[str]]:
    """environment.yml's pip entries by section: '' (the runtime) until a `# extra NAME` comment line."""
    sections: dict[str, set[str]] = {"": set()}
    current = ""
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if m := re.match(r"\s*#\s*extra (\w+)", line):
            current = m.group(1)
            sections.setdefault(current, set())
        elif (m := re.match(r"\s+- (\S.*)$", line)) and line.startswith("      ") and not m.group(1).startswith("-e"):
            sections[current].add(_spec(m.group(1)))
    return sections


def test_extras_are_marked_in_environment_yml_and_dev_tools_stay_out_of_the_runtime():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    expected = {"": {_spec(r) for r in project["dependencies"]}}
    expected |= {name: {_spec(r) for r in reqs} for name, reqs in project["optional-dependencies"].items()}
    assert _environment_sections() == expected
    runtime = {_name(r) for r in project["dependencies"]}
    assert not runtime & {"pytest", "ruff", "nbval", "jupyterlab"}, "test and lab tools are extras (dev, lab)"
    extras = re.search(r'pip install -e "\.\[([\w,]+)\]"', (ROOT / "Makefile").read_text())
    assert extras and set(extras.group(1).split(",")) == set(project["optional-dependencies"]), \
        "the Makefile's setup installs every extra"


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
