"""The package layout's import rules (docs/design.md "Package layout"), checked on the source by an AST walk.

core <- data <- study.formats <- {lvlm, selection} <- run_context <- {train, evaluation} <- stats <- report
<- study <- application (cli, pipeline, nb). The study wing has two floors: `study.formats` (the study's file
formats the core asks about) sits just above `data`; the rest of `study` (importers, audit, re-test) uses
every stage and sits just below the application.
A module may import its own layer and the layers below it; `train` and `evaluation` never import each
other, nor `lvlm` and `selection`; `stats` reads run files only in `stats/run.py`; no import cycles.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "icl_kit"
LAYER = {
    "core": 0, "data": 1, "study.formats": 1.5, "lvlm": 2, "selection": 2, "run_context": 3, "train": 4,
    "evaluation": 4, "stats": 5, "report": 6, "study": 6.5, "cli": 7, "pipeline": 7, "nb": 7, "__init__": 7,
}
SIBLINGS = {frozenset({"train", "evaluation"}), frozenset({"lvlm", "selection"})}
APPLICATION = {"cli", "pipeline", "nb", "run_context", "__init__"}
MAX_MODULE_LINES = 420
MAX_FUNCTION_LINES = 60


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = path.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def unit(module: str) -> str:
    """'icl_kit.train.steps' -> 'train'; 'icl_kit.study.formats.keys' -> 'study.formats'; 'icl_kit' -> '__init__'."""
    parts = module.split(".")
    if parts[1:3] == ["study", "formats"]:
        return "study.formats"
    return parts[1] if len(parts) > 1 else "__init__"


def icl_imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, imported icl_kit module) for every import in the file, lazy ones included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("icl_kit")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("icl_kit"):
            found += [(node.lineno, node.module)]
            # `from icl_kit.pkg import submodule` imports the submodule too
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names
                      if f"{node.module}.{a.name}" in MODULES]
    return found


MODULES = modules()


def violations() -> list[str]:
    bad = []
    for module, path in MODULES.items():
        src = unit(module)
        for line, target in icl_imports(path, module):
            dst = unit(target)
            if dst == src or target == "icl_kit":
                continue
            where = f"{path.relative_to(PKG.parent)}:{line} imports {target}"
            if frozenset({src, dst}) in SIBLINGS:
                bad.append(f"{where}: {src} and {dst} never import each other")
            elif LAYER[dst] > LAYER[src]:
                bad.append(f"{where}: {src} (layer {LAYER[src]}) may not import upward into {dst}")
    return bad


def test_imports_point_one_way():
    assert violations() == []


def test_no_module_of_the_library_sits_at_the_top_level_but_the_application_layer():
    top = {p.stem for p in PKG.glob("*.py")}
    assert top <= APPLICATION, f"move {sorted(top - APPLICATION)} into a subpackage"


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        graph[module] = {t for _, t in icl_imports(path, module) if t in MODULES and t != module}
    return graph


def test_no_import_cycles_between_modules():
    graph, state, cycles = _graph(), {}, []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if n.startswith(m + ".") or m == "icl_kit":
                continue  # a package importing its own submodule is not a cycle
            if state.get(n) == 1:
                cycles.append(" -> ".join(stack[stack.index(n):] + [n]) if n in stack else f"{m} -> {n}")
            elif not state.get(n):
                visit(n, [*stack, n])
        state[m] = 2

    for m in sorted(graph):
        if not state.get(m):
            visit(m, [m])
    assert cycles == []


def test_stats_reads_run_files_only_in_stats_run():
    readers = ("read_jsonl", "RunPaths(", "read_imported", "read_csv", "read_text", "read_bytes", "json.load",
               "torch.load")
    for path in (PKG / "stats").glob("*.py"):
        if path.name in ("run.py", "__init__.py"):
            continue
        text = path.read_text(encoding="utf-8")
        assert not [r for r in readers if r in text], f"{path.name} reads files; move that into stats/run.py"


def test_modules_and_functions_stay_small():
    long_modules, long_functions = [], []
    for module, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_MODULE_LINES:
            long_modules.append(f"{module}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{module}.{node.name}: {length} lines")
    assert long_modules == [] and long_functions == []


@pytest.mark.parametrize("src,dst,ok", [("train", "evaluation", False), ("stats", "train", True),
                                        ("core", "data", False), ("lvlm", "selection", False),
                                        ("selection", "study.formats", True), ("selection", "study", False),
                                        ("study", "report", True), ("report", "study", False)])
def test_the_rule_itself(src, dst, ok):
    """The checker's own rule on known pairs (so a broken rule cannot pass silently)."""
    sibling = frozenset({src, dst}) in SIBLINGS
    assert (not sibling and LAYER[dst] <= LAYER[src]) == ok


def test_public_api_is_lazy_and_complete():
    import subprocess
    import sys

    code = ("import sys, icl_kit; assert 'torch' not in sys.modules and 'transformers' not in sys.modules; "
            "import icl_kit as k; names = k.__all__; [getattr(k, n) for n in names]; "
            "assert k.vqa_accuracy('two', ['two'] * 10) == 1.0; print(len(names))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PKG.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "11"
