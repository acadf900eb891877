"""P-7 and M-4.1 over HTTP: whoever a process waits on or decides about hears of it — in the
inbox, exactly once per event, and through a signed webhook (Standard Webhooks) to a real HTTP
receiver on loopback, retried with backoff; webhook URLs never reach private addresses (OWASP
API7:2023)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, func, select
from standardwebhooks import Webhook
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.governance import GovernanceActivities
from activities.webhooks import WebhookActivities
from kwanus.contract import webhook_delivery_workflow_id
from kwanus.models.webhooks import DeliveryInput
from kwanus.webhooks import pin
from policy.webhooks import check_addresses, check_url
from store import repo
from store.db import Database
from store.migrate import upgrade
from store.schemas import PartnerCreate
from store.tables import DeliveryAttempt, NotificationRow, WebhookDelivery, utcnow
from testdata.factories import event, partner_body, proposal_body
from tests.apistack import Api, eventually, serving, unique
from tests.conftest import end_runs
from tests.receiver import Receiver

TARGET = {"os_version": "5.0"}


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for r in made:
        r.close()


def receiver(made: list[Receiver], answers: list[int] | None = None) -> Receiver:
    r = Receiver(answers)
    made.append(r)
    return r


@pytest.fixture
async def dev_api(dev_env: WorkflowEnvironment, db: Database) -> AsyncIterator[Api]:
    """The stack as `kwanus dev` runs it: webhooks may go to this machine."""
    async with serving(dev_env, db, webhooks_allow_private=True) as stack:
        yield stack


@pytest.fixture
async def ts_api(ts_env: WorkflowEnvironment, db: Database) -> AsyncIterator[Api]:
    """The same on the time-skipping server: days of backoff and deadlines in seconds."""
    async with serving(ts_env, db, webhooks_allow_private=True) as stack:
        yield stack


async def start_migration(api: Api, partner_id: str) -> str:
    """A required migration of the partner's OS (TSC starts it): its notice is M-4.1's."""
    mid = unique("mig")
    start = {
        "id": mid,
        "partner_id": partner_id,
        "trigger": "os_major_version",
        "type": "version",
        "subtype": "os",
        "target": TARGET,
    }
    resp = await api.http.post("/v1/migrations", json=start, headers=api.token("TSC"))
    assert resp.status_code == 202, resp.text
    return mid


async def subscribe(api: Api, headers: dict[str, str], url: str, **more: Any) -> dict[str, Any]:
    resp = await api.http.post("/v1/webhooks", json={"url": url, **more}, headers=headers)
    assert resp.status_code == 201, resp.text
    created: dict[str, Any] = resp.json()
    assert created["secret"].startswith("whsec_")
    return created


def verified(secret: str, headers: dict[str, str], body: str) -> Any:
    """What the Standard Webhooks library makes of a delivery: its payload, or an exception."""
    return Webhook(secret).verify(body, headers)


async def inbox(api: Api, headers: dict[str, str], **query: str) -> list[dict[str, Any]]:
    resp = await api.http.get("/v1/notifications", params=query, headers=headers)
    assert resp.status_code == 200, resp.text
    items: list[dict[str, Any]] = resp.json()
    return items


async def test_a_migration_notice_reaches_its_partner_signed_and_nobody_else(
    dev_api: Api, receivers: list[Receiver]
) -> None:
    """M-4.1, P-7: a migration started for a subscribed partner delivers `migration.notice`
    (window, fallback, target, a link to the migration) with a signature that verifies — by the
    rotated-out secret too, within its day — once per subscription asking for it; another
    partner's webhook receives nothing and its inbox holds nothing of it. Another partner's
    subscriptions are not found (BOLA)."""
    api = dev_api
    acme, globex = await api.partner("acme"), await api.partner("globex")
    mine, filtered, theirs = receiver(receivers), receiver(receivers), receiver(receivers)
    everything = await subscribe(api, acme, mine.url)
    only_notices = await subscribe(api, acme, filtered.url, events=["migration.notice"])
    assert only_notices["events"] == ["migration.notice"] and everything["events"] == []
    assert everything["owner"] == "partner:acme"
    other = await subscribe(api, globex, theirs.url)
    rotated = await api.http.post(f"/v1/webhooks/{everything['id']}/rotate-secret", headers=acme)
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    assert new_secret != everything["secret"]

    mid = await start_migration(api, "acme")

    async def noticed() -> bool:
        return bool(mine.of_type("migration.notice")) and bool(mine.of_type("step.opened"))

    assert await eventually(noticed, within=30)
    [(headers, body)] = mine.of_type("migration.notice")
    # Signed by both secrets during the rotation: a receiver holding either one verifies.
    payload = verified(new_secret, headers, body)
    assert verified(everything["secret"], headers, body) == payload
    assert len(headers["webhook-signature"].split(" ")) == 2
    data = payload["data"]
    assert data["receiver"] == "partner:acme" and data["partner_id"] == "acme"
    assert data["workflow_id"] == f"migration-{mid}" and data["process_id"] == mid
    assert data["link"] == f"/v1/migrations/{mid}"
    assert data["target"] == TARGET and data["window_end"]
    assert data["fallback"]["until"] and data["fallback"]["permissions"] == ["orders:read"]
    assert headers["webhook-id"] == payload["id"]
    # The plan is awaited from the partner: it hears of the step, with its deadline.
    [(_, raw)] = mine.of_type("step.opened")
    opened = json.loads(raw)
    assert opened["data"]["step"] == "plan" and opened["data"]["deadline"]
    # The filtered subscription receives the notice only, signed by its own secret.
    assert await eventually(lambda: _async(bool(filtered.requests)), within=30)
    assert [json.loads(b)["type"] for _, b in filtered.requests] == ["migration.notice"]
    verified(only_notices["secret"], *filtered.requests[0])

    # The inbox: the same notifications, each delivery's attempts on record.
    async def delivered() -> list[dict[str, Any]]:
        items = await inbox(api, acme, type="migration.notice")
        done = items and all(d["status"] == "delivered" for d in items[0]["deliveries"])
        return items if done else []

    [note] = await eventually(delivered, within=30)
    assert note["id"] == payload["id"]
    assert sorted(d["subscription_id"] for d in note["deliveries"]) == sorted(
        [everything["id"], only_notices["id"]]
    )
    assert all([a["status_code"] for a in d["attempts"]] == [200] for d in note["deliveries"])

    # Another partner hears nothing of it, and cannot reach acme's subscriptions.
    await asyncio.sleep(1.5)  # a dispatcher round or two: nothing is on its way either
    assert theirs.requests == []
    assert [n for n in await inbox(api, globex) if n["data"]["partner_id"] == "acme"] == []
    listed = (await api.http.get("/v1/webhooks", headers=globex)).json()
    assert [w["id"] for w in listed] == [other["id"]]
    for method, path in (
        ("DELETE", f"/v1/webhooks/{everything['id']}"),
        ("POST", f"/v1/webhooks/{everything['id']}/rotate-secret"),
    ):
        resp = await api.http.request(method, path, headers=globex)
        assert resp.status_code == 404, (method, path, resp.text)
    # A partner reads its own inbox only: no receiver of its choosing.
    resp = await api.http.get(
        "/v1/notifications", params={"receiver": "partner:acme"}, headers=globex
    )
    assert resp.status_code == 422 and "receiver" in resp.json()["errors"]


async def _async(value: Any) -> Any:
    return value


async def _first_delivery(api: Api) -> str:
    """The workflow of the test's first delivery (its history joins the replay corpus)."""
    with api.db.session() as session:
        first = session.exec(select(WebhookDelivery).order_by(col(WebhookDelivery.id))).first()
    assert first is not None
    return webhook_delivery_workflow_id(first.subscription_id, first.notification_id)


