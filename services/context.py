"""What every use case needs: settings, the database and (when reachable) a Temporal client."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from config.settings import Settings
from models.orm import Account
from models.orm import repositories as repo
from services.errors import Refused
from starter import Intake
from workflows.contract import Rejection

T = TypeVar("T")


class RefusalLimiter(Protocol):
    def admit(self, key: str) -> int | None:
        """None: do not write this refusal (counted); else write it, with how many were left out."""


@dataclass(frozen=True)
class AccountRef:
    """An account resolved from its number: what use cases pass on to the workflow."""

    id: uuid.UUID
    number: str
    open: bool

    @property
    def workflow_account_id(self) -> str:
        return str(self.id)


@dataclass
class Services:
    """Built once per process (the API) or per command (the CLI) and handed to every use case.

    ``client`` is None when Temporal could not be reached; ``unreachable`` then says why, and only
    the use cases that need the workflow refuse (the worklist and aging still work).
    """

    settings: Settings
    session_factory: sessionmaker[Session]
    client: Client | None = None
    unreachable: str = "no Temporal server: start `dunning run` first"
    audit_limiter: RefusalLimiter | None = None
    """Refusals repeated within a window reach the audit trail once, then with a count (the API's
    guard against a flood of refused requests); None: every refusal is a row."""
    _intake: Intake | None = field(default=None, repr=False)

    @property
    def temporal(self) -> Client:
        if self.client is None:
            raise Refused(Rejection.TEMPORAL_UNREACHABLE, self.unreachable)
        return self.client

    @property
    def intake(self) -> Intake:
        if self._intake is None:
            self._intake = Intake(self.session_factory, self.client, self.settings)
        return self._intake

    async def db(self, work: Callable[[Session], T]) -> T:
        """Run blocking database work in a thread, in one committed transaction."""

        def run() -> T:
            with self.session_factory.begin() as session:
                return work(session)

        return await asyncio.to_thread(run)

    async def account(self, number: str) -> AccountRef:
        """The account with this number, or :class:`Refused` (ACCOUNT_UNKNOWN)."""

        def find(session: Session) -> AccountRef | None:
            account: Account | None = repo.account_by_number(session, number)
            if account is None:
                return None
            from models.orm import AccountStatus

            return AccountRef(
                account.id, account.account_number, account.status is AccountStatus.OPEN
            )

        ref = await self.db(find)
        if ref is None:
            raise Refused(Rejection.ACCOUNT_UNKNOWN, f"account: no account {number!r}")
        return ref
