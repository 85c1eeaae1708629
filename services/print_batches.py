"""A day's print batch for the console: the letters, their manifest, the PDF (audited).

The batch is built by :func:`activities.letters.build_print_batch`, exactly as
``dunning letters batch`` builds it, into ``<data_dir>/print``: the same day gives the same files.
The manifest names letters by opaque ids; the console adds each account's number for staff who
may read accounts. Handing out the PDF (names, addresses, amounts) is an action: audited with the
day, the counts and the file's digest, never with what the letters say.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from activities.letters import LetterError, PrintBatch, build_print_batch
from config.settings import Settings
from models.orm import Account
from services import audit
from services.audit import Outcome
from services.errors import Refused
from services.identity import Actor
from workflows.contract import Rejection

_BUILDING = threading.Lock()

DEFAULT_TIME_ZONE = "America/New_York"
"""The zone a day is counted in when none is given (the CLI's default too)."""


@dataclass(frozen=True)
class ManifestRow:
    sequence: int
    communication_id: str
    account_number: str
    step_id: str
    first_page: str
    pages: int
    action: str
    reason: str


@dataclass(frozen=True)
class BatchView:
    batch: PrintBatch
    time_zone: str
    rows: list[ManifestRow]


def batch_day(day: str, time_zone: str) -> tuple[dt.date, ZoneInfo]:
    """The day asked for (default today in ``time_zone``) and its zone.

    Raises:
        Refused: (invalid request) naming the field: not a date, or an unknown zone.
    """
    try:
        tz = ZoneInfo(time_zone or DEFAULT_TIME_ZONE)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise Refused(
            Rejection.INVALID_REQUEST,
            f"time zone: unknown {time_zone!r}; use an IANA name such as America/New_York",
        ) from exc
    if not day:
        return dt.datetime.now(tz).date(), tz
    try:
        return dt.date.fromisoformat(day), tz
    except ValueError as exc:
        raise Refused(
            Rejection.INVALID_REQUEST, f"day: {day!r} is not a date (YYYY-MM-DD)"
        ) from exc


def directory(settings: Settings) -> Path:
    return Path(settings.data_dir) / "print"


def build(session: Session, settings: Settings, day: dt.date, tz: ZoneInfo) -> BatchView:
    """Build the batch of ``day`` (files in the print folder) and read its manifest back.

    Raises:
        Refused: (invalid request) a queued letter cannot be composed (its id only).
    """
    try:
        with _BUILDING:  # one writer of the print folder's files at a time in this process
            batch = build_print_batch(session, day, tz, directory(settings))
    except LetterError as exc:
        raise Refused(Rejection.INVALID_REQUEST, str(exc)) from exc
    with batch.manifest_path.open(encoding="utf-8", newline="") as fh:
        manifest = list(csv.DictReader(fh))
    ids = {uuid.UUID(r["account_id"]) for r in manifest if r["account_id"]}
    numbers = {
        str(i): n
        for i, n in session.execute(
            select(Account.id, Account.account_number).where(Account.id.in_(ids))
        ).all()
    }
    rows = [
        ManifestRow(
            int(r["sequence"]),
            r["communication_id"],
            numbers.get(r["account_id"], ""),
            r["step_id"],
            r["first_page"],
            int(r["pages"] or 0),
            r["action"],
            r["reason"],
        )
        for r in manifest
    ]
    return BatchView(batch, tz.key, rows)


def download(
    session: Session, settings: Settings, actor: Actor, day: dt.date, tz: ZoneInfo, what: str
) -> tuple[bytes, str]:
    """The batch's PDF (``what="pdf"``) or manifest (``"csv"``), rebuilt as of now; audited.

    Raises:
        Refused: as :func:`build`.
    """
    view = build(session, settings, day, tz)
    path = view.batch.pdf_path if what == "pdf" else view.batch.manifest_path
    data = path.read_bytes()
    audit.record(
        session,
        actor,
        "print_batch_downloaded",
        None,
        Outcome.DONE,
        {
            "day": day.isoformat(),
            "time_zone": tz.key,
            "file": what,
            "letters": view.batch.letters,
            "pages": view.batch.pages,
            "sha256": hashlib.sha256(data).hexdigest(),
        },
    )
    return data, path.name
