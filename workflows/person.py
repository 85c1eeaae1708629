"""The guarantor as the unit of conversation: contact rules counted per person, not per account.

A parent with three children's visits has three accounts and three workflows, but one phone, one
mailbox and one patience. Each workflow spaces and caps its own ladder (:mod:`workflows.decisions`);
the rules below count what the *person* (the guarantor, at the contact point the message goes to)
received from all their accounts. They are pure: the send-time check in the step activity applies
them to the person's contacts read from the outbox, and a preview or simulation can apply them to
its own records.

Rules, each counted per person:

- minimum spacing (``contact.min_spacing_hours``) between a contact of this account and any contact
  of the person's other accounts;
- same-day deduplication: never two messages on one channel in one local day to the person, even
  under a policy without spacing;
- the policy's rolling caps per channel, counting *messages*: a text that covered three accounts
  (merged) is one text to the person, though it is recorded against each account;
- the state cap of calls, texts and voicemails together (e.g. Massachusetts, 2 in 7 days).

Regulation F's call cap (12 CFR 1006.14(b)(2)) is per debt: the per-person count above is stricter
and implies it, and each account's own ladder still applies it to its own calls.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from models.payloads import ContactProfile, StepOutcome, StepRecord
from models.policy import Channel, Policy
from workflows import protections
from workflows.decisions import calendar_of, cap_free_at, home_zone, zone

_MAX_ROUNDS = 16

MERGEABLE = frozenset({Channel.SMS, Channel.LETTER})
"""Channels on which steps of several accounts due together become one message: one text, one
letter. An email could too, but each carries its own unsubscribe link; a call is a person's task
per account (Reg F counts calls per debt)."""


@dataclass(frozen=True, slots=True)
class PersonContact:
    """One contact the person received, as recorded against one of their accounts."""

    account_id: str
    channel: Channel
    at: dt.datetime
    """When it counts: the moment it was due (the schedule's), as the caps count it."""
    message_id: str
    """The message that reached the person; rows of a merged message share their primary's id."""


@dataclass(frozen=True, slots=True)
class PersonVerdict:
    """When one more contact to the person on a channel is allowed, and which rules moved it."""

    at: dt.datetime
    reasons: tuple[str, ...] = ()

    def blocks(self, now: dt.datetime) -> bool:
        return self.at > now


def messages(contacts: Iterable[PersonContact]) -> list[PersonContact]:
    """One entry per message the person received (the first row of a merged one), by time."""
    seen: dict[str, PersonContact] = {}
    for contact in sorted(contacts, key=lambda c: (c.at, c.message_id, c.account_id)):
        seen.setdefault(contact.message_id, contact)
    return sorted(seen.values(), key=lambda c: c.at)


def count_per_person(
    contacts: Iterable[PersonContact],
    since: dt.datetime,
    until: dt.datetime,
    channel: Channel | None = None,
) -> int:
    """How many messages the person received in ``[since, until)`` (on ``channel``, or any)."""
    return sum(
        1
        for c in messages(contacts)
        if since <= c.at < until and (channel is None or c.channel is channel)
    )


def person_free_at(
    policy: Policy,
    profile: ContactProfile,
    channel: Channel,
    account_id: str,
    contacts: Sequence[PersonContact],
    at: dt.datetime,
) -> PersonVerdict:
    """The first allowed moment from ``at`` for one more contact of ``account_id`` on ``channel``.

    ``contacts`` are the person's recent contacts on all their accounts (this one included).
    Spacing and same-day deduplication look only at the *other* accounts' contacts, because each
    account's ladder already spaces its own steps (and a ladder's extra message, a plan reminder,
    keeps its own rules); caps count every message. The moment found is moved into the patient's
    allowed hours on an open practice day.
    """
    rules = policy.contact
    sent = messages(contacts)
    others = [c for c in sent if c.account_id != account_id]
    calendar = calendar_of(policy, profile)
    home = zone(home_zone(policy, profile))
    reasons: list[str] = []

    def later(moment: dt.datetime, earliest: dt.datetime, why: str) -> dt.datetime:
        if earliest <= moment:
            return moment
        if why and why not in reasons:
            reasons.append(why)
        return earliest

    for _ in range(_MAX_ROUNDS):
        before = at
        if rules.min_spacing_hours and others:
            spacing = dt.timedelta(hours=rules.min_spacing_hours)
            near = [c.at for c in others if c.at > at - spacing]
            if near:
                at = later(
                    at,
                    max(near) + spacing,
                    f"minimum spacing of {rules.min_spacing_hours}h with the guarantor's"
                    " other accounts",
                )
        day = at.astimezone(home).date()
        if any(c.channel is channel and c.at.astimezone(home).date() == day for c in others):
            next_day = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=home)
            at = later(
                at, next_day, f"one {channel.value} a day to the guarantor across their accounts"
            )
        times = [c.at for c in sent if c.channel is channel]
        for cap in rules.caps:
            if cap.channel is channel:
                at = later(
                    at,
                    cap_free_at(times, cap.max, cap.per_days, at),
                    f"{channel.value}: cap of {cap.max} in {cap.per_days} days reached",
                )
        records = [
            StepRecord(step_id="", outcome=StepOutcome.SENT, at=c.at, channel=c.channel)
            for c in sent
        ]
        free, why = protections.state_cap_free_at(policy, profile, channel, records, at)
        at = later(at, free, f"{why} to the guarantor across their accounts" if why else "")
        if at != before:
            at = calendar.adjust(at, reasons)
        if at == before:
            return PersonVerdict(at, tuple(reasons))
    # pragma: no cover - every rule above moves forward to a fixed point
    return PersonVerdict(at, tuple(reasons))
