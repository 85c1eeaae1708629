"""Ids as staff type them: a whole id, or any unique prefix of one (as the worklist shows them).

Resolved here once for every front door: an unknown id is "not found" (CLI exit 3, HTTP 404), an
ambiguous prefix a clear error naming how many ids it matches, anything else not an id at all.
"""

from __future__ import annotations

import re
import uuid

from sqlalchemy import String, cast, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from models.orm import Communication, StaffTask
from services.context import Services
from services.errors import Refused
from workflows.contract import Rejection

SHORT = 8
"""How many characters of an id lists show (``dunning worklist``): unique in practice."""
_ID_START = re.compile(r"^[0-9a-f][0-9a-f-]{0,35}$")


def short(key: uuid.UUID | str) -> str:
    """An id as lists show it; any unique prefix of it is accepted back."""
    return str(key)[:SHORT]


def resolve(
    session: Session,
    column: InstrumentedAttribute[uuid.UUID],
    text: str,
    noun: str,
    unknown: Rejection,
) -> uuid.UUID:
    """The one id of ``column`` that is ``text`` or starts with it.

    Raises:
        Refused: INVALID_REQUEST when ``text`` cannot start an id or starts several (their
            count named), ``unknown`` when no id starts with it.
    """
    typed = text.strip().lower()
    if not _ID_START.match(typed):
        raise Refused(Rejection.INVALID_REQUEST, f"{noun}: {text!r} is not an id or its start")
    try:
        whole: uuid.UUID | None = uuid.UUID(typed)
    except ValueError:
        whole = None
    if whole is not None:
        found = session.scalar(select(column).where(column == whole))
    else:
        matching = cast(column, String).like(f"{typed}%")
        count = session.scalar(select(func.count()).where(matching)) or 0
        if count > 1:
            raise Refused(
                Rejection.INVALID_REQUEST,
                f"{noun}: {text!r} is the start of {count} ids; give more of it",
            )
        found = session.scalar(select(column).where(matching))
    if found is None:
        raise Refused(unknown, f"{noun}: no {noun} {text}")
    return found


async def task_id(svc: Services, text: str) -> uuid.UUID:
    """A staff task by its id or a unique prefix (approve, deny, call outcomes)."""
    return await svc.db(lambda s: resolve(s, StaffTask.id, text, "task", Rejection.TASK_UNKNOWN))


async def communication_id(svc: Services, text: str) -> uuid.UUID:
    """A message (a letter, an email, ...) by its id or a unique prefix (``letters show``)."""
    return await svc.db(
        lambda s: resolve(s, Communication.id, text, "message", Rejection.MESSAGE_UNKNOWN)
    )
