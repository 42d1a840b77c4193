"""One status vocabulary (issue 15): ``fleet.status.DeviceState`` is the only list of device
states. The management CLI's ``--state`` choices, the console's filters and the API's
``state`` parameters are that enum; and no other list of those names may appear in the code
(a second list drifts: the CLI's own copy once lacked ``waiting``)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from typer.testing import CliRunner

from otaguard.cli.main import app
from otaguard.fleet.status import (
    FAILURE_EVENTS,
    FAILURE_STATES,
    TRANSIENT_STATES,
    DeviceState,
    UpdateEvent,
    device_state,
)
from otaguard.server.console import deployment_routes, fleet_routes

SRC = Path(__file__).resolve().parents[2] / "src" / "otaguard"
STATES = [s.value for s in DeviceState]


def test_device_states_are_idle_and_every_reported_event() -> None:
    assert ["idle", *(e.value for e in UpdateEvent)] == STATES  # same names, same order
    assert device_state(None) is DeviceState.IDLE
    for event in UpdateEvent:
        assert device_state(event.value) == event.value
    assert {s.value for s in FAILURE_STATES} == {e.value for e in FAILURE_EVENTS}
    assert {DeviceState.WAITING} == TRANSIENT_STATES
    assert not FAILURE_STATES & TRANSIENT_STATES


def _choices(*command: str) -> list[str]:
    """The values the CLI accepts for ``--state``, from its refusal of one it does not."""
    r = CliRunner().invoke(app, [*command, "--state", "bogus"], env={"COLUMNS": "1000"})
    assert r.exit_code == 2, r.output
    found = re.search(r"'bogus' is not one of ([^.]*)\.", r.output)
    assert found is not None, r.output
    return re.findall(r"'([^']*)'", found.group(1))


def test_cli_and_console_offer_exactly_the_enum() -> None:
    assert _choices("mgmt", "devices", "list") == STATES
    assert _choices("mgmt", "deployments", "devices", "1") == STATES
    assert list(fleet_routes.DEVICE_STATES) == STATES
    assert list(deployment_routes.DEVICE_STATES) == STATES


def _string_lists(tree: ast.AST) -> list[tuple[int, list[str]]]:
    """Every tuple/list/set literal made of string constants (``Literal[...]``'s too: its
    subscript is a tuple)."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Tuple | ast.List | ast.Set):
            continue
        values = [e.value for e in node.elts if isinstance(e, ast.Constant)]
        if node.elts and len(values) == len(node.elts) and all(isinstance(v, str) for v in values):
            found.append((node.lineno, [str(v) for v in values]))
    return found


def second_lists(root: Path) -> list[str]:
    """``file:line`` of each literal list of three or more device states outside
    fleet/status.py."""
    names = set(STATES)
    hits = []
    for path in sorted(root.rglob("*.py")):
        if path == root / "fleet" / "status.py":
            continue
        for line, values in _string_lists(ast.parse(path.read_text(), str(path))):
            if len(values) >= 3 and set(values) <= names:
                hits.append(f"{path.relative_to(root)}:{line}")
    return hits


def test_no_second_list_of_device_states_in_the_code(tmp_path: Path) -> None:
    assert second_lists(SRC) == []
    # The check finds one (control): the CLI's former copy, without "waiting".
    (tmp_path / "fleet").mkdir()
    (tmp_path / "copy.py").write_text(
        "from typing import Literal\n"
        'UpdateState = Literal["idle", "assigned", "downloading", "rolled_back", "failed"]\n'
        'ORDER = ("committed", "failed", "rolled_back")\n'
        'NOT_STATES = ("pending", "in_progress", "failed")\n'
    )
    assert sorted(second_lists(tmp_path)) == ["copy.py:2", "copy.py:3"]
