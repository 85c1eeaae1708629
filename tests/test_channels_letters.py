"""Letters as PDFs and the day's print batch, for every policy shipped in config/policies.

Example PDFs of each policy's letters are written to a folder the run prints (or to
``DUNNING_EXAMPLE_LETTERS`` when set) and their text is read back with pypdf.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import os
import uuid
from pathlib import Path

import pytest
from pypdf import PdfReader
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from activities.channels import LetterContent
from activities.letters import PRINT_QUEUE, build_print_batch, letter_pdf, message_text
from activities.messaging import MessagingActivities, PolicyStore
from config.loader import load_policy, shipped_policies
from config.settings import Settings
from models.money import format_cents
from models.orm import Communication, CommunicationStatus
from models.payloads import StepOutcome
from models.policy import Channel, StepKind
from tests.fakes.accounts import make_account, step_input
from tests.support.clock import MORNING
from worker import build_senders
from workflows.decisions import zone

LINES = [
    (dt.date(2026, 9, 14), "Office visit", 18500, 9000, 4000, 2500),
    (dt.date(2026, 11, 2), "Laboratory", 6000, 2000, 1500, 0),
]
BALANCE = 3000 + 2500  # per visit: 185-90-40-25 = 30.00 and 60-20-15-0 = 25.00


def _text(pdf: bytes) -> str:
    pages = PdfReader(io.BytesIO(pdf)).pages
    return " ".join(" ".join(page.extract_text() or "" for page in pages).split())


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def example_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("DUNNING_EXAMPLE_LETTERS")
    path = Path(configured) if configured else tmp_path_factory.mktemp("example-letters")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.parametrize("policy_path", shipped_policies(), ids=lambda p: p.stem)
def test_every_letter_of_every_shipped_policy_as_pdf(
    policy_path: Path,
    settings: Settings,
    session_factory: sessionmaker[Session],
    example_dir: Path,
) -> None:
    bundle = load_policy(policy_path)
    policy = bundle.policy
    messaging = MessagingActivities(
        session_factory,
        build_senders(settings),
        PolicyStore(session_factory),
        clock=lambda: MORNING,
    )
    letter_steps = [s for s in policy.steps if Channel.LETTER in s.channels]
    assert letter_steps, f"{policy.name} has no letter step"
    account_id = make_account(
        session_factory,
        bundle,
        first_name="Robin",
        last_name="Fictive",
        address_line1="42 Sample Street",
        city="Springfield",
        region="NY",
        postal_code="10001",
        charges=LINES,
    )

    def money(cents: int) -> str:
        return format_cents(cents, policy.currency)

    for step in letter_steps:
        result = messaging.send_step(
            step_input(
                bundle, account_id, step.id, channels=[Channel.LETTER], balance_cents=BALANCE
            )
        )
        assert result.outcome is StepOutcome.SENT and result.channel is Channel.LETTER
        with session_factory() as s:
            row = s.get(Communication, uuid.UUID(result.communication_id or ""))
            # Queued for the print batch with its statement, in the same commit as its claim.
            assert row is not None and row.provider == PRINT_QUEUE and row.letter is not None
            assert row.status is CommunicationStatus.SENT and row.file_path is None
            pdf = letter_pdf(row)
            body = row.body or ""
        assert pdf.startswith(b"%PDF")
        (example_dir / f"{policy.name}-{step.id}.pdf").write_bytes(pdf)
        text = _text(pdf)
        today = MORNING.astimezone(zone("America/New_York")).date()
        due = today + dt.timedelta(days=30)
        # Letterhead, window-envelope address, a clear amount due and due date.
        for expected in (
            policy.practice.name,
            policy.practice.phone,
            "RETURN SERVICE REQUESTED",
            "Robin Fictive",
            "42 Sample Street",
            "Springfield, NY 10001",
            f"Amount due: {money(BALANCE)}",
            f"Please pay by: {due.isoformat()}",
            f"Statement date: {today.isoformat()}",
        ):
            assert expected in text, (policy.name, step.id, expected)
        assert text.count(f"Amount due: {money(BALANCE)}") == 1
        # The statement breakdown per visit (with its insurer) and its totals.
        for expected in (
            "Charges",
            "Insurance paid",
            "Adjusted",
            "You paid",
            "You owe",
            "2026-09-14 Office visit Insurance $185.00 -$90.00 -$40.00 -$25.00 $30.00",
            "2026-11-02 Laboratory Insurance $60.00 -$20.00 -$15.00 $0.00 $25.00",
            "Total $245.00 -$110.00 -$55.00 -$25.00 $55.00",
        ):
            assert expected in text, (policy.name, step.id, expected)
        # Aging: 120 days old (Sept) and 71 days old (Nov) on 12 January.
        assert "0-30 days 31-60 days 61-90 days 91-120 days 120+ days" in text
        assert "$0.00 $0.00 $25.00 $30.00 $0.00" in text
        assert "Ways to pay" in text and "By phone:" in text
        if policy.practice.pay_url:
            assert f"Online: {policy.practice.pay_url}" in text
        # Where to mail a check: the remit-to address, on the coupon.
        for line in (policy.practice.name, *policy.practice.remit_to):
            assert line in text, (policy.name, step.id, line)
        summary = _flat(policy.practice.financial_assistance_summary)
        fap_required = step.kind is StepKind.FINAL_NOTICE or policy.eca.enabled
        if summary and fap_required:  # in its box, or where the policy's message puts it
            assert summary in text, (policy.name, step.id)
            assert text.count(summary) == 1, (policy.name, step.id)
        # The policy's message, without the letterhead and text table the PDF lays out itself.
        letter_paragraphs = [p for p in body.split("\n\n") if p.strip()]
        assert letter_paragraphs
        shown = message_text(
            body,
            LetterContent(
                policy.practice.name,
                policy.practice.phone,
                policy.practice.pay_url,
                "Robin Fictive",
                (),
                "",
                today,
                due,
                BALANCE,
                policy.currency,
                (),
                (),
                step.template,
                policy.practice.financial_assistance_summary if fap_required else "",
            ),
        )
        for paragraph in shown:
            assert _flat(paragraph)[:60] in text, (policy.name, step.id, paragraph)
        pages = len(PdfReader(io.BytesIO(pdf)).pages)
        assert 1 <= pages <= 3


def test_print_batch_of_a_day(
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    bundle = load_policy("physician")
    day_clock = dt.datetime(2031, 3, 4, 15, 0, tzinfo=dt.UTC)  # a day no other test sends on
    messaging = MessagingActivities(
        session_factory,
        build_senders(settings),
        PolicyStore(session_factory),
        clock=lambda: day_clock,
    )
    sent: list[str] = []
    for name in ("Ada", "Bo", "Cy"):
        account_id = make_account(session_factory, bundle, first_name=name, charges=LINES)
        step = step_input(bundle, account_id, "statement-1", balance_cents=BALANCE)
        result = messaging.send_step(step)
        sent.append(result.communication_id or "")
        # Sending the same step again (a retry, a replay) adds no letter.
        assert messaging.send_step(step).communication_id == result.communication_id
    with session_factory() as s:
        rows = {
            str(r.id): r
            for r in s.scalars(
                select(Communication).where(
                    Communication.channel == Channel.LETTER,
                    Communication.status == CommunicationStatus.SENT,
                    Communication.id.in_([uuid.UUID(i) for i in sent]),
                )
            )
        }
        assert len(rows) == 3
        batch = build_print_batch(s, day_clock.date(), zone("America/New_York"), tmp_path / "print")
        singles = {i: letter_pdf(rows[i]) for i in sent}
        first_pdf, first_manifest = batch.pdf_path.read_bytes(), batch.manifest_path.read_bytes()
        # Composition is deterministic: a rebuilt batch is the same file, byte for byte.
        again = build_print_batch(s, day_clock.date(), zone("America/New_York"), tmp_path / "p2")
    assert again.pdf_path.read_bytes() == first_pdf
    assert again.manifest_path.read_bytes() == first_manifest
    assert batch.letters == 3
    merged = PdfReader(batch.pdf_path)
    pages = [len(PdfReader(io.BytesIO(singles[i])).pages) for i in sent]
    assert batch.pages == len(merged.pages) == sum(pages)
    with batch.manifest_path.open(encoding="utf-8") as fh:
        manifest = list(csv.DictReader(fh))
    assert [m["communication_id"] for m in manifest] == sent
    # The manifest's checksums are those of the letters as composed one by one.
    assert [m["sha256"] for m in manifest] == [hashlib.sha256(singles[i]).hexdigest() for i in sent]
    assert [int(m["first_page"]) for m in manifest] == [
        1,
        1 + pages[0],
        1 + pages[0] + pages[1],
    ]
    raw = batch.manifest_path.read_text(encoding="utf-8")
    for name in ("Ada", "Bo", "Cy", "Synthetic", "Example Way", "55.00"):
        assert name not in raw
    first_page = merged.pages[int(manifest[1]["first_page"]) - 1].extract_text() or ""
    assert "Bo Synthetic" in first_page
