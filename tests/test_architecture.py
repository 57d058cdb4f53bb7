"""The package is one straight stack: no module imports one above it, directly or through others.

engine -> tiling -> colour -> pictures -> batch -> api -> commands -> cli, each reading only the ones before it
(docs/ARCHITECTURE.md). Every import counts: at module level, inside functions (lazy) and under
``TYPE_CHECKING``, since a type-only import is still a dependency a reader must follow.
"""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOT = REPO / "src/lapsrn"
STACK = [
    "engine",
    "tiling",
    "colour",
    "pictures",
    "batch",
    "api",
    "commands",
    "cli",
]  # each may import only those before it


def import_graph() -> dict[str, set[str]]:
    """lapsrn's modules (dotted, without 'lapsrn.'; the package itself is '') -> the lapsrn modules they import."""
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names if a.name.split(".")[0] == "lapsrn"]
                deps |= {m.removeprefix("lapsrn").lstrip(".") for m in modules}
                continue
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            elif (node.module or "").split(".")[0] == "lapsrn":
                module = node.module.removeprefix("lapsrn").lstrip(".")
            else:
                continue
            subs = [f"{module}.{a.name}".lstrip(".") for a in node.names]
            subs = [s for s in subs if s in names]  # `from . import colour` imports the module colour
            deps |= set(subs) if len(subs) == len(node.names) else {module, *subs}
        graph[name] = deps - {name}
    return graph


def test_the_walk_sees_every_kind_of_import():
    """Module-level, function-level and TYPE_CHECKING imports are all in the graph."""
    graph = import_graph()
    assert set(STACK) <= set(graph)
    assert "tiling" in graph["colour"]  # TYPE_CHECKING only
    assert "batch" in graph["api"]  # inside a method
    assert "memory" in graph["io"]  # module level
    assert "api" in graph[""]  # lapsrn.load, imported at first use


def test_no_import_cycle():
    graph = import_graph()

    def visit(node: str, stack: list[str]) -> None:
        assert node not in stack, "import cycle: " + " -> ".join([*stack[stack.index(node) :], node])
        for dep in graph.get(node, ()):
            visit(dep, [*stack, node])

    for module in graph:
        visit(module, [])


def test_the_stack_imports_only_downwards():
    """No module of the stack reaches one above it, directly or through any other module."""
    graph = import_graph()

    def reach(name: str, seen: set[str]) -> set[str]:
        for dep in graph.get(name, ()):
            if dep not in seen:
                seen.add(dep)
                reach(dep, seen)
        return seen

    for i, layer in enumerate(STACK):
        above = set(STACK[i + 1 :])
        reached = {m.split(".")[0] for m in reach(layer, set())}
        assert not reached & above, f"{layer} reaches {sorted(reached & above)}"


def test_the_command_is_argparse_and_printing():
    """cli.py parses, dispatches and prints; the work lives in the library (batch, api, ...)."""
    assert len((ROOT / "cli.py").read_text().splitlines()) < 450
