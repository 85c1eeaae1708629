"""Fault: PostgreSQL stops answering the worker while steps are due, then comes back.

The worker reaches the database through a proxy the test pauses. Statements fall due during the
pause; once it ends, every one is sent, and none twice (0 duplicated, 0 lost).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, make_url, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from models.orm import Account, Communication, CommunicationStatus
from models.orm.database import make_engine, make_session_factory
from starter import Intake
from tests.factories import balance_row, instant_policy, midday_zone, policy_in, write_csv
from tests.pg_proxy import PausableProxy
from tests.support.waits import eventually
from worker import build_worker

pytestmark = pytest.mark.devserver
BALANCES = 6
PAUSE_SECONDS = 6.0


@pytest.mark.timeout(240)
async def test_statements_due_while_postgres_is_paused_are_sent_once(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    database_url: str,
    tmp_path: Path,
) -> None:
    url = make_url(database_url)
    with PausableProxy.for_url(url) as proxy:
        engine = make_engine(proxy.proxied(url), 4)
        worker_db = make_session_factory(engine)
        try:
            rows = [
                balance_row(
                    time_zone=midday_zone(),
                    policy=policy_in(settings, instant_policy(tmp_path, midday_zone())),
                )
                for _ in range(BALANCES)
            ]
            client = dev_env.client
            async with build_worker(client, settings, worker_db):
                proxy.pause()
                # The ledger (on its own connection) takes the balances; the worker cannot reach
                # the database while their first statements fall due.
                await Intake(session_factory, client, settings).import_balances(
                    write_csv(tmp_path / "b.csv", rows)
                )
                await asyncio.sleep(PAUSE_SECONDS)
                proxy.resume()
                numbers = [r["account_number"] for r in rows]

                def sent() -> list[tuple[str, int]]:
                    with session_factory() as session:
                        return list(
                            session.execute(
                                select(Account.account_number, func.count(Communication.id))
                                .join(Communication, Communication.account_id == Account.id)
                                .where(
                                    Account.account_number.in_(numbers),
                                    Communication.step_id == "statement-1",
                                    Communication.status == CommunicationStatus.SENT,
                                )
                                .group_by(Account.account_number)
                            ).all()
                        )

                async def all_sent() -> bool:
                    return len(sent()) == BALANCES

                await eventually(all_sent, timeout=120)
                assert sorted(count for _, count in sent()) == [1] * BALANCES  # none twice
        finally:
            engine.dispose()
