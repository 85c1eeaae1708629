"""A local HTTP server that speaks the parts of Twilio's and SendGrid's APIs that we call.

Tests point the real ``twilio`` and ``sendgrid`` libraries at it (loopback only) and assert on the
exact requests it received. Answers can be scripted per provider (an error status, a Twilio error
code, a Retry-After header), and the first request can be held until the test releases it, to
kill a worker in the middle of a send.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

TWILIO_SID = "AC" + "0" * 32
TWILIO_TOKEN = "test-token"
SENDGRID_KEY = "SG.test-key"


@dataclass(frozen=True)
class Recorded:
    provider: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def form(self) -> dict[str, str]:
        """Twilio's form-encoded fields, one value each."""
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}

    @property
    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


DROP = Answer(0)
"""Read the request, then close the connection without an answer: a send cut off mid-request."""


def twilio_error(status: int, code: int, retry_after: str | None = None) -> Answer:
    body = {
        "code": code,
        "message": f"error {code}",
        "status": status,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
    }
    return Answer(status, body, {"Retry-After": retry_after} if retry_after else {})


def sendgrid_error(
    status: int, field_name: str | None = None, retry_after: str | None = None
) -> Answer:
    body = {"errors": [{"message": "refused", "field": field_name, "help": None}]}
    return Answer(status, body, {"Retry-After": retry_after} if retry_after else {})


class FakeProviders:
    """Twilio at ``/2010-04-01/...`` and SendGrid at ``/v3/mail/send`` on one loopback port."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._scripts: dict[str, deque[Answer]] = {"twilio": deque(), "sendgrid": deque()}
        self._lock = threading.Lock()
        self.hold_first: dict[str, threading.Event] = {}
        self.arrived = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                fake._handle(self)

            def do_GET(self) -> None:
                fake._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeProviders:
        self._thread.start()
        return self

    def stop(self) -> None:
        for event in self.hold_first.values():
            event.set()
        self._server.shutdown()
        self._server.server_close()

    def script(self, provider: str, *answers: Answer) -> None:
        """Answer the next requests to ``provider`` with these, then succeed again."""
        with self._lock:
            self._scripts[provider].extend(answers)

    def hold(self, provider: str) -> threading.Event:
        """Hold the first request to ``provider`` until the returned event is set."""
        event = threading.Event()
        self.hold_first[provider] = event
        return event

    def of(self, provider: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.provider == provider]

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        path = handler.path
        provider = (
            "twilio"
            if path.startswith("/2010-04-01/")
            else ("sendgrid" if path.startswith("/v3/") else "other")
        )
        recorded = Recorded(provider, handler.command, path, dict(handler.headers.items()), body)
        with self._lock:
            first = not any(r.provider == provider for r in self.requests)
            self.requests.append(recorded)
            answer = (
                self._scripts.get(provider, deque()).popleft()
                if self._scripts.get(provider)
                else None
            )
        self.arrived.set()
        held = self.hold_first.get(provider)
        if first and held is not None:
            held.wait(timeout=600)
        if answer is None:
            answer = self._success(provider, recorded)
        if answer is None:
            answer = Answer(404, {"message": "not found"})
        if answer.status == 0:
            handler.close_connection = True
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
            return
        payload = json.dumps(answer.body).encode() if answer.body else b""
        try:
            handler.send_response(answer.status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            for key, value in answer.headers.items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client was killed while we held its request

    def _success(self, provider: str, recorded: Recorded) -> Answer | None:
        auth = recorded.headers.get("Authorization", "")
        if provider == "twilio" and recorded.path.endswith("/Messages.json"):
            import base64

            expected = base64.b64encode(f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()
            if auth != f"Basic {expected}":
                return twilio_error(401, 20003)
            form = recorded.form
            sid = "SM" + uuid.uuid4().hex
            return Answer(
                201,
                {
                    "sid": sid,
                    "status": "queued",
                    "to": form.get("To"),
                    "body": form.get("Body"),
                    "account_sid": TWILIO_SID,
                    "messaging_service_sid": form.get("MessagingServiceSid"),
                },
            )
        if provider == "sendgrid" and recorded.path == "/v3/mail/send":
            if auth != f"Bearer {SENDGRID_KEY}":
                return sendgrid_error(401)
            return Answer(202, {}, {"X-Message-Id": uuid.uuid4().hex})
        return None


@contextmanager
def fake_providers() -> Iterator[FakeProviders]:
    fake = FakeProviders().start()
    try:
        yield fake
    finally:
        fake.stop()
