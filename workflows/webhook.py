"""One notification's delivery to one webhook (P-7): attempts with exponential backoff for a
day — the first retry within a minute — then, still failing, the delivery is failed and its
subscription disabled (its owner told). A workflow per delivery, so ops see each one, its
attempts and its last error in the Temporal UI, and the process that made the notification
never waits on a receiver."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.webhooks import WebhookActivities
    from kwanus.contract import WEBHOOK_DELIVERY_WORKFLOW
    from kwanus.models.webhooks import DeliveryInput
    from workflows.common import ACTIVITY_RETRY, ACTIVITY_TIMEOUT

# 30 s, 1 min, 2 min... capped at an hour: 30 attempts or so within the day.
DELIVERY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=30),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(hours=1),
)
# "At least a day" of attempts: the last one starts no later than this after the first.
DELIVERY_PATIENCE = timedelta(days=1, minutes=5)
ATTEMPT_TIMEOUT = timedelta(seconds=30)


@workflow.defn(name=WEBHOOK_DELIVERY_WORKFLOW)
class WebhookDelivery:
    @workflow.run
    async def run(self, inp: DeliveryInput) -> str:
        try:
            return await workflow.execute_activity_method(
                WebhookActivities.deliver,
                inp,
                start_to_close_timeout=ATTEMPT_TIMEOUT,
                schedule_to_close_timeout=DELIVERY_PATIENCE,
                retry_policy=DELIVERY_RETRY,
                summary="deliver",
            )
        except ActivityError:
            await workflow.execute_activity_method(
                WebhookActivities.give_up,
                inp,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=ACTIVITY_RETRY,
                summary="failed for a day: disable the subscription",
            )
            return "failed"
