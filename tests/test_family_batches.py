"""One person, one conversation, at the moment of sending (real PostgreSQL, the local outbox).

A guarantor with several accounts: steps of their accounts due together become one text or one
letter, recorded against each account; a step due too soon after another account's contact is
deferred to the person's next allowed moment; a family statement lists every open account; a
payment against it is spread oldest visit first.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import mailbox
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from pypdf import PdfReader
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, sessionmaker
from temporalio.exceptions import ApplicationError
from typer.testing import CliRunner

from activities.channels import OutboxSender
from activities.letters import build_print_batch
from activities.messaging import MessagingActivities, PolicyStore
from cli.main import app
from config.loader import PolicyBundle, content_hash, load_policy
from config.settings import Settings
from models.orm import Account, ChargeLine, Communication, CommunicationStatus, Payment
from models.payloads import SendStepInput, SendStepResult, StepOutcome
from models.policy import Channel
from tests.factories import balance_row, write_csv
from tests.fakes.accounts import make_account, step_input
from tests.fakes.providers import (
    TWILIO_SID,
    TWILIO_TOKEN,
    FakeProviders,
    fake_providers,
    twilio_error,
)
from tests.identities import signed_in
from tests.support.clock import MORNING, NEW_YORK
from worker import build_senders

# The CLI imports as a signed-in person whose roles grant intake.
pytestmark = pytest.mark.usefixtures("cli_signed_in")

DAY = dt.timedelta(days=1)


@pytest.fixture
def physician() -> PolicyBundle:
    return load_policy("physician")  # 48 h spacing, at most 2 texts in 7 days


@pytest.fixture
def family_policy(physician: PolicyBundle) -> PolicyBundle:
    policy = physician.policy.model_copy(
        update={"statements": physician.policy.statements.model_copy(update={"family": True})}
    )
    return PolicyBundle(
        policy, physician.templates, physician.source, content_hash(policy, physician.templates)
    )


@pytest.fixture
def messaging(settings: Settings, session_factory: sessionmaker[Session]) -> MessagingActivities:
    outbox = OutboxSender(Path(settings.outbox_dir), clock=lambda: MORNING)
    senders = {**build_senders(settings), Channel.EMAIL: outbox, Channel.SMS: outbox}
    return MessagingActivities(
        session_factory, senders, PolicyStore(session_factory), clock=lambda: MORNING
    )


def family_of(session_factory: sessionmaker[Session], bundle: PolicyBundle, size: int) -> list[str]:
    """``size`` accounts of one invented guarantor (same phone, address, email), oldest first."""
    first = make_account(
        session_factory, bundle, charges=[(dt.date(2026, 6, 1), "Office visit", 12000, 0, 0, 0)]
    )
    ids = [first]
    with session_factory.begin() as s:
        guarantor_id = s.get_one(Account, uuid.UUID(first)).guarantor_id
        for n in range(1, size):
            account = Account(
                account_number=f"T-{uuid.uuid4().hex[:8].upper()}",
                guarantor_id=guarantor_id,
                policy_name=bundle.policy.name,
                opened_at=dt.datetime(2026, 6 + n, 1, tzinfo=dt.UTC),
                balance_cents=3000 * n,
            )
            s.add(account)
            s.flush()
            s.add(
                ChargeLine(
                    account_id=account.id,
                    external_ref=f"C-{uuid.uuid4().hex[:8]}",
                    service_date=dt.date(2026, 6 + n, 1),
                    description="Office visit",
                    charges_cents=3000 * n,
                    insurance_paid_cents=0,
                    insurance_adjustment_cents=0,
                    patient_paid_cents=0,
                )
            )
            ids.append(str(account.id))
    return ids


def numbers(session_factory: sessionmaker[Session], ids: list[str]) -> list[str]:
    with session_factory() as s:
        return [s.get_one(Account, uuid.UUID(i)).account_number for i in ids]


def rows_of(session_factory: sessionmaker[Session], step: SendStepInput) -> list[Communication]:
    with session_factory() as s:
        return list(
            s.scalars(
                select(Communication).where(
                    Communication.idempotency_key.startswith(step.idempotency_key)
                )
            )
        )


def sent(outcome: SendStepResult | BaseException) -> SendStepResult:
    assert isinstance(outcome, SendStepResult), outcome
    return outcome


def deferring(step: SendStepInput) -> SendStepInput:
    return step.model_copy(update={"defer_ok": True})


def test_texts_of_three_accounts_due_together_are_one_text(
    messaging: MessagingActivities,
    settings: Settings,
    session_factory: sessionmaker[Session],
    physician: PolicyBundle,
) -> None:
    family = family_of(session_factory, physician, 3)
    steps = [
        deferring(step_input(physician, a, "notice-1", channels=[Channel.SMS], due_at=MORNING))
        for a in family
    ]
    out = [sent(o) for o in messaging.send_steps(steps)]
    # Every account records the contact, each with its own outbox row ...
    assert [o.outcome for o in out] == [StepOutcome.SENT] * 3
    assert all(o.channel is Channel.SMS for o in out)
    rows = [rows_of(session_factory, s)[0] for s in steps]
    primary, *covered = rows
    assert primary.provider != "merged"
    assert [(r.provider, r.provider_id) for r in covered] == [("merged", str(primary.id))] * 2
    assert all(r.status is CommunicationStatus.SENT for r in rows)
    # ... but the person received one text, naming every account.
    path = OutboxSender(Path(settings.outbox_dir), clock=lambda: MORNING).mailbox(
        Channel.SMS, MORNING.date()
    )
    texts = [m for m in mailbox.mbox(path) if m["To"] == primary.recipient]
    assert len(texts) == 1
    body = str(texts[0].get_payload())
    assert all(number in body for number in numbers(session_factory, family))
    # A retry of a covered step finds its row: nothing is sent again.
    again = sent(messaging.send_step(steps[2]))
    assert again.communication_id == out[2].communication_id
    assert len([m for m in mailbox.mbox(path) if m["To"] == primary.recipient]) == 1


def test_a_text_a_day_after_another_accounts_waits_for_the_spacing(
    messaging: MessagingActivities,
    session_factory: sessionmaker[Session],
    physician: PolicyBundle,
) -> None:
    first, second = family_of(session_factory, physician, 2)
    yesterday = step_input(
        physician, first, "notice-1", channels=[Channel.SMS], due_at=MORNING - DAY
    )
    assert sent(messaging.send_step(yesterday)).outcome is StepOutcome.SENT
    today = step_input(physician, second, "notice-1", channels=[Channel.SMS], due_at=MORNING)
    # A workflow that can wait gets a deferral to 48 h after the other account's text ...
    waits = sent(messaging.send_step(deferring(today)))
    assert waits.outcome is StepOutcome.DEFERRED and waits.communication_id is None
    assert waits.not_before == MORNING + DAY
    assert any("other accounts" in r for r in waits.reasons)
    assert rows_of(session_factory, today) == []
    # ... one from before (a replayed history) is retried by its activity at that moment.
    with pytest.raises(ApplicationError) as caught:
        messaging.send_step(today)
    assert caught.value.type == "ContactCapReached"
    assert caught.value.next_retry_delay == DAY


def test_two_batches_for_one_person_at_the_same_moment_send_one_text(
    messaging: MessagingActivities,
    session_factory: sessionmaker[Session],
    physician: PolicyBundle,
) -> None:
    """Two lanes or two workers, each with a step of another account of one person, at once.

    Each batch waits for the person's lock before reading what the person received; the one that
    gets it second must read the first one's text and wait for the spacing. It once read from a
    snapshot taken before the lock was granted, and both texts went out.
    """
    family = family_of(session_factory, physician, 2)
    steps = [
        deferring(step_input(physician, a, "notice-1", channels=[Channel.SMS], due_at=MORNING))
        for a in family
    ]
    with session_factory() as s:
        guarantor_id = s.get_one(Account, uuid.UUID(family[0])).guarantor_id
    waiting = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    # Someone holds the person's lock while both batches start: both wait for it, then take turns.
    with session_factory() as holder, ThreadPoolExecutor(2) as pool:
        holder.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(CAST(:g AS text), 0))"),
            {"g": guarantor_id},
        )
        batches = [pool.submit(messaging.send_steps, [step]) for step in steps]
        deadline = time.monotonic() + 30
        while (holder.scalar(waiting) or 0) < 2:
            assert time.monotonic() < deadline, "the batches never waited for the person's lock"
            assert not any(b.done() for b in batches), [b.result() for b in batches if b.done()]
            time.sleep(0.02)
        holder.rollback()
        outcomes = [sent(b.result(timeout=30)[0]) for b in batches]

    assert sorted(o.outcome for o in outcomes) == [StepOutcome.DEFERRED, StepOutcome.SENT]
    waited = next(o for o in outcomes if o.outcome is StepOutcome.DEFERRED)
    assert waited.not_before == MORNING + 2 * DAY  # 48 hours after the other account's text
    texts = [r for step in steps for r in rows_of(session_factory, step)]
    assert [(r.channel, r.status) for r in texts] == [(Channel.SMS, CommunicationStatus.SENT)]


def test_letters_due_together_print_as_one_statement_of_each_account(
    messaging: MessagingActivities,
    session_factory: sessionmaker[Session],
    physician: PolicyBundle,
    tmp_path: Path,
) -> None:
    family = family_of(session_factory, physician, 3)
    steps = [step_input(physician, a, "statement-1", due_at=MORNING) for a in family]
    out = [sent(o) for o in messaging.send_steps(steps)]
    assert {o.channel for o in out} == {Channel.LETTER}
    ids = {o.communication_id for o in out}
    with session_factory() as s:
        batch = build_print_batch(s, MORNING.astimezone(NEW_YORK).date(), NEW_YORK, tmp_path)
    (printed,) = _ours(batch.manifest_path, ids)  # one envelope for the person
    text = _pages_text(batch.pdf_path, printed)
    assert "Statement of your 3 accounts" in text
    for number in numbers(session_factory, family):
        assert f"Account {number}" in text
    assert "Total due for all accounts: $210.00" in text  # 120 + 30 + 60
    assert "oldest visit first" in text


def test_a_family_statement_lists_every_open_account_at_print_time(
    messaging: MessagingActivities,
    session_factory: sessionmaker[Session],
    family_policy: PolicyBundle,
    tmp_path: Path,
) -> None:
    family = family_of(session_factory, family_policy, 3)
    # Only the first account's statement is due; the family statement covers all three ...
    out = sent(messaging.send_step(step_input(family_policy, family[0], "statement-1")))
    assert out.channel is Channel.LETTER
    with session_factory() as s:
        row = s.get_one(Communication, uuid.UUID(out.communication_id or ""))
        assert row.letter is not None and row.letter["scope"] == "family"
    # ... as the ledger stands when the batch is printed: the second account was paid since.
    with session_factory.begin() as s:
        s.execute(update(Account).where(Account.id == uuid.UUID(family[1])).values(balance_cents=0))
    with session_factory() as s:
        batch = build_print_batch(s, MORNING.astimezone(NEW_YORK).date(), NEW_YORK, tmp_path)
    (printed,) = _ours(batch.manifest_path, {out.communication_id})
    text = _pages_text(batch.pdf_path, printed)
    assert "Statement of your 2 accounts" in text
    first, paid, third = numbers(session_factory, family)
    assert f"Account {first}" in text and f"Account {third}" in text
    assert f"Account {paid}" not in text
    assert "Total due for all accounts: $180.00" in text  # 120 + 60


def test_a_family_payment_is_spread_oldest_visit_first(
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    tmp_path: Path,
    session_factory: sessionmaker[Session],
) -> None:
    monkeypatch.setenv("DUNNING_DATABASE__URL", database_url)
    monkeypatch.setenv("DUNNING_TOKEN", signed_in(session_factory, "billing_lead")[0])
    monkeypatch.setenv("DUNNING_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("DUNNING_TEMPORAL__ADDRESS", raising=False)
    guarantor = f"G-{uuid.uuid4().hex[:8]}"
    rows: list[dict[str, Any]] = [
        balance_row(guarantor_id=guarantor, service_date=day)  # $55.00 each
        for day in ("2026-09-01", "2026-03-01", "2026-06-01")
    ]
    runner = CliRunner()
    result = runner.invoke(app, ["import", "balances", str(write_csv(tmp_path / "f.csv", rows))])
    assert result.exit_code == 0, result.output
    newest, oldest, middle = (r["account_number"] for r in rows)

    result = runner.invoke(app, ["pay-family", newest, "80.00", "--ref", f"FAM-{guarantor}"])
    out = " ".join(result.output.split())
    assert result.exit_code == 0, out
    assert "$80.00 spread over 2 account(s), oldest first" in out
    assert f"{oldest}: $55.00 posted; balance $0.00" in out
    assert f"{middle}: $25.00 posted; balance $30.00" in out
    with session_factory() as s:
        paid = {
            a: sum(
                s.scalars(
                    select(Payment.amount_cents)
                    .join(Account, Account.id == Payment.account_id)
                    .where(Account.account_number == a)
                ).all()
            )
            for a in (oldest, middle, newest)
        }
    assert paid == {oldest: 5500, middle: 2500, newest: 0}
    # The same reference again changes nothing; more than the family owes is refused.
    result = runner.invoke(app, ["pay-family", middle, "80.00", "--ref", f"FAM-{guarantor}"])
    assert result.exit_code == 0, result.output
    assert "already posted" in result.output
    result = runner.invoke(app, ["pay-family", middle, "90.00", "--ref", f"FAM2-{guarantor}"])
    assert result.exit_code != 0
    assert "more than the 8500 cents the family owes" in " ".join(result.output.split())


def _ours(manifest: Path, ids: set[str | None]) -> list[dict[str, str]]:
    """The manifest's entries of these outbox rows (the day's batch holds other tests' too)."""
    with manifest.open(encoding="utf-8") as fh:
        return [r for r in csv.DictReader(fh) if r["communication_id"] in ids]


