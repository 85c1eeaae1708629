"""Letters and statements: a PDF per letter, composed for the day's print batch.

A letter step queues the letter: its outbox row stores the rendered message (``body``) and the
statement it lays out (``letter``: address, visits, aging, due date), committed with the row
itself, so a letter is queued exactly once and nothing about it can change afterwards. The print
batch (one merged PDF and a CSV manifest for the practice's printer or a mail house) composes each
queued letter's PDF from that row; ``letter_pdf`` composes one letter the same way for a person to
look at. Composition is deterministic: the same row always gives the same bytes, so a rebuilt batch
matches its manifest's checksums. Composing PDFs once a day in the batch, not in the step, keeps
the ladder's hot path to checking, rendering and one transaction (``bench/`` measures both).

Layout: the practice's letterhead, the address placed for a #10 window envelope with "Return
Service Requested", a summary box (amount due, due date, account), the policy's message, the
statement breakdown per visit (total charges - insurance paid - insurance adjustment - patient
payments = balance), aging, ways to pay, the financial-assistance summary where the policy
requires it, and a remittance stub. Envelopes and stubs name no service (HIPAA minimum necessary).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from pydantic import TypeAdapter
from pypdf import PdfReader, PdfWriter
from reportlab.lib import colors
from reportlab.lib.pagesizes import LETTER
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import inch
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    BaseDocTemplate,
    Flowable,
    Frame,
    KeepTogether,
    PageTemplate,
    Paragraph,
    Spacer,
    Table,
    TableStyle,
)
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from activities.channels import LetterContent
from config.private_files import private_dir, private_file
from models.money import format_cents
from models.orm import Account, AccountStatus, AuditEvent, Communication, CommunicationStatus
from models.policy import Channel
from models.safe_csv import SafeDictWriter

PAGE_WIDTH, PAGE_HEIGHT = LETTER
MARGIN = 0.75 * inch
# #10 window envelope: the window sits about 7/8" from the left and 2" from the top.
ADDRESS_LEFT = 0.875 * inch
ADDRESS_TOP = 2.0 * inch
FIRST_PAGE_BODY_TOP = 3.35 * inch


class LetterError(ValueError):
    """A letter that cannot be laid out; names the message id only."""


PRINT_QUEUE = "print-queue"
"""The provider name of a queued letter: the practice's own print batch."""

_LETTER = TypeAdapter(LetterContent)


def letter_json(letter: LetterContent) -> dict[str, Any]:
    """The statement of a letter as stored in its outbox row (JSON)."""
    data: dict[str, Any] = _LETTER.dump_python(letter, mode="json")
    return data


def letter_from_json(data: dict[str, Any]) -> LetterContent:
    return _LETTER.validate_python(data)


def letter_pdf(row: Communication) -> bytes:
    """One queued letter as PDF bytes, composed from its outbox row.

    Raises:
        LetterError: the row is not a letter, or stores no statement (a letter queued before
        statements were stored in the row has its PDF in the outbox: that file is returned).
    """
    if row.channel is not Channel.LETTER:
        raise LetterError(f"communication {row.id} is not a letter")
    if row.letter is not None:
        return render_letter(letter_from_json(row.letter), row.body or "", str(row.id))
    path = Path(row.file_path or "")
    if path.suffix == ".pdf" and path.is_file():
        return path.read_bytes()
    raise LetterError(f"letter {row.id} stores no statement and has no PDF in the outbox")


# -- layout -----------------------------------------------------------------------------------

_STYLES = getSampleStyleSheet()
BODY = ParagraphStyle(
    "body",
    parent=_STYLES["BodyText"],
    fontName="Helvetica",
    fontSize=10,
    leading=13.5,
    spaceAfter=5,
)
SMALL = ParagraphStyle("small", parent=BODY, fontSize=8.5, leading=11)
HEADING = ParagraphStyle(
    "heading",
    parent=BODY,
    fontName="Helvetica-Bold",
    fontSize=11.5,
    leading=15,
    spaceBefore=8,
    spaceAfter=4,
)
TITLE = ParagraphStyle("title", parent=BODY, fontName="Helvetica-Bold", fontSize=15, leading=19)
CELL = ParagraphStyle("cell", parent=BODY, fontSize=8.5, leading=10.5, spaceAfter=0)

_ISO_LINE = re.compile(r"^\d{4}-\d{2}-\d{2}\s{2}")


