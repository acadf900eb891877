"""Authentication (OWASP API2): tokens stored hashed and compared in constant time (test_store),
revocable by admin over HTTP and with `kwanus token revoke`, optionally expiring; a missing,
malformed, unknown, wrong, revoked or expired token is a 401 that reveals nothing else."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.cli import main
from store.tables import ApiToken, utcnow
from tests.apistack import Api


async def test_every_bad_token_is_401(api: Api) -> None:
    ops = api.token("ops")
    good = ops["Authorization"]
    prefix, token_id, secret = good.removeprefix("Bearer ").split(".")
    bad = [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwdw=="},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": f"Bearer {prefix}.tok_0000000000000000.{secret}"},  # unknown id
        {"Authorization": f"Bearer {prefix}.{token_id}.{secret[:-2]}xx"},  # wrong secret
    ]
    for headers in bad:
        resp = await api.http.get("/v1/partners", headers=headers)
        assert resp.status_code == 401, headers
        assert resp.headers["www-authenticate"] == "Bearer"
        assert resp.headers["content-type"].startswith("application/problem+json")
    assert (await api.http.get("/v1/partners", headers=ops)).status_code == 200


async def test_revoked_and_expired_tokens_stop_working(api: Api) -> None:
    ops = api.token("ops")
    token_id = ops["Authorization"].split(".")[1]
    listed = (await api.http.get("/v1/tokens", headers=api.admin)).json()
    assert token_id in [t["id"] for t in listed] and all("token" not in t for t in listed)
    assert (await api.http.get("/v1/tokens", headers=ops)).status_code == 403
    revoked = await api.http.delete(f"/v1/tokens/{token_id}", headers=api.admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert (await api.http.get("/v1/partners", headers=ops)).status_code == 401
    assert (await api.http.delete("/v1/tokens/tok_nope", headers=api.admin)).status_code == 404

    soon = (utcnow() + timedelta(hours=1)).isoformat()
    resp = await api.http.post(
        "/v1/tokens", json={"role": "ops", "expires_at": soon}, headers=api.admin
    )
    assert resp.status_code == 201, resp.text
    expiring = {"Authorization": f"Bearer {resp.json()['token']}"}
    assert (await api.http.get("/v1/partners", headers=expiring)).status_code == 200
    with api.db.session() as session:  # an hour passes
        row = session.get(ApiToken, resp.json()["id"])
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
        session.add(row)
        session.commit()
    assert (await api.http.get("/v1/partners", headers=expiring)).status_code == 401
    past = (utcnow() - timedelta(days=1)).isoformat()
    refused = await api.http.post(
        "/v1/tokens", json={"role": "ops", "expires_at": past}, headers=api.admin
    )
    assert refused.status_code == 422 and "expires_at" in refused.json()["errors"]


async def test_token_revoke_command(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    tsc = api.token("TSC")
    token_id = tsc["Authorization"].split(".")[1]
    monkeypatch.setenv("KWANUS_DATABASE_URL", api.db.url)
    assert main(["token", "revoke", token_id]) == 0
    assert main(["token", "revoke", "tok_nope"]) == 2
    assert (await api.http.get("/v1/partners", headers=tsc)).status_code == 401
