"""Documentation that is checked (M-7.1, E-2.6): each document a partner reports is a reference
to it — an `https://` or `http://` URL with a host, or a path in its repository — and each
document is its own: a reference given for two documents is refused on the second."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from policy.decisions import Decision, Finding

NOT_A_REFERENCE = (
    "not a reference: an https:// or http:// URL with a host, or a repository path "
    "(relative, no '..', no spaces, e.g. docs/migration.md#steps)"
)

# A relative POSIX path of plain segments (a directory's may end in `/`), optionally `#anchor`
# (RFC 3986 fragment characters).
_PATH = re.compile(
    r"(?P<path>[A-Za-z0-9._@+-]+(?:/[A-Za-z0-9._@+-]+)*/?)(?:#[A-Za-z0-9._~:@!$&'()*+,;=%/?-]+)?"
)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")


# A scheme's default port names the same server as no port (RFC 3986, 6.2.3).
_DEFAULT_PORT = {"http": 80, "https": 443}


def _without_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4: `/a/./b` and `/a/x/../b` are `/a/b`."""
    out: list[str] = []
    segments = path.split("/")
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment in (".", ".."):
            if segment == ".." and len(out) > 1:
                out.pop()
            if last:
                out.append("")
            continue
        out.append(segment)
    return "/".join(out)


def _url_key(value: str) -> str | None:
    """The URL as compared — scheme and host lower-cased, a fully qualified host's trailing dot,
    the scheme's default port and `.` / `..` path segments dropped (RFC 3986, 6.2.2-6.2.3) — or
    None if it is not an http(s) URL with a host."""
    try:
        parts = urlsplit(value)
        port = parts.port  # a port that is not a number raises here
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if scheme not in ("http", "https"):
        return None
    if _HOST.fullmatch(host):
        host = host.rstrip(".")  # `example.com.` is `example.com`
    else:  # an IPv6 address (urlsplit strips its brackets)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return None
        host = f"[{host}]"
    userinfo, _, _ = parts.netloc.rpartition("@")
    hostport = host if port in (None, _DEFAULT_PORT[scheme]) else f"{host}:{port}"
    netloc = f"{userinfo}@{hostport}" if userinfo else hostport
    path = _without_dot_segments(parts.path) or "/"  # `https://x` is `https://x/`
    return parts._replace(scheme=scheme, netloc=netloc, path=path).geturl()


def reference_key(value: str) -> str | None:
    """What a reference is compared by — a path without `.` segments or a trailing `/`, a URL
    as `_url_key` has it (its anchor kept: two sections are two documents) — or None if
    `value` is not a reference."""
    value = value.strip()
    if not value or any(c.isspace() or not c.isprintable() for c in value):
        return None
    if "://" in value:
        return _url_key(value)
    path = _PATH.fullmatch(value)
    if path is None:
        return None
    segments = path["path"].rstrip("/").split("/")
    if ".." in segments:
        return None
    # `./docs/a.md`, `docs/./a.md` and `docs/a.md/` are `docs/a.md`: one document.
    plain = "/".join(s for s in segments if s != ".") or "."
    return plain + value[path.end("path") :]


def check_references(documents: Mapping[str, str | None], *, rule: str) -> Decision:
    """Each given document (in `documents`' order; None or blank is not given — a missing
    required one is its form's to name) is a reference, and none repeats another's: the second
    and later are refused naming the first."""
    findings: list[Finding] = []
    first: dict[str, str] = {}  # reference key -> the field that gave it first
    for field, value in documents.items():
        if value is None or not value.strip():
            continue
        key = reference_key(value)
        if key is None:
            findings.append(Finding(field=field, rule=rule, message=NOT_A_REFERENCE))
        elif key in first:
            message = f"the same reference as {first[key]}: each document is its own"
            findings.append(Finding(field=field, rule=rule, message=message))
        else:
            first[key] = field
    return Decision(findings=tuple(findings))
