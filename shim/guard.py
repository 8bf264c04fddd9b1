"""Which requests may reach the routes at all: the Host they name, the page that sent them.

A `multipart/form-data` POST is a "simple" cross-origin request: a browser sends it
without a preflight, so any page the user visits could make whisperd transcribe.
Browsers say which page sent a request (`Origin`); SDKs, curl and Open-WebUI's
server side send none. So a request with an `Origin` outside `cors_origins` is
refused (403 `origin_not_allowed`), and one without is never affected. The
page at `/` is the exception: its own requests carry this server's own origin
(the scheme and the request's `Host`), which is always allowed.

DNS rebinding points a name the attacker owns at 127.0.0.1, making the page
same-origin with the shim; the browser still sends the attacker's name as `Host`.
So `Host` must be a loopback name, the configured `host`, a name in
`allowed_hosts`, or an IP literal (a rebound name is never one) - otherwise
421 `host_not_allowed`. `allowed_hosts = *` turns the check off.
"""

from __future__ import annotations

import functools
import ipaddress

from aiohttp import web

from shim.cors import Cors
from shim.errors import HTTPError

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "127.0.0.1", "::1"})


def parse_hosts(text: str) -> frozenset[str]:
    """`"stt.example.org, Box.lan"` → `{"stt.example.org", "box.lan"}` (names compare case-insensitively)."""
    return frozenset(h.strip().lower().rstrip(".") for h in text.replace(" ", ",").split(",") if h.strip())


def host_name(header: str) -> str:
    """The name in a Host header, without its port: `[::1]:5000` → `::1`, `A.example:80` → `a.example`."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    if header.count(":") > 1:  # a bare IPv6 address (not valid in Host, but unambiguous)
        return header
    return header.partition(":")[0].rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def same_origin(origin: str, request: web.Request, host: str | None) -> bool:
    """Whether `origin` is the origin the request was sent to: the page at `/` calling its own API.

    A page elsewhere has its own host in `Origin`, never this `Host`; a rebound name is refused
    by the Host check before this. Behind a TLS proxy the shim sees http, so the scheme the
    proxy reports (`X-Forwarded-Proto`) counts too: a page cannot set that header cross-origin
    without a preflight, which is refused.
    """
    if not host:
        return False
    schemes = {request.scheme, request.headers.get("X-Forwarded-Proto", "").strip().lower()}
    scheme, sep, rest = origin.strip().lower().partition("://")
    return bool(sep) and scheme in schemes and rest == host.strip().lower()


class Guard:
    def __init__(self, listen_host: str, allowed_hosts: frozenset[str], cors: Cors) -> None:
        self.any_host = "*" in allowed_hosts
        self.hosts = LOOPBACK_NAMES | allowed_hosts | {host_name(listen_host)}
        self.cors = cors
        # Clients send one Host header value over and over: the answer is a lookup after the first.
        self.host_allowed = functools.lru_cache(maxsize=256)(self.host_allowed)  # type: ignore[method-assign]

    def host_allowed(self, header: str | None) -> bool:
        if self.any_host or not header:  # no Host at all: HTTP/1.0, never a browser
            return True
        name = host_name(header)
        return name in self.hosts or name.endswith(".localhost") or _is_ip(name)

    def check(self, request: web.Request) -> None:
        """Raise the refusal for a request from a foreign page or under a foreign name."""
        host = request.headers.get("Host")
        if not self.host_allowed(host):
            raise HTTPError("host_not_allowed",
                            f"this server does not answer to the name {host_name(host or '')[:100]!r}: "
                            "add it to allowed_hosts (docs/api.md, 'Behind a reverse proxy')")
        origin = request.headers.get("Origin")
        if origin is not None and not (same_origin(origin, request, host)
                                       or self.cors.allowed(origin.rstrip("/"))):
            raise HTTPError("origin_not_allowed",
                            f"requests from the web page at {origin[:100]!r} are not allowed: "
                            "add its origin to cors_origins to let it use this server")
