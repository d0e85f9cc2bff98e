"""The outermost layer of the HTTP API: the Host header checked against the trusted hosts, and the security
headers every response carries. Sees no body and no token; never redirects.

A browser page on another site can reach a loopback-bound API through DNS rebinding (its own name resolving
to 127.0.0.1); its requests still carry that name as Host, which is why the names are checked here, before
routing and auth.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent.errors import UntrustedHost
from agent.settings import Settings

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})  # names of "all interfaces", compared only
# Added to every response that does not set its own (the console's pages set their own CSP and caching).
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cache-control", b"no-store"),  # API answers hold camera data: never kept by a browser or a proxy
    (b"cross-origin-resource-policy", b"same-origin"),
)


def trusted_hosts(settings: Settings) -> frozenset[str] | None:
    """The Host names the API answers (lower case, no port), or None for any.

    `SCISSOR_API__TRUSTED_HOSTS` when set ('*' in it: any); else the listen address and the loopback names,
    or any host when listening on every interface (its names are the clients' to know; such a bind needs
    the API token, which a rebinding page cannot send).
    """
    listed = [host.strip().strip("[]").lower().rstrip(".") for host in settings.api.trusted_hosts]
    if listed:
        return None if "*" in listed else frozenset(listed)
    bind = settings.host.strip().strip("[]").lower()
    if bind in WILDCARD_BINDS:
        return None
    return frozenset((bind, *LOOPBACK_HOSTS))


def host_name(header: str) -> str:
    """A Host header's name without its port, lower case: `[::1]:8080` -> `::1`, `Cam.LAN.:80` -> `cam.lan`
    (the name as the client typed it, a trailing dot dropped)."""
    value = header.strip().lower()
    if value.startswith("["):  # an IPv6 literal, as RFC 3986 writes it in a URL's authority
        return value[1 : value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        value = value.partition(":")[0]
    return value.rstrip(".")


def _canonical(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name))  # ::0001 and ::1 are one address
    except ValueError:
        return name


class HostAndHeaders:
    """ASGI middleware: 400 `UntrustedHost` for a Host outside `trusted` (None: any), then every response
    start gets `SECURITY_HEADERS` it does not already carry.

    Args:
        app: the application it wraps (outermost: error pages get the headers too).
        trusted: names from `trusted_hosts`.
    """

    def __init__(self, app: ASGIApp, trusted: Iterable[str] | None) -> None:
        self.app = app
        self.trusted = None if trusted is None else frozenset(_canonical(h) for h in trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in SECURITY_HEADERS if name not in present]
                message = {**message, "headers": headers}
            await send(message)

        if self.trusted is not None and not self._trusted(scope):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            refused = UntrustedHost()
            await JSONResponse(refused.to_dict(), status_code=refused.status)(scope, receive, with_headers)
            return
        await self.app(scope, receive, with_headers)

    def _trusted(self, scope: Scope) -> bool:
        assert self.trusted is not None
        header = Headers(scope=scope).get("host")
        return header is not None and _canonical(host_name(header)) in self.trusted
