"""Staff notes: free text kept in PostgreSQL and referenced by id from workflow updates.

Temporal history keeps every update's arguments for good; a hold note or a denial reason may name
a patient's circumstances, so only the note's id travels there.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.orm import StaffNote
from services.identity import Actor

MAX_NOTE = 2000


def add(
    session: Session,
    actor: Actor,
    kind: str,
    body: str,
    *,
    account_id: uuid.UUID | None = None,
    task_id: uuid.UUID | None = None,
) -> uuid.UUID | None:
    """Store a note (None when there is nothing to store). The caller's transaction commits."""
    text = body.strip()
    if not text:
        return None
    if len(text) > MAX_NOTE:
        raise ValueError(f"note: at most {MAX_NOTE} characters")
    note = StaffNote(account_id=account_id, task_id=task_id, kind=kind, body=text, author=actor.id)
    session.add(note)
    session.flush()
    return note.id


def link_task(session: Session, note_id: uuid.UUID | None, task_id: str) -> None:
    """Attach a request's note to the approval task it opened (the worklist shows it)."""
    if note_id is None:
        return
    note = session.get(StaffNote, note_id)
    if note is not None:
        note.task_id = uuid.UUID(task_id)


def for_task(session: Session, task_id: uuid.UUID) -> list[StaffNote]:
    return list(
        session.scalars(
            select(StaffNote).where(StaffNote.task_id == task_id).order_by(StaffNote.created_at)
        )
    )
