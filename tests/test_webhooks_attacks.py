"""P-6, P-7, OWASP API7:2023 — the ways around webhooks and the inbox an independent review
tried as a partner and as other roles: each was a hole it found (now closed) or, in
`test_held_*`, something tried that held. DNS is faked where the attack needs an answer this
machine's resolver (/etc/hosts only) cannot give."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from sqlmodel import col, select
from temporalio.testing import ActivityEnvironment

import activities.webhooks as webhook_activities
from activities.governance import GovernanceActivities
from activities.webhooks import WebhookActivities
from kwanus import webhooks as kw_webhooks
from kwanus.models.webhooks import DeliveryInput
from policy.webhooks import check_addresses
from store import repo
from store.db import Database
from store.tables import DeliveryAttempt, WebhookDelivery, WebhookSubscription, utcnow
from tests.apistack import Api
from tests.receiver import Receiver
from tests.test_webhooks import _subscribed, _window_opened, receiver
from tests.test_webhooks import receivers as receivers

PUBLIC = "https://93.184.216.34/hook"  # nothing is sent to it in these tests


def _only_delivery(db: Database) -> int:
    with db.session() as session:
        [delivery] = session.exec(select(WebhookDelivery)).all()
    assert delivery.id is not None
    return delivery.id


def _attempts(db: Database, delivery_id: int) -> list[DeliveryAttempt]:
    with db.session() as session:
        return list(
            session.exec(
                select(DeliveryAttempt).where(col(DeliveryAttempt.delivery_id) == delivery_id)
            ).all()
        )


# --- A subscription deleted while an attempt is in flight ---------------------------------


def test_a_subscription_deleted_during_an_attempt_is_not_sent_to(
    db: Database, receivers: list[Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    """DELETE /v1/webhooks/{id}: "one in flight is not sent" — a DELETE committed while the
    attempt resolves the host (it read the subscription before) is seen before the POST."""
    got = receiver(receivers)
    sub_id = _subscribed(db, got.url)
    GovernanceActivities(db).record_event(_window_opened())
    delivery_id = _only_delivery(db)
    real_pin = webhook_activities.pin

    def pin_while_deleted(url: str, *, allow_private: bool) -> Any:
        with db.session() as session:  # the partner's DELETE, committed meanwhile
            row = repo.get_subscription(session=session, subscription_id=sub_id, owner=None)
            assert row is not None
            repo.delete_subscription(session=session, row=row, now=utcnow())
        return real_pin(url, allow_private=allow_private)

    monkeypatch.setattr(webhook_activities, "pin", pin_while_deleted)
    webhooks = WebhookActivities(db, allow_private=True)
    result = asyncio.run(
        ActivityEnvironment().run(webhooks.deliver, DeliveryInput(delivery_id=delivery_id))
    )
    assert got.requests == [], "a deleted subscription received the notification"
    assert result == "skipped"


# --- An internationalised host --------------------------------------------------------------


def test_an_idn_host_is_delivered_to_or_its_failure_logged(
    db: Database, receivers: list[Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    """P-7: a unicode host is sent as its IDNA form (Host header, TLS name); whatever an attempt
    fails on is on the delivery's log in the inbox, never an unlogged crash."""
    got = receiver(receivers)
    port = got.server.server_address[1]
    # Stands in for a public IDN name (there is no DNS here): it resolves to the receiver.
    monkeypatch.setattr(kw_webhooks, "resolve", lambda host: ["127.0.0.1"])
    _subscribed(db, f"http://bücher.example:{port}/hook")
    GovernanceActivities(db).record_event(_window_opened())
    delivery_id = _only_delivery(db)
    webhooks = WebhookActivities(db, allow_private=True)
    try:
        asyncio.run(
            ActivityEnvironment().run(webhooks.deliver, DeliveryInput(delivery_id=delivery_id))
        )
    except Exception as exc:
        assert not isinstance(exc, UnicodeError), f"attempt crashed: {exc!r}"
    assert got.requests or _attempts(db, delivery_id), "the attempt left no trace in the inbox"


# --- The resolver's preference, and the other addresses as fallbacks -----------------------


def test_the_pinned_address_is_the_resolvers_first_choice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """P-7: a dual-stack receiver is tried at the address the resolver prefers (RFC 6724), the
    other checked one next — not in string order (2600:… before 52.…), which sent every attempt
    over IPv6 where the worker may have no IPv6 route, a day of failures and then disabled."""

    def getaddrinfo(host: str, *_: Any, **__: Any) -> list[Any]:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("52.1.2.3", 0)),
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2600:1f18::1", 0, 0, 0)),
        ]

    monkeypatch.setattr(kw_webhooks.socket, "getaddrinfo", getaddrinfo)
    decision, pinned = kw_webhooks.pin("https://hooks.example.com/x", allow_private=False)
    assert decision.allowed and pinned is not None
    assert pinned.urls == ["https://52.1.2.3/x", "https://[2600:1f18::1]/x"], pinned.urls


# --- Non-public ranges the interpreter's ipaddress may call global -------------------------


