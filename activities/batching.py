"""``send_step`` for the worker: the steps due together share one batch.

Each ``send_step`` activity puts its step in a queue and waits. A drainer takes everything queued
(up to ``max_batch``) to ``MessagingActivities.send_steps``, in a child process
(``activities.send_process``, off the worker's interpreter lock) or else in a thread, so a
morning's thousands of due steps cost a few statements and commits per batch instead of several
per step, and while one batch is in PostgreSQL or with a provider the next one gathers. Nothing
waits for a batch to fill: a lone step is sent at once, in a batch of one; only while steps keep
coming (the last batch had several) does a batch linger a few milliseconds for more. This is
group commit, as databases do it.
A second batch runs beside the first only when a whole batch is already waiting (the first is
waiting on providers): on a busy machine batches grow rather than multiply.

Cancelling an activity (the worker shuts down, the server times the attempt out) does not stop
its batch: the step is sent or not as a whole, and the next attempt finds its outbox rows.

A step still waiting after :data:`HEARTBEAT_EVERY` (its batch is with PostgreSQL or a provider)
heartbeats while it waits: the workflow sets a heartbeat timeout, so the server notices a worker
that died mid-send within that timeout and retries the step on another, instead of after the whole
start-to-close timeout. A step done sooner (nearly all) sends no heartbeat at all.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from temporalio import activity

from activities.messaging import MessagingActivities
from activities.send_process import Outcomes, SendProcesses, died
from models.payloads import SendStepInput, SendStepResult
from workflows.contract import ActivityName

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = 3.0
"""Seconds between heartbeats of a waiting step: well inside the workflow's heartbeat timeout."""

_Queued = tuple[SendStepInput, dt.datetime, "asyncio.Future[SendStepResult]"]
Submit = Callable[[Sequence[SendStepInput], Sequence[dt.datetime | None]], Future[Outcomes]]
"""Runs a batch (its steps, and the floor of each one's check clock) somewhere else."""


class StepBatcher:
    """Gathers the worker's concurrent ``send_step`` activities into batches."""

    def __init__(
        self,
        runner: MessagingActivities | SendProcesses,
        *,
        max_batch: int = 64,
        lanes: int = 2,
        linger: dt.timedelta = dt.timedelta(milliseconds=10),
    ) -> None:
        """``runner``: what runs a batch, the child processes of ``activities.send_process`` or
        ``MessagingActivities`` here, in a thread of the worker; ``lanes``: batches in flight at
        once (and database connections they hold); ``linger``: how long a batch waits for more
        steps once the previous one had several."""
        if isinstance(runner, SendProcesses):
            self._submit: Submit = runner.submit
        else:
            threads = ThreadPoolExecutor(lanes, thread_name_prefix="send-batch")
            send_steps = runner.send_steps
            self._submit = lambda steps, floors: threads.submit(send_steps, steps, floors)
        self._max_batch = max_batch
        self._lanes = lanes
        self._linger = linger.total_seconds()
        self._busy = False
        self._queue: deque[_Queued] = deque()
        self._drainers: set[asyncio.Task[None]] = set()
        self._running = 0

    @activity.defn(name=ActivityName.SEND_STEP)
    async def send_step(self, step: SendStepInput) -> SendStepResult:
        """Check the step is still allowed, render it, claim its outbox row, then send it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[SendStepResult] = loop.create_future()
        self._queue.append((step, activity.info().current_attempt_scheduled_time, future))
        # One batch in flight while it keeps up; another only once a whole batch is waiting (a
        # batch waiting on providers), so that under load batches grow instead of multiplying.
        running = self._running
        if running == 0 or (running < self._lanes and len(self._queue) >= self._max_batch):
            self._running += 1  # counted now, not when the task starts: no step is left behind
            task = loop.create_task(self._drain())
            self._drainers.add(task)  # a reference, so the task is not collected mid-way
            task.add_done_callback(self._drainers.discard)
        try:
            while True:
                try:
                    # shield: a heartbeat's timeout must not cancel the step's future
                    return await asyncio.wait_for(asyncio.shield(future), HEARTBEAT_EVERY)
                except TimeoutError:
                    activity.heartbeat()
        except asyncio.CancelledError:
            future.cancel()  # a step not yet taken by a batch is dropped from it
            raise

    async def _drain(self) -> None:
        try:
            await self._drain_queue()
        finally:
            # In the same step of the event loop as the last look at the queue: a step queued
            # after it sees no drainer running and starts one.
            self._running -= 1

    async def _drain_queue(self) -> None:
        while self._queue:
            if self._busy and len(self._queue) < self._max_batch:
                # Under load, wait a moment for more steps: bigger batches cost less per step.
                await asyncio.sleep(self._linger)
            batch = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
            batch = [queued for queued in batch if not queued[2].done()]  # cancelled meanwhile
            self._busy = len(batch) > 1
            if not batch:
                continue
            steps, floors = [step for step, _, _ in batch], [floor for _, floor, _ in batch]
            try:
                outcomes = await asyncio.wrap_future(self._submit(steps, floors))
            except BrokenProcessPool as exc:  # the child died mid-batch: each step is retried
                log.error("the send process stopped during a batch of %d steps", len(batch))
                failure = died(exc)
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(failure)
                continue
            except Exception as exc:  # send_steps reports per step: a bug, failing this batch
                log.exception("a batch of %d steps failed as a whole", len(batch))
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue  # the steps queued meanwhile still have only this drainer
            for (_, _, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