def message_text(body: str, letter: LetterContent) -> list[str]:
    """The policy's message without what the letter lays out itself.

    Letter templates also serve the plain-text outbox, so they carry a letterhead, an address
    line and a text table. The PDF shows those as real layout; repeating them in the message would
    print the table twice.
    """
    repeated = {letter.practice_name, letter.practice_phone, letter.recipient_name}
    prefixes = ("Account ", "Date ", "Statement date ", "Amount due:")
    kept: list[str] = []
    for line in body.splitlines():
        stripped = line.strip()
        if stripped in repeated or stripped.startswith(prefixes) or _ISO_LINE.match(stripped):
            continue
        if stripped.casefold() == letter.title.casefold():
            continue  # the title is printed above the summary box
        if letter.financial_assistance and stripped.startswith("Financial assistance:"):
            continue  # printed in its own box, where the policy requires it
        kept.append(stripped)
    paragraphs: list[str] = []
    current: list[str] = []
    for line in [*kept, ""]:
        if line:
            current.append(line)
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    return paragraphs


def render_letter(letter: LetterContent, body: str, communication_id: str = "") -> bytes:
    """One letter as PDF bytes."""

    def money(cents: int) -> str:
        return format_cents(cents, letter.currency)

    buf = io.BytesIO()
    doc = BaseDocTemplate(
        buf,
        pagesize=LETTER,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=MARGIN,
        title=f"{letter.practice_name}: {letter.title}",
        author=letter.practice_name,
        subject=letter.title,
        creator="dunning",
        producer="dunning (reportlab)",
        invariant=True,  # no creation time or random document id: the same letter, the same bytes
    )
    width = PAGE_WIDTH - 2 * MARGIN
    first = Frame(
        MARGIN,
        MARGIN,
        width,
        PAGE_HEIGHT - FIRST_PAGE_BODY_TOP - MARGIN,
        id="first",
        leftPadding=0,
        rightPadding=0,
        topPadding=0,
        bottomPadding=0,
    )
    later = Frame(
        MARGIN,
        MARGIN,
        width,
        PAGE_HEIGHT - 2 * MARGIN - 0.4 * inch,
        id="later",
        leftPadding=0,
        rightPadding=0,
        topPadding=0,
        bottomPadding=0,
    )

    def first_page(canvas: Canvas, _doc: Any) -> None:
        _letterhead(canvas, letter)
        _address(canvas, letter)
        _footer(canvas, letter, communication_id)

    def later_page(canvas: Canvas, _doc: Any) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica-Bold", 9)
        canvas.drawString(
            MARGIN,
            PAGE_HEIGHT - MARGIN + 6,
            f"{letter.practice_name}  |  Account {letter.account_number}",
        )
        canvas.restoreState()
        _footer(canvas, letter, communication_id)

    doc.addPageTemplates(
        [
            PageTemplate(
                id="first", frames=[first], onPage=first_page, autoNextPageTemplate="later"
            ),
            PageTemplate(id="later", frames=[later], onPage=later_page),
        ]
    )

    story: list[Flowable] = []
    summary = Table(
        [
            [
                f"Amount due: {money(letter.amount_due_cents)}",
                f"Please pay by: {letter.due_date.isoformat()}",
                f"Account: {letter.account_number}",
            ]
        ],
        colWidths=[width * 0.36, width * 0.34, width * 0.30],
    )
    summary.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), "Helvetica-Bold", 11),
                ("BOX", (0, 0), (-1, -1), 1.2, colors.black),
                ("BACKGROUND", (0, 0), (-1, -1), colors.HexColor("#EEF2F6")),
                ("TOPPADDING", (0, 0), (-1, -1), 8),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 8),
            ]
        )
    )
    story += [Paragraph(escape(letter.title.upper()), TITLE), Spacer(1, 6), summary, Spacer(1, 10)]
    for paragraph in message_text(body, letter):
        story.append(Paragraph(escape(paragraph), BODY))

    if letter.accounts:  # several accounts of one guarantor (activities.family)
        from activities.family import account_sections

        story += account_sections(letter, width, _statement_table)
    else:
        story.append(Paragraph("Statement of your account", HEADING))
        story.append(_statement_table(letter, width))
    story.append(Spacer(1, 6))
    story.append(
        KeepTogether([Paragraph("Aging of your balance", HEADING), _aging_table(letter, width)])
    )
    ways = [
        f"<b>Online:</b> {escape(letter.pay_url)}" if letter.pay_url else "",
        f"<b>By phone:</b> {escape(letter.practice_phone)}",
        f"<b>By mail:</b> a check payable to {escape(letter.practice_name)}, with account "
        f"{escape(letter.account_number)} written on it and the stub below.",
        "Payment plans are available: call us before the due date.",
    ]
    story.append(
        KeepTogether([Paragraph("Ways to pay", HEADING), *[Paragraph(w, BODY) for w in ways if w]])
    )
    if letter.financial_assistance:
        box = Table(
            [
                [
                    Paragraph(
                        "<b>Financial assistance.</b> " + escape(letter.financial_assistance), BODY
                    )
                ]
            ],
            colWidths=[width],
        )
        box.setStyle(
            TableStyle(
                [
                    ("BOX", (0, 0), (-1, -1), 0.8, colors.black),
                    ("TOPPADDING", (0, 0), (-1, -1), 6),
                    ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
                ]
            )
        )
        story += [Spacer(1, 8), box]
    story.append(Spacer(1, 14))
    story.append(_stub(letter, width))
    doc.build(story)
    return buf.getvalue()


