"""Statements true when printed: the print batch composes from the ledger at composition time."""

from __future__ import annotations

import csv
import datetime as dt
import io
import stat
import uuid
from pathlib import Path

from pypdf import PdfReader
from sqlalchemy.orm import Session, sessionmaker

from activities.letters import build_print_batch
from activities.messaging import MessagingActivities, PolicyStore
from config.loader import load_policy
from config.settings import Settings
from models.orm import Account, AuditEvent
from starter import Intake
from tests.fakes.accounts import make_account, step_input
from worker import build_senders
from workflows.decisions import zone

LINES = [(dt.date(2026, 9, 14), "Office visit", 18500, 9000, 4000, 2500)]  # 30.00 owed


async def test_print_batch_drops_paid_and_held_and_prints_the_ledgers_balance(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    bundle = load_policy("physician")
    day_clock = dt.datetime(2031, 3, 5, 15, 0, tzinfo=dt.UTC)  # a day no other test sends on
    messaging = MessagingActivities(
        session_factory,
        build_senders(settings),
        PolicyStore(session_factory),
        clock=lambda: day_clock,
    )
    ids: list[str] = []
    queued: list[str] = []
    for name in ("Paid", "Partial", "Held"):
        account_id = make_account(session_factory, bundle, first_name=name, charges=LINES)
        result = messaging.send_step(
            step_input(bundle, account_id, "statement-1", balance_cents=3000)
        )
        ids.append(account_id)
        queued.append(result.communication_id or "")
    intake = Intake(session_factory, None, settings)
    numbers = []
    with session_factory() as session:
        for account_id in ids:
            account = session.get(Account, uuid.UUID(account_id))
            assert account is not None
            numbers.append(account.account_number)
    # After the letters were queued: one paid in full, one partly, one put on hold.
    await intake.post_payment_fact(numbers[0], 3000, f"FULL-{uuid.uuid4().hex[:8]}")
    await intake.post_payment_fact(numbers[1], 1000, f"PART-{uuid.uuid4().hex[:8]}")
    with session_factory.begin() as session:
        session.add(
            AuditEvent(
                actor="staff",
                action="hold",
                account_id=uuid.UUID(ids[2]),
                detail={"outcome": "done", "reason": "dispute"},
            )
        )
    with session_factory() as session:
        batch = build_print_batch(session, day_clock.date(), zone("America/New_York"), tmp_path)
    assert (batch.letters, batch.dropped) == (1, 2)
    # Names and addresses: the print files are the owner's only, whatever the umask.
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o700
    for path in (batch.pdf_path, batch.manifest_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    with batch.manifest_path.open(encoding="utf-8") as fh:
        manifest = {m["communication_id"]: m for m in csv.DictReader(fh)}
    assert manifest[queued[0]]["action"] == "dropped"
    assert "nothing owed" in manifest[queued[0]]["reason"]
    assert manifest[queued[1]]["action"] == "print"
    assert (manifest[queued[2]]["action"], manifest[queued[2]]["reason"]) == (
        "dropped",
        "account on hold since queued",
    )
    text = " ".join(
        " ".join(
            p.extract_text() or "" for p in PdfReader(io.BytesIO(batch.pdf_path.read_bytes())).pages
        ).split()
    )
    assert "Partial Synthetic" in text and "Paid Synthetic" not in text
    assert "Amount due: $20.00" in text and "$30.00" not in text.split("Amount due:")[1][:12]
