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
import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "icl_kit"
LAYER = {
    "core": 0, "data": 1, "study.formats": 1.5, "lvlm": 2, "selection": 2, "run_context": 3, "train": 4,
    "evaluation": 4, "stats": 5, "headroom": 5.5, "report": 6, "study": 6.5, "cli": 7, "pipeline": 7, "nb": 7,
    "__init__": 7,
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
    assert out.stdout.strip() == "14"


# ------------------------------------------------------------------ references stay inside the repository
ROOT = PKG.parent
# Documents that are not in the repository, and this machine's absolute paths: a file that names one points
# its reader at nothing. The repository's own documents are docs/*.md; a test that needs a scratch folder
# takes pytest's tmp_path. The strings are assembled from parts, so this file, too, is searched.
OUTSIDE = tuple("".join(parts) for parts in (("DESIGN", ".md"), ("STUDY_", "FORMATS", ".md"), ("STYLE", ".md"),
                                             ("..", "/shared"), ("/wo", "rk/"), ("/t", "mp/"), ("/ho", "me/"),
                                             ("/ro", "ot/")))
ALLOWED_OUTSIDE: dict[str, set[str]] = {}  # file -> strings of OUTSIDE that are part of the product there (none)
DOC_SECTION_RE = re.compile(r"""docs/([a-z_]+)\.md,? (?:\\?"([^"\\\n]+)\\?"|'([^'\\\n]+)')""")


def repository_texts() -> dict[str, str]:
    """Every text file git tracks or would add (untracked, not ignored) -> its text; binaries left out."""
    import subprocess

    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout: the repository's files are unknown")
    texts = {}
    for name in filter(None, out.stdout.decode().split("\0")):
        path = ROOT / name
        data = path.read_bytes() if path.is_file() else b""
        if b"\0" not in data:
            texts[name] = data.decode("utf-8", errors="replace")
    return texts


def test_no_file_refers_outside_the_repository():
    bad = [f"{name}:{text.count(chr(10), 0, text.index(s)) + 1}: {s}"
           for name, text in repository_texts().items()
           for s in OUTSIDE if s in text and s not in ALLOWED_OUTSIDE.get(name, set())]
    assert bad == [], "refer to docs/*.md (page and section) or use tmp_path instead"


def test_references_to_the_docs_name_their_sections():
    """`docs/<page>.md, "<section>"` names a page of docs/ and one of its headings."""
    headings = {p.stem: {line.lstrip("#").strip() for line in p.read_text(encoding="utf-8").splitlines()
                         if line.startswith("#")} for p in (ROOT / "docs").glob("*.md")}
    bad = [f"{name}: docs/{page}.md, {section!r}" for name, text in repository_texts().items()
           for page, double, single in DOC_SECTION_RE.findall(text)
           for section in [double or single] if section not in headings.get(page, set())]
    assert bad == []


# --------------------------------------------------------------------------------- the run folder's paths
TABLE_MODULES = {PKG / "core" / "artefacts.py", PKG / "core" / "runs.py"}  # where run-folder names may be spelled
PATH_CALLS = {"Path", "PurePath", "PurePosixPath", "joinpath"}


def run_folder_names() -> set[str]:
    """Every path of the artefact table, its file name, and its sidecar's (docs/design.md, "The run folder")."""
    from pathlib import PurePosixPath

    from icl_kit.core.artefacts import TABLE

    names = {a.path for a in TABLE} | {PurePosixPath(a.path).name for a in TABLE}
    return names | {a.meta for a in TABLE if a.sidecar}


def spelled_run_paths(tree: ast.AST, names: set[str]) -> list[tuple[int, str]]:
    """(line, name) of each string constant in `names` used to build a path: an operand of `/`, or an
    argument of Path(...) / PurePath(...) / .joinpath(...)."""
    def hits(nodes: list[ast.AST]) -> list[tuple[int, str]]:
        return [(n.lineno, n.value) for n in nodes if isinstance(n, ast.Constant) and n.value in names]

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            found += hits([node.left, node.right])
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name in PATH_CALLS:
                found += hits(list(node.args))
    return found


def test_run_folder_paths_come_from_the_artefact_table():
    """No module but the table (core/artefacts.py) and RunPaths (core/runs.py) builds a run-folder path from a
    spelled-out name: they come from RunPaths attributes (`paths.sft_data`, `paths.last`, ...)."""
    names = run_folder_names()
    bad = [f"{path.relative_to(PKG.parent)}:{line} builds a path from {name!r}; use RunPaths"
           for path in MODULES.values() if path not in TABLE_MODULES
           for line, name in spelled_run_paths(ast.parse(path.read_text(encoding="utf-8")), names)]
    assert bad == []


def test_the_run_folder_path_check_itself():
    names = run_folder_names()
    assert {"checkpoints/last.pt", "last.pt", "summary.json", "sft_data.meta.json", "notebooks"} <= names
    code = 'a = root / "last.pt"\nb = Path(run, "params.yaml")\nc = run.joinpath("eval/summary.csv")\n' \
           'd = Path("x.txt") / name\ne = {"summary.json": 1}\n'
    assert spelled_run_paths(ast.parse(code), names) == [(1, "last.pt"), (2, "params.yaml"),
                                                         (3, "eval/summary.csv")]


def test_the_stages_read_and_write_rows_of_the_table():
    """A stage names what it reads and writes by the table's row names; no path is spelled in core/stages.py."""
    from icl_kit.core.artefacts import ARTEFACTS
    from icl_kit.core.stages import EVERY_STAGE as STAGES

    assert [n for s in STAGES for n in s.reads + s.writes if n not in ARTEFACTS] == []
    text = (PKG / "core" / "stages.py").read_text(encoding="utf-8")
    constants = {c.value for c in ast.walk(ast.parse(text)) if isinstance(c, ast.Constant)}
    spelled = constants & run_folder_names() - {s.name for s in STAGES}  # 'eval' names a stage and its folder
    assert spelled <= set(ARTEFACTS), f"core/stages.py spells run-folder paths {sorted(spelled - set(ARTEFACTS))}"


def test_the_design_page_lists_every_artefact_of_the_table():
    """docs/design.md's run-folder listing is tested against the table: each row's file or folder is named."""
    from pathlib import PurePosixPath

    from icl_kit.core.artefacts import TABLE

    section = (ROOT / "docs" / "design.md").read_text(encoding="utf-8").split("## The run folder")[1]
    listing = section.split("```")[1]
    assert [a.path for a in TABLE if PurePosixPath(a.path).name not in listing] == []


# The stages' entry points: what crosses a stage boundary is typed (a RunContext, Params, paths), never Any.
STAGE_ENTRIES = {
    "icl_kit/train/trainer.py": ("train",),
    "icl_kit/train/preflight.py": ("preflight",),
    "icl_kit/train/sft_data.py": ("make_sft_data",),
    "icl_kit/evaluation/runner.py": ("evaluate",),
    "icl_kit/stats/run.py": ("stats_for_run", "run_stats"),
    "icl_kit/report/build.py": ("write_report",),
    "icl_kit/pipeline.py": ("run",),
    "icl_kit/evaluation/select.py": ("select_icds", "run_params", "run_folder", "checkpoint_system"),
    "icl_kit/study/beams.py": ("import_sft_data",),
    "icl_kit/study/rollouts.py": ("train_split",),
}


def test_no_any_in_stage_signatures() -> None:
    found = []
    for rel, names in STAGE_ENTRIES.items():
        tree = ast.parse((ROOT / rel).read_text(encoding="utf-8"))
        defs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert set(names) <= set(defs), f"{rel}: {set(names) - set(defs)} not found"
        for name in names:
            args = defs[name].args
            for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
                if a.annotation is not None and "Any" in ast.unparse(a.annotation):
                    found.append(f"{rel}:{name}({a.arg}: {ast.unparse(a.annotation)})")
    assert found == []


# --------------------------------------------------------------------------------- backends
BACKEND_BY_NAME_RE = re.compile(r"""lvlm\.backend\s*(?:==|!=|in|not in)\s*[\"'(\[]""")


def test_backend_behaviour_is_asked_of_the_backend_not_matched_by_name():
    """What differs between LVLM backends is declared on their params sections (core.config.backend_traits)."""
    bad = [f"{path.relative_to(PKG.parent)}:{text[:m.start()].count(chr(10)) + 1}"
           for path in MODULES.values() for text in [path.read_text(encoding="utf-8")]
           for m in BACKEND_BY_NAME_RE.finditer(text)]
    assert bad == []
    assert BACKEND_BY_NAME_RE.search('simulated = p.lvlm.backend == "simulated"')  # the check's own pattern
