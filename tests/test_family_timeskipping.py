"""A family's accounts staggered by days: the person's spacing holds across their ladders.

Before issue 17, a parent whose second child's balance texted on day 3 of its ladder got the first
child's day-4 text 24 hours later, although the policy says 48. Now the first ladder's text waits
in its workflow (``waiting for: the guarantor's other accounts``) until 48 hours after the other
account's text, then goes out.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from activities.messaging import MessagingActivities, PolicyStore
from config.loader import load_policy
from config.settings import Settings
from models.orm import Account, ChargeLine, Communication, CommunicationStatus
from models.payloads import StepOutcome
from models.policy import Channel
from tests.fakes.accounts import step_input
from tests.support.scenario import POLICIES, StaffCase
from worker import build_senders

pytestmark = pytest.mark.timeskipping


def _sibling(session_factory: sessionmaker[Session], number: str) -> str:
    """Another account of the same guarantor (a second child's visit)."""
    with session_factory.begin() as s:
        first = s.scalars(select(Account).where(Account.account_number == number)).one()
        sibling = Account(
            account_number=f"T-{uuid.uuid4().hex[:8].upper()}",
            guarantor_id=first.guarantor_id,
            policy_name=first.policy_name,
            opened_at=first.opened_at,
            balance_cents=4500,
        )
        s.add(sibling)
        s.flush()
        s.add(
            ChargeLine(
                account_id=sibling.id,
                external_ref=f"C-{uuid.uuid4().hex[:8]}",
                service_date=dt.date(2026, 11, 2),
                description="Office visit",
                charges_cents=4500,
                insurance_paid_cents=0,
                insurance_adjustment_cents=0,
                patient_paid_cents=0,
            )
        )
        return str(sibling.id)


async def test_a_text_waits_48_hours_after_another_accounts_text(
    staff_case: StaffCase, settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    async with staff_case(policy="family-test") as c:
        await c.at_day(3)
        # The second child's ladder texts the parent on day 3 (its own step, through the pipeline).
        texted_at = c.start + dt.timedelta(days=3)
        bundle = load_policy(POLICIES / "family-test.yaml")
        sibling = MessagingActivities(
            session_factory,
            build_senders(settings),
            PolicyStore(session_factory),
            clock=lambda: texted_at,
        )
        other = sibling.send_step(
            step_input(bundle, _sibling(session_factory, c.number), "notice-1", due_at=texted_at)
        )
        assert other.outcome is StepOutcome.SENT and other.channel is Channel.SMS

        # Day 4, 22:00: the first child's day-4 text is due, but only 24 h have passed.
        await c.at_day(4.5)
        view = await c.status()
        assert "notice-1" not in await c.sent()
        assert view.waiting_for == "the guarantor's other accounts: contacted lately"
        assert view.next_step is not None and view.next_step.step_id == "notice-1"
        assert view.next_step.at == texted_at + dt.timedelta(hours=48)

        # Day 5: 48 h after the other account's text, it goes out, once.
        await c.at_day(5.5)
        sent = await c.sent()
        assert sent["notice-1"] == (5, Channel.SMS)
        with session_factory() as s:
            ours = s.scalars(
                select(Communication).where(
                    Communication.account_id == uuid.UUID(c.account_id),
                    Communication.channel == Channel.SMS,
                    Communication.status == CommunicationStatus.SENT,
                )
            ).all()
        assert len(ours) == 1
        await c.finish("family_text_waits_for_spacing")
