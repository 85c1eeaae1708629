"""A family of three accounts on the real Temporal dev server: one person, one conversation.

One parent (one guarantor id, one phone) with three children's balances imported in the same
minute. Before issue 17 each balance's ladder texted on its own: three texts at once. Now the
send-time check counts the person across their accounts: the texts due together become one text
recorded against every account it covered, and any step that missed the batch waits in its
workflow for the policy's spacing instead of texting again.
"""

from __future__ import annotations

import datetime as dt
import mailbox
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from models.orm import Account, ApiRole, Communication, CommunicationStatus
from models.payloads import StatusView, StepOutcome
from models.policy import Channel
from starter import Intake, get_status
from tests.api_support import account_body, api_settings, ec_key_pair, running_api
from tests.factories import balance_row, midday_zone, policy_in, write_csv
from tests.support.waits import eventually
from worker import build_worker
from workflows.person import PersonContact, count_per_person

pytestmark = pytest.mark.devserver

FAMILY_POLICY = """
name: family-instant
practice: {{name: Example Clinic, phone: (555) 010-0199, pay_url: https://pay.example.test}}
thresholds: {{minimum_balance: 5.00}}
contact:
  practice_time_zone: {tz}
  default_patient_time_zone: {tz}
  business_days: [mon, tue, wed, thu, fri, sat, sun]
  min_spacing_hours: 48
  caps:
    - {{channel: sms, max: 2, per_days: 7}}
steps:
  - {{id: notice-0, day: 0, channels: [sms], template: statement-notice}}
  - {{id: statement-1, day: 30, channels: [letter], template: statement}}
"""


def _texted(view: StatusView) -> bool:
    return any(r.step_id == "notice-0" and r.outcome is StepOutcome.SENT for r in view.history)


async def test_a_family_of_three_gets_one_text(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    zone = midday_zone()
    policy = tmp_path / "family.yaml"
    policy.write_text(FAMILY_POLICY.format(tz=zone), encoding="utf-8")
    guarantor = f"G-{uuid.uuid4().hex[:8].upper()}"
    phone = "+15005550188"  # no place: the zone on record alone sets the hours
    rows = [
        balance_row(
            guarantor_id=guarantor, phone=phone, time_zone=zone, policy=policy_in(settings, policy)
        )
        for _ in range(3)
    ]
    client = dev_env.client
    intake = Intake(session_factory, client, settings)
    async with build_worker(client, settings, session_factory):
        await intake.import_balances(write_csv(tmp_path / "family.csv", rows))
        ids = [intake.account_id(r["account_number"]) for r in rows]

        async def settled() -> list[StatusView] | None:
            views = [await get_status(client, i) for i in ids]
            # Each ladder either recorded the family's text or waits for the person's spacing.
            done = all(_texted(v) or "other accounts" in v.waiting_for for v in views)
            return views if done else None

        views = await eventually(settled, timeout=60)
    assert isinstance(views, list)

    with session_factory() as s:
        found = s.execute(
            select(Communication, Account.account_number)
            .join(Account, Account.id == Communication.account_id)
            .where(
                Account.account_number.in_([r["account_number"] for r in rows]),
                Communication.channel == Channel.SMS,
                Communication.status == CommunicationStatus.SENT,
            )
        ).all()
    # The person's contacts as the per-person rules count them: one text, within the policy's
    # spacing and its cap of 2 texts in 7 days, however many accounts it was recorded against.
    contacts = [
        PersonContact(
            str(c.account_id),
            Channel.SMS,
            c.due_at or c.created_at,
            c.provider_id if c.provider == "merged" and c.provider_id else str(c.id),
        )
        for c, _ in found
    ]
    now = dt.datetime.now(dt.UTC)
    assert count_per_person(contacts, now - dt.timedelta(days=7), now + dt.timedelta(hours=1)) == 1
    # The outbox holds one text to that phone.
    texts = [
        m
        for box in Path(settings.outbox_dir).rglob("*")
        if box.is_file() and "sms" in box.parts
        for m in mailbox.mbox(box)
        if m["To"] == phone
    ]
    assert len(texts) == 1
    # Every account is covered by it (merged), or waits 48 h after it in its workflow.
    (sent_at,) = {c.sent_at for c, _ in found if c.provider != "merged"}
    assert sent_at is not None
    for view in views:
        if _texted(view):
            continue
        assert view.next_step is not None
        assert view.next_step.at >= sent_at + dt.timedelta(hours=48) - dt.timedelta(minutes=1)
    covered = [n for c, n in found]
    assert len(covered) == sum(_texted(v) for v in views)


async def test_a_family_payment_through_the_api(
    dev_env: WorkflowEnvironment, settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    _, public = ec_key_pair()
    guarantor = f"G-{uuid.uuid4().hex[:8].upper()}"
    async with running_api(dev_env.client, api_settings(settings, public), session_factory) as api:
        auth = api.auth(ApiRole.INTEGRATION)
        numbers = []
        for day in ("2026-09-01", "2026-04-01"):  # the second account's visit is the older
            number = f"A-{uuid.uuid4().hex[:8].upper()}"
            body = account_body(id=guarantor)
            body["charges"][0]["service_date"] = day
            r = await api.http.put(f"/accounts/{number}", json=body, headers=auth)
            assert r.status_code == 200, r.text
            numbers.append(number)
        newer, older = numbers
        payment = {"reference": f"FAM-{guarantor}", "amount_cents": 6000}
        r = await api.http.post(f"/accounts/{newer}/family-payments", json=payment, headers=auth)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["rule"] == "oldest_first" and out["amount_cents"] == 6000
        assert [
            (p["account_number"], p["amount_cents"], p["balance_cents"]) for p in out["parts"]
        ] == [
            (older, 5500, 0),
            (newer, 500, 5000),
        ]
        too_much = {"reference": f"FAM2-{guarantor}", "amount_cents": 5001}
        r = await api.http.post(f"/accounts/{older}/family-payments", json=too_much, headers=auth)
        assert r.status_code == 422, r.text
        assert "more than the 5000 cents the family owes" in r.json()["detail"]