@pytest.mark.parametrize(
    "address",
    [
        "fec0::1",  # IPv6 site-local (RFC 3879): internal wherever still used
        "fec0::a9fe:a9fe",
        "3fff::1",  # IPv6 documentation (RFC 9637)
        "192.0.0.8",  # IPv4 dummy address (RFC 7600), not globally reachable
    ],
)
def test_non_public_ranges_are_refused(address: str) -> None:
    """Not globally reachable (IANA special-purpose registries), though `ip.is_global` — whose
    table depends on the Python patch release (3.11.7 predates gh-113171) — may say so."""
    assert not check_addresses("h", [address], allow_private=False).allowed


# --- One refusal for internal names and unknown ones ---------------------------------------


async def test_a_refusal_does_not_tell_whether_an_internal_name_exists(api: Api) -> None:
    """One answer for a name that does not resolve and one that resolves inside: a partner
    cannot map the platform's internal DNS names through POST /v1/webhooks."""
    acme = await api.partner("acme")
    details = []
    for url in ("https://localhost/hook", "https://no-such-name.invalid/hook"):
        resp = await api.http.post("/v1/webhooks", json={"url": url}, headers=acme)
        assert resp.status_code == 422
        body = resp.json()
        details.append((body["detail"], body["errors"]["url"].replace(url.split("/")[2], "H")))
    assert details[0] == details[1], details


# --- What was tried and held -------------------------------------------------------------


async def test_held_roles_ids_replays_and_access(api: Api) -> None:
    """BOLA, roles, replays and edge values on the webhook routes; subscribing, rotating and
    deleting never change what the partner may do (GET /v1/partners/{id}/access)."""
    acme, globex = await api.partner("acme"), await api.partner("globex")
    before = (await api.http.get("/v1/partners/acme/access", headers=acme)).json()

    async def post(headers: dict[str, str], **body: Any) -> Any:
        return await api.http.post("/v1/webhooks", json={"url": PUBLIC, **body}, headers=headers)

    # Another's id or receiver anywhere.
    assert (await post(acme, partner_id="globex")).status_code == 403
    assert (await post(acme, body="TSC")).status_code == 403
    assert (await post(acme, owner="TSC")).status_code == 422  # extra fields forbidden
    assert (await post(api.token("CGB"), body="TSC")).status_code == 403
    assert (await post(api.token("CGB"), partner_id="acme")).status_code == 403
    assert (await post(api.token("ops"))).status_code == 403
    assert (await post(api.token("platform"))).status_code == 403
    theirs = (await post(globex)).json()
    for method, path in (
        ("DELETE", f"/v1/webhooks/{theirs['id']}"),
        ("POST", f"/v1/webhooks/{theirs['id']}/rotate-secret"),
    ):
        assert (await api.http.request(method, path, headers=acme)).status_code == 404
        assert (await api.http.request(method, path, headers=api.token("ops"))).status_code == 403
    for receiver_ in ("partner:globex", "TSC", ""):
        resp = await api.http.get("/v1/notifications", params={"receiver": receiver_}, headers=acme)
        assert resp.status_code == 422, receiver_
    resp = await api.http.get("/v1/notifications", headers=api.token("platform"))
    assert resp.status_code == 403
    # Edge values.
    ok = await post(acme, events=["step.opened", "step.opened", "migration.notice"])
    assert ok.status_code == 201 and ok.json()["events"] == ["migration.notice", "step.opened"]
    assert (await post(acme, events=[])).json()["events"] == []
    long_ok = PUBLIC + "?" + "a" * (2000 - len(PUBLIC) - 1)
    assert len(long_ok) == 2000
    resp = await api.http.post("/v1/webhooks", json={"url": long_ok}, headers=acme)
    assert resp.status_code == 201
    resp = await api.http.post("/v1/webhooks", json={"url": long_ok + "a"}, headers=acme)
    assert resp.status_code == 422
    for url in (
        "https://[::ffff:7f00:1]/",
        "https://[::127.0.0.1]/",
        "https://[64:ff9b::a9fe:a9fe]/",
        "https://[2002:a9fe:a9fe::]/",
        "https://[fe80::1%25lo]/",
        "https://[::]/",
        "https://0/",
        "https://127.1/",
        "https://0x7f.1/",
        "https://2130706433/",
        "https://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/",  # fullwidth
        "https://localhost:0/",
        "https://93.184.216.34:99999/",
        "https://93.184.216.34\\@127.0.0.1/",
    ):
        resp = await api.http.post("/v1/webhooks", json={"url": url}, headers=acme)
        assert resp.status_code == 422, (url, resp.text)
    # Replays: rotate twice, delete, then rotate / delete again.
    mine = (await post(acme)).json()
    path = f"/v1/webhooks/{mine['id']}"
    first = (await api.http.post(f"{path}/rotate-secret", headers=acme)).json()
    second = (await api.http.post(f"{path}/rotate-secret", headers=acme)).json()
    assert len({mine["secret"], first["secret"], second["secret"]}) == 3
    with api.db.session() as session:
        row = session.get(WebhookSubscription, mine["id"])
        assert row is not None
        assert repo.signing_secrets(row, utcnow()) == [second["secret"], first["secret"]]
    assert (await api.http.delete(path, headers=acme)).status_code == 204
    assert (await api.http.post(f"{path}/rotate-secret", headers=acme)).status_code == 404
    assert (await api.http.delete(path, headers=acme)).status_code == 404
    # Nothing of the above changes access.
    after = (await api.http.get("/v1/partners/acme/access", headers=acme)).json()
    assert after == before
    platform = api.token("platform")
    assert (await api.http.get("/v1/partners/acme/access", headers=platform)).json() == before
