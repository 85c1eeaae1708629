"""The API's outer edge: a request body size limit, throttled authentication failures, and
refusals counted rather than written one by one to the audit trail.

Both counters live in the process (one ``dunning run`` or ``dunning api``): enough to stop a
client guessing tokens or flooding the audit trail, without a shared store.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

Clock = Callable[[], float]


class BodyLimit:
    """ASGI middleware: 413 for a request body above ``max_bytes``, by its Content-Length or, for
    a chunked body, as soon as the bytes received pass the limit (nothing more is read)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope["headers"]:
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _too_large(send, self.max_bytes, status=400)
                    return
                if declared > self.max_bytes:
                    await _too_large(send, self.max_bytes)
                    return
        received = 0
        too_large = False
        answered = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal answered
            if too_large:
                # Whatever the app makes of the interrupted body, the answer is 413.
                if not answered and message["type"] == "http.response.start":
                    answered = True
                    await _too_large(send, self.max_bytes)
                return
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not too_large:
                raise
        if too_large and not answered:
            await _too_large(send, self.max_bytes)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send: Send, limit: int, status: int = 413) -> None:
    detail = f"request body larger than {limit} bytes" if status == 413 else "bad Content-Length"
    body = ('{"detail": "' + detail + '"}').encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


@dataclass
class AuthThrottle:
    """Failed authentications per client: past ``max_failures`` within ``window_seconds`` the
    client is refused (429) until the window has passed, without any token being looked up."""

    max_failures: int
    window_seconds: float
    clock: Clock = time.monotonic
    _failures: dict[str, list[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def retry_after(self, client: str) -> int:
        """Seconds the client must wait before trying again; 0 when it may try now."""
        with self._lock:
            recent = self._recent(client)
            if len(recent) < self.max_failures:
                return 0
            return max(
                1, math.ceil(recent[-self.max_failures] + self.window_seconds - self.clock())
            )

    def failed(self, client: str) -> int:
        """Count a failure; returns the failures within the window."""
        with self._lock:
            recent = self._recent(client)
            recent.append(self.clock())
            if len(self._failures) > 10_000:  # a flood of clients: forget the oldest half
                for key in list(self._failures)[:5_000]:
                    del self._failures[key]
            return len(recent)

    def _recent(self, client: str) -> list[float]:
        cutoff = self.clock() - self.window_seconds
        recent = [t for t in self._failures.get(client, []) if t > cutoff]
        self._failures[client] = recent
        return recent


@dataclass
class AuditLimiter:
    """At most one audit row per key (who, what was refused) per window; the next admitted row
    carries how many were suppressed in between."""

    window_seconds: float
    clock: Clock = time.monotonic
    _last: dict[str, float] = field(default_factory=dict)
    _suppressed: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def admit(self, key: str) -> int | None:
        """None: do not write this one (counted); otherwise write it, with the number suppressed
        since the last row written for ``key``."""
        with self._lock:
            now = self.clock()
            last = self._last.get(key)
            if last is not None and now - last < self.window_seconds:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return None
            self._last[key] = now
            if len(self._last) > 10_000:
                for old in list(self._last)[:5_000]:
                    self._last.pop(old, None)
                    self._suppressed.pop(old, None)
            return self._suppressed.pop(key, 0)
