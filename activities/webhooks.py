"""Webhook deliveries (P-7): the dispatcher hands each delivery the outbox holds to its own
workflow, and the workflow's activity POSTs it as the Standard Webhooks specification has it —
`webhook-id` (the same on every attempt), `webhook-timestamp`, `webhook-signature` — each
attempt on the delivery's log. The process that made the notification never waits on any of
this: its event's transaction wrote the notification and the delivery row, nothing more."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime

import httpx
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import (
    ApplicationError,
    ApplicationErrorCategory,
    WorkflowAlreadyStartedError,
)

from kwanus import contract
from kwanus.models.webhooks import DeliveryInput
from kwanus.notifications import partner_of
from kwanus.temporal import start_process
from kwanus.webhooks import Pinned, pin, signature
from store import repo
from store.db import Database

log = logging.getLogger("kwanus.webhooks")
# A receiver answers within this, or the attempt failed (it is retried).
SEND_TIMEOUT_S = 10.0
USER_AGENT = "KWANUS-Governance-Webhooks/1"
# A receiver that fails is the receiver's business, not ours: its attempts are on the delivery's
# log and in the UI, not in the worker's error log and metrics.
BENIGN = ApplicationErrorCategory.BENIGN


class WebhookActivities:
    def __init__(self, db: Database, *, allow_private: bool) -> None:
        self.db = db
        self.allow_private = allow_private  # development only (Settings.webhooks_allow_private)

    @activity.defn(name="deliver_webhook")
    async def deliver(self, inp: DeliveryInput) -> str:
        """One attempt: send the notification unless it was delivered already (a receiver that
        answered 2xx once never sees it again) or its subscription is gone; any other answer, or
        none, fails the attempt — Temporal retries it with backoff."""
        out = await asyncio.to_thread(self._outgoing, inp.delivery_id)
        if out is None:
            return "unknown"
        if out.delivery.status != repo.Delivery.PENDING:
            return out.delivery.status
        sub = out.subscription
        now = datetime.now(UTC)
        if sub.deleted_at is not None or sub.disabled_at is not None:
            await asyncio.to_thread(self._finish, inp.delivery_id, repo.Delivery.SKIPPED, now)
            return repo.Delivery.SKIPPED
        attempt = activity.info().attempt
        # Checked again at each attempt: the name may resolve elsewhere since the subscription;
        # the attempt connects to the address checked, not to a new answer.
        where, pinned = await asyncio.to_thread(pin, sub.url, allow_private=self.allow_private)
        if pinned is None:
            error = "refused: " + "; ".join(f.message for f in where.findings)
            await asyncio.to_thread(self._attempt, inp.delivery_id, attempt, now, None, error)
            raise ApplicationError(error, type="WebhookRefused", category=BENIGN)
        note = repo.payload(out.notification)
        body = json.dumps(note, separators=(",", ":"), sort_keys=True)
        secrets = repo.signing_secrets(sub, now)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": note["id"],
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature(secrets, note["id"], now, body),
            "host": pinned.host,
        }
        # A delete or a disable committed while the name was resolved: nothing is sent.
        if await asyncio.to_thread(self._gone, sub.id):
            await asyncio.to_thread(self._finish, inp.delivery_id, repo.Delivery.SKIPPED, now)
            return repo.Delivery.SKIPPED
        try:
            code = await self._post(pinned, body, headers)
        except Exception as exc:  # unreachable, timed out, or refused by the client: logged
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            await asyncio.to_thread(self._attempt, inp.delivery_id, attempt, now, None, error)
            raise ApplicationError(error, type="WebhookUnreachable", category=BENIGN) from None
        ok = 200 <= code < 300
        refused = None if ok else f"answered {code}"
        await asyncio.to_thread(self._attempt, inp.delivery_id, attempt, now, code, refused)
        if not ok:
            raise ApplicationError(
                f"the receiver {refused}", type="WebhookNotAccepted", category=BENIGN
            )
        await asyncio.to_thread(self._finish, inp.delivery_id, repo.Delivery.DELIVERED, now)
        return repo.Delivery.DELIVERED

    @staticmethod
    async def _post(pinned: Pinned, body: str, headers: dict[str, str]) -> int:
        """POST to each checked address in turn until one is reached; its status code. The
        whole attempt within SEND_TIMEOUT_S (not per read), decided on the status line: the body
        is never read, so a receiver trickling one cannot hold the attempt."""
        async with (
            asyncio.timeout(SEND_TIMEOUT_S),
            httpx.AsyncClient(
                timeout=SEND_TIMEOUT_S, follow_redirects=False, trust_env=False
            ) as http,
        ):
            for n, url in enumerate(pinned.urls, start=1):
                try:
                    async with http.stream(
                        "POST",
                        url,
                        content=body,
                        headers=headers,
                        extensions={"sni_hostname": pinned.server_name},
                    ) as answer:
                        return answer.status_code
                except httpx.ConnectError:
                    if n == len(pinned.urls):
                        raise
        raise AssertionError("pin() gives at least one address")

    def _gone(self, subscription_id: str) -> bool:
        """Deleted or disabled, as the store says now."""
        with self.db.session() as session:
            row = repo.get_subscription(
                session=session, subscription_id=subscription_id, owner=None
            )
            return row is None or row.disabled_at is not None

    @activity.defn(name="give_up_webhook")
    async def give_up(self, inp: DeliveryInput) -> bool:
        """The delivery failed for its whole retry period: it is failed, and its subscription —
        unless it has answered since — disabled, its owner told (`subscription.disabled`).
        Returns whether this disabled it."""
        now = datetime.now(UTC)
        disabled = await asyncio.to_thread(
            self._disable, inp.delivery_id, now, activity.info().workflow_id or ""
        )
        await asyncio.to_thread(self._finish, inp.delivery_id, repo.Delivery.FAILED, now)
        return disabled

    def _disable(self, delivery_id: int, at: datetime, workflow_id: str) -> bool:
        with self.db.session() as session:
            return (
                repo.disable_if_still_failing(
                    session=session,
                    delivery_id=delivery_id,
                    at=at,
                    reason="no 2xx answer for a day",
                    workflow_id=workflow_id,
                )
                is not None
            )

    def _outgoing(self, delivery_id: int) -> repo.Outgoing | None:
        with self.db.session() as session:
            return repo.outgoing(session=session, delivery_id=delivery_id)

    def _attempt(
        self, delivery_id: int, attempt: int, at: datetime, code: int | None, error: str | None
    ) -> None:
        # The outcome, never the URL (a receiver's may carry its own key) nor any header.
        outcome = error or f"answered {code}"
        log.info("webhook delivery %d, attempt %d: %s", delivery_id, attempt, outcome)
        with self.db.session() as session:
            repo.record_attempt(
                session=session,
                delivery_id=delivery_id,
                attempt=attempt,
                at=at,
                status_code=code,
                error=error,
            )

    def _finish(self, delivery_id: int, status: str, at: datetime) -> None:
        with self.db.session() as session:
            repo.finish(session=session, delivery_id=delivery_id, status=status, at=at)


def webhook_queue(task_queue: str) -> str:
    """Deliveries run on a task queue of their own, with their own slots: receivers, however
    slow, never hold the slots the governance processes' activities run in."""
    return f"{task_queue}-webhooks"