async def test_two_databases_on_one_namespace_each_deliver(
    dev_env: WorkflowEnvironment, tmp_path: Path, receivers: list[Receiver]
) -> None:
    """P-7: a delivery's workflow id names it across databases sharing a Temporal namespace
    (a fresh database numbers its notifications from 1 again): the second one's first
    notification is delivered too, not taken for the first one's."""
    for n in range(2):
        url = f"sqlite:///{tmp_path / f'kwanus-{n}.db'}"
        upgrade(url)
        db = Database(url)
        try:
            async with serving(dev_env, db, webhooks_allow_private=True) as api:
                got = receiver(receivers)
                await subscribe(api, await api.partner("acme"), got.url)
                await start_migration(api, "acme")

                async def noticed(got: Receiver = got) -> bool:
                    return bool(got.of_type("migration.notice"))

                assert await eventually(noticed, within=30), n
        finally:
            db.dispose()


async def test_a_refused_delivery_is_retried_with_its_webhook_id_and_deadlines_arrive(
    ts_api: Api, receivers: list[Receiver]
) -> None:
    """P-7, P-3 under time skipping: a body's receiver answering 503 gets the same `webhook-id`
    again within a minute (the inbox shows both attempts, then delivered); the review's
    reminder reaches the bodies and its escalation reaches CGB — each signed."""
    api = ts_api
    acme = await api.partner("acme")
    tsc_token, cgb_token = api.token("TSC"), api.token("CGB")
    tsc, cgb = receiver(receivers, answers=[503]), receiver(receivers)
    tsc_hook = await subscribe(api, tsc_token, tsc.url)
    cgb_hook = await subscribe(api, cgb_token, cgb.url)
    eid = unique("exp")
    resp = await api.http.post("/v1/expansions", json=proposal_body(id=eid), headers=acme)
    assert resp.status_code == 202, resp.text

    async def opened_once() -> bool:
        return len(tsc.of_type("step.opened")) >= 1

    assert await eventually(opened_once, within=30)
    [(first, _)] = tsc.of_type("step.opened")
    await api.env.sleep(timedelta(seconds=45))  # the first retry comes within a minute

    async def opened_twice() -> bool:
        return len(tsc.of_type("step.opened")) == 2

    assert await eventually(opened_twice, within=30)
    (_, _), (second, raw) = tsc.of_type("step.opened")
    assert second["webhook-id"] == first["webhook-id"]
    body = Webhook(tsc_hook["secret"]).verify(raw, second)
    assert body["data"]["step"] == "reviews" and body["data"]["receiver"] == "TSC"

    async def logged() -> list[dict[str, Any]]:
        items = await inbox(api, tsc_token, type="step.opened")
        ok = items and items[0]["deliveries"][0]["status"] == "delivered"
        return items if ok else []

    [note] = await eventually(logged, within=30)
    assert [a["status_code"] for a in note["deliveries"][0]["attempts"]] == [503, 200]
    assert note["deliveries"][0]["attempts"][0]["error"] == "answered 503"

    # P-3: the review's reminder (day 10), then its escalation to CGB (day 14).
    await api.env.sleep(timedelta(days=10, hours=1))
    assert await eventually(lambda: _async(bool(tsc.of_type("step.reminder"))), within=30)
    await api.env.sleep(timedelta(days=4))
    assert await eventually(lambda: _async(bool(cgb.of_type("step.escalated"))), within=30)
    assert await eventually(lambda: _async(bool(tsc.of_type("step.escalated"))), within=30)
    [(headers, raw)] = cgb.of_type("step.escalated")
    escalated = Webhook(cgb_hook["secret"]).verify(raw, headers)
    assert escalated["data"]["step"] == "reviews" and escalated["data"]["receiver"] == "CGB"
    headers, raw = tsc.of_type("step.reminder")[0]
    reminded = Webhook(tsc_hook["secret"]).verify(raw, headers)
    assert reminded["data"]["step"] == "reviews"
    # The partner is no body: it heard of none of the bodies' steps.
    assert [n["type"] for n in await inbox(api, acme)] == []
    await api.env.client.get_workflow_handle(f"expansion-{eid}").terminate("test over")
    await end_runs(api.env.client, [await _first_delivery(api)], "test_webhook_retried")


