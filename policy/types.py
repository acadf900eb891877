"""Constrained strings shared by every input the rules judge."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import Field, PlainSerializer, StringConstraints

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
# `resource:action`; a `*` is syntactically accepted so that E-5.2 can refuse it by name.
Permission = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9_.*-]+:[A-Za-z0-9_.*-]+$", max_length=200)
]


def action_of(permission: str) -> str:
    """The action of a `resource:action` permission (the part after the first ':')."""
    return permission.split(":", 1)[1] if ":" in permission else permission


# A platform component's version as the matrix and declarations keep it: stripped, one word, at
# most 32 characters (the column). Rows and payloads written before E-9.2's check hold other
# shapes (`3.0.0.1`), so it is not held to `Version`'s pattern: they load, and an unlisted one
# is refused by E-9.2 itself.
ComponentVersion = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32, pattern=r"^\S+$")
]

# At most 32 characters: the longest version a column keeps (partner, matrix).
Version = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        max_length=32,
        pattern=r"^v?\d+(\.\d+){0,2}([-+][0-9A-Za-z.-]+)?$",
    ),
]


def iso_duration(value: timedelta) -> str:
    """ISO 8601 / RFC 3339 in days and time only (`P400DT6H`): no years or months, whose length
    varies — and a form every JSON-schema `duration` validator accepts (pydantic's own `P1Y35D`
    is not valid RFC 3339)."""
    total = int(value.total_seconds())
    sign, total = ("-", -total) if total < 0 else ("", total)
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    time = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M"), (seconds, "S")) if n)
    if not days and not time:
        return "P0D"
    return f"{sign}P{f'{days}D' if days else ''}{f'T{time}' if time else ''}"


# A policy duration: never negative, at most ten years, written `P30D` in JSON.
Duration = Annotated[
    timedelta,
    Field(ge=timedelta(0), le=timedelta(days=3650)),
    PlainSerializer(iso_duration, return_type=str, when_used="json"),
]
