"""Free TCP ports on the loopback interface for throwaway local servers."""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing is listening on right now.

    The port is only reserved while this function holds it, so another process
    could take it before the caller binds; good enough for local test stacks.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port
