"""The package's shape: no import cycles (lazy imports included), every module importable on its own,
short functions."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dwf_hub"
MAX_FUNCTION_LINES = 60
LONG_ALLOWED = {("cli.py", "build_parser")}  # one add_argument per line: long by nature, not by logic


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _runtime_imports(tree: ast.AST) -> list[ast.ImportFrom | ast.Import]:
    """Every import statement, at module level or inside functions, except under ``if TYPE_CHECKING:``."""
    found, stack = [], [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def import_graph() -> dict[str, set[str]]:
    """``module -> dwf_hub modules it imports`` (``from .x import y`` counts ``x.y`` when that is a module)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in _runtime_imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
                continue
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            deps.update(
                f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names
            )
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_import_graph_has_no_cycle():
    graph = import_graph()
    assert "dwf_hub.zoo.weight_zoo" in graph and "dwf_hub.hub.cards" in graph  # the graph saw the package
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_every_module_imports_on_its_own():
    """Each module imported first, in a fresh package state (so no import order hides a cycle)."""
    names = sorted(n for n in _modules() if "evaluate_modules" not in n)
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    for m in [m for m in sys.modules if m == 'dwf_hub' or m.startswith('dwf_hub.')]:\n"
        "        del sys.modules[m]\n"
        "    importlib.import_module(name)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]


def test_no_function_is_longer_than_60_lines():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES and (path.name, node.name) not in LONG_ALLOWED:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "functions over 60 lines: " + ", ".join(long)


@pytest.mark.slow
def test_recipes_and_card_templates_ship_inside_the_package(tmp_path):
    """They live at the top of the repository and install as dwf_hub/zoo_recipes, dwf_hub/model_cards."""
    import zipfile

    from dwf_hub.hub.cards import TEMPLATES
    from dwf_hub.zoo.recipes import RECIPE_DIR, available_recipes

    assert "iris_mlp" in available_recipes() and (TEMPLATES / "zoo_card.md").is_file()
    assert RECIPE_DIR.name == "zoo_recipes"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(PACKAGE.parent), "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path)], capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "dwf_hub/zoo_recipes/iris_mlp.toml" in names and "dwf_hub/model_cards/flow_card.md" in names
    shipped = {
        "dwf_hub/zoo_recipes/transfer/digits04_to_59_mlp.toml",
        "dwf_hub/zoo_recipes/conditional/digits_halves_mlp.toml",
    }
    assert shipped <= set(names)


# The stages, in data-flow order: a module may import its own stage and earlier ones, never a later one.
STAGES = (
    ("base", ("errors", "io", "formats", "registry", "resources", "distributed", "artifacts", "permutations",
              "provenance", "scoring", "archs", "hub")),
    ("zoo", ("zoo", "matching")),
    ("generation", ("compression", "codec", "flow", "generation", "pipeline")),
    ("evaluation", ("evaluation",)),
    ("fit", ("flow.fitting", "flow.conditional", "flow.selection")),
    ("app", ("cli", "demo")),
)  # fmt: skip
# configs declares every phase's options, so it reads each stage's registry of names (optimizers, solvers, ...)
READS_EVERY_STAGE = {"dwf_hub.configs"}


def stage_of(module: str) -> int | None:
    """The rank of ``module``'s stage: the longest prefix that names it (``flow.fitting`` before ``flow``)."""
    name = module.removeprefix("dwf_hub.")
    found = [
        (len(p), rank)
        for rank, (_, ps) in enumerate(STAGES)
        for p in ps
        if name == p or name.startswith(f"{p}.")
    ]
    return max(found)[1] if found else None


def test_every_module_belongs_to_one_stage():
    assert [
        m for m in import_graph() if m not in ("dwf_hub", *READS_EVERY_STAGE) and stage_of(m) is None
    ] == []


def test_layers_point_down():
    upward = sorted(
        f"{a} -> {b}"
        for a, deps in import_graph().items()
        if a not in READS_EVERY_STAGE and a != "dwf_hub"
        for b in deps
        if stage_of(b) is not None and stage_of(a) is not None and stage_of(b) > stage_of(a)
    )
    assert upward == [], "a stage imports a later one (generation must not import judging code)"


def test_every_benchmark_script_still_runs_its_help():
    """Benchmarks are never run as tests, so this keeps them from rotting: each one imports and parses
    ``--help`` (one process; the scripts import each other from their folder)."""
    bench = PACKAGE.parent / "benchmarks"
    loop = (
        "import contextlib, io, runpy, sys\n"
        "bad = []\n"
        f"root = __import__('pathlib').Path({str(bench)!r})\n"
        "for path in sorted([*root.glob('[!_]*.py'), *root.glob('research/*.py')]):\n"
        "    sys.argv, out = [str(path), '--help'], io.StringIO()\n"
        "    try:\n"
        "        with contextlib.redirect_stdout(out):\n"
        "            runpy.run_path(str(path), run_name='__main__')\n"
        "        bad.append(f'{path.name}: no --help')\n"
        "    except SystemExit as e:\n"
        "        if e.code not in (0, None) or 'usage' not in out.getvalue():\n"
        "            bad.append(f'{path.name}: exit {e.code}')\n"
        "    except Exception as e:\n"
        "        bad.append(f'{path.name}: {type(e).__name__}: {e}')\n"
        "print(repr(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", loop], cwd=bench, capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "PYTHONPATH": f"{bench}:{bench / 'research'}"})  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout[-2000:]
