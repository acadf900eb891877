"""Webhook deliveries as the Standard Webhooks specification has them: the signature (by the
`standardwebhooks` package), and the one check of where a URL goes, made at subscription and
again before each delivery (OWASP API7:2023; DNS can change between the two)."""

from __future__ import annotations

import socket
from datetime import datetime

from standardwebhooks import Webhook

from policy.decisions import Decision
from policy.webhooks import check_addresses, check_url


def resolve(host: str) -> list[str]:
    """Every address `host` resolves to (an IP literal is itself); none if it does not."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []
    return sorted({str(info[4][0]) for info in infos})


def safe_url(url: str, *, allow_private: bool) -> Decision:
    """Whether a webhook may be sent to `url` now: its form, then every address it resolves to."""
    form, host = check_url(url, allow_private=allow_private)
    if not form.allowed:
        return form
    return check_addresses(host, resolve(host), allow_private=allow_private)


def signature(secrets: list[str], msg_id: str, at: datetime, body: str) -> str:
    """`webhook-signature`: one `v1,<base64>` per secret, space-separated — during a rotation
    both the new and the previous secret sign, and a receiver holding either one verifies."""
    return " ".join(Webhook(s).sign(msg_id, at, body) for s in secrets)
