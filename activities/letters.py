"""Letters and statements: a PDF per letter, composed for the day's print batch.

A letter step queues the letter: its outbox row stores the rendered message (``body``) and the
statement it lays out (``letter``: address, visits, aging, due date), committed with the row
itself, so a letter is queued exactly once and nothing about it can change afterwards. The print
batch (one merged PDF and a CSV manifest for the practice's printer or a mail house) composes each
queued letter's PDF from that row; ``letter_pdf`` composes one letter the same way for a person to
look at. Composition is deterministic: the same row always gives the same bytes, so a rebuilt batch
matches its manifest's checksums. Composing PDFs once a day in the batch, not in the step, keeps
the ladder's hot path to checking, rendering and one transaction (``bench/`` measures both).

Layout: ``config/statement/layout.yaml`` orders the body's blocks (summary, the policy's message,
the visits with their insurer and claim status, why the patient owes each amount, ways to pay,
what to do if the bill looks wrong, aging, the financial-assistance summary where the policy
requires it) and places the envelope windows; every fixed word comes from the letter language's
wording (``activities.statement``). The letterhead puts the practice's name, logo and return
address in the #10 double-window envelope's upper window and the patient's address in its lower
one; the coupon at the bottom of page one puts the remit-to address in a #9 return envelope's
window. Nothing else shows through a window: no amount, no service (HIPAA minimum necessary).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import re
from collections.abc import Callable, Sequence
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
from reportlab.lib.utils import simpleSplit
from reportlab.pdfbase.pdfmetrics import stringWidth
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
from activities.statement import (
    Layout,
    StatementConfigError,
    Wording,
    claim_text,
    explain,
    hours_text,
    load_layout,
    logo_file,
    wording,
)
from config.private_files import private_dir, private_file
from models.money import format_cents
from models.orm import Account, AccountStatus, AuditEvent, Communication, CommunicationStatus
from models.policy import Channel
from models.safe_csv import SafeDictWriter

PAGE_WIDTH, PAGE_HEIGHT = LETTER
MARGIN = 0.75 * inch


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
# The letter is laid out from config/statement/layout.yaml (blocks, envelope windows) and the
# wording of its language (activities.statement). What shows through an envelope's window is
# drawn at a fixed place inside it, away from its edges by the layout's clearance; everything
# else stays out of the windows (HIPAA minimum necessary: no amount, no service there).

_STYLES = getSampleStyleSheet()
BODY = ParagraphStyle(
    "body",
    parent=_STYLES["BodyText"],
    fontName="Helvetica",
    fontSize=9.5,
    leading=12.5,
    spaceAfter=4,
)
SMALL = ParagraphStyle("small", parent=BODY, fontSize=8.5, leading=11)
HEADING = ParagraphStyle(
    "heading",
    parent=BODY,
    fontName="Helvetica-Bold",
    fontSize=11,
    leading=14,
    spaceBefore=7,
    spaceAfter=3,
    textColor=colors.HexColor("#1F4E79"),
    keepWithNext=1,  # a heading never ends a page without its block
)
TITLE = ParagraphStyle("title", parent=BODY, fontName="Helvetica-Bold", fontSize=14, leading=18)
CELL = ParagraphStyle("cell", parent=BODY, fontSize=7.5, leading=9, spaceAfter=0)
CELL_RIGHT = ParagraphStyle("cell-right", parent=CELL, alignment=2)
ACCENT = colors.HexColor("#1F4E79")

_ISO_LINE = re.compile(r"^\d{4}-\d{2}-\d{2}\s{2}")
_REPEATED_PREFIXES = (
    "Account ",
    "Date ",
    "Statement date ",
    "Amount due:",
    "Cuenta ",
    "Fecha ",
    "Monto a pagar:",
    "RETURN SERVICE REQUESTED",  # printed under the return address
    "Ways to pay:",  # the ways_to_pay block lays them out, with the hours and the coupon
    "Formas de pago:",
)


def message_text(body: str, letter: LetterContent) -> list[str]:
    """The policy's message without what the letter lays out itself.

    Letter templates also serve the plain-text outbox, so they carry a letterhead, an address
    line and a text table. The PDF shows those as real layout; repeating them in the message would
    print the table twice.
    """
    repeated = {letter.practice_name, letter.practice_phone, letter.recipient_name}
    kept: list[str] = []
    for line in body.splitlines():
        stripped = line.strip()
        if (
            stripped in repeated
            or stripped.startswith(_REPEATED_PREFIXES)
            or _ISO_LINE.match(stripped)
        ):
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


def summary_in_message(paragraphs: list[str], letter: LetterContent) -> bool:
    """The policy's message already carries the financial-assistance summary: it is printed
    once, where the template puts it, and not again in a box of its own."""
    summary = " ".join(letter.financial_assistance.split())
    return bool(summary) and any(summary in " ".join(p.split()) for p in paragraphs)


def _top(inches: float) -> float:
    """A distance from the page's top edge, in inches, as reportlab's y (points from the bottom)."""
    return PAGE_HEIGHT - inches * inch


def render_letter(
    letter: LetterContent, body: str, communication_id: str = "", layout: Layout | None = None
) -> bytes:
    """One letter as PDF bytes, laid out by the statement layout file in the letter's language.

    Raises:
        LetterError: the layout or the wording of the letter's language cannot be used.
    """
    try:
        layout = layout or load_layout()
        words = wording(letter.language)
        hours = hours_text(letter.phone_hours, words)
        return _render(letter, body, communication_id, layout, words, hours)
    except StatementConfigError as exc:
        raise LetterError(str(exc)) from None


def _title(letter: LetterContent, words: Wording) -> str:
    return words(f"title.{letter.title_key}") if letter.title_key else letter.title


def _render(
    letter: LetterContent,
    body: str,
    communication_id: str,
    layout: Layout,
    words: Wording,
    hours: str,
) -> bytes:
    envelopes = layout.envelopes
    title = _title(letter, words)
    buf = io.BytesIO()
    doc = BaseDocTemplate(
        buf,
        pagesize=LETTER,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=MARGIN,
        title=f"{letter.practice_name}: {title}",
        author=letter.practice_name,
        subject=title,
        creator="dunning",
        producer="dunning (reportlab)",
        lang=letter.language,
        invariant=True,  # no creation time or random document id: the same letter, the same bytes
    )
    width = PAGE_WIDTH - 2 * MARGIN
    address = envelopes.address_window
    body_top = (address.top + address.height + envelopes.clearance + 0.1) * inch
    coupon_top = envelopes.coupon_height * inch
    first_bottom = coupon_top + 0.4 * inch
    first = Frame(
        MARGIN,
        first_bottom,
        width,
        PAGE_HEIGHT - body_top - first_bottom,
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
        PAGE_HEIGHT - 2 * MARGIN - 0.3 * inch,
        id="later",
        leftPadding=0,
        rightPadding=0,
        topPadding=0,
        bottomPadding=0,
    )

    def first_page(canvas: Canvas, _doc: Any) -> None:
        _return_block(canvas, letter, layout, words)
        _header_right(canvas, letter, words, title)
        _address(canvas, letter, layout)
        _coupon(canvas, letter, layout, words)
        _footer(canvas, letter, communication_id, words, hours, coupon_top + 0.14 * inch)

    def later_page(canvas: Canvas, _doc: Any) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica-Bold", 9)
        canvas.drawString(
            MARGIN,
            PAGE_HEIGHT - MARGIN + 6,
            words("continued", practice=letter.practice_name, number=letter.account_number),
        )
        canvas.restoreState()
        _footer(canvas, letter, communication_id, words, hours, MARGIN - 18)

    doc.addPageTemplates(
        [
            PageTemplate(
                id="first", frames=[first], onPage=first_page, autoNextPageTemplate="later"
            ),
            PageTemplate(id="later", frames=[later], onPage=later_page),
        ]
    )
    message = message_text(body, letter)
    assistance_said = summary_in_message(message, letter)
    blocks: dict[str, Callable[[], list[Flowable]]] = {
        "summary": lambda: _summary(letter, words, title, width),
        "message": lambda: [Paragraph(escape(p), BODY) for p in message],
        "visits": lambda: _visits(letter, words, width),
        "explanation": lambda: _explanation(letter, words),
        "aging": lambda: [
            KeepTogether(
                [
                    Paragraph(escape(words("aging_heading")), HEADING),
                    _aging_table(letter, words, width),
                ]
            )
        ],
        "ways_to_pay": lambda: _ways_to_pay(letter, words, hours),
        "if_wrong": lambda: _if_wrong(letter, words, hours),
        "financial_assistance": lambda: (
            [] if assistance_said else _assistance(letter, words, width)
        ),
    }
    story: list[Flowable] = []
    for block in layout.blocks:
        story += blocks[block]()
    doc.build(story)
    return buf.getvalue()


def _visits(letter: LetterContent, words: Wording, width: float) -> list[Flowable]:
    if letter.accounts:  # several accounts of one guarantor (activities.family)
        from activities.family import account_sections

        return account_sections(
            letter, width, lambda one, w: _statement_table(one, words, w), words
        )
    return [
        Paragraph(escape(words("visits_heading")), HEADING),
        _statement_table(letter, words, width),
    ]


def _summary(letter: LetterContent, words: Wording, title: str, width: float) -> list[Flowable]:
    summary = Table(
        [
            [
                words("amount_due", amount=format_cents(letter.amount_due_cents, letter.currency)),
                words("pay_by", date=letter.due_date.isoformat()),
                words("account", number=letter.account_number),
            ]
        ],
        colWidths=[width * 0.36, width * 0.36, width * 0.28],
    )
    summary.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), "Helvetica-Bold", 10.5),
                ("BOX", (0, 0), (-1, -1), 1.2, colors.black),
                ("BACKGROUND", (0, 0), (-1, -1), colors.HexColor("#EEF2F6")),
                ("TOPPADDING", (0, 0), (-1, -1), 7),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 7),
            ]
        )
    )
    return [Paragraph(escape(title.upper()), TITLE), Spacer(1, 4), summary, Spacer(1, 8)]


def _explanation(letter: LetterContent, words: Wording) -> list[Flowable]:
    out: list[Flowable] = [Paragraph(escape(words("explanation_heading")), HEADING)]
    for line in letter.lines:
        label = words("visit", date=line.service_date.isoformat(), service=line.description)
        said = " ".join(explain(line, letter.currency, words))
        out.append(Paragraph(f"<b>{escape(label)}</b> {escape(said)}", BODY))
    return out


def _ways_to_pay(letter: LetterContent, words: Wording, hours: str) -> list[Flowable]:
    ways = [
        words("way_online", url=letter.pay_url) if letter.pay_url else "",
        words("way_phone", phone=letter.practice_phone, hours=hours),
        words("way_mail", practice=letter.practice_name, number=letter.account_number),
        words("way_plan"),
    ]
    return [
        KeepTogether(
            [
                Paragraph(escape(words("ways_heading")), HEADING),
                *[Paragraph(escape(w), BODY) for w in ways if w],
            ]
        )
    ]


def _if_wrong(letter: LetterContent, words: Wording, hours: str) -> list[Flowable]:
    items = ["wrong_itemized", "wrong_dispute", "wrong_appeal", "wrong_assistance"]
    call = escape(words("wrong_call", phone=letter.practice_phone, hours=hours))
    return [
        KeepTogether(
            [
                Paragraph(escape(words("wrong_heading")), HEADING),
                *[Paragraph("&bull; " + escape(words(k)), BODY) for k in items],
                Paragraph(f"<b>{call}</b>", BODY),
            ]
        )
    ]


def _assistance(letter: LetterContent, words: Wording, width: float) -> list[Flowable]:
    if not letter.financial_assistance:
        return []
    box = Table(
        [
            [
                Paragraph(
                    f"<b>{escape(words('assistance_heading'))}</b> "
                    + escape(letter.financial_assistance),
                    BODY,
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
    return [Spacer(1, 8), box]


def _return_block(canvas: Canvas, letter: LetterContent, layout: Layout, words: Wording) -> None:
    """The practice's name and return address, inside the #10 envelope's upper window."""
    window = layout.envelopes.return_window
    pad = layout.envelopes.clearance
    x = (window.left + pad) * inch
    top = window.top + pad
    canvas.saveState()
    logo = logo_file(letter.logo)
    if logo is not None:
        box = layout.logo
        canvas.drawImage(
            str(logo),
            x,
            _top(top + box.height),
            width=box.width * inch,
            height=box.height * inch,
            preserveAspectRatio=True,
            anchor="nw",
            mask="auto",
        )
        x += (box.width + 0.1) * inch
    y = _top(top) - 10
    room = (window.left + window.width - pad) * inch - x
    size = _fitting_size([letter.practice_name], "Helvetica-Bold", 10, room)
    names = [letter.practice_name]
    if stringWidth(letter.practice_name, "Helvetica-Bold", size) > room:
        size = 8.5  # a long name beside the logo takes two lines rather than leave the window
        names = simpleSplit(letter.practice_name, "Helvetica-Bold", size, room)
    canvas.setFont("Helvetica-Bold", size)
    for i, name in enumerate(names):
        canvas.drawString(x, y - i * 9.5, name)
    y -= (len(names) - 1) * 9.5
    canvas.setFont("Helvetica", _fitting_size(letter.return_address, "Helvetica", 8.5, room))
    for line in letter.return_address:
        y -= 10.5 if len(names) == 1 else 9.5
        canvas.drawString(x, y, line)
    canvas.setFont("Helvetica", 7)
    canvas.drawString(x, y - 10, words("return_service"))
    canvas.restoreState()


def _header_right(canvas: Canvas, letter: LetterContent, words: Wording, title: str) -> None:
    """Title, date, account and how to reach the practice: right of the windows."""
    canvas.saveState()
    right = PAGE_WIDTH - MARGIN
    y = PAGE_HEIGHT - MARGIN - 4
    canvas.setFont("Helvetica-Bold", 11)
    canvas.setFillColor(ACCENT)
    canvas.drawRightString(right, y, title)
    canvas.setFillColor(colors.black)
    canvas.setFont("Helvetica", 8.5)
    for text in (
        words("statement_date", date=letter.statement_date.isoformat()),
        words("account", number=letter.account_number),
        letter.practice_phone,
        letter.pay_url,
        words("tax_id", tax_id=letter.tax_id) if letter.tax_id else "",
    ):
        if text:
            y -= 11
            canvas.drawRightString(right, y, text)
    canvas.restoreState()


def _address(canvas: Canvas, letter: LetterContent, layout: Layout) -> None:
    """The patient's name and mailing address, inside the #10 envelope's lower window."""
    window = layout.envelopes.address_window
    pad = layout.envelopes.clearance
    canvas.saveState()
    lines = (letter.recipient_name, *letter.address_lines)
    size = _fitting_size(lines, "Helvetica", 10, (window.width - 2 * pad) * inch)
    canvas.setFont("Helvetica", size)
    y = _top(window.top + pad) - 10
    for line in lines:
        canvas.drawString((window.left + pad) * inch, y, line)
        y -= 12.5
    canvas.restoreState()


def _fitting_size(lines: Sequence[str], font: str, size: float, width: float) -> float:
    """The font size, down to 7 points, at which every line fits the window's width: an address
    line that ran past the window's edge would be cut off in the envelope."""
    widest = max((stringWidth(line, font, size) for line in lines), default=0.0)
    return size if widest <= width else max(7.0, size * width / widest)


