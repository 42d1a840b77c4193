"""The layering of the device agent and the shared network layer, read from the source:
``net/`` imports none of ``agent``, ``server``, ``store``, ``identity``; ``agent/`` never
imports ``server`` or ``store``; the pure decision modules import no I/O; and no private
(``_``-prefixed) name is imported from another module of ``agent/`` or ``net/``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "otaguard"
PURE = ["acceptance", "retry", "reporting", "replies", "outcome", "statemachine"]
IO_MODULES = {
    "httpx",
    "os",
    "subprocess",
    "socket",
    "ssl",
    "pathlib",
    "otaguard.device",
    "otaguard.net.client",
}


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for every import in ``path``."""
    out: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, [a.name for a in node.names]))
    return out


def under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("path", sorted((SRC / "net").glob("*.py")), ids=lambda p: p.name)
def test_net_imports_no_side_of_the_system(path: Path) -> None:
    for module, _names in imports(path):
        for forbidden in ("agent", "server", "store", "identity"):
            assert not under(module, f"otaguard.{forbidden}"), f"{path.name} imports {module}"


@pytest.mark.parametrize("path", sorted((SRC / "agent").glob("*.py")), ids=lambda p: p.name)
def test_agent_imports_nothing_server_side(path: Path) -> None:
    for module, _names in imports(path):
        assert not under(module, "otaguard.server"), f"{path.name} imports {module}"
        assert not under(module, "otaguard.store"), f"{path.name} imports {module}"


@pytest.mark.parametrize("name", PURE)
def test_decision_modules_import_no_io(name: str) -> None:
    for module, _names in imports(SRC / "agent" / f"{name}.py"):
        assert not any(under(module, io) for io in IO_MODULES), f"{name} imports {module}"


@pytest.mark.parametrize(
    "path",
    sorted([*(SRC / "agent").glob("*.py"), *(SRC / "net").glob("*.py")]),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_no_private_name_is_imported_across_modules(path: Path) -> None:
    for module, names in imports(path):
        if under(module, "otaguard"):
            private = [n for n in names if n.startswith("_") and n != "__version__"]
            assert not private, f"{path.name} imports {private} from {module}"


def test_the_checks_see_a_forbidden_import(tmp_path: Path) -> None:
    """Control: the reader finds the kind of import the tests above forbid."""
    bad = tmp_path / "bad.py"
    bad.write_text("from otaguard.store.database import Store\nfrom otaguard.agent.x import _y\n")
    found = imports(bad)
    assert any(under(m, "otaguard.store") for m, _ in found)
    assert ("otaguard.agent.x", ["_y"]) in found