async def test_a_receiver_failing_for_a_day_is_disabled_and_its_owner_told(
    ts_api: Api, receivers: list[Receiver]
) -> None:
    """P-7: a receiver that never answers 2xx is tried with backoff for a day — many times,
    never for ever — then its subscription is disabled and `subscription.disabled` is in its
    owner's inbox; the notifications stay there regardless."""
    api = ts_api
    acme = await api.partner("acme")
    down = receiver(receivers, answers=[503] * 1000)
    hook = await subscribe(api, acme, down.url)
    mid = await start_migration(api, "acme")
    assert await eventually(lambda: _async(bool(down.requests)), within=30)
    for _ in range(26):  # hour by hour: each retry is a timer the server skips to
        await api.env.sleep(timedelta(hours=1))

    async def disabled() -> list[dict[str, Any]]:
        return await inbox(api, acme, type="subscription.disabled")

    [note] = await eventually(disabled, within=60)
    assert note["data"]["subscription_id"] == hook["id"]
    [listed] = (await api.http.get("/v1/webhooks", headers=acme)).json()
    assert listed["disabled_at"] and listed["disabled_reason"]
    # The notice and the plan's opening stay in the inbox; the first delivery to fail for a day
    # disabled the subscription, the other is then not sent (skipped), never left pending.
    notes = [n for n in await inbox(api, acme) if n["type"] != "subscription.disabled"]
    assert {n["type"] for n in notes} == {"migration.notice", "step.opened"}
    deliveries = [d for n in notes for d in n["deliveries"]]
    assert sorted(d["status"] for d in deliveries) in (
        ["failed", "skipped"],
        ["failed", "failed"],
    )
    failed = next(d for d in deliveries if d["status"] == "failed")
    assert len(failed["attempts"]) >= 20  # backoff, capped at an hour, for a day
    assert all(a["status_code"] == 503 for a in failed["attempts"])
    await end_runs(api.env.client, [await _first_delivery(api)], "test_webhook_given_up")
    await api.env.client.get_workflow_handle(f"migration-{mid}").terminate("test over")


