"""The layout rule of docs/architecture.md, checked on the source: imports point one way
(counting imports inside functions; `if TYPE_CHECKING:` blocks are for types only and do
not count), capabilities of one level never import each other, no import cycles, and no
module over 600 lines."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "shipyard"
MAX_LINES = 600

# lower levels first; a module may import its own package and anything of a lower level
LEVELS: list[set[str]] = [
    {"tools", "images"},  # images: the pure image pipeline, beside the tools
    {"settings_observability", "settings_media", "settings_batch", "settings_realtime"}
    | {"settings_backups", "settings_http"},
    {"settings"},
    {"kernel"},
    {"records"},
    {"jobs"},
    {"auth"},
    {"assets"},  # below files: file URLs and purges go through its CDN
    {"cache", "webhooks", "dbadvice", "metrics", "logs", "errors", "ratelimit", "files"}
    | {"batch"}
    | {"realtime"},
    {"alerts", "backups"},
    {"http"},
    {"services", "declarative", "demo", "functions"},
    {"app"},
    {"cli"},
]
LEVEL = {pkg: i for i, group in enumerate(LEVELS) for pkg in group}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The shipyard modules `path` imports at run time (anywhere in the file)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("shipyard"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("shipyard"):
            base = node.module or ""
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.add(sub if sub in modules else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in found if m in modules}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "shipyard"


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(p, modules) - {m} for m, p in modules.items()}


def test_every_package_has_a_level() -> None:
    packages = {_package(m) for m in _modules()} - {"shipyard"}
    assert packages <= set(LEVEL), f"add to LEVELS: {sorted(packages - set(LEVEL))}"


def test_imports_point_one_way() -> None:
    wrong = []
    for module, imported in _graph().items():
        own = _package(module)
        if own == "shipyard":
            continue
        for other in imported:
            theirs = _package(other)
            if theirs in (own, "shipyard"):
                continue
            if LEVEL[theirs] >= LEVEL[own]:
                wrong.append(f"{module} imports {other}")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(" -> ".join([*stack[stack.index(n) :], n]))
            elif n not in state:
                visit(n, [*stack, n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(cycles)


def test_no_module_over_600_lines() -> None:
    big = {
        m: n for m, p in _modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not big, big


def test_tools_import_nothing_else_of_shipyard() -> None:
    wrong = [
        f"{m} imports {o}"
        for m, imported in _graph().items()
        if _package(m) == "tools"
        for o in imported
        if _package(o) != "tools"
    ]
    assert not wrong, wrong
