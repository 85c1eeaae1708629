"""Steps sent in batches: each step settles on its own, exactly once, whatever its neighbours do.

``MessagingActivities.send_steps`` is what the worker's ``StepBatcher`` calls with the steps that
are due together; ``send_step`` is a batch of one. Rows claimed in one batch share a transaction,
so their ``created_at`` (PostgreSQL's transaction time) tells the batches apart.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import mailbox
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from pypdf import PdfReader
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session, sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from typer.testing import CliRunner

from activities.batching import StepBatcher
from activities.channels import OutboxSender, OutgoingMessage
from activities.letters import PRINT_QUEUE
from activities.messaging import MessagingActivities, PolicyStore
from cli.main import app
from config.loader import PolicyBundle, load_policy
from config.settings import Settings
from models.orm import Account, AccountStatus, Communication, CommunicationStatus
from models.payloads import SendStepInput, SendStepResult, StepOutcome
from models.policy import Channel
from tests.fakes.accounts import make_account, step_input
from tests.support.clock import MORNING, NIGHT
from worker import build_senders


@pytest.fixture
def physician() -> PolicyBundle:
    return load_policy("physician")


@pytest.fixture
def messaging(settings: Settings, session_factory: sessionmaker[Session]) -> MessagingActivities:
    # The local outbox files its messages under the day it sends them: on the test's clock too,
    # so the mailbox path does not depend on the real date (or on crossing midnight).
    outbox = OutboxSender(Path(settings.outbox_dir), clock=lambda: MORNING)
    senders = {**build_senders(settings), Channel.EMAIL: outbox, Channel.SMS: outbox}
    return MessagingActivities(
        session_factory, senders, PolicyStore(session_factory), clock=lambda: MORNING
    )


def _rows(session_factory: sessionmaker[Session], step: SendStepInput) -> list[Communication]:
    with session_factory() as s:
        return list(
            s.scalars(
                select(Communication).where(
                    Communication.idempotency_key.startswith(step.idempotency_key)
                )
            )
        )


def _sent(outcome: SendStepResult | BaseException) -> SendStepResult:
    assert isinstance(outcome, SendStepResult), outcome
    return outcome


def test_a_batch_settles_each_step_on_its_own(
    messaging: MessagingActivities,
    session_factory: sessionmaker[Session],
    physician: PolicyBundle,
) -> None:
    plain = step_input(physician, make_account(session_factory, physician), "notice-1")
    closed_id = make_account(session_factory, physician)
    with session_factory.begin() as s:
        s.execute(
            update(Account)
            .where(Account.id == uuid.UUID(closed_id))
            .values(status=AccountStatus.SETTLED)
        )
    closed = step_input(physician, closed_id, "notice-1")
    opted_out = step_input(
        physician,
        make_account(session_factory, physician, prefs={Channel.EMAIL: {"opted_out_at": MORNING}}),
        "notice-1",
        channels=[Channel.EMAIL, Channel.SMS],
    )
    earlier = step_input(physician, make_account(session_factory, physician), "reminder-1")
    first = messaging.send_step(earlier)  # an attempt that sent before the batch
    late = step_input(physician, make_account(session_factory, physician), "notice-1")
    queued = step_input(physician, make_account(session_factory, physician), "statement-1")
    missing = step_input(physician, str(uuid.uuid4()), "notice-1")

    steps = [plain, closed, opted_out, earlier, plain, late, missing, queued]
    floors: list[dt.datetime | None] = [None, None, None, None, None, NIGHT, None, None]
    out = messaging.send_steps(steps, floors)

    assert _sent(out[0]).outcome is StepOutcome.SENT and _sent(out[0]).channel is Channel.EMAIL
    # The same step twice in a batch (a retry overtaking its attempt) is sent once.
    assert _sent(out[4]).communication_id == _sent(out[0]).communication_id
    assert len(_rows(session_factory, plain)) == 1
    assert _sent(out[1]).outcome is StepOutcome.SUPPRESSED
    assert _sent(out[1]).reasons == ["account is settled"]
    # The fallback chain: email opted out, so the text message.
    fell_back = _sent(out[2])
    assert fell_back.outcome is StepOutcome.SENT and fell_back.channel is Channel.SMS
    assert fell_back.reasons == ["email: opted out"]
    (text,) = _rows(session_factory, opted_out)
    assert text.channel is Channel.SMS and text.status is CommunicationStatus.SENT
    # An earlier attempt's send is the step's outcome; nothing is sent again.
    assert _sent(out[3]).communication_id == first.communication_id
    assert len(_rows(session_factory, earlier)) == 1
    # A step whose attempt was scheduled at 22:00 waits for the morning; nothing is claimed.
    late_error = out[5]
    assert isinstance(late_error, ApplicationError) and late_error.type == "QuietHours"
    assert _rows(session_factory, late) == []
    missing_error = out[6]
    assert isinstance(missing_error, ApplicationError)
    assert missing_error.type == "AccountMissing"

    # A letter is queued for the print batch with its statement, sent as its claim commits.
    assert _sent(out[7]).channel is Channel.LETTER
    (letter,) = _rows(session_factory, queued)
    assert letter.provider == PRINT_QUEUE and letter.letter is not None
    assert letter.status is CommunicationStatus.SENT

    # One claim transaction for the whole batch.
    claimed = [
        r for step in (plain, closed, opted_out, queued) for r in _rows(session_factory, step)
    ]
    assert len({r.created_at for r in claimed}) == 1


def test_a_row_the_database_refuses_fails_only_its_own_step(
    messaging: MessagingActivities,
    session_factory: sessionmaker[Session],
    physician: PolicyBundle,
) -> None:
    good = [
        step_input(physician, make_account(session_factory, physician), "notice-1")
        for _ in range(3)
    ]
    bad = step_input(physician, make_account(session_factory, physician), "notice-1")
    bad = bad.model_copy(update={"step_id": "x" * 60})  # longer than the outbox column
    out = messaging.send_steps([good[0], bad, good[1], good[2]])
    refused = out[1]
    # Named by its kind only: PostgreSQL's text may quote the row, which holds patient data.
    assert isinstance(refused, ApplicationError) and refused.type == "DatabaseError"
    assert "SQLSTATE 22001" in str(refused) and "Synthetic" not in str(refused)
    for step, outcome in zip(good, (out[0], out[2], out[3]), strict=True):
        assert _sent(outcome).outcome is StepOutcome.SENT
        assert len(_rows(session_factory, step)) == 1
    assert _rows(session_factory, bad) == []


async def test_concurrent_activities_share_batches(
    messaging: MessagingActivities,
    session_factory: sessionmaker[Session],
    physician: PolicyBundle,
) -> None:
    batcher = StepBatcher(messaging, max_batch=8, linger=dt.timedelta(milliseconds=20))
    steps = [
        step_input(physician, make_account(session_factory, physician), "notice-1")
        for _ in range(20)
    ]
    env = ActivityEnvironment()
    results = await asyncio.gather(*(env.run(batcher.send_step, step) for step in steps))
    assert all(r.outcome is StepOutcome.SENT for r in results)
    assert len({r.communication_id for r in results}) == 20
    rows = [r for step in steps for r in _rows(session_factory, step)]
    assert len(rows) == 20 and all(r.status is CommunicationStatus.SENT for r in rows)
    # Twenty activities, at most eight steps a batch: three to a few claim transactions.
    assert 3 <= len({r.created_at for r in rows}) < 20
    # A step sent again (an activity retry) is answered from its row.
    again = await env.run(batcher.send_step, steps[0])
    assert again.communication_id == results[0].communication_id
    # Lone steps, each as the previous batch ends, go out at once: none waits for company.
    for _ in range(5):
        lone = step_input(physician, make_account(session_factory, physician), "notice-1")
        sent = await asyncio.wait_for(env.run(batcher.send_step, lone), timeout=10)
        assert sent.outcome is StepOutcome.SENT


def test_the_outbox_is_a_days_mailbox_per_channel(
    messaging: MessagingActivities,
    settings: Settings,
    session_factory: sessionmaker[Session],
    physician: PolicyBundle,
) -> None:
    steps = [
        step_input(physician, make_account(session_factory, physician), "notice-1")
        for _ in range(3)
    ]
    results = [_sent(o) for o in messaging.send_steps(steps)]
    outbox = OutboxSender(Path(settings.outbox_dir), clock=lambda: MORNING)
    path = outbox.mailbox(Channel.EMAIL, MORNING.date())
    with session_factory() as s:
        rows = [s.get(Communication, uuid.UUID(r.communication_id or "")) for r in results]
    assert all(r is not None and r.file_path == str(path) for r in rows)
    # Any mail reader opens it: one message per step, under its outbox id.
    box = {m["Message-Id"]: m for m in mailbox.mbox(path)}
    for result, row in zip(results, rows, strict=True):
        assert row is not None
        message = box[f"<{result.communication_id}@dunning>"]
        assert message["To"] == row.recipient and message["Subject"] == row.subject
        assert str(message.get_payload()).strip() == (row.body or "").strip()
        # A retry of the send finds the message; an unknown id is not there.
        outgoing = OutgoingMessage(str(row.id), row.idempotency_key, Channel.EMAIL, "", None, "")
        assert outbox.confirm(outgoing) is not None
    assert (
        outbox.confirm(OutgoingMessage(str(uuid.uuid4()), "k", Channel.EMAIL, "", None, "")) is None
    )


def test_a_queued_letter_is_shown_as_it_will_be_printed(
    messaging: MessagingActivities,
    database_url: str,
    session_factory: sessionmaker[Session],
    physician: PolicyBundle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    step = step_input(physician, make_account(session_factory, physician), "statement-1")
    result = messaging.send_step(step)
    monkeypatch.setenv("DUNNING_DATABASE__URL", database_url)
    monkeypatch.setenv("DUNNING_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "letter.pdf"
    shown = CliRunner().invoke(
        app, ["letters", "show", result.communication_id or "", "--out", str(out)]
    )
    assert shown.exit_code == 0, shown.output
    text = " ".join(p.extract_text() or "" for p in PdfReader(out).pages)
    assert "Testy Synthetic" in text and "Amount due: $55.00" in " ".join(text.split())
    missing = CliRunner().invoke(app, ["letters", "show", str(uuid.uuid4())])
    assert missing.exit_code == 3 and "no message" in missing.output
    not_a_letter = messaging.send_step(
        step_input(physician, make_account(session_factory, physician), "notice-1")
    )
    refused = CliRunner().invoke(app, ["letters", "show", not_a_letter.communication_id or ""])
    assert refused.exit_code == 1 and "is not a letter" in refused.output


def _statements(session_factory: sessionmaker[Session], send: Callable[[], object]) -> list[str]:
    """The SQL statements ``send`` made the database run, in order (their first words)."""
    engine = session_factory.kw["bind"]
    seen: list[str] = []

    def record(*args: object) -> None:
        statement = args[2]
        assert isinstance(statement, str)
        seen.append(" ".join(statement.split()[:2]))

    event.listen(engine, "before_cursor_execute", record)
    try:
        send()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return seen


def test_a_batch_costs_the_same_round_trips_whatever_its_size(
    messaging: MessagingActivities,
    session_factory: sessionmaker[Session],
    physician: PolicyBundle,
) -> None:
    """The send of a batch asks the database a fixed number of times, never once per step: the
    worker shares two cores with the Temporal server, whose pace sets the throughput."""

    def batch(size: int) -> list[SendStepInput]:
        steps = []
        for i in range(size):
            account = make_account(session_factory, physician)
            step_id = "statement-1" if i % 2 else "notice-1"  # letters and emails mixed
            steps.append(step_input(physician, account, step_id))
        return steps

    warm = batch(2)
    messaging.send_steps(warm)  # policies and statements compiled, not counted
    one, eight = batch(2), batch(8)
    few = _statements(session_factory, lambda: messaging.send_steps(one))
    many = _statements(session_factory, lambda: messaging.send_steps(eight))
    assert all(isinstance(o, SendStepResult) for o in messaging.send_steps(batch(3)))
    assert many == few, (few, many)
    # The accounts (with a count of earlier outbox rows), the person's recent contacts, the
    # claims with their audit rows and first statements, the SENT marks with theirs.
    assert len(few) <= 4, few