def _letterhead(canvas: Canvas, letter: LetterContent) -> None:
    canvas.saveState()
    top = PAGE_HEIGHT - MARGIN
    canvas.setFont("Helvetica-Bold", 15)
    canvas.drawString(MARGIN, top - 4, letter.practice_name)
    canvas.setFont("Helvetica", 9.5)
    contact = letter.practice_phone + (f"  |  {letter.pay_url}" if letter.pay_url else "")
    canvas.drawString(MARGIN, top - 18, contact)
    canvas.setFont("Helvetica-Bold", 11)
    canvas.drawRightString(PAGE_WIDTH - MARGIN, top - 4, letter.title)
    canvas.setFont("Helvetica", 9.5)
    canvas.drawRightString(
        PAGE_WIDTH - MARGIN, top - 18, f"Statement date: {letter.statement_date.isoformat()}"
    )
    canvas.setStrokeColor(colors.HexColor("#1F4E79"))
    canvas.setLineWidth(1.5)
    canvas.line(MARGIN, top - 26, PAGE_WIDTH - MARGIN, top - 26)
    canvas.setFont("Helvetica", 7.5)
    canvas.drawString(ADDRESS_LEFT, PAGE_HEIGHT - ADDRESS_TOP + 26, "RETURN SERVICE REQUESTED")
    canvas.restoreState()


def _address(canvas: Canvas, letter: LetterContent) -> None:
    canvas.saveState()
    canvas.setFont("Helvetica", 10.5)
    y = PAGE_HEIGHT - ADDRESS_TOP
    for line in (letter.recipient_name, *letter.address_lines):
        canvas.drawString(ADDRESS_LEFT, y, line)
        y -= 13
    canvas.restoreState()


def _footer(canvas: Canvas, letter: LetterContent, communication_id: str) -> None:
    canvas.saveState()
    canvas.setFont("Helvetica", 7)
    canvas.setFillColor(colors.gray)
    canvas.drawString(
        MARGIN, MARGIN - 18, f"Questions about this statement? Call {letter.practice_phone}."
    )
    canvas.drawRightString(
        PAGE_WIDTH - MARGIN,
        MARGIN - 18,
        f"Page {canvas.getPageNumber()}  ref {communication_id[:8]}",
    )
    canvas.restoreState()


