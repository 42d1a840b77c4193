"""Rollout plans and progress to and from plain JSON values, strictly.

The API receives a plan from an operator and the store keeps it (and the rollout's progress) in
a JSON column; both go through here so that what is stored is exactly what was validated. The
reader refuses unknown keys, wrong types and out-of-range values, listing every problem at once
(``RolloutPlanError.problems``), then runs ``phases.validate_plan``. Omitted keys take the
defaults of the dataclasses. Pure: JSON-shaped values in and out, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, fields, replace
from datetime import datetime
from typing import Any, TypeGuard

from otaguard.errors import RolloutPlanError
from otaguard.fleet.phases import (
    AdvanceMode,
    Phase,
    RolloutLimits,
    RolloutPlan,
    SuccessCriteria,
    validate_plan,
)
from otaguard.fleet.progress import PhaseCounts, RolloutProgress, RolloutStatus


def plan_to_json(plan: RolloutPlan) -> dict[str, Any]:
    """The plan as JSON values (``plan_from_json`` reads it back unchanged)."""
    data = asdict(plan)
    data["phases"] = list(data["phases"])
    for phase in data["phases"]:
        phase["devices"] = list(phase["devices"])
        phase["tags"] = list(phase["tags"])
        phase["advance"] = str(phase["advance"])
    return data


def plan_from_json(data: object) -> RolloutPlan:
    """Read and validate a plan.

    Raises:
        RolloutPlanError: every problem found, in ``problems``.
    """
    problems: list[str] = []
    plan = _read_plan(data, problems)
    if problems or plan is None:
        raise RolloutPlanError(
            "invalid rollout plan: " + "; ".join(problems), problems=tuple(problems)
        )
    return validate_plan(plan)


def _read_plan(data: object, problems: list[str]) -> RolloutPlan | None:
    obj = _object(data, "plan", {"phases", "limits", "production", "abort_failure_share"}, problems)
    if obj is None:
        return None
    raw_phases = obj.get("phases")
    if not isinstance(raw_phases, list) or not raw_phases:
        problems.append("plan.phases must be a non-empty list")
        return None
    phases = [_read_phase(p, f"phases[{i}]", problems) for i, p in enumerate(raw_phases)]
    limits = _read_simple(obj.get("limits", {}), RolloutLimits, "limits", problems)
    production = _bool(obj, "production", False, "plan", problems)
    abort = _optional_number(obj, "abort_failure_share", "plan", problems)
    if problems or limits is None:
        return None
    return RolloutPlan(
        phases=tuple(p for p in phases if p is not None),
        limits=limits,
        production=production,
        abort_failure_share=abort,
    )


def _read_phase(data: object, where: str, problems: list[str]) -> Phase | None:
    obj = _object(data, where, {f.name for f in fields(Phase)}, problems)
    if obj is None:
        return None
    before = len(problems)
    name = obj.get("name")
    if not isinstance(name, str):
        problems.append(f"{where}.name must be a string")
    advance = obj.get("advance", AdvanceMode.AUTO.value)
    modes = [m.value for m in AdvanceMode]
    if advance not in modes:
        problems.append(f"{where}.advance must be one of {', '.join(modes)}")
    phase = Phase(
        name=name if isinstance(name, str) else "",
        share=_optional_number(obj, "share", where, problems),
        devices=tuple(_strings(obj.get("devices", []), f"{where}.devices", problems)),
        tags=tuple(_strings(obj.get("tags", []), f"{where}.tags", problems)),
        soak_seconds=_int(obj, "soak_seconds", 3600, where, problems),
        advance=AdvanceMode(advance) if advance in modes else AdvanceMode.AUTO,
        requires_approval=_bool(obj, "requires_approval", False, where, problems),
    )
    criteria = _read_simple(obj.get("criteria", {}), SuccessCriteria, f"{where}.criteria", problems)
    if len(problems) > before or criteria is None:
        return None
    return replace(phase, criteria=criteria)


def _optional_number(
    obj: Mapping[str, object], key: str, where: str, problems: list[str]
) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.append(f"{where}.{key} must be a number or null")
        return None
    return float(value)


def _int(obj: Mapping[str, object], key: str, default: int, where: str, problems: list[str]) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(f"{where}.{key} must be an integer")
        return default
    return value


def _bool(
    obj: Mapping[str, object], key: str, default: bool, where: str, problems: list[str]
) -> bool:
    value = obj.get(key, default)
    if not isinstance(value, bool):
        problems.append(f"{where}.{key} must be true or false")
        return default
    return value


def _read_simple(data: object, cls: type[Any], where: str, problems: list[str]) -> Any:
    """A dataclass whose fields are all ``bool``, ``int``, ``float`` or ``... | None``, by
    their annotations (``int`` refuses 2.5; ``float`` takes 1 as 1.0)."""
    annotations = {f.name: str(f.type) for f in fields(cls)}
    obj = _object(data, where, set(annotations), problems)
    if obj is None:
        return None
    values: dict[str, object] = {}
    for key, value in obj.items():
        kind = annotations[key]
        if value is None and kind.endswith("| None"):
            values[key] = None
        elif (kind == "bool" and isinstance(value, bool)) or (
            kind.startswith("int") and isinstance(value, int) and not isinstance(value, bool)
        ):
            values[key] = value
        elif kind.startswith("float") and _is_number(value):
            values[key] = float(value)
        else:
            problems.append(f"{where}.{key} must be {kind.replace(' | None', ' or null')}")
    return cls(**values)


def _object(
    data: object, where: str, allowed: set[str], problems: list[str]
) -> Mapping[str, object] | None:
    if not isinstance(data, Mapping) or not all(isinstance(k, str) for k in data):
        problems.append(f"{where} must be an object")
        return None
    unknown = sorted(set(data) - allowed)
    if unknown:
        problems.append(f"{where}: unknown key(s) {', '.join(unknown)}")
    return {k: v for k, v in data.items() if k in allowed}


def _strings(value: object, where: str, problems: list[str]) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(f"{where} must be a list of strings")
        return []
    return list(value)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- progress (server-written, so read without the operator-facing checks) ----------------


def progress_to_json(progress: RolloutProgress) -> dict[str, Any]:
    return {
        "phase": progress.phase,
        "phase_started_at": progress.phase_started_at.isoformat(),
        "status": progress.status.value,
        "advance_requested": progress.advance_requested,
        "approved_phase": progress.approved_phase,
        "acknowledged": [c.as_dict() for c in progress.acknowledged],
        "note": progress.note,
    }


def progress_from_json(data: Mapping[str, Any]) -> RolloutProgress:
    """Read what ``progress_to_json`` wrote.

    Raises:
        RolloutPlanError: the stored value is damaged.
    """
    try:
        return RolloutProgress(
            phase=int(data["phase"]),
            phase_started_at=datetime.fromisoformat(data["phase_started_at"]),
            status=RolloutStatus(data["status"]),
            advance_requested=bool(data["advance_requested"]),
            approved_phase=None if data["approved_phase"] is None else int(data["approved_phase"]),
            acknowledged=tuple(PhaseCounts(**c) for c in data["acknowledged"]),
            note=str(data["note"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RolloutPlanError(f"stored rollout progress is damaged: {exc}") from None