def _coupon(canvas: Canvas, letter: LetterContent, layout: Layout, words: Wording) -> None:
    """The tear-off coupon, the bottom of page one: the remit-to address sits in the #9 return
    envelope's window; the amounts sit right of it, out of sight."""
    envelopes = layout.envelopes
    top = envelopes.coupon_height * inch
    remit = envelopes.remit_window
    pad = envelopes.clearance
    canvas.saveState()
    canvas.setDash(3, 3)
    canvas.setLineWidth(0.8)
    canvas.line(0.25 * inch, top, PAGE_WIDTH - 0.25 * inch, top)
    canvas.setDash()
    canvas.setFont("Helvetica-Oblique", 7.5)
    canvas.drawCentredString(PAGE_WIDTH / 2, top - 12, words("coupon_detach"))
    # Left, above the window: whose account, and to whom the check is payable.
    canvas.setFont("Helvetica", 7.5)
    canvas.drawString(MARGIN, top - 34, words("coupon_holder"))
    canvas.setFont("Helvetica-Bold", 9.5)
    canvas.drawString(MARGIN, top - 46, letter.recipient_name)
    canvas.setFont("Helvetica", 8)
    canvas.drawString(MARGIN, top - 64, words("coupon_payable", practice=letter.practice_name))
    if letter.pay_url:
        canvas.drawString(MARGIN, top - 76, words("coupon_online", url=letter.pay_url))
    # Right: the amounts, out of the return envelope's window.
    box_left = (remit.left + remit.width + pad + 0.15) * inch
    box_right = PAGE_WIDTH - MARGIN
    rows = [
        (words("coupon_account"), letter.account_number),
        (words("coupon_statement_date"), letter.statement_date.isoformat()),
        (words("coupon_due"), letter.due_date.isoformat()),
        (words("coupon_amount_due"), format_cents(letter.amount_due_cents, letter.currency)),
        (words("coupon_enclosed"), ""),
    ]
    row_h = 0.3 * inch
    box_top = top - 0.3 * inch
    canvas.setLineWidth(0.6)
    canvas.rect(box_left, box_top - row_h * len(rows), box_right - box_left, row_h * len(rows))
    for i, (label, value) in enumerate(rows):
        y = box_top - row_h * (i + 1)
        if i:
            canvas.line(box_left, y + row_h, box_right, y + row_h)
        canvas.setFont("Helvetica", 7)
        canvas.drawString(box_left + 4, y + row_h - 9, label)
        canvas.setFont("Helvetica-Bold", 9.5)
        canvas.drawRightString(box_right - 4, y + 5, value or "$ ____________")
    # The remit-to address, inside the return envelope's window.
    x = (remit.left + pad) * inch
    y = (remit.bottom + remit.height - pad) * inch - 10
    room = (remit.width - 2 * pad) * inch
    canvas.setFont(
        "Helvetica-Bold", _fitting_size([letter.practice_name], "Helvetica-Bold", 10, room)
    )
    canvas.drawString(x, y, letter.practice_name)
    canvas.setFont("Helvetica", _fitting_size(letter.remit_to, "Helvetica", 10, room))
    for line in letter.remit_to:
        y -= 12
        canvas.drawString(x, y, line)
    canvas.restoreState()


