"""The guarantor as the unit of conversation, as pure rules (``workflows.person``) and the
allocation of a payment against a family statement (``workflows.family``)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest

from config.loader import content_hash, load_policy
from models.payloads import ContactProfile
from models.policy import Channel, PaymentAllocation, Policy
from tests.support.clock import MORNING
from workflows.family import OverAllocation, Owed, allocate
from workflows.person import PersonContact, count_per_person, messages, person_free_at

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


@pytest.fixture
def policy() -> Policy:
    return load_policy("physician").policy  # 48 h spacing, 2 texts in 7 days


@pytest.fixture
def profile() -> ContactProfile:
    return ContactProfile(time_zone="America/New_York")


def test_spacing_counts_the_other_accounts_of_the_person(
    policy: Policy, profile: ContactProfile
) -> None:
    # Account A texted yesterday at 10:00; B's text is due now (24 h later): it waits 48 h.
    texted = PersonContact("A", Channel.SMS, MORNING - DAY, "m1")
    verdict = person_free_at(policy, profile, Channel.SMS, "B", [texted], MORNING)
    assert verdict.blocks(MORNING)
    assert verdict.at == MORNING + DAY  # 48 h after A's text, inside the allowed hours
    assert any("minimum spacing of 48h" in r for r in verdict.reasons)
    # The account's own contacts are its ladder's concern: A alone is not held back by them.
    own = person_free_at(policy, profile, Channel.LETTER, "A", [texted], MORNING)
    assert not own.blocks(MORNING)


def test_caps_count_messages_not_rows(policy: Policy, profile: ContactProfile) -> None:
    # One text covering three accounts (merged) is one text to the person: two rows share it.
    merged = [PersonContact(account, Channel.SMS, MORNING - 3 * DAY, "m1") for account in "ABC"]
    assert len(messages(merged)) == 1
    assert count_per_person(merged, MORNING - 7 * DAY, MORNING) == 1
    assert not person_free_at(policy, profile, Channel.SMS, "A", merged, MORNING).blocks(MORNING)
    # A second text (on B) reaches the cap of 2 in 7 days for the person, whichever account.
    second = [*merged, PersonContact("B", Channel.SMS, MORNING - 2.5 * DAY, "m2")]
    verdict = person_free_at(policy, profile, Channel.SMS, "A", second, MORNING)
    assert verdict.blocks(MORNING)
    assert verdict.at >= MORNING - 3 * DAY + 7 * DAY
    assert "sms: cap of 2 in 7 days reached" in verdict.reasons


def test_one_message_a_day_per_channel_even_without_spacing(
    policy: Policy, profile: ContactProfile
) -> None:
    relaxed = policy.model_copy(
        update={"contact": policy.contact.model_copy(update={"min_spacing_hours": 0})}
    )
    letter = PersonContact("A", Channel.LETTER, MORNING - 2 * HOUR, "m1")
    verdict = person_free_at(relaxed, profile, Channel.LETTER, "B", [letter], MORNING)
    assert verdict.blocks(MORNING)
    assert verdict.at.astimezone(dt.UTC).date() > MORNING.date()
    # Another channel the same day is allowed when the policy does not space contacts.
    text = person_free_at(relaxed, profile, Channel.SMS, "B", [letter], MORNING)
    assert not text.blocks(MORNING)


def test_oldest_visit_first_by_default() -> None:
    family = [
        Owed("T-2", 8000, dt.date(2026, 9, 1)),
        Owed("T-1", 5000, dt.date(2026, 6, 1)),
        Owed("T-3", 3000, dt.date(2026, 10, 1)),
    ]
    assert allocate(10000, family) == [("T-1", 5000), ("T-2", 5000)]
    assert allocate(16000, family) == [("T-1", 5000), ("T-2", 8000), ("T-3", 3000)]
    assert allocate(9000, family, PaymentAllocation.LARGEST_FIRST) == [
        ("T-2", 8000),
        ("T-1", 1000),
    ]


def test_a_payment_above_the_family_total_is_refused() -> None:
    family = [Owed("T-1", 5000, dt.date(2026, 6, 1)), Owed("T-2", 0, dt.date(2026, 7, 1))]
    with pytest.raises(OverAllocation, match="more than the 5000 cents the family owes"):
        allocate(5001, family)
    with pytest.raises(ValueError, match="amount: must be more than zero"):
        allocate(0, family)


def test_options_added_later_keep_existing_policies_hashes() -> None:
    """``statements``, ``thresholds.missed_appointment_fee_cap`` and ``staff.closing_notice``
    came after policies were pinned by running balances: left at their defaults, they are not
    part of the hash."""
    bundle = load_policy("physician")
    dumped = bundle.policy.model_dump(mode="json")
    del dumped["statements"]
    del dumped["thresholds"]["missed_appointment_fee_cap"]
    del dumped["staff"]["closing_notice"]
    canonical = json.dumps(
        {"policy": dumped, "templates": bundle.templates}, sort_keys=True, separators=(",", ":")
    )
    assert bundle.hash == hashlib.sha256(canonical.encode()).hexdigest()
    family = bundle.policy.model_copy(
        update={"statements": bundle.policy.statements.model_copy(update={"family": True})}
    )
    assert content_hash(family, bundle.templates) != bundle.hash
