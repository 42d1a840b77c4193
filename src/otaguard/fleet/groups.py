"""Saved dynamic groups: named filters over what the fleet knows about each device.

A group is a filter, not a list: "every ``sim-board`` on a version below 2.0 tagged ``eu``". Its
members are the devices that match *when it is evaluated*; a deployment that selects a group
evaluates it once, when it is created (see docs/DESIGN.md, "Saved dynamic groups").

Attributes a filter may test, all of them things a device reports in its signed version
manifest or an operator set (no extra inventory is collected):

- ``hardware`` (string), ``slot`` (string), ``update_state`` (string, the last reported state);
- ``version``, ``agent_version`` (PEP 440 versions: ordered comparisons follow PEP 440; a
  version that does not parse never satisfies ``lt``/``le``/``gt``/``ge``);
- ``security_version`` (integer, the anti-rollback counter the device reports);
- ``tag`` (the device's set of tags).

Operators: ``eq``, ``ne``, ``in``, ``not_in`` (every attribute but ``tag``); ``prefix``
(strings); ``lt``, ``le``, ``gt``, ``ge`` (versions and integers); ``exists`` (value true or
false: whether the device reported the attribute at all); for ``tag``: ``has``, ``has_any``,
``has_all``, ``has_none``. A device that never reported an attribute satisfies only ``ne``,
``not_in`` and ``exists: false`` on it. ``match`` is ``all`` (every condition) or ``any``.

Pure: JSON-shaped values in, a parsed filter or a verdict out; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Any

from packaging.version import InvalidVersion, Version

from otaguard.errors import GroupFilterError

MAX_CONDITIONS = 32
MAX_LIST = 100
MAX_VALUE_CHARS = 128


class Kind(StrEnum):
    STRING = "string"
    VERSION = "version"
    INTEGER = "integer"
    TAGS = "tags"


#: every attribute a filter may test, and its kind
ATTRIBUTES: dict[str, Kind] = {
    "hardware": Kind.STRING,
    "version": Kind.VERSION,
    "agent_version": Kind.VERSION,
    "security_version": Kind.INTEGER,
    "slot": Kind.STRING,
    "update_state": Kind.STRING,
    "tag": Kind.TAGS,
}

_EQUALITY = frozenset({"eq", "ne", "in", "not_in", "exists"})
_ORDER = frozenset({"lt", "le", "gt", "ge"})
#: the operators each kind of attribute accepts
OPERATORS: dict[Kind, frozenset[str]] = {
    Kind.STRING: _EQUALITY | {"prefix"},
    Kind.VERSION: _EQUALITY | _ORDER,
    Kind.INTEGER: _EQUALITY | _ORDER,
    Kind.TAGS: frozenset({"has", "has_any", "has_all", "has_none"}),
}
_LIST_OPS = frozenset({"in", "not_in", "has_any", "has_all", "has_none"})
_SYMBOLS = {"eq": "=", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "prefix": "^="}


@dataclass(frozen=True)
class DeviceFacts:
    """What a filter can see of one device (``None``: never reported)."""

    device_id: str
    hardware: str
    version: str | None = None
    agent_version: str | None = None
    security_version: int | None = None
    slot: str | None = None
    update_state: str | None = None
    tags: frozenset[str] = field(default_factory=frozenset)

    def value(self, attribute: str) -> Any:
        return self.tags if attribute == "tag" else getattr(self, attribute)


@dataclass(frozen=True)
class Condition:
    attribute: str
    op: str
    value: Any  # str | int | bool | tuple of str/int, as checked by ``parse_filter``

    def to_json(self) -> dict[str, Any]:
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {"attribute": self.attribute, "op": self.op, "value": value}

    def describe(self) -> str:
        value = self.value
        shown = ", ".join(str(v) for v in value) if isinstance(value, tuple) else str(value)
        if self.op == "exists":
            return f"{self.attribute} {'is' if value else 'is not'} reported"
        op = _SYMBOLS.get(self.op, self.op.replace("_", " "))
        return f"{self.attribute} {op} {shown}"


@dataclass(frozen=True)
class GroupFilter:
    conditions: tuple[Condition, ...]
    match: str = "all"  # "all" or "any"

    def to_json(self) -> dict[str, Any]:
        return {"match": self.match, "conditions": [c.to_json() for c in self.conditions]}

    def describe(self) -> str:
        """One line for people, e.g. ``hardware = sim-board and version < 2.0``."""
        return f" {'and' if self.match == 'all' else 'or'} ".join(
            c.describe() for c in self.conditions
        )

    def required(self, attribute: str) -> tuple[Any, ...] | None:
        """Values one of which ``attribute`` must have for any device to match (from ``eq``,
        ``in`` and, for tags, ``has``), or None when the filter does not say: a sound way for
        a database to narrow the devices before ``matches`` judges them."""
        if self.match != "all":
            return None
        for c in self.conditions:
            if c.attribute == attribute and c.op in ("eq", "has"):
                return (c.value,)
            if c.attribute == attribute and c.op in ("in", "has_all"):
                values: tuple[Any, ...] = c.value
                return values if c.op == "in" else values[:1]
        return None


def parse_filter(data: Any) -> GroupFilter:
    """A filter from its JSON form ``{"match": "all"|"any", "conditions": [...]}``.

    Raises:
        GroupFilterError: every problem found (unknown attribute, operator not valid for
            it, a value of the wrong type, too many conditions...), in ``problems``.
    """
    if not isinstance(data, Mapping):
        raise GroupFilterError("a group filter must be an object with match and conditions")
    problems: list[str] = []
    unknown = sorted(set(data) - {"match", "conditions"})
    if unknown:
        problems.append(f"unknown filter fields {unknown}")
    match = data.get("match", "all")
    if match not in ("all", "any"):
        problems.append(f"match must be 'all' or 'any', not {match!r}")
    raw = data.get("conditions")
    if not isinstance(raw, list) or not raw:
        problems.append("conditions must be a non-empty list")
        raw = []
    elif len(raw) > MAX_CONDITIONS:
        problems.append(f"at most {MAX_CONDITIONS} conditions ({len(raw)} given)")
    conditions = []
    for index, item in enumerate(raw[:MAX_CONDITIONS]):
        try:
            conditions.append(_parse_condition(item))
        except GroupFilterError as exc:
            problems.append(f"condition {index + 1}: {exc}")
    if problems:
        raise GroupFilterError(
            "invalid group filter: " + "; ".join(problems), problems=tuple(problems)
        )
    return GroupFilter(tuple(conditions), str(match))


def _parse_condition(item: Any) -> Condition:
    if not isinstance(item, Mapping):
        raise GroupFilterError("must be an object with attribute, op and value")
    extra = sorted(set(item) - {"attribute", "op", "value"})
    if extra:
        raise GroupFilterError(f"unknown fields {extra}")
    attribute, op = item.get("attribute"), item.get("op")
    if attribute not in ATTRIBUTES:
        raise GroupFilterError(f"unknown attribute {attribute!r} (one of: {', '.join(ATTRIBUTES)})")
    kind = ATTRIBUTES[attribute]
    if op not in OPERATORS[kind]:
        raise GroupFilterError(
            f"operator {op!r} does not apply to {attribute} "
            f"(use one of: {', '.join(sorted(OPERATORS[kind]))})"
        )
    return Condition(attribute, op, _parse_value(kind, op, item.get("value")))


def _parse_value(kind: Kind, op: str, value: Any) -> Any:
    if op == "exists":
        if not isinstance(value, bool):
            raise GroupFilterError("exists takes true or false")
        return value
    if op in _LIST_OPS:
        if not isinstance(value, list) or not value or len(value) > MAX_LIST:
            raise GroupFilterError(f"{op} takes a list of 1 to {MAX_LIST} values")
        return tuple(_scalar(kind, op, v) for v in value)
    return _scalar(kind, op, value)


def _scalar(kind: Kind, op: str, value: Any) -> str | int:
    if kind is Kind.INTEGER:
        if isinstance(value, bool) or not isinstance(value, int):
            raise GroupFilterError(f"expected a whole number, not {value!r}")
        return value
    if not isinstance(value, str) or not value or len(value) > MAX_VALUE_CHARS:
        raise GroupFilterError(f"expected a string of 1 to {MAX_VALUE_CHARS} characters")
    if kind is Kind.VERSION and op in _ORDER:
        try:
            Version(value)
        except InvalidVersion:
            raise GroupFilterError(f"{value!r} is not a PEP 440 version") from None
    return value


def matches(group: GroupFilter, device: DeviceFacts) -> bool:
    """Does ``device`` belong to the group?"""
    verdicts = (_holds(c, device) for c in group.conditions)
    return all(verdicts) if group.match == "all" else any(verdicts)


def members(group: GroupFilter, devices: Iterable[DeviceFacts]) -> list[str]:
    """The ids of the devices that belong, in the order given."""
    return [d.device_id for d in devices if matches(group, d)]


def _holds(c: Condition, device: DeviceFacts) -> bool:
    actual = device.value(c.attribute)
    kind = ATTRIBUTES[c.attribute]
    if kind is Kind.TAGS:
        wanted = set(c.value) if isinstance(c.value, tuple) else {c.value}
        if c.op == "has":
            return bool(c.value in actual)
        if c.op == "has_any":
            return bool(wanted & actual)
        if c.op == "has_all":
            return bool(wanted <= actual)
        return not wanted & actual  # has_none
    if c.op == "exists":
        return (actual is not None) is c.value
    if actual is None:
        return c.op in ("ne", "not_in")
    if c.op in ("eq", "ne", "in", "not_in"):
        found = actual in c.value if isinstance(c.value, tuple) else actual == c.value
        return found if c.op in ("eq", "in") else not found
    if c.op == "prefix":
        return str(actual).startswith(c.value)
    return _ordered(kind, c.op, actual, c.value)


def _ordered(kind: Kind, op: str, actual: Any, wanted: Any) -> bool:
    if kind is Kind.VERSION:
        left, right = _version(actual), _version(wanted)
        if left is None or right is None:
            return False
        return _compare(op, left, right)
    return _compare(op, actual, wanted)


@lru_cache(maxsize=4096)
def _version(text: str) -> Version | None:
    """PEP 440 parse, cached: a fleet runs a handful of versions."""
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _compare(op: str, left: Any, right: Any) -> bool:
    if op == "lt":
        return bool(left < right)
    if op == "le":
        return bool(left <= right)
    if op == "gt":
        return bool(left > right)
    return bool(left >= right)
