"""The system's randomness for nonces, read a block at a time.

Each `os.urandom` call lets go of the interpreter's lock for its system
call, and a thread that lets go under load waits for the other threads' turn
(up to the switch interval) to take it back: sealing an event's texts, a
read each, spent more time waiting so than encrypting. `take` hands out
slices of a block read once for many calls instead. The bytes are the
system's own, each handed out once:

- slices are taken under a lock;
- a child process made by `fork` forgets its parent's block (a nonce
  handed out in both would be the same nonce under the same key, which
  AES-GCM does not survive).

For nonces only, which are public: a secret taken from a block would sit in
memory beside the bytes handed out before it for as long as the block
lasts. Keys are read from the system (`os.urandom`) each. A process copied
whole while running (a virtual machine's snapshot started twice) would hand
out the rest of its block twice; the block is small (85 nonces) to keep that
short.
"""

from __future__ import annotations

import os
import threading

# Bytes read from the system at once: 85 nonces of 12 bytes.
BLOCK = 1024


class _Block:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bytes = b""
        self._at = 0

    def take(self, size: int) -> bytes:
        if size > BLOCK // 4:
            return os.urandom(size)
        with self._lock:
            if self._at + size > len(self._bytes):
                self._bytes, self._at = os.urandom(BLOCK), 0
            taken = self._bytes[self._at : self._at + size]
            self._at += size
            return taken

    def forget(self) -> None:
        # After a fork: a new lock too (the parent's may have been held).
        self._lock = threading.Lock()
        self._bytes, self._at = b"", 0


_block = _Block()
os.register_at_fork(after_in_child=_block.forget)


def take(size: int) -> bytes:
    """`size` random bytes from the system, never handed out before (a
    request of over a quarter of a block is read from the system itself)."""
    return _block.take(size)
