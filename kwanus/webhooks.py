"""Webhook deliveries as the Standard Webhooks specification has them: the signature (by the
`standardwebhooks` package), and the one check of where a URL goes, made at subscription and
again before each delivery (OWASP API7:2023; DNS can change between the two). A delivery
connects to the address it checked (`Pinned`), never to a second answer of the resolver, so
a name rebound between the check and the connection changes nothing."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

from standardwebhooks import Webhook

from policy.decisions import Decision
from policy.webhooks import check_addresses, check_url


def resolve(host: str) -> list[str]:
    """Every address `host` resolves to, in the resolver's order of preference (an IP literal
    is itself); none if it does not."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class Pinned:
    """Where one attempt connects: `urls`, the URL with its host replaced by each checked
    address in the resolver's order (the next tried when one cannot be reached); the request
    still names the host (`host`, the Host header) and TLS still verifies the name's
    certificate (`server_name`, sent as SNI and checked against the certificate)."""

    urls: list[str]
    host: str
    server_name: str


def pin(url: str, *, allow_private: bool) -> tuple[Decision, Pinned | None]:
    """Whether a webhook may be sent to `url` now — its form, then every address its host
    resolves to — and, if so, the address to connect to."""
    form, host = check_url(url, allow_private=allow_private)
    if not form.allowed:
        return form, None
    addresses = resolve(host)
    where = check_addresses(host, addresses, allow_private=allow_private)
    if not where.allowed:
        return where, None
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port is not None else ""

    def at(address: str) -> str:
        netloc = (f"[{address}]" if ":" in address else address) + port
        return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))

    named = (f"[{host}]" if ":" in host else host) + port  # the Host header: the URL's own
    return where, Pinned(urls=[at(a) for a in addresses], host=named, server_name=host)


def safe_url(url: str, *, allow_private: bool) -> Decision:
    """Whether a webhook may be sent to `url` now (`pin`'s decision)."""
    decision, _ = pin(url, allow_private=allow_private)
    return decision


def signature(secrets: list[str], msg_id: str, at: datetime, body: str) -> str:
    """`webhook-signature`: one `v1,<base64>` per secret, space-separated — during a rotation
    both the new and the previous secret sign, and a receiver holding either one verifies."""
    return " ".join(Webhook(s).sign(msg_id, at, body) for s in secrets)