def _footer(
    canvas: Canvas,
    letter: LetterContent,
    communication_id: str,
    words: Wording,
    hours: str,
    y: float,
) -> None:
    canvas.saveState()
    canvas.setFont("Helvetica", 7)
    canvas.setFillColor(colors.gray)
    canvas.drawString(MARGIN, y, words("questions", phone=letter.practice_phone, hours=hours))
    canvas.drawRightString(
        PAGE_WIDTH - MARGIN,
        y,
        f"{words('page', page=canvas.getPageNumber())}  ref {communication_id[:8]}",
    )
    canvas.restoreState()


def _statement_table(letter: LetterContent, words: Wording, width: float) -> Table:
    """Each visit: charges, who paid or took off what, what is not owed, what the patient owes."""

    def money(cents: int) -> str:
        return format_cents(cents, letter.currency)

    gfe = any(line.good_faith_estimate_cents is not None for line in letter.lines)
    nsa = any(line.nsa_protected_cents for line in letter.lines)
    head = ["col_date", "col_service", "col_insurer", "col_charges", "col_insurance_paid"]
    head += [
        "col_adjusted",
        *(["col_estimate"] if gfe else []),
        *(["col_protected"] if nsa else []),
    ]
    head += ["col_you_paid", "col_balance"]
    data: list[list[Any]] = [
        [
            Paragraph(f"<b>{escape(words(h))}</b>", CELL if i < 3 else CELL_RIGHT)
            for i, h in enumerate(head)
        ]
    ]
    money_columns = len(head) - 3
    totals = [0] * money_columns
    for line in letter.lines:
        values: list[int | None] = [
            line.charges_cents,
            -line.insurance_paid_cents,
            -line.insurance_adjustment_cents,
        ]
        if gfe:
            values.append(line.good_faith_estimate_cents)
        if nsa:
            values.append(-line.nsa_protected_cents)
        values += [-line.patient_paid_cents, line.balance_cents]
        totals = [t + (v or 0) for t, v in zip(totals, values, strict=True)]
        data.append(
            [
                line.service_date.isoformat(),
                Paragraph(escape(line.description), CELL),
                Paragraph(escape(claim_text(line, words)), CELL),
                *["" if v is None else money(v) for v in values],
            ]
        )
    total_row: list[Any] = ["", Paragraph(f"<b>{escape(words('total'))}</b>", CELL), ""]
    total_row += [money(t) for t in totals]
    if gfe:
        total_row[3 + 3] = ""  # estimates are not summed with what was billed
    data.append(total_row)
    style: list[Any] = [
        ("FONT", (0, 1), (-1, -1), "Helvetica", 7.5),
        ("ALIGN", (3, 1), (-1, -1), "RIGHT"),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), 3),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3),
        ("LINEBELOW", (0, 0), (-1, 0), 0.8, colors.black),
        ("LINEABOVE", (0, -1), (-1, -1), 0.8, colors.black),
        ("FONT", (3, -1), (-1, -1), "Helvetica-Bold", 7.5),
        ("ROWBACKGROUNDS", (0, 1), (-1, -2), [colors.white, colors.HexColor("#F5F5F5")]),
    ]
    credit = totals[-1] - letter.amount_due_cents
    if credit > 0:
        blank = [""] * (money_columns - 2)
        data.append(
            [
                "",
                Paragraph(escape(words("credits_since")), CELL),
                "",
                *blank,
                money(-credit),
                money(-credit),
            ]
        )
        data.append(
            [
                "",
                Paragraph(f"<b>{escape(words('balance_due'))}</b>", CELL),
                "",
                *blank,
                "",
                money(letter.amount_due_cents),
            ]
        )
        style.append(("FONT", (3, -1), (-1, -1), "Helvetica-Bold", 7.5))
        style.append(("FONT", (3, -2), (-1, -2), "Helvetica", 7.5))
        style.append(("LINEABOVE", (0, -1), (-1, -1), 0.8, colors.black))
    fixed = [0.1, 0.16, 0.16]
    share = (1 - sum(fixed)) / money_columns
    table = Table(
        data, colWidths=[width * w for w in [*fixed, *[share] * money_columns]], repeatRows=1
    )
    table.setStyle(TableStyle(style))
    return table


def _aging_table(letter: LetterContent, words: Wording, width: float) -> Table:
    def money(cents: int) -> str:
        return format_cents(cents, letter.currency)

    names = [words("aging_days", bucket=name) for name, _ in letter.aging_cents]
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
