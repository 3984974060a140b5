"""Watch streams: newline-delimited ``{"type","object"}`` events over a chunked HTTP response.

A stream ends after ``timeoutSeconds``, when the store closes the watch, when the server stops,
or when the client goes away (noticed on the next write, or within a second while idle). A resourceVersion older than the store's history answers one
``ERROR`` event carrying a 410 Expired Status, as the real server does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twin.api.messages import dumps, status_body
from twin.store import Store, Watch

DEFAULT_TIMEOUT_S = 1800.0
Write = Callable[[bytes], None]


@dataclass(eq=False)
class WatchStream:
    """A watch ready to be streamed; ``render`` turns a stored object into the event's object."""

    store: Store
    watch: Watch | None  # None: only the error event is sent
    timeout_s: float
    render: Callable[[dict[str, Any]], Any]
    error: dict[str, Any] | None = None

    def run(self, write: Write, client_gone: Callable[[], bool] = lambda: False) -> None:
        """Write events until the stream ends; ``write`` raises OSError when the client is gone, and
        ``client_gone`` is polled while idle so an abandoned watch ends without waiting for an event."""
        if self.watch is None:
            write(dumps({"type": "ERROR", "object": self.error or status_body(500, "watch failed")}) + b"\n")
            return
        deadline = time.monotonic() + self.timeout_s
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.watch.closed:
                    break
                ev = self.watch.next(timeout=min(remaining, 1.0))
                if ev is None:
                    if client_gone():
                        break
                    continue
                write(dumps({"type": ev.type, "object": self.render(ev.obj)}) + b"\n")
        finally:
            self.store.stop_watch(self.watch)

    def close(self) -> None:
        if self.watch is not None:
            self.store.stop_watch(self.watch)


def expired(message: str) -> dict[str, Any]:
    return status_body(410, message, "Expired")