async def test_ssrf_refused_at_subscription_with_the_development_setting_off(api: Api) -> None:
    """OWASP API7:2023: a webhook URL must be https and resolve to public addresses only —
    loopback, IPv6 loopback, private, the metadata service and a name resolving to loopback
    are refused with 422 naming `url`, and nothing is stored."""
    acme = await api.partner("acme")
    assert api.settings.webhooks_allow_private is False
    for url in (
        "http://example.com/hook",
        "https://127.0.0.1/hook",
        "https://[::1]/hook",
        "https://10.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://localhost/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://user:pw@93.184.216.34/hook",
    ):
        resp = await api.http.post("/v1/webhooks", json={"url": url}, headers=acme)
        assert resp.status_code == 422, (url, resp.text)
        problem = resp.json()
        assert "url" in problem["errors"] and problem["rule"] == "API7:2023", (url, problem)
    assert (await api.http.get("/v1/webhooks", headers=acme)).json() == []


async def test_subscriptions_are_the_callers_own(api: Api) -> None:
    """P-6 on subscriptions: a partner subscribes for itself only, a body for itself, admin for
    a named partner or body; unknown event types are refused naming `events`; ops and the
    platform have none. Nothing refused is stored."""
    acme = await api.partner("acme")
    await api.partner("globex")
    url = "https://93.184.216.34/hook"  # a public address; nothing is sent in this test

    async def create(headers: dict[str, str], **body: Any) -> Any:
        return await api.http.post("/v1/webhooks", json={"url": url, **body}, headers=headers)

    assert (await create(acme, partner_id="globex")).status_code == 403
    assert (await create(acme, body="CGB")).status_code == 403
    assert (await create(api.token("TSC"), body="CGB")).status_code == 403
    bad = await create(acme, events=["migration.notice", "tier.raised"])
    assert bad.status_code == 422 and "events" in json.dumps(bad.json())
    assert (await create(api.admin)).status_code == 422
    assert (await create(api.admin, partner_id="globex", body="TSC")).status_code == 422
    assert (await create(api.admin, partner_id="nobody")).status_code == 422
    assert (await create(api.token("ops"))).status_code == 403
    assert (await create(api.token("platform"))).status_code == 403
    for_globex = await create(api.admin, partner_id="globex")
    assert for_globex.status_code == 201 and for_globex.json()["owner"] == "partner:globex"
    for_sco = await create(api.admin, body="SCO")
    assert for_sco.json()["owner"] == "SCO"
    own = await create(api.token("SCO"))
    assert own.status_code == 201 and own.json()["owner"] == "SCO"
    assert (await api.http.get("/v1/webhooks", headers=acme)).json() == []
    sco_sees = (await api.http.get("/v1/webhooks", headers=api.token("SCO"))).json()
    assert sorted(w["id"] for w in sco_sees) == sorted([for_sco.json()["id"], own.json()["id"]])
    assert all("secret" not in w for w in sco_sees)
    bad_page = await api.http.get("/v1/notifications", params={"before": "ntf_²"}, headers=acme)
    assert bad_page.status_code == 422 and "before" in bad_page.json()["errors"]
    deleted = await api.http.delete(f"/v1/webhooks/{own.json()['id']}", headers=api.token("SCO"))
    assert deleted.status_code == 204
    again = await api.http.delete(f"/v1/webhooks/{own.json()['id']}", headers=api.token("SCO"))
    assert again.status_code == 404


