"""Where a webhook may point (OWASP API7:2023, server-side request forgery): an `https` URL whose
host resolves only to public addresses — never loopback, private, link-local (the cloud
metadata service at 169.254.169.254), multicast, reserved or unspecified ones. A development
setting admits `http` and private addresses. Pure: the caller resolves the host (at
subscription and again at each delivery, since DNS can change) and hands the addresses in."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from policy.decisions import Decision, Finding

RULE = "API7:2023"
MAX_URL = 2000


def _refuse(message: str) -> Decision:
    return Decision(findings=(Finding(field="url", rule=RULE, message=message),))


def check_url(url: str, *, allow_private: bool) -> tuple[Decision, str]:
    """The URL's form: `https` (or `http` in development), a host, no credentials in it.
    Returns the decision and the host to resolve."""
    if len(url) > MAX_URL:
        return _refuse(f"a webhook URL is at most {MAX_URL} characters"), ""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a port out of range raises here)
    except ValueError as exc:
        return _refuse(f"not a URL: {exc}"), ""
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes:
        return _refuse("a webhook URL must be https"), ""
    if not parts.hostname:
        return _refuse("a webhook URL names a host"), ""
    if parts.username or parts.password:
        return _refuse("a webhook URL carries no credentials"), ""
    return Decision(), parts.hostname


def check_addresses(host: str, addresses: Iterable[str], *, allow_private: bool) -> Decision:
    """Every address the host resolves to must be public (one private answer is enough to
    refuse: a client may connect to any of them)."""
    found = list(addresses)
    if not found:
        return _refuse(f"{host} does not resolve")
    if allow_private:
        return Decision()
    for raw in found:
        ip = ipaddress.ip_address(raw.split("%", 1)[0])  # an IPv6 zone id is not the address
        mapped = getattr(ip, "ipv4_mapped", None) or getattr(ip, "sixtofour", None)
        for candidate in (ip, mapped):
            if candidate is not None and (not candidate.is_global or candidate.is_multicast):
                return _refuse(
                    f"{host} resolves to {raw}, a loopback, private, link-local or reserved "
                    "address: webhooks go to public addresses only"
                )
    return Decision()
