"""May this step go out now, and on which channel: the decision core's rules on fresh data.

Nothing is decided here that the schedule does not decide the same way: the guarantor's channels
are read from the database at the moment of sending and reduced to the same
:class:`~models.payloads.ContactProfile` the workflow routes by, then the decision core's own
functions judge them (consent, opt-out, deliverability: :func:`workflows.decisions.channel_block`;
allowed hours in every known location: :func:`workflows.decisions.quiet_hours_until`). Rolling
caps, spacing and one message a day are counted per person across the guarantor's accounts
(:func:`workflows.person.person_free_at`, applied by the pipeline to one query per batch).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session
from temporalio.exceptions import ApplicationError

from models.orm import ChannelPreference, Deliverability, Guarantor
from models.orm.repositories import contact_profile
from models.payloads import ContactProfile
from models.policy import Channel, Policy
from services.protections import confidential_address_lines
from workflows.decisions import quiet_hours_until


def profile_now(policy: Policy, guarantor: Guarantor) -> ContactProfile:
    """The guarantor's contact situation as stored now (needs ``guarantor.channels`` loaded)."""
    return contact_profile(guarantor, policy.contact.sms_requires_consent)


def check_quiet_hours(policy: Policy, profile: ContactProfile, now: dt.datetime) -> None:
    """Checked again at the moment of sending: a late worker must not text at 23:00.

    Raises ``QuietHours`` with the delay until the allowed hours open in every known location.
    """
    opens = quiet_hours_until(policy, profile, now)
    if opens is None:
        return
    raise ApplicationError(
        "outside the patient's allowed contact hours",
        type="QuietHours",
        next_retry_delay=opens - now,
    )


def contact_point(guarantor: Guarantor, channel: Channel) -> str:
    if channel is Channel.EMAIL:
        return guarantor.email or ""
    if channel in (Channel.SMS, Channel.CALL):
        return guarantor.phone or ""
    if not (guarantor.address_line1 and guarantor.city and guarantor.postal_code):
        return ""
    return f"{guarantor.first_name} {guarantor.last_name}, " + ", ".join(address_lines(guarantor))


def address_lines(guarantor: Guarantor) -> list[str]:
    confidential = confidential_address_lines(guarantor)  # HIPAA 164.522(b): only there
    if confidential is not None:
        return confidential
    city = f"{guarantor.city}, {guarantor.region or ''} {guarantor.postal_code}"
    parts = [guarantor.address_line1 or "", guarantor.address_line2 or "", " ".join(city.split())]
    return [p for p in parts if p.strip()]


def mark_channel(
    session: Session,
    guarantor: Guarantor,
    channel: Channel,
    at: dt.datetime,
    *,
    deliverability: Deliverability | None = None,
    opted_out: bool = False,
) -> None:
    """Record that a channel of ``guarantor`` bounced, is undeliverable, or was opted out of.

    Used by the send itself and by whatever learns it later (a provider's webhook, a returned
    letter entered by staff). Needs ``guarantor.channels`` loaded. Never commits.
    """
    pref = next((p for p in guarantor.channels if p.channel is channel), None)
    if pref is None:
        pref = ChannelPreference(channel=channel, consent=False)
        guarantor.channels.append(pref)
    if deliverability is not None:
        pref.deliverability = deliverability
    if opted_out:
        pref.opted_out_at = pref.opted_out_at or at
        pref.consent = False
    pref.updated_at = at