def test_urls_and_addresses_a_webhook_may_use() -> None:
    """OWASP API7:2023, the policy on its own: every private kind of address is refused, an
    IPv4-mapped or 6to4 form of one too; the development setting admits them and http."""
    for address in (
        "127.0.0.1",
        "::1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",  # noqa: S104
        "::ffff:10.0.0.1",
        "2002:7f00:1::",
        "fd00:ec2::254",
        "224.0.0.1",
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b:1::1",
        "::a9fe:a9fe",  # IPv4-compatible
        "::ffff:0:7f00:1",  # IPv4-translated 127.0.0.1
    ):
        assert not check_addresses("h", [address], allow_private=False).allowed, address
        assert check_addresses("h", [address], allow_private=True).allowed
    assert check_addresses("h", ["93.184.216.34"], allow_private=False).allowed
    assert not check_addresses("h", ["93.184.216.34", "10.0.0.1"], allow_private=False).allowed
    assert not check_addresses("h", [], allow_private=True).allowed  # does not resolve
    assert check_addresses("h", ["64:ff9b::5db8:d822"], allow_private=False).allowed  # public
    # What an internal name resolves to is not told to the caller.
    refused = check_addresses("vm", ["10.1.2.3"], allow_private=False)
    assert "10.1.2.3" not in str(refused.findings)
    assert not check_url("ftp://example.com/", allow_private=True)[0].allowed
    assert not check_url("http://example.com/", allow_private=False)[0].allowed
    assert check_url("http://example.com/", allow_private=True)[0].allowed
    assert not check_url("https:///nohost", allow_private=False)[0].allowed
    assert not check_url("https://example.com:99999/", allow_private=False)[0].allowed


