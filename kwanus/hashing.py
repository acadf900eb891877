"""What identifies submitted content: the hash a start's memo carries to tell the same request
sent again from another under the same id (P-1), and a proposal's hash on its decision record."""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel


def canonical_sha256(model: BaseModel) -> str:
    """sha256 of a model's canonical JSON (sorted keys, no whitespace): the same content gives
    the same hash on every machine, so it identifies what was submitted."""
    doc = model.model_dump(mode="json")
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()
