"""The architecture contract: which side may import what (pyproject's ``[tool.importlinter]``,
docs/DESIGN.md "Map of the code"), no import circles, no private names used across modules.

The control test copies the package, adds one forbidden import and shows the contract breaks,
so a passing run means the contract is checked, not skipped.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(src: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_import_contracts_are_kept() -> None:
    result = _lint_imports(SRC)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_forbidden_import_breaks_the_contract(tmp_path: Path) -> None:
    copy = tmp_path / "src"
    shutil.copytree(SRC / "otaguard", copy / "otaguard")
    victim = copy / "otaguard" / "agent" / "retry.py"
    victim.write_text(victim.read_text() + "\nimport otaguard.store.database  # forbidden\n")
    result = _lint_imports(copy)
    assert result.returncode != 0
    assert "Device side never imports the server side BROKEN" in result.stdout
    assert "Pure decisions import no I/O BROKEN" in result.stdout


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("otaguard", cache_dir=None)


def test_no_import_circles() -> None:
    graph = _graph()
    circles = sorted(
        {
            tuple(sorted((module, imported)))
            for module in graph.modules
            for imported in graph.find_modules_directly_imported_by(module)
            if graph.chain_exists(importer=imported, imported=module)
        }
    )
    assert circles == []


def _private_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("otaguard"):
            found += [
                f"{path.relative_to(SRC)}: {node.module}.{alias.name}"
                for alias in node.names
                if alias.name.startswith("_") and not alias.name.startswith("__")
            ]
    return found


def test_no_private_name_is_imported_across_modules() -> None:
    found = [hit for path in sorted(SRC.rglob("*.py")) for hit in _private_imports(path)]
    assert found == []


@pytest.mark.parametrize("package", ["agent", "net", "server", "store", "fleet", "repo"])
def test_every_package_docstring_says_its_side(package: str) -> None:
    doc = ast.get_docstring(ast.parse((SRC / "otaguard" / package / "__init__.py").read_text()))
    assert doc is not None
    assert any(word in doc.lower() for word in ("device", "server", "maker", "pure")), doc


#: not errors but control flow: a simulated power cut and the agent's stop signal unwind
#: everything (BaseException, like KeyboardInterrupt); an HTTPException subclass is the
#: framework's own way to answer 413
_NOT_ERRORS = {"PowerCut", "AgentStopped", "BodyTooLarge"}


def test_every_exception_class_is_in_the_errors_tree() -> None:
    import importlib
    import inspect

    from otaguard.errors import OTAGuardError

    stray = []
    for path in sorted((SRC / "otaguard").rglob("*.py")):
        if "migrations" in path.parts:
            continue
        name = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        module = importlib.import_module(name)
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != name or not issubclass(cls, BaseException):
                continue
            if cls_name not in _NOT_ERRORS and not issubclass(cls, OTAGuardError):
                stray.append(f"{name}.{cls_name}")
    assert stray == []