def test_an_attempt_connects_to_the_address_it_checked() -> None:
    """OWASP API7:2023 (DNS rebinding): the attempt goes to the address the check resolved, the
    request still naming the host (Host header, TLS name) — a second resolver answer is never
    asked for. Refused, there is nothing to connect to."""
    decision, pinned = pin("http://localhost:8080/hook?x=1", allow_private=True)
    assert decision.allowed and pinned is not None
    assert set(pinned.urls) <= {"http://127.0.0.1:8080/hook?x=1", "http://[::1]:8080/hook?x=1"}
    assert pinned.urls
    assert (pinned.host, pinned.server_name) == ("localhost:8080", "localhost")
    decision, pinned = pin("https://localhost/hook", allow_private=False)
    assert not decision.allowed and pinned is None


def _subscribed(db: Database, url: str) -> str:
    with db.session() as session:
        repo.create_partner(session=session, partner=PartnerCreate.model_validate(partner_body()))
        row = repo.create_subscription(
            session=session,
            owner="partner:acme",
            url=url,
            events=[],
            created_by="partner:acme",
            now=utcnow(),
            most=10,
        )
    return row.id


def _counts(db: Database) -> tuple[int, int, int]:
    with db.session() as session:

        def count(table: Any) -> int:
            return int(session.exec(select(func.count()).select_from(table)).one())

        return count(NotificationRow), count(WebhookDelivery), count(DeliveryAttempt)


def _window_opened() -> Any:
    return event(
        "migration-m:window:plan",
        workflow_id="migration-m",
        process="migration",
        process_id="m",
        event="window_opened",
        stage="Plan",
        awaiting=[
            {
                "actor": "partner:acme",
                "action": "plan",
                "deadline": datetime(2026, 2, 1, tzinfo=UTC),
            }
        ],
        data={"step": "plan", "deadline": "2026-02-01T00:00:00+00:00"},
    )