def _statement_table(letter: LetterContent, width: float) -> Table:
    def money(cents: int) -> str:
        return format_cents(cents, letter.currency)

    head = [
        "Date of service",
        "Service",
        "Total charges",
        "Insurance paid",
        "Insurance adj.",
        "You paid",
        "Balance",
    ]
    data: list[list[Any]] = [[Paragraph(f"<b>{h}</b>", CELL) for h in head]]
    totals = [0, 0, 0, 0, 0]
    for line in letter.lines:
        values = [
            line.charges_cents,
            -line.insurance_paid_cents,
            -line.insurance_adjustment_cents,
            -line.patient_paid_cents,
            line.balance_cents,
        ]
        totals = [t + v for t, v in zip(totals, values, strict=True)]
        data.append(
            [
                line.service_date.isoformat(),
                Paragraph(escape(line.description), CELL),
                *[money(v) for v in values],
            ]
        )
    data.append(["", Paragraph("<b>Total</b>", CELL), *[money(v) for v in totals]])
    style: list[Any] = [
        ("FONT", (0, 1), (-1, -1), "Helvetica", 8.5),
        ("ALIGN", (2, 1), (-1, -1), "RIGHT"),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LINEBELOW", (0, 0), (-1, 0), 0.8, colors.black),
        ("LINEABOVE", (0, -1), (-1, -1), 0.8, colors.black),
        ("FONT", (2, -1), (-1, -1), "Helvetica-Bold", 8.5),
        ("ROWBACKGROUNDS", (0, 1), (-1, -2), [colors.white, colors.HexColor("#F5F5F5")]),
    ]
    credit = totals[-1] - letter.amount_due_cents
    if credit > 0:
        data.append(
            [
                "",
                Paragraph("Payments and credits since these visits were billed", CELL),
                "",
                "",
                "",
                money(-credit),
                money(-credit),
            ]
        )
        data.append(
            [
                "",
                Paragraph("<b>Balance due</b>", CELL),
                "",
                "",
                "",
                "",
                money(letter.amount_due_cents),
            ]
        )
        style.append(("FONT", (2, -1), (-1, -1), "Helvetica-Bold", 8.5))
        style.append(("FONT", (2, -2), (-1, -2), "Helvetica", 8.5))
        style.append(("LINEABOVE", (0, -1), (-1, -1), 0.8, colors.black))
    widths = [0.13, 0.23, 0.13, 0.13, 0.13, 0.12, 0.13]
    table = Table(data, colWidths=[width * w for w in widths], repeatRows=1)
    table.setStyle(TableStyle(style))
    return table


def _aging_table(letter: LetterContent, width: float) -> Table:
    def money(cents: int) -> str:
        return format_cents(cents, letter.currency)

    names = [f"{name} days" for name, _ in letter.aging_cents]
    table = Table(
        [names, [money(c) for _, c in letter.aging_cents]],
        colWidths=[width / max(len(names), 1)] * len(names),
    )
    table.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 8.5),
                ("FONT", (0, 1), (-1, 1), "Helvetica", 9),
                ("ALIGN", (0, 0), (-1, -1), "CENTER"),
                ("GRID", (0, 0), (-1, -1), 0.5, colors.gray),
            ]
        )
    )
    return table


def _stub(letter: LetterContent, width: float) -> Flowable:
    def money(cents: int) -> str:
        return format_cents(cents, letter.currency)

    rows: list[list[Any]] = [
        [Paragraph("<b>Please detach and return this part with your payment</b>", SMALL), "", ""],
        [
            f"Account {letter.account_number}",
            f"Due by {letter.due_date.isoformat()}",
            f"Balance {money(letter.amount_due_cents)}",
        ],
        [f"Pay to {letter.practice_name}", "", "Amount enclosed: $__________"],
    ]
    table = Table(rows, colWidths=[width * 0.4, width * 0.25, width * 0.35])
    table.setStyle(
        TableStyle(
            [
                ("SPAN", (0, 0), (-1, 0)),
                ("FONT", (0, 1), (-1, -1), "Helvetica", 9),
                ("LINEABOVE", (0, 0), (-1, 0), 0.8, colors.black, 1, (3, 3)),
                ("TOPPADDING", (0, 0), (-1, 0), 8),
            ]
        )
    )
    return KeepTogether([table])


# -- print batches ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrintBatch:
    day: dt.date
    pdf_path: Path
    manifest_path: Path
    letters: int
    pages: int
    dropped: int = 0
    """Letters queued that day but not printed: the account was paid, closed, held or ended."""


MANIFEST_FIELDS = [
    "sequence",
    "communication_id",
    "account_id",
    "step_id",
    "first_page",
    "pages",
    "sha256",
    "action",
    "reason",
]


def _held_since(session: Session, account_id: Any, since: dt.datetime) -> bool:
    """A hold recorded after the letter was queued and not resumed since (the staff audit)."""
    actions = session.scalars(
        select(AuditEvent.action)
        .where(
            AuditEvent.account_id == account_id,
            AuditEvent.action.in_(("hold", "resume")),
            AuditEvent.at >= since,
            AuditEvent.detail["outcome"].astext.is_distinct_from("refused"),
        )
        .order_by(AuditEvent.at.desc())
    ).all()
    return bool(actions) and actions[0] == "hold"