def _pages_text(path: Path, entry: dict[str, str]) -> str:
    assert entry["action"] == "print", entry
    reader = PdfReader(io.BytesIO(path.read_bytes()))
    first = int(entry["first_page"]) - 1
    pages = reader.pages[first : first + int(entry["pages"])]
    return " ".join(" ".join((p.extract_text() or "").split()) for p in pages)


SERVICE = "MG" + "2" * 32


@pytest.fixture
def twilio(
    settings: Settings, session_factory: sessionmaker[Session]
) -> Iterator[tuple[FakeProviders, MessagingActivities]]:
    """The step pipeline with the real Twilio SDK against the local fake of its API."""
    with fake_providers() as fake:
        live = settings.model_copy(
            update={
                "twilio": settings.twilio.model_copy(
                    update={
                        "account_sid": TWILIO_SID,
                        "auth_token": SecretStr(TWILIO_TOKEN),
                        "messaging_service_sid": SERVICE,
                        "base_url": fake.base_url,
                    }
                )
            }
        )
        messaging = MessagingActivities(
            session_factory,
            build_senders(live),
            PolicyStore(session_factory),
            clock=lambda: MORNING,
        )
        yield fake, messaging


def test_one_twilio_request_for_three_accounts_and_a_refusal_moves_them_all_on(
    twilio: tuple[FakeProviders, MessagingActivities],
    session_factory: sessionmaker[Session],
    physician: PolicyBundle,
) -> None:
    fake, messaging = twilio
    family = family_of(session_factory, physician, 3)
    steps = [
        step_input(physician, a, "notice-1", channels=[Channel.SMS], due_at=MORNING) for a in family
    ]
    out = [sent(o) for o in messaging.send_steps(steps)]
    assert [o.channel for o in out] == [Channel.SMS] * 3
    (request,) = fake.of("twilio")  # one text to the person, through the real SDK
    body = request.form["Body"]
    assert all(number in body for number in numbers(session_factory, family))

    # Another family whose number has opted out at the carrier: the text is refused once, and
    # the steps it covered choose again. An email is never merged (each has its own unsubscribe
    # link): one account's email goes out, the other account waits for the person's spacing.
    other = family_of(session_factory, physician, 2)
    fake.script("twilio", twilio_error(400, 21610))
    steps = [
        deferring(
            step_input(
                physician, a, "notice-1", channels=[Channel.SMS, Channel.EMAIL], due_at=MORNING
            )
        )
        for a in other
    ]
    first, second = (sent(o) for o in messaging.send_steps(steps))
    assert len(fake.of("twilio")) == 2  # the family above, then this refused one
    assert (first.outcome, first.channel) == (StepOutcome.SENT, Channel.EMAIL)
    assert first.reasons == ["sms: opted out (twilio 21610)"]
    assert (second.outcome, second.not_before) == (StepOutcome.DEFERRED, MORNING + 2 * DAY)