class Dispatcher:
    """Hands each delivery the outbox holds to its workflow (`webhook-<subscription>-<n>`, started
    once: a second dispatcher, or a crash before `dispatched_at` was written, finds it started).
    It runs beside every worker; the outbox is polled, so a notification waits at most
    `interval` before its delivery starts."""

    def __init__(
        self,
        client: Client,
        db: Database,
        *,
        task_queue: str,
        interval: float = 0.5,
        batch: int = 100,
    ) -> None:
        self.client = client
        self.db = db
        self.task_queue = task_queue
        self.interval = interval
        self.batch = batch

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                handed = await self.dispatch_once()
            except Exception:  # the database or Temporal is away: try again shortly
                log.exception("webhook dispatch failed; retrying")
                handed = 0
            if handed < self.batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval)

    async def dispatch_once(self) -> int:
        """Start the workflow of every undispatched delivery (a page of them); their number."""
        rows = await asyncio.to_thread(self._undispatched)
        if not rows:
            return 0
        await asyncio.gather(*(self._start(row) for row in rows))
        await asyncio.to_thread(self._mark, [row.delivery_id for row in rows])
        return len(rows)

    async def _start(self, row: repo.Undispatched) -> None:
        with contextlib.suppress(WorkflowAlreadyStartedError):  # started before a crash
            await start_process(
                self.client,
                contract.WEBHOOK_DELIVERY_WORKFLOW,
                DeliveryInput(delivery_id=row.delivery_id),
                workflow_id=contract.webhook_delivery_workflow_id(
                    row.subscription_id, row.notification_id
                ),
                task_queue=webhook_queue(self.task_queue),
                partner_id=partner_of(row.owner),
                kind=contract.WEBHOOK_PROCESS,
                stage="Delivery",
                summary=f"Webhook {repo.public_id(row.notification_id)} to {row.owner}",
            )

    def _undispatched(self) -> list[repo.Undispatched]:
        with self.db.session() as session:
            return repo.undispatched(session=session, limit=self.batch)

    def _mark(self, ids: list[int]) -> None:
        with self.db.session() as session:
            repo.mark_dispatched(session=session, ids=ids, now=datetime.now(UTC))
