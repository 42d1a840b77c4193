"""Request and response bodies of the saved dynamic group routes (``routes/groups.py``).

The filter's shape is described here so the OpenAPI document is precise (and fuzzed); what a
condition means, and which operator goes with which attribute, is ``fleet/groups.py``'s to
judge (a filter that does not make sense is a 400 naming every problem).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from otaguard.fleet.groups import MAX_CONDITIONS, MAX_LIST, MAX_VALUE_CHARS
from otaguard.server.schemas import NAME, DeviceOut, Strict

Attribute = Literal[
    "hardware", "version", "agent_version", "security_version", "slot", "update_state", "tag"
]
Operator = Literal[
    "eq", "ne", "in", "not_in", "prefix", "lt", "le", "gt", "ge", "exists",
    "has", "has_any", "has_all", "has_none",
]  # fmt: skip
Scalar = Annotated[str, Field(min_length=1, max_length=MAX_VALUE_CHARS)] | int


class ConditionIn(Strict):
    attribute: Attribute
    op: Operator
    value: Scalar | bool | list[Scalar] = Field(
        description="A string, a whole number (security_version), true/false (exists), or a "
        f"list of up to {MAX_LIST} values (in, not_in, has_any, has_all, has_none)"
    )


class GroupFilterIn(Strict):
    match: Literal["all", "any"] = "all"
    conditions: list[ConditionIn] = Field(min_length=1, max_length=MAX_CONDITIONS)


class GroupIn(Strict):
    model_config = Strict.model_config | {
        "json_schema_extra": {
            "examples": [
                {
                    "name": "eu-old-boards",
                    "description": "EU boards still below 2.0",
                    "filter": {
                        "match": "all",
                        "conditions": [
                            {"attribute": "hardware", "op": "eq", "value": "sim-board"},
                            {"attribute": "version", "op": "lt", "value": "2.0"},
                            {"attribute": "tag", "op": "has", "value": "eu"},
                        ],
                    },
                }
            ]
        }
    }

    name: str = Field(pattern=NAME)
    description: str = Field(default="", max_length=255)
    filter: GroupFilterIn


class GroupUpdate(Strict):
    description: str = Field(default="", max_length=255)
    filter: GroupFilterIn


class GroupOut(BaseModel):
    name: str
    description: str
    filter: dict[str, Any]
    summary: str = Field(description="The filter in one line, e.g. 'hardware = x and version < 2'")
    created_by: str
    created_at: dt.datetime
    updated_by: str
    updated_at: dt.datetime


class GroupPage(BaseModel):
    items: list[GroupOut]
    total: int
    limit: int
    offset: int


class GroupMembersPage(BaseModel):
    """The devices that belong to the group now (it is evaluated for this request)."""

    items: list[DeviceOut]
    total: int
    limit: int
    offset: int
