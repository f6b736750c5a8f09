"""The test suite's own layout: no test module imports another test module or a conftest.

A test module imported by another runs its module-level code twice under two names, couples
tests that should stand alone, and hides shared code where nobody looks for it. What tests
share lives in tests/helpers/ (plain modules, no tests) and fixtures in conftest.py files,
which pytest finds by itself. Checked on the source with `ast`, so an import inside a
function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
HELPERS = "tests.helpers"


def _python_files() -> list[Path]:
    return sorted(
        p
        for p in TESTS.rglob("*.py")
        if "node_modules" not in p.parts and "__pycache__" not in p.parts
    )


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package_of(path: Path) -> str:
    """The package relative imports in `path` start from."""
    return _module_name(path) if path.name == "__init__.py" else _module_name(path.parent)


def _imported(source: str, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in `source`, a module of `package`,
    relative ones resolved. `from X import name` also yields `X.name`, since `name` may be a
    module of package X."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - (node.level - 1)]
                module = ".".join([*base, *([module] if module else [])])
            out.append((node.lineno, module))
            out += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return out


def _is_shared(module: str) -> bool:
    return module == HELPERS or module.startswith(HELPERS + ".")


def _forbidden(module: str) -> bool:
    """A module of the test suite that is not a helper: a test module, a conftest, or the
    `tests` package itself (through which `from tests import test_x` would reach one)."""
    if not (module == "tests" or module.startswith("tests.")):
        return False
    return not _is_shared(module)


def _checked() -> list[Path]:
    return [
        p
        for p in _python_files()
        if p.name.startswith("test_") or p.name == "conftest.py" or _is_shared(_module_name(p))
    ]


@pytest.mark.parametrize("path", _checked(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_only_helpers_of_the_suite(path: Path) -> None:
    imports = _imported(path.read_text(), _package_of(path))
    bad = [f"line {line}: {module}" for line, module in imports if _forbidden(module)]
    assert not bad, (
        f"{path.relative_to(ROOT)} imports test modules (share via tests/helpers/): {bad}"
    )


def test_every_module_is_a_test_a_conftest_or_a_helper() -> None:
    """A shared module outside tests/helpers/ (a forwarder left behind by a move, a helper
    beside the tests that use it) would invite exactly the imports refused above."""
    stray = [
        str(p.relative_to(ROOT))
        for p in _python_files()
        if not (
            p.name.startswith("test_")
            or p.name in ("conftest.py", "__init__.py")
            or _is_shared(_module_name(p))
        )
    ]
    assert not stray, f"move shared code to tests/helpers/: {stray}"


def test_the_check_sees_what_it_must_refuse() -> None:
    """The rule above, on imports a test module of tests/records must not have and on ones it
    may have."""
    refused = [
        "from tests.docs.test_shell import ok",
        "from tests.conftest import SUPERUSER",
        "from tests.security import conftest",
        "from tests import conftest",
        "import tests.records.test_query",
        "def f():\n    from tests.records.conftest import Engine",
        "from .conftest import Engine",
        "from . import test_records",
        "from ..security.test_pending import x",
    ]
    allowed = [
        "from tests.helpers.wait import wait_until",
        "from tests.helpers import servers",
        "import tests.helpers.smtp",
        "from ..helpers.servers import SUPERUSER",
        "from shipyard.records import query",
        "import pytest",
    ]
    for source in refused + allowed:
        found = [m for _, m in _imported(source, "tests.records") if _forbidden(m)]
        assert bool(found) == (source in refused), (source, found)


def test_every_test_folder_is_a_package() -> None:
    """Without an __init__.py, pytest imports a test module by its bare file name: two
    test_x.py files in different folders would then collide, and the module's imports depend
    on which folder pytest put on sys.path first."""
    folders = {p.parent for p in _python_files()}
    missing = [
        str(f.relative_to(ROOT)) for f in sorted(folders) if not (f / "__init__.py").exists()
    ]
    assert not missing, f"add an __init__.py to: {missing}"
