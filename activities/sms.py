"""SMS through Twilio's official library, and the keywords patients text back.

Sends through a Messaging Service (preferred: Advanced Opt-Out handles STOP at the carrier edge)
or a from-number, with a status callback that carries only the outbox id. Texts are minimum
necessary (HIPAA 45 CFR 164.502(b)): the templates give the practice, a reference and how to pay;
this sender adds the opt-out line if a template forgot it (12 CFR 1006.6(e)).

Twilio's refusals map to what the step must do: 21610 (the number replied STOP) opts the channel
out, 21211/21614/21217/21612/21408... (invalid, landline, unreachable) mark it undeliverable, and
both fall back to the next channel. 20003/401 is our credentials; 429/20429 and 5xx are retried
after Retry-After. Twilio's own logging is kept quiet: it would print numbers and message bodies.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import requests
from sqlalchemy.orm import Session
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from activities.channels import (
    Delivery,
    OutgoingMessage,
    ProviderAuthFailed,
    ProviderBusy,
    ProviderUnreachable,
    RecipientRejected,
    SendError,
    parse_retry_after,
)
from models.orm import ChannelPreference, Deliverability, Guarantor
from models.policy import Channel

PROVIDER = "twilio"
TWILIO_API = "https://api.twilio.com"
REQUEST_TIMEOUT_SECONDS = 20.0
OPT_OUT_LINE = "Reply STOP to opt out."

OPTED_OUT_CODES = frozenset({21610})
"""Twilio: the recipient replied STOP to this sender."""
UNDELIVERABLE_CODES = frozenset({21211, 21214, 21217, 21401, 21407, 21408, 21421, 21612, 21614})
"""Twilio: invalid number, not a mobile number (a landline), or not reachable by SMS."""
AUTH_CODES = frozenset({20003, 20005})
RATE_LIMIT_CODES = frozenset({20429, 14107})
ASYNC_UNDELIVERABLE_CODES = frozenset({30003, 30005, 30006})
"""Status callback errors: unreachable handset, unknown number, landline or unreachable carrier."""

_quiet = logging.getLogger("dunning.twilio.http")
_quiet.setLevel(logging.WARNING)


class LocalTwilioHttpClient(TwilioHttpClient):  # type: ignore[misc]
    """Twilio's HTTP client with a base URL override and no logging of requests or bodies.

    The override sends the API calls to a local test server that speaks Twilio's API. The last
    response is kept per thread, because activities share one client across threads and a
    rate-limited answer's Retry-After header is read after the SDK raised.
    """

    def __init__(self, base_url: str = "", timeout: float = REQUEST_TIMEOUT_SECONDS) -> None:
        super().__init__(timeout=timeout, logger=_quiet)
        self._base = base_url.rstrip("/")
        self._local = threading.local()

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        if self._base and url.startswith(TWILIO_API):
            url = self._base + url[len(TWILIO_API) :]
        self._local.last = None
        response = super().request(
            method, url, params, data, headers, auth, timeout, allow_redirects
        )
        self._local.last = response
        return response

    def last_header(self, name: str) -> str | None:
        response: Response | None = getattr(self._local, "last", None)
        if response is None or response.headers is None:
            return None
        value = response.headers.get(name)
        return str(value) if value is not None else None

    def log_request(self, kwargs: dict[str, Any]) -> None:
        """Twilio logs the form fields: the number and the text. Not here."""

    def log_response(self, status_code: int, response: Any) -> None:
        """Twilio logs the response body, which quotes the number and the text. Not here."""


def make_client(account_sid: str, auth_token: str, base_url: str = "") -> Client:
    """A Twilio client whose HTTP client honours ``base_url`` and logs nothing personal."""
    return Client(account_sid, auth_token, http_client=LocalTwilioHttpClient(base_url))


class TwilioSender:
    """Sends SMS through an injected Twilio ``Client``."""

    name = PROVIDER
    local = False
    network = True  # a request over the internet: a batch sends several at once

    def __init__(
        self,
        client: Client,
        *,
        messaging_service_sid: str = "",
        from_number: str = "",
        status_callback_url: str = "",
    ) -> None:
        if not (messaging_service_sid or from_number):
            raise ValueError("twilio: set messaging_service_sid or from_number")
        self._client = client
        self._service = messaging_service_sid
        self._from = from_number
        self._callback = status_callback_url

    def callback_url(self, communication_id: str) -> str:
        """The status callback address, naming the outbox row and nothing else."""
        if not self._callback:
            return ""
        parts = urlsplit(self._callback)
        query = "&".join(q for q in (parts.query, urlencode({"outbox_id": communication_id})) if q)
        return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))

    def send(self, message: OutgoingMessage) -> Delivery:
        body = message.body.strip()
        if "STOP" not in body.upper():
            body = f"{body} {OPT_OUT_LINE}"
        kwargs: dict[str, Any] = {"to": message.recipient, "body": body}
        if self._service:
            kwargs["messaging_service_sid"] = self._service
        else:
            kwargs["from_"] = self._from
        callback = self.callback_url(message.communication_id)
        if callback:
            kwargs["status_callback"] = callback
        try:
            sent = self._client.messages.create(**kwargs)
        except TwilioRestException as exc:
            raise self._classify(exc) from None
        except (requests.ConnectTimeout, requests.exceptions.InvalidURL) as exc:
            raise ProviderBusy(
                "sms provider unreachable before sending",
                provider=PROVIDER,
                code=type(exc).__name__,
            ) from None
        except requests.ConnectionError as exc:
            if "NewConnectionError" in repr(exc.args) or "Connection refused" in repr(exc.args):
                raise ProviderBusy(
                    "sms provider unreachable before sending", provider=PROVIDER, code="connect"
                ) from None
            raise ProviderUnreachable(
                "no answer from the sms provider", provider=PROVIDER, code="network"
            ) from None
        except requests.Timeout:
            raise ProviderUnreachable(
                "no answer from the sms provider", provider=PROVIDER, code="timeout"
            ) from None
        return Delivery(PROVIDER, str(sent.sid or ""))

    def confirm(self, message: OutgoingMessage) -> Delivery | None:
        """Twilio cannot be asked for a message by our id: a cut-off send stays unconfirmed."""
        return None

    def _classify(self, exc: TwilioRestException) -> SendError:
        code = int(exc.code) if exc.code is not None else 0
        status = int(exc.status or 0)
        label = str(code or status)
        if code in OPTED_OUT_CODES:
            return RecipientRejected(
                "recipient unsubscribed from texts",
                provider=PROVIDER,
                code=label,
                deliverability="ok",
                opted_out=True,
            )
        if code in UNDELIVERABLE_CODES:
            return RecipientRejected(
                "recipient number cannot receive texts",
                provider=PROVIDER,
                code=label,
                deliverability="undeliverable",
            )
        if status in (401, 403) or code in AUTH_CODES:
            return ProviderAuthFailed(
                "sms provider refused our credentials", provider=PROVIDER, code=label
            )
        if status == 429 or code in RATE_LIMIT_CODES or status >= 500:
            http = self._client.http_client
            header = (
                http.last_header("Retry-After") if isinstance(http, LocalTwilioHttpClient) else None
            )
            return ProviderBusy(
                "sms provider asked to retry later",
                provider=PROVIDER,
                code=label,
                retry_after=parse_retry_after(header),
                rate_limited=status == 429 or code in RATE_LIMIT_CODES,
            )
        return SendError("sms provider refused the request", provider=PROVIDER, code=label)


# What patients text back is understood by models.replies (revocation understood, not matched).


def apply_status(session: Session, guarantor: Guarantor, error_code: str, at: dt.datetime) -> bool:
    """A delivery report's error for a text already sent: True if it marked SMS undeliverable.

    Needs ``guarantor.channels`` loaded. Never commits.
    """
    if not error_code.isdigit() or int(error_code) not in ASYNC_UNDELIVERABLE_CODES | {
        *UNDELIVERABLE_CODES
    }:
        return False
    pref = next((p for p in guarantor.channels if p.channel is Channel.SMS), None)
    if pref is None:
        pref = ChannelPreference(channel=Channel.SMS, consent=False)
        guarantor.channels.append(pref)
    pref.deliverability = Deliverability.UNDELIVERABLE
    pref.updated_at = at
    return True
