"""What a webhook delivery workflow takes."""

from __future__ import annotations

from pydantic import BaseModel


class DeliveryInput(BaseModel):
    """One notification to one subscription (a `webhook_delivery` row)."""

    delivery_id: int
