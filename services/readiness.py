"""Readiness: can this deployment do its work now? PostgreSQL, Temporal, and a polling worker.

``/health`` is liveness (the process answers); ``/health/ready`` runs these checks, for a load
balancer or an orchestrator, and ``dunning run`` waits for them before it says it is running.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

CHECK_TIMEOUT = dt.timedelta(seconds=3)
POLLER_FRESH = dt.timedelta(minutes=1)
"""A worker that polled the task queue this recently is considered polling."""


@dataclass
class Readiness:
    checks: dict[str, str] = field(default_factory=dict)
    """Each check's result: "ok", or what is wrong (no patient data, no secrets)."""

    @property
    def ready(self) -> bool:
        return all(v == "ok" for v in self.checks.values())


def _database(session_factory: sessionmaker[Session]) -> str:
    try:
        with session_factory() as session:
            session.execute(text("SET LOCAL statement_timeout = 3000"))
            session.execute(text("SELECT 1"))
    except Exception as exc:  # any failure: not ready
        return f"unavailable ({type(exc).__name__})"
    return "ok"


async def _temporal(client: Client | None, task_queue: str) -> tuple[str, str]:
    if client is None:
        return "no client", "unknown"
    timeout = CHECK_TIMEOUT.total_seconds()
    try:
        await asyncio.wait_for(client.service_client.check_health(timeout=CHECK_TIMEOUT), timeout)
        described = await asyncio.wait_for(
            client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=client.namespace,
                    task_queue=TaskQueue(name=task_queue),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                ),
                timeout=CHECK_TIMEOUT,
            ),
            timeout,
        )
    except Exception as exc:  # unreachable, timed out, refused
        return f"unavailable ({type(exc).__name__})", "unknown"
    now = dt.datetime.now(dt.UTC)
    fresh = [
        p
        for p in described.pollers
        if now - p.last_access_time.ToDatetime(tzinfo=dt.UTC) <= POLLER_FRESH
    ]
    return "ok", "ok" if fresh else "no worker polling the task queue"


async def check(
    session_factory: sessionmaker[Session], client: Client | None, task_queue: str
) -> Readiness:
    """PostgreSQL answers, Temporal answers, and a worker polls the task queue."""
    database = await asyncio.to_thread(_database, session_factory)
    temporal, worker = await _temporal(client, task_queue)
    return Readiness({"postgresql": database, "temporal": temporal, "worker": worker})
