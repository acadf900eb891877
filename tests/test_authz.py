"""Function-level authorization (OWASP API5), proven route by route: the matrix in
tests/data/authz.yaml names, for every operation of the OpenAPI schema, who may call it; this
walks every operation with a real token of every role. Deny by default: an operation missing
from the file fails the test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.apistack import Api

MATRIX = yaml.safe_load((Path(__file__).parent / "data" / "authz.yaml").read_text())
ROLES = ("partner", "TSC", "SCO", "ERC", "CGB", "ops", "admin", "platform")
INVALID = {"__not_a_field__": True}  # allowed callers get a 422, so nothing is started


def operations(api: Api) -> set[str]:
    schema = api.http._transport.app.openapi()  # type: ignore[attr-defined]
    return {f"{method.upper()} {path}" for path, ops in schema["paths"].items() for method in ops}


async def test_matrix_covers_every_operation_and_holds(api: Api) -> None:
    listed = set(MATRIX["operations"])
    in_schema = operations(api)
    assert in_schema - listed == set(), "operations missing from tests/data/authz.yaml"
    assert listed - in_schema == set(), "operations in the matrix that the API does not have"

    await api.partner("acme")
    tokens = {role: api.token(role, "acme" if role == "partner" else None) for role in ROLES}
    violations: list[str] = []
    checked = 0
    for op, rule in sorted(MATRIX["operations"].items()):
        method, path = op.split(" ", 1)
        url = path.replace("{partner_id}", "acme").replace("{token_id}", "tok_none")
        url = url.replace("{", "none-").replace("}", "")  # other ids: nothing there

        async def call(
            headers: dict[str, str], body: Any, method: str = method, url: str = url
        ) -> int:
            has_body = method in ("POST", "PUT")
            resp = await api.http.request(
                method, url, headers=headers, json=body if has_body else None
            )
            return resp.status_code

        if rule.get("public"):
            assert await call({}, None) not in (401, 403), op
            continue
        anonymous = await call({}, rule.get("body", INVALID))
        if anonymous != 401:
            violations.append(f"{op} without a token: {anonymous}, not 401")
        for role in ROLES:
            allowed = role in rule["allow"]
            status = await call(tokens[role], INVALID if allowed else rule.get("body", INVALID))
            checked += 1
            if allowed and status in (401, 403):
                violations.append(f"{op} as {role}: {status}, but the role is allowed")
            if not allowed and status != 403:
                violations.append(f"{op} as {role}: {status}, not 403")
    print(f"authorization matrix: {len(listed)} operations, {checked} role checks")
    assert violations == []
