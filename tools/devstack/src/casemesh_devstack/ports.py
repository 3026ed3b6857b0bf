"""Free TCP ports on the loopback interface for throwaway local servers."""

from __future__ import annotations

import socket
import threading

LOOPBACK = "127.0.0.1"

# Ports this process has handed out: the kernel may offer a port again once
# the probe that found it is closed, before the server it was meant for binds.
_GIVEN: set[int] = set()
_LOCK = threading.Lock()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing is listening on right now
    and that this process has not handed out before.

    The port is only reserved while this function holds it, so another process
    could take it before the caller binds; good enough for local test stacks.
    """
    with _LOCK:
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((LOOPBACK, 0))
                port: int = sock.getsockname()[1]
            if port not in _GIVEN:
                _GIVEN.add(port)
                return port
