"""Activities that write governance state: the projection and the append-only audit log."""

from __future__ import annotations

from temporalio import activity

from kwanus.models import RecordEvent
from store import repo
from store.db import Database


class GovernanceActivities:
    """Registered as bound methods in `worker.py`; tests hand it a store on a temp database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @activity.defn(name="record_event")
    def record_event(self, event: RecordEvent) -> bool:
        """Write one governance event and its projection, exactly once per `event.key` (P-4)."""
        with self.db.session() as session:
            return repo.record_event(session=session, event=event)
