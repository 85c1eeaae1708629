"""The send pipeline in a child process: its Python off the worker's interpreter lock.

The worker process runs the SDK's pollers, decodes and encodes every payload and runs each
workflow activation in the sandbox, all in Python and so under one interpreter lock. A batch of
steps (``MessagingActivities.send_steps``: ORM loads, rendering, the decision core's checks,
claims) is Python too: in a thread of the worker it took the lock from the activations that keep
the Temporal server fed, and on a two-core machine the whole engine slowed with it (bench/). In a
child process the batch has an interpreter of its own; the worker only hands it the steps and
takes back the outcomes, both small pickled values.

The child builds what the batch needs from the settings once: its own engine (a pool as large as
the batches in flight), the senders (``worker.build_senders``) and the policy cache. It is forked
from the ``forkserver`` process, which imports the engine's modules once; a plain ``fork`` of the
worker would copy a process whose SDK threads may hold locks. The child ignores Ctrl-C: the worker
shuts down gracefully and lets a batch in flight finish, then closes the pool.

If the child dies (killed, out of memory), the batch it held fails as retryable and the next batch
starts a new child: the outbox rows make the retry safe, as for a killed worker. If the worker
dies, the child exits with it (it watches the worker's pid), and the fork server follows.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import multiprocessing
import os
import pickle
import select
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

from temporalio.exceptions import ApplicationError

from config.settings import Settings
from models.payloads import SendStepInput, SendStepResult

if TYPE_CHECKING:
    from activities.messaging import MessagingActivities

log = logging.getLogger(__name__)

Outcomes = list[SendStepResult | BaseException]

PRELOAD = ["__main__", "worker", "models.orm.database", "activities.send_preload"]
"""Imported once by the fork server; each child starts from them already loaded."""

_messaging: MessagingActivities | None = None
"""The child's ``MessagingActivities``, built by :func:`_start`."""


def _start(url: str, settings: Settings, worker_pid: int) -> None:
    """In the child: ignore Ctrl-C, follow the worker out, build the engine, senders and policy
    cache once."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(
        target=_exit_with, args=(worker_pid,), name="worker-watch", daemon=True
    ).start()
    from activities.messaging import MessagingActivities, PolicyStore
    from models.orm.database import make_engine, make_session_factory
    from worker import build_senders

    global _messaging
    temporal = settings.temporal
    engine = make_engine(url, pool_size=temporal.send_batch_lanes + 1)
    session_factory = make_session_factory(engine)
    _messaging = MessagingActivities(
        session_factory,
        build_senders(settings),
        PolicyStore(session_factory),
        send_concurrency=temporal.provider_send_threads,
    )
    try:
        _messaging.warm()  # before the first batch, not during it
    except Exception as exc:  # the database is not up yet: the first batch connects then
        log.warning("the send process could not warm up (%s)", type(exc).__name__)
    # What startup built stays out of later collections, as in the worker (worker.tune_gc); the
    # fork server froze what it loaded (activities.send_preload), so nothing is traversed here.
    gc.freeze()


def _exit_with(worker_pid: int) -> None:
    """Exit when the worker does, however it ends.

    A worker killed outright never tells its pool to stop, and the child would wait for batches
    for ever: it holds its own queue's other end, so it never reads an end of file, and it keeps
    the fork server alive with it. A batch in flight is cut off as it would have been in a thread
    of the killed worker; its outbox rows let the retry finish it.
    """
    try:
        handle = os.pidfd_open(worker_pid)
    except (AttributeError, OSError):  # no pidfd (not Linux 5.3+): look once a second
        while _alive(worker_pid):
            time.sleep(1)
    else:
        select.select([handle], [], [])  # readable once the worker has exited
    os._exit(0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ready() -> int:
    return os.getpid()


def _send_steps(steps: Sequence[SendStepInput], floors: Sequence[dt.datetime | None]) -> Outcomes:
    """In the child: the batch's outcomes, each one able to cross back to the worker."""
    assert _messaging is not None, "the send process was not started"
    return [_portable(outcome) for outcome in _messaging.send_steps(steps, floors)]


def _portable(outcome: SendStepResult | BaseException) -> SendStepResult | BaseException:
    """An exception that cannot be pickled becomes a retryable failure naming its type."""
    if not isinstance(outcome, BaseException):
        return outcome
    try:
        pickle.dumps(outcome)
    except Exception:
        return ApplicationError(
            f"the step failed in the send process ({type(outcome).__name__})",
            type=type(outcome).__name__,
        )
    return outcome


class SendProcesses:
    """A pool of child processes that run ``send_steps`` for the worker's ``StepBatcher``."""

    def __init__(self, url: str, settings: Settings, processes: int) -> None:
        self._url = url
        self._settings = settings
        self._processes = processes
        self._lock = threading.Lock()
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        pool = ProcessPoolExecutor(
            self._processes,
            mp_context=context,
            initializer=_start,
            initargs=(self._url, self._settings, os.getpid()),
        )
        # Started now, while the worker connects, not when the first batch is due.
        pool.submit(_ready)
        return pool

    def submit(
        self, steps: Sequence[SendStepInput], floors: Sequence[dt.datetime | None]
    ) -> Future[Outcomes]:
        with self._lock:
            try:
                return self._pool.submit(_send_steps, list(steps), list(floors))
            except BrokenProcessPool:
                # A child died; its batch failed already. A new pool takes the next batches.
                log.error("the send process died; starting a new one")
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
                return self._pool.submit(_send_steps, list(steps), list(floors))

    def close(self) -> None:
        """Wait for the batches in flight, then stop the children."""
        with self._lock:
            self._pool.shutdown(wait=True)


def died(exc: BaseException) -> ApplicationError:
    """The failure of each step of a batch whose child died mid-way: retried, never lost."""
    return ApplicationError(
        f"the send process stopped during the batch ({type(exc).__name__})", type="SendProcessDied"
    )
