"""Idempotent intake: the first response per route and external reference is the answer.

The ledger and the workflows are idempotent by reference already; this table makes the HTTP
answer idempotent too, so that a billing system retrying after a timeout sees what the first
call did, and a reference reused for a different request is refused (409).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from models.orm import IdempotencyKey


def request_hash(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _answer(row: IdempotencyKey, digest: str) -> JSONResponse:
    if row.request_hash != digest:
        raise HTTPException(
            409, "reference: already used for a different request; use a new reference"
        )
    return JSONResponse(
        row.response, status_code=row.status_code, headers={"Idempotent-Replayed": "true"}
    )


def replay(session_factory: sessionmaker[Session], key: str, digest: str) -> JSONResponse | None:
    """The stored first answer for ``key``, or None if this is the first request."""
    with session_factory() as session:
        row = session.get(IdempotencyKey, key)
        return _answer(row, digest) if row is not None else None


def remember(
    session_factory: sessionmaker[Session],
    key: str,
    digest: str,
    status_code: int,
    body: dict[str, Any],
    actor: str,
) -> JSONResponse:
    """Store the first answer; if a concurrent request stored one first, return that one."""
    with session_factory.begin() as session:
        session.execute(
            insert(IdempotencyKey)
            .values(
                key=key, request_hash=digest, status_code=status_code, response=body, actor=actor
            )
            .on_conflict_do_nothing(index_elements=["key"])
        )
        row = session.scalars(select(IdempotencyKey).where(IdempotencyKey.key == key)).one()
        if row.response == body and row.request_hash == digest:
            return JSONResponse(body, status_code=status_code)
        return _answer(row, digest)