def test_an_event_retried_notifies_once_and_a_redelivery_sends_nothing(
    db: Database, receivers: list[Receiver]
) -> None:
    """P-7, P-4 on both databases: the activity that records an event, run again and twice at
    once, leaves one notification and one delivery per subscription; the delivery activity run
    again after a 2xx sends nothing and adds no row — the inbox never doubles."""
    got = receiver(receivers)
    _subscribed(db, got.url)
    activities = GovernanceActivities(db)
    written = [activities.record_event(_window_opened()) for _ in range(2)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        written += list(pool.map(lambda _: activities.record_event(_window_opened()), range(2)))
    assert written.count(True) == 1
    assert _counts(db) == (1, 1, 0)
    with db.session() as session:
        [delivery] = session.exec(select(WebhookDelivery)).all()
    assert delivery.id is not None
    webhooks = WebhookActivities(db, allow_private=True)
    env = ActivityEnvironment()
    first = asyncio.run(env.run(webhooks.deliver, DeliveryInput(delivery_id=delivery.id)))
    again = asyncio.run(env.run(webhooks.deliver, DeliveryInput(delivery_id=delivery.id)))
    assert (first, again) == ("delivered", "delivered")
    assert len(got.requests) == 1
    assert _counts(db) == (1, 1, 1)


def test_each_delivery_checks_where_the_url_goes_again(
    db: Database, receivers: list[Receiver]
) -> None:
    """OWASP API7:2023: the address is judged at each attempt, not only at subscription — a
    subscription whose host now resolves to loopback (here: one stored before the setting was
    turned off) is not sent to; the refusal is the attempt's error in the inbox."""
    got = receiver(receivers)
    _subscribed(db, got.url)
    GovernanceActivities(db).record_event(_window_opened())
    with db.session() as session:
        [delivery] = session.exec(select(WebhookDelivery)).all()
    assert delivery.id is not None
    webhooks = WebhookActivities(db, allow_private=False)
    with pytest.raises(Exception, match="refused"):
        asyncio.run(
            ActivityEnvironment().run(webhooks.deliver, DeliveryInput(delivery_id=delivery.id))
        )
    assert got.requests == []
    with db.session() as session:
        [attempt] = session.exec(
            select(DeliveryAttempt).where(col(DeliveryAttempt.delivery_id) == delivery.id)
        ).all()
    assert attempt.status_code is None and attempt.error and "refused" in attempt.error


def test_deliveries_giving_up_together_disable_their_subscription_once(
    db: Database, receivers: list[Receiver]
) -> None:
    """P-7: a subscription's deliveries back off on one schedule and give up together; it is
    disabled once and its owner told once (both databases)."""
    got = receiver(receivers)
    _subscribed(db, got.url)
    activities = GovernanceActivities(db)
    activities.record_event(_window_opened())
    activities.record_event(
        _window_opened().model_copy(update={"key": "migration-m:reminder:plan:0"})
    )
    with db.session() as session:
        ids = [d.id for d in session.exec(select(WebhookDelivery)).all()]
    webhooks = WebhookActivities(db, allow_private=True)

    def give_up(delivery_id: Any) -> bool:
        env = ActivityEnvironment()
        return asyncio.run(env.run(webhooks.give_up, DeliveryInput(delivery_id=delivery_id)))

    with ThreadPoolExecutor(max_workers=2) as pool:
        disabled = list(pool.map(give_up, ids))
    assert len(ids) == 2 and sorted(disabled) == [False, True]
    with db.session() as session:
        notes = session.exec(
            select(NotificationRow).where(col(NotificationRow.type) == "subscription.disabled")
        ).all()
    assert len(notes) == 1


def test_each_step_a_remediation_or_a_stewardship_review_opens_is_heard(db: Database) -> None:
    """P-7: who a process waits on hears of it when a step opens under another name — the
    bodies when a stewardship report awaits their sign-off, SCO when the fixes await its
    re-validation, the partner when a failed re-validation awaits its fixes again."""
    activities = GovernanceActivities(db)
    awaited = [
        ("stewardship", "report_compiled", ["TSC", "SCO", "ERC", "CGB"]),
        ("remediation", "fixes_submitted", ["SCO"]),
        ("remediation", "revalidation_failed", ["partner:acme"]),
    ]
    for n, (process, name, actors) in enumerate(awaited):
        activities.record_event(
            event(
                f"{process}-p{n}:{name}",
                workflow_id=f"{process}-p{n}",
                process=process,
                process_id=f"p{n}",
                event=name,
                awaiting=[{"actor": a, "action": "act"} for a in actors],
            )
        )
    with db.session() as session:
        notes = session.exec(select(NotificationRow).order_by(col(NotificationRow.id))).all()
    assert [(n.workflow_id, n.type, n.receiver) for n in notes] == [
        (f"{process}-p{n}", "step.opened", actor)
        for n, (process, _, actors) in enumerate(awaited)
        for actor in actors
    ]


async def test_a_receiver_keeps_at_most_ten_webhooks_even_when_racing(api: Api) -> None:
    """P-7 input limits: thirty subscriptions asked for at once leave at most ten (the rest
    409), and a deleted one frees its place."""
    acme = await api.partner("acme")
    url = "https://93.184.216.34/hook"
    answers = await asyncio.gather(
        *(api.http.post("/v1/webhooks", json={"url": url}, headers=acme) for _ in range(30))
    )
    assert {a.status_code for a in answers} <= {201, 409}
    listed = (await api.http.get("/v1/webhooks", headers=acme)).json()
    assert 1 <= len(listed) <= 10
    assert len(listed) == sum(a.status_code == 201 for a in answers)
    if len(listed) == 10:
        await api.http.delete(f"/v1/webhooks/{listed[0]['id']}", headers=acme)
        again = await api.http.post("/v1/webhooks", json={"url": url}, headers=acme)
        assert again.status_code == 201
