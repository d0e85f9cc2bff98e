"""Free loopback ports for the real servers tests and benchmarks start."""

from __future__ import annotations

import socket

_handed_out: set[int] = set()  # never the same port twice in one process, even once it is free again


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago and that this process has not handed out
    before (two servers started back to back must not be given one port)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