def letter_now(session: Session, row: Communication) -> tuple[LetterContent | None, str]:
    """The letter as the ledger stands now, or None and why it must not be printed.

    A queued letter is printed with the ledger's balance, visits and aging at composition time;
    the letter of an account paid, closed, ended or held since it was queued is dropped.
    """
    if row.letter is not None and row.letter.get("scope"):
        from activities.family import letter_now_covering

        return letter_now_covering(session, row, letter_from_json(row.letter), _held_since)
    account = session.scalars(
        select(Account).where(Account.id == row.account_id).options(selectinload(Account.charges))
    ).one()
    if account.status is not AccountStatus.OPEN:
        return None, f"account {account.status.value} since queued"
    if account.balance_cents <= 0:
        return None, "nothing owed (paid or in credit)"
    if _held_since(session, account.id, row.created_at):
        return None, "account on hold since queued"
    if row.letter is None:
        return None, ""
    # messaging imports this module: the statement's lines as the step composes them
    from activities.messaging.composition import aging_of, statement_line

    stored = letter_from_json(row.letter)
    lines = tuple(statement_line(c) for c in account.charges)
    balance = account.balance_cents
    return (
        dataclasses.replace(
            stored,
            amount_due_cents=balance,
            lines=lines,
            aging_cents=aging_of(lines, balance, stored.statement_date),
        ),
        "",
    )


def build_print_batch(
    session: Session, day: dt.date, time_zone: dt.tzinfo, directory: Path
) -> PrintBatch:
    """Gather the letters sent on ``day`` (in ``time_zone``) into one PDF and a CSV manifest.

    The manifest names each letter by opaque ids and its pages, so that a mail house can check
    it printed every letter exactly once; names and addresses stay inside the PDF. Each letter is
    composed from its outbox row (``letter_pdf``), so rebuilding the batch of a day gives the same
    files. Reads only; the caller's session is not committed.

    Raises:
        LetterError: a queued letter can be composed neither from its row nor from a PDF file.
    """
    start = dt.datetime.combine(day, dt.time(), tzinfo=time_zone)
    end = start + dt.timedelta(days=1)
    rows = session.scalars(
        select(Communication)
        .where(
            Communication.channel == Channel.LETTER,
            Communication.status == CommunicationStatus.SENT,
            Communication.sent_at >= start,
            Communication.sent_at < end,
            # A record of a letter that covered several accounts: printed once, with its primary.
            Communication.provider.is_distinct_from("merged"),
        )
        .order_by(Communication.sent_at, Communication.created_at, Communication.id)
    ).all()
    private_dir(directory)
    writer = PdfWriter()
    manifest: list[dict[str, Any]] = []
    page = 1
    printed = dropped = 0
    for seq, row in enumerate(rows, start=1):
        letter, reason = letter_now(session, row)
        if letter is None and reason:
            dropped += 1
            manifest.append(
                {
                    "sequence": seq,
                    "communication_id": str(row.id),
                    "account_id": str(row.account_id),
                    "step_id": row.step_id,
                    "first_page": "",
                    "pages": 0,
                    "sha256": "",
                    "action": "dropped",
                    "reason": reason,
                }
            )
            continue
        data = (
            render_letter(letter, row.body or "", str(row.id))
            if letter is not None
            else letter_pdf(row)
        )
        printed += 1
        reader = PdfReader(io.BytesIO(data))
        for p in reader.pages:
            writer.add_page(p)
        count = len(reader.pages)
        manifest.append(
            {
                "sequence": seq,
                "communication_id": str(row.id),
                "account_id": str(row.account_id),
                "step_id": row.step_id,
                "first_page": page,
                "pages": count,
                "sha256": hashlib.sha256(data).hexdigest(),
                "action": "print",
                "reason": "",
            }
        )
        page += count
    stem = f"letters-{day.isoformat()}"
    pdf_path = directory / f"{stem}.pdf"
    manifest_path = directory / f"{stem}.csv"
    writer.add_metadata({"/Title": f"Print batch {day.isoformat()}", "/Producer": "dunning"})
    tmp = private_file(pdf_path.with_suffix(".pdf.tmp"))
    with tmp.open("wb") as fh:
        writer.write(fh)
    tmp.replace(pdf_path)
    _write_manifest(manifest_path, manifest)
    return PrintBatch(day, pdf_path, manifest_path, printed, page - 1, dropped)


def _write_manifest(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = SafeDictWriter(buf, fieldnames=MANIFEST_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    tmp = private_file(path.with_suffix(".csv.tmp"))
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    tmp.replace(path)
