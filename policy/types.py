"""Constrained strings shared by every input the rules judge."""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
# `resource:action`; a `*` is syntactically accepted so that E-5.2 can refuse it by name.
Permission = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9_.*-]+:[A-Za-z0-9_.*-]+$", max_length=200)
]
Version = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^v?\d+(\.\d+){0,2}([-+][0-9A-Za-z.-]+)?$"),
]
