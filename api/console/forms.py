"""HTML forms for the API's request bodies, derived from the same pydantic models the API
validates with (so a form has exactly the API's fields), and the way back: the posted form into
the JSON body the API takes. Nothing here judges a value — the API does, and its refusals are
shown beside the fields it names (its `errors` keys are these fields' names)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel

# Strings longer than this are written in a text area, not a line.
LONG_TEXT = 200
# Blank rows offered for a list of objects (capabilities, integrations, workflows, versions).
SPARE_ROWS = 2
# No list the API takes is longer (`max_length=100`): a posted row index is read only below it,
# so a forged `name.<huge>.x` costs nothing (never a walk up to it).
MAX_ROWS = 100


@dataclass(frozen=True)
class Field:
    """One control: `name` is its dotted path in the request body (`manifest.runtime.name`,
    `requested_capabilities.0.kind`) — the key the API's 422 `errors` use for it."""

    name: str
    label: str
    kind: str  # text | textarea | select | radio | checkbox | number | datetime | lines |
    # choices | json | group | rows
    required: bool = False
    help: str = ""
    options: tuple[tuple[str, str], ...] = ()
    children: tuple[Field, ...] = ()
    rows: int = 0

    @property
    def id(self) -> str:
        return "f-" + self.name.replace(".", "-")

    def at(self, prefix: str) -> Field:
        """This field under `prefix` (its children are named relative to it)."""
        return replace(self, name=f"{prefix}.{self.name}" if prefix else self.name)


