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
# IPv6 forms that carry an IPv4 address (NAT64, IPv4-compatible, IPv4-translated): judged by it.
EMBEDDING = tuple(ipaddress.ip_network(n) for n in ("64:ff9b::/96", "::/96", "::ffff:0:0:0/96"))
# Local-use NAT64 (RFC 8215): reaches whatever the operator's translator reaches.
LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")
MAX_URL = 2000
# Not public, whatever the running Python's `is_global` table says (it changes between patch
# releases): IPv6 site-local, documentation, SRv6 SIDs and the IETF protocol assignments.
NON_PUBLIC = tuple(
    ipaddress.ip_network(n) for n in ("fec0::/10", "3fff::/20", "5f00::/16", "192.0.0.0/24")
)


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
    try:  # one name everywhere after this: resolved, checked, sent as Host and TLS name
        host = parts.hostname.encode("idna").decode("ascii")
    except UnicodeError:
        return _refuse("a webhook URL names a valid host"), ""
    return Decision(), host


def check_addresses(host: str, addresses: Iterable[str], *, allow_private: bool) -> Decision:
    """Every address the host resolves to must be public (one private answer is enough to
    refuse: a client may connect to any of them)."""
    found = list(addresses)
    # One answer whether the name does not resolve or resolves inside: a caller must learn
    # neither which internal names exist nor where they point.
    refused = _refuse(f"{host} must resolve to public addresses only")
    if not found:
        return refused
    if allow_private:
        return Decision()
    for raw in found:
        ip = ipaddress.ip_address(raw.split("%", 1)[0])  # an IPv6 zone id is not the address
        if any(not _public(candidate) for candidate in _forms(ip)):
            return refused
    return Decision()


def _public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip in LOCAL_NAT64:
        return False
    if any(ip.version == net.version and ip in net for net in NON_PUBLIC):
        return False
    return ip.is_global and not ip.is_multicast


def _forms(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The address and every IPv4 address it carries (mapped, 6to4, NAT64, compatible)."""
    forms: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        forms += [a for a in (ip.ipv4_mapped, ip.sixtofour) if a is not None]
        if any(ip in net for net in EMBEDDING):
            forms.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return forms
