"""Send batches in a child process (``activities.send_process``): the real pipeline, real
PostgreSQL, the local outbox; a child that dies is replaced and its batch fails as retryable."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import psutil
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.exceptions import ApplicationError

from activities.send_process import SendProcesses, died
from config.loader import load_policy
from config.settings import Settings
from models.orm import Communication, CommunicationStatus
from models.payloads import SendStepInput, SendStepResult, StepOutcome
from models.policy import Channel
from tests.factories import UNLOCATED_PHONE, UNLOCATED_ZIP, instant_policy, midday_zone
from tests.fakes.accounts import make_account, step_input
from tests.support.waits import readline_within
from worker import database_url

TIMEOUT = 60


def _email_step(session_factory: sessionmaker[Session], tmp_path: Path, name: str) -> SendStepInput:
    folder = tmp_path / name
    folder.mkdir()
    bundle = load_policy(instant_policy(folder, midday_zone()))
    account = make_account(
        session_factory,
        bundle,
        time_zone=midday_zone(),
        phone=UNLOCATED_PHONE,
        postal_code=UNLOCATED_ZIP,
    )
    first_email = next(s for s in bundle.policy.steps if Channel.EMAIL in s.channels)
    return step_input(bundle, account, first_email.id, channels=[Channel.EMAIL])


def _status(session_factory: sessionmaker[Session], step: SendStepInput) -> CommunicationStatus:
    with session_factory() as session:
        row = session.scalars(
            select(Communication).where(
                Communication.idempotency_key.startswith(step.idempotency_key)
            )
        ).one()
        return row.status


def test_a_batch_is_sent_by_the_child_and_a_dead_child_is_replaced(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    processes = SendProcesses(database_url(session_factory), settings, 1)
    try:
        first = _email_step(session_factory, tmp_path, "a")
        [outcome] = processes.submit([first], [None]).result(TIMEOUT)
        assert isinstance(outcome, SendStepResult), outcome
        assert (outcome.outcome, outcome.channel) == (StepOutcome.SENT, Channel.EMAIL)
        assert _status(session_factory, first) is CommunicationStatus.SENT
        assert list(Path(settings.outbox_dir).rglob("*")), "the email is in the local outbox"

        # The child dies (killed, out of memory): a batch in flight or submitted before the pool
        # noticed fails as a whole, and the next batch is taken by a new child.
        [child] = list(processes._pool._processes)
        os.kill(child, signal.SIGKILL)
        second = _email_step(session_factory, tmp_path, "b")
        outcomes = None
        for _ in range(3):
            try:
                outcomes = processes.submit([second], [None]).result(TIMEOUT)
                break
            except BrokenProcessPool:
                continue
        assert outcomes is not None, "a new child took the batch"
        [sent] = outcomes
        assert isinstance(sent, SendStepResult) and sent.outcome is StepOutcome.SENT, sent
        assert child not in list(processes._pool._processes)
        assert _status(session_factory, second) is CommunicationStatus.SENT
    finally:
        processes.close()


def test_a_step_whose_child_died_fails_as_retryable() -> None:
    failure = died(BrokenProcessPool("gone"))
    assert isinstance(failure, ApplicationError)
    assert (failure.type, failure.non_retryable) == ("SendProcessDied", False)


CHILD_OF_KILLED_WORKER = """
import sys, time
from activities.send_process import SendProcesses
from config.settings import Settings
settings = Settings(data_dir=sys.argv[2], database={"url": sys.argv[1]})
processes = SendProcesses(sys.argv[1], settings, 1)
assert processes.submit([], []).result(60) == []
print("ready", flush=True)
time.sleep(600)
"""


async def test_the_send_process_ends_with_a_killed_worker(
    database_url: str, tmp_path: Path
) -> None:
    """A worker killed outright never stops its pool: the child and its fork server follow it
    out on their own, instead of waiting for batches for ever."""
    worker = subprocess.Popen(  # noqa: ASYNC220 - a process to kill, not one to await
        [sys.executable, "-c", CHILD_OF_KILLED_WORKER, database_url, str(tmp_path)],
        stdout=subprocess.PIPE,
    )
    try:
        line = await readline_within(worker, TIMEOUT, "the worker with a send process")
        assert line.strip() == b"ready", line
        children = psutil.Process(worker.pid).children(recursive=True)
        assert any("forkserver" in " ".join(c.cmdline()) for c in children), children
        worker.kill()
        _, alive = await asyncio.to_thread(psutil.wait_procs, children, 20)
        assert not alive, f"still running after the worker was killed: {alive}"
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.wait(10)


def test_a_child_started_while_the_database_is_down_stays_and_fails_each_step(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """The child connects at start (``MessagingActivities.warm``); a database that does not answer
    then must not break the pool: each batch's steps fail as retryable, in the same child."""
    step = _email_step(session_factory, tmp_path, "down")
    nowhere = "postgresql+psycopg://postgres@127.0.0.1:1/nothing"  # port 1: refused at once
    processes = SendProcesses(nowhere, settings, 1)
    try:
        children = set()
        for _ in range(2):
            [outcome] = processes.submit([step], [None]).result(TIMEOUT)
            assert isinstance(outcome, ApplicationError), outcome
            assert not outcome.non_retryable
            children |= set(processes._pool._processes)
        assert len(children) == 1, "the same child took both batches"
    finally:
        processes.close()
