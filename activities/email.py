"""Email through SendGrid's official library: HTML and plain text, one request per message.

The outbox row's id travels in ``custom_args`` so that SendGrid's event webhook can be matched to
the row; nothing else does: no name, account number or amount ever goes into custom arguments or
categories, which SendGrid keeps and shows in its dashboards. Every email carries an unsubscribe
link (12 CFR 1006.6(e)): ours when the API has a public address, SendGrid's subscription tracking
otherwise. Sandbox mode validates the request without delivering, for staging.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
import urllib.error
from collections.abc import Callable
from html import escape
from typing import Any

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    Category,
    ClickTracking,
    CustomArg,
    Header,
    Mail,
    MailSettings,
    OpenTracking,
    SandBoxMode,
    SubscriptionTracking,
    TrackingSettings,
)

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

PROVIDER = "sendgrid"
CATEGORY = "dunning"
REQUEST_TIMEOUT_SECONDS = 20.0

_RECIPIENT_FIELDS = ("personalizations.0.to", "to")


class SendGridSender:
    """Sends email through an injected ``SendGridAPIClient``."""

    name = PROVIDER
    local = False
    network = True  # a request over the internet: a batch sends several at once

    def __init__(
        self,
        client: SendGridAPIClient,
        from_email: str,
        *,
        from_name: str = "",
        sandbox_mode: bool = False,
        unsubscribe_url: str = "",
        unsubscribe_token: Callable[[str], str] | None = None,
    ) -> None:
        """
        Args:
            client: the SendGrid client; its ``host`` may point at a local test server.
            from_email: a verified sender of the SendGrid account.
            from_name: the sender's name when a message names none (the deployment's practice);
                a step's email carries its policy practice's name (``OutgoingMessage.sender_name``).
            sandbox_mode: SendGrid validates but does not deliver.
            unsubscribe_url: a template with ``{id}``, served by our API
                (``/unsubscribe/email/{id}``); empty uses SendGrid's own subscription tracking.
            unsubscribe_token: makes the ``{id}`` of a message from its outbox id (a signed
                token, ``services.unsubscribe.sign``); without it the bare outbox id.
        """
        self._client = client
        self._client.client.timeout = REQUEST_TIMEOUT_SECONDS
        self._from = (from_email, from_name or None)
        self._sandbox = sandbox_mode
        self._unsubscribe_url = unsubscribe_url
        self._unsubscribe_token = unsubscribe_token or str

    def build(self, message: OutgoingMessage) -> Mail:
        """The request body for ``message``: plain text and HTML, with its unsubscribe link."""
        link = self._unsubscribe_url.format(id=self._unsubscribe_token(message.communication_id))
        text = message.body.rstrip() + "\n"
        html = message.html or html_from_text(message.body)
        if link:
            text += f"\nTo stop receiving these emails: {link}\n"
            html += (
                f'<p style="font-size:12px;color:#555">To stop receiving these emails, '
                f'<a href="{escape(link)}">unsubscribe here</a>.</p>'
            )
        from_email, default_name = self._from
        mail = Mail(
            from_email=(from_email, message.sender_name or default_name),
            to_emails=message.recipient,
            subject=message.subject or "",
            plain_text_content=text,
            html_content=f"<html><body>{html}</body></html>",
        )
        mail.custom_arg = CustomArg("outbox_id", message.communication_id)
        mail.category = Category(CATEGORY)
        tracking = TrackingSettings()
        # Open pixels and rewritten links would tell a third party when a patient reads a bill.
        tracking.click_tracking = ClickTracking(False, False)
        tracking.open_tracking = OpenTracking(False)
        if link:
            mail.header = Header("List-Unsubscribe", f"<{link}>")
            mail.header = Header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
        else:
            tracking.subscription_tracking = SubscriptionTracking(True)
        mail.tracking_settings = tracking
        if self._sandbox:
            settings = MailSettings()
            settings.sandbox_mode = SandBoxMode(True)
            mail.mail_settings = settings
        return mail

    def send(self, message: OutgoingMessage) -> Delivery:
        mail = self.build(message)
        try:
            response = self._client.send(mail)
        except HTTPError as exc:
            raise classify_error(exc) from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ConnectionRefusedError | socket.gaierror):
                raise ProviderBusy(
                    "email provider unreachable before sending", provider=PROVIDER, code="connect"
                ) from None
            raise ProviderUnreachable(
                "no answer from the email provider", provider=PROVIDER, code="network"
            ) from None
        except (TimeoutError, ConnectionError) as exc:
            raise ProviderUnreachable(
                "no answer from the email provider", provider=PROVIDER, code=type(exc).__name__
            ) from None
        headers = response.headers
        message_id = headers.get("X-Message-Id") if headers is not None else None
        return Delivery(PROVIDER, message_id or ("sandbox" if self._sandbox else ""))

    def confirm(self, message: OutgoingMessage) -> Delivery | None:
        """SendGrid offers no lookup by our id: a send cut off half-way stays unconfirmed."""
        return None


def classify_error(exc: HTTPError) -> SendError:
    """A SendGrid error response as the failure type the step decides on. No text is copied."""
    status = int(getattr(exc, "status_code", 0) or 0)
    headers: Any = getattr(exc, "headers", None) or {}
    code = str(status)
    if status in (401, 403):
        return ProviderAuthFailed(
            "email provider refused our credentials", provider=PROVIDER, code=code
        )
    if status == 429 or status >= 500:
        retry = parse_retry_after(headers.get("Retry-After"))
        if retry is None and headers.get("X-RateLimit-Reset"):
            reset = headers.get("X-RateLimit-Reset")
            if str(reset).isdigit():
                retry = dt.timedelta(seconds=max(int(reset) - int(time.time()), 1))
        return ProviderBusy(
            "email provider asked to retry later",
            provider=PROVIDER,
            code=code,
            retry_after=retry,
            rate_limited=status == 429,
        )
    if status == 400 and _recipient_error(getattr(exc, "body", b"")):
        return RecipientRejected(
            "email provider refused the recipient address",
            provider=PROVIDER,
            code=code,
            deliverability="bounced",
        )
    return SendError("email provider refused the request", provider=PROVIDER, code=code)


def _recipient_error(body: bytes | str | None) -> bool:
    try:
        errors = json.loads(body or b"{}").get("errors", [])
    except (ValueError, AttributeError):
        return False
    return any(
        str(e.get("field") or "").startswith(_RECIPIENT_FIELDS)
        for e in errors
        if isinstance(e, dict)
    )


def html_from_text(text: str) -> str:
    """A plain message as simple HTML paragraphs, escaped."""
    paragraphs = [p.strip() for p in text.strip().split("\n\n") if p.strip()]
    return "".join(f"<p>{escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs)