def label_of(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _resolve(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    """`schema` with its `$ref` followed and an optional's `null` branch dropped."""
    out = dict(schema)
    while "$ref" in out:
        ref = out.pop("$ref").rsplit("/", 1)[-1]
        out = {**defs[ref], **out}
    for key in ("anyOf", "oneOf"):
        branches = [b for b in out.get(key, ()) if b.get("type") != "null"]
        if key in out and len(branches) == 1:
            del out[key]
            out = {**_resolve(branches[0], defs), **out}
    return out


def _options(schema: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    values = schema.get("enum")
    if values is None and "const" in schema:
        values = [schema["const"]]
    return tuple((str(v), str(v).replace("_", " ")) for v in values or ())


def _field(name: str, schema: Mapping[str, Any], defs: Mapping[str, Any], required: bool) -> Field:
    s = _resolve(schema, defs)
    label = label_of(name.rsplit(".", 1)[-1])
    help_ = str(s.get("description") or "")
    kind = s.get("type")
    options = _options(s)
    if options:
        widget = "radio" if len(options) <= 4 else "select"
        return Field(name, label, widget, required, help_, options)
    if kind == "boolean":
        return Field(name, label, "checkbox", False, help_)
    if kind in ("integer", "number"):
        return Field(name, label, "number", required, help_)
    if kind == "string":
        if s.get("format") == "date-time":
            return Field(name, label, "datetime", required, help_ or "UTC")
        long_ = s.get("maxLength", LONG_TEXT + 1) > LONG_TEXT
        return Field(name, label, "textarea" if long_ else "text", required, help_)
    if kind == "array":
        items = _resolve(s.get("items") or (s.get("prefixItems") or [{}])[0], defs)
        if items.get("type") == "object" and "properties" in items:
            children = fields_of_schema(items, defs)
            return Field(name, label, "rows", required, help_, children=children, rows=SPARE_ROWS)
        item_options = _options(items)
        if item_options:
            return Field(name, label, "choices", required, help_, item_options)
        return Field(name, label, "lines", required, help_ or "One per line.")
    if kind == "object" and "properties" in s:
        return Field(name, label, "group", required, help_, children=fields_of_schema(s, defs))
    return Field(name, label, "json", required, help_ or "A JSON object.")


def fields_of_schema(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> tuple[Field, ...]:
    required = set(schema.get("required", ()))
    return tuple(
        _field(name, prop, defs, name in required)
        for name, prop in schema.get("properties", {}).items()
    )


def fields_of(model: type[BaseModel], *, only: Iterable[str] | None = None) -> tuple[Field, ...]:
    """The controls of `model`'s request body (in its field order); `only` keeps those named."""
    schema = model.model_json_schema()
    fields = fields_of_schema(schema, schema.get("$defs", {}))
    if only is None:
        return fields
    keep = list(only)
    by_name = {f.name: f for f in fields}
    return tuple(by_name[n] for n in keep if n in by_name)


# --- the way back: a posted form into the API's JSON body --------------------------------------

FormData = Mapping[str, list[str]]


def _text(form: FormData, name: str) -> str:
    values = form.get(name) or [""]
    return values[-1].strip()


def _filled(form: FormData, f: Field) -> bool:
    if f.kind in ("group", "rows"):
        return any(_filled(form, c) for c in _concrete(form, f))
    if f.kind == "checkbox":
        return False  # an unticked box says nothing about whether a row was meant
    if f.kind == "choices":
        return bool(form.get(f.name))
    return bool(_text(form, f.name))


def _indices(form: FormData, f: Field) -> tuple[list[int], bool]:
    """The row indices posted for `f`, and whether any was at or past MAX_ROWS (or no number)."""
    prefix = f.name + "."
    seen, over = [], False
    for key in form:
        if not key.startswith(prefix):
            continue
        head = key[len(prefix) :].split(".", 1)[0]
        if head.isdigit() and len(head) <= len(str(MAX_ROWS)) and int(head) < MAX_ROWS:
            seen.append(int(head))
        else:
            over = True
    return seen, over


def row_count(form: FormData, f: Field) -> int:
    """How many rows of `f` to show: the rows posted (or shown), and spare blank ones."""
    seen, _ = _indices(form, f)
    return min(max(seen, default=-1) + 1 + f.rows, MAX_ROWS)


def _concrete(form: FormData, f: Field) -> list[Field]:
    if f.kind == "rows":
        return [c.at(f"{f.name}.{i}") for i in range(row_count(form, f)) for c in f.children]
    return [c.at(f.name) for c in f.children]


def body_of(fields: Iterable[Field], form: FormData) -> tuple[dict[str, Any], dict[str, str]]:
    """The JSON body `form` says, and the fields it could not even read (a JSON field that is
    not JSON). Empty optional fields are left out, so the API's defaults apply."""
    body: dict[str, Any] = {}
    unreadable: dict[str, str] = {}
    for f in fields:
        key = f.name.rsplit(".", 1)[-1]
        value = _value(f, form, unreadable)
        if value is not None:
            body[key] = value
    return body, unreadable


def _value(f: Field, form: FormData, unreadable: dict[str, str]) -> Any:
    if f.kind == "checkbox":
        return bool(form.get(f.name)) or None
    if f.kind == "choices":
        return list(form.get(f.name, [])) or ([] if f.required else None)
    if f.kind == "lines":
        lines = [ln.strip() for ln in _text(form, f.name).splitlines() if ln.strip()]
        return lines or ([] if f.required else None)
    if f.kind == "json":
        raw = _text(form, f.name)
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            unreadable[f.name] = f"not valid JSON: {exc}"
            return None
    if f.kind == "group":
        if not f.required and not _filled(form, f):
            return None
        value, bad = body_of([c.at(f.name) for c in f.children], form)
        unreadable.update(bad)
        return value
    if f.kind == "rows":
        if _indices(form, f)[1]:
            unreadable[f.name] = f"at most {MAX_ROWS} rows, numbered from 0"
            return None
        rows = []
        for i in range(row_count(form, f)):
            prefix = f"{f.name}.{i}"
            row = [c.at(prefix) for c in f.children]
            if any(_filled(form, c) for c in row):
                value, bad = body_of(row, form)
                unreadable.update(bad)
                rows.append(value)
        return rows or ([] if f.required else None)
    raw = _text(form, f.name)
    if not raw:
        return None
    if f.kind == "number":
        try:
            return int(raw)
        except ValueError:
            return raw  # the API names it
    if f.kind == "datetime" and len(raw) <= 16:  # a datetime-local control: minutes, UTC
        return f"{raw}:00+00:00"
    return raw


@dataclass
class Shown:
    """A form as shown: its controls, what was typed (kept after a refusal), and the errors
    beside each field, with the problem's message and rule above them."""

    fields: tuple[Field, ...]
    values: FormData = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    problem: str = ""
    rule: str | None = None

    def value(self, name: str) -> str:
        return _text(self.values, name) if name in self.values else ""

    def checked(self, name: str, option: str | None = None) -> bool:
        values = self.values.get(name) or []
        return option in values if option is not None else bool(values)

    def concrete(self, f: Field) -> list[list[Field]]:
        """The rows of a `rows` field, each its controls under `name.i`."""
        return [
            [c.at(f"{f.name}.{i}") for c in f.children] for i in range(row_count(self.values, f))
        ]

    def parts(self, f: Field) -> list[Field]:
        """The controls of a `group` field, under its name."""
        return [c.at(f.name) for c in f.children]

    def names(self) -> set[str]:
        return set(_names(self.fields, self.values))

    def unplaced(self) -> dict[str, str]:
        """Errors naming no control of the form: shown in the summary, never dropped."""
        names = self.names()
        return {k: v for k, v in self.errors.items() if not _placed(k, names)}


def _names(fields: Iterable[Field], values: FormData) -> Iterable[str]:
    for f in fields:
        yield f.name
        yield from _names(_concrete(values, f), values)


def _placed(key: str, names: set[str]) -> bool:
    """An error is shown at the deepest control whose name starts its key."""
    parts = key.split(".")
    return any(".".join(parts[:n]) in names for n in range(len(parts), 0, -1))


def error_for(errors: Mapping[str, str], f: Field, names: set[str]) -> str:
    """The errors shown beside `f`: its own, and those under it that name no deeper control."""
    own = [
        msg
        for key, msg in errors.items()
        if key == f.name
        or (key.startswith(f.name + ".") and f.kind not in ("group", "rows") and key not in names)
    ]
    return "; ".join(own)
