"""How `scissor serve` listens: the exposure check, the listening socket, uvicorn's limits and timeouts.

Imports neither torch nor the service at module level, so every refusal here (an open API on a public
address, a port in use) comes before the heavy stack loads. Holds no service logic.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import signal
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import uvicorn

    from agent.settings import ApiOptions, Settings

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


class ListenRefused(RuntimeError):
    """`scissor serve` will not listen; the message says why and what to change (the CLI exits 2)."""


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address or name (127.0.0.0/8, ::1, localhost). No name is looked up:
    any other name, and every wildcard (0.0.0.0, ::), counts as reachable from outside."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def exposure_refusal(settings: Settings) -> str | None:
    """Why serving `settings.host` would expose an open API (None when it would not).

    An address other than loopback needs `SCISSOR_API_TOKEN`, unless `SCISSOR_ALLOW_UNAUTHENTICATED=true`
    says an open API there is meant (a trusted network, a proxy that authenticates).
    """
    if settings.api_token is not None or settings.allow_unauthenticated or is_loopback(settings.host):
        return None
    return (
        f"refusing to serve {settings.host}:{settings.port} without SCISSOR_API_TOKEN: anyone who reaches "
        "that address could add cameras and read their footage. Set SCISSOR_API_TOKEN (16+ characters), "
        "listen on 127.0.0.1, or set SCISSOR_ALLOW_UNAUTHENTICATED=true if an open API there is meant"
    )


def bind_listener(host: str, port: int) -> socket.socket:
    """Bind `host:port` (IPv6 when `host` holds a colon) before the service starts, without listening yet.

    Until uvicorn listens (asyncio's `create_server` calls `listen(backlog)`), a connection is refused at
    once, as it was before the socket existed: a health check polling during the model's load gets "refused",
    not a connection that hangs until its timeout.

    Raises:
        ListenRefused: the address is in use, not ours, or not permitted; the message names host and port.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # As uvicorn does: a restart may bind while the last run's connections sit in TIME_WAIT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ListenRefused(_bind_reason(host, port, exc)) from None
    return sock


def _bind_reason(host: str, port: int, exc: OSError) -> str:
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where}: the port is already in use (choose another: --port or SCISSOR_PORT)"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {where}: {host} is not an address of this machine (SCISSOR_HOST)"
    if exc.errno == errno.EACCES:
        return f"cannot listen on {where}: permission denied (ports below 1024 need privileges)"
    return f"cannot listen on {where}: {exc.strerror or exc}"


def head_timeout_protocol(timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with a deadline on each request's line and headers.

    uvicorn 0.54 arms its keep-alive timer only after a response, and any byte received cancels it; a
    connection that opens, or sends half a request line, and then stalls is never closed. Here every
    connection must complete a request head within `timeout_s` of opening, and again within `timeout_s` of
    each response; a body or a streamed response (/events) is not limited by it.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeadTimeoutH11Protocol(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None
        _timed_cycle: object = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_head_timer()
            super().connection_lost(exc)

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not None and self.cycle is not self._timed_cycle:
                self._timed_cycle = self.cycle  # a whole request head arrived: its handler takes over
                self._cancel_head_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_head_timer()  # the next request's head gets the same deadline

        def _arm_head_timer(self) -> None:
            self._cancel_head_timer()
            self._head_timer = self.loop.call_later(timeout_s, self._head_timed_out)

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return HeadTimeoutH11Protocol


def uvicorn_config(app: Any, api: ApiOptions, **extra: Any) -> uvicorn.Config:
    """uvicorn's Config with the API's connection limits and timeouts (`SCISSOR_API__*`)."""
    import uvicorn

    return uvicorn.Config(
        app,
        http=head_timeout_protocol(api.header_timeout_s),
        h11_max_incomplete_event_size=api.max_header_bytes,
        timeout_keep_alive=api.keepalive_timeout_s,
        limit_concurrency=api.max_concurrency,
        backlog=api.backlog,
        log_config=None,
        access_log=False,
        lifespan="on",
        **extra,
    )


def api_server(config: uvicorn.Config) -> uvicorn.Server:
    """A uvicorn Server for `config` whose SIGINT/SIGTERM only ask it to exit.

    uvicorn re-raises a caught signal once `serve()` returns, to end the process the default way; that would
    kill `scissor` before the service it serves has stopped (no "stopped" line, memory not saved) or raise
    KeyboardInterrupt through asyncio. Here the caller stops the service after `serve()` and exits 0; a second
    SIGINT still forces uvicorn's own exit.
    """
    import uvicorn

    class ApiServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.handle_exit, sig, None)
            try:
                yield
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)

    return ApiServer(config)
