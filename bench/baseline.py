"""The baseline workflow: as many timers, activities and signals as a ladder, and nothing else."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import activity, workflow

NOOP_TIMEOUT = timedelta(minutes=2)


@activity.defn(name="bench_noop")
def noop(step: int) -> int:
    """A synchronous no-op activity, run in the same kind of thread pool as ``send_step``."""
    return step


@workflow.defn(name="bench-baseline")
class BaselineWorkflow:
    """``steps`` activities, the first ``timers`` of them each after a 1 ms timer.

    ``timers`` (default: ``steps``) may also exceed ``steps``: the extra timers come after the
    activities. The timer is a ``wait_condition`` with a timeout, as the ladder's waits are.

    Then it waits until it has received ``signals`` ``poke`` signals (the first one may come with
    signal-with-start, as a balance's first charge does). With ``hold`` it then waits for a
    ``release`` signal that never comes, as an open balance does; otherwise it completes.
    """

    def __init__(self) -> None:
        self._released = False
        self._pokes = 0

    @workflow.run
    async def run(self, steps: int, timers: int = -1, hold: bool = False, signals: int = 0) -> int:
        timers = steps if timers < 0 else timers
        for i in range(max(steps, timers)):
            if i < timers:
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(
                        lambda: self._released, timeout=timedelta(milliseconds=1)
                    )
            if i < steps:
                await workflow.execute_activity(noop, i, start_to_close_timeout=NOOP_TIMEOUT)
        if self._pokes < signals:
            await workflow.wait_condition(lambda: self._pokes >= signals)
        if hold:
            await workflow.wait_condition(lambda: self._released)
        return steps

    @workflow.signal(name="poke")
    def poke(self) -> None:
        self._pokes += 1

    @workflow.signal(name="release")
    def release(self) -> None:
        self._released = True


@workflow.defn(name="bench-trivial")
class TrivialWorkflow:
    """Returns at once: the cheapest workflow there is, for the start-rate baseline."""

    @workflow.run
    async def run(self) -> None:
        return None
