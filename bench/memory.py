"""Memory: resident memory of the worker process with N open balances vs with none.

The real worker (``build_worker``) runs in its own process (``bench.worker_process``) against the
dev server. Baseline: its resident memory once it polls, with no workflow at all. Figure: its
resident memory once N balances are open and each has run its first workflow task and parked on a
timer: they are started (signal-with-start with their first charge, as an import does) for a
patient in a zone where it is night, so the decision core makes the first statement wait for the
morning. Starts run concurrently, at most ``CONCURRENCY`` at a time.

The SDK worker keeps at most 1,000 workflows in its cache (``max_cached_workflows``, which
``build_worker`` leaves at the default); the others are evicted and replayed when they wake. The
figure is therefore the memory of a worker serving 10,000 open balances, not 10,000 workflows in
memory at once; ``details`` gives the growth per cached workflow.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import time
import uuid

import psutil
from temporalio.client import Client, WorkflowHandle

from bench.common import Result, Stack, midday_zone, quick_from_argv, stack, timed, wait_until
from config.loader import load_policy
from models.payloads import ChannelStatus, ChargeSignal, ContactProfile, EscalationInput
from models.policy import Channel
from starter import start_or_join

CONCURRENCY = 32
CACHE = 1000  # the SDK's default max_cached_workflows
MIB = 1024 * 1024


def night_zone() -> str:
    """A fixed-offset zone where it is about 01:00 now: the first statement waits till morning."""
    midday = midday_zone()  # Etc/GMT±N where it is 13:00; twelve hours away it is 01:00
    offset = -int(midday.removeprefix("Etc/GMT") or 0)
    night = offset + 12 if offset <= 0 else offset - 12
    return "Etc/GMT" + ("" if night == 0 else f"{-night:+d}")


def rss(pid: int, samples: int = 5) -> int:
    """The largest of a few readings a tenth of a second apart (RSS moves with the allocator)."""
    proc = psutil.Process(pid)
    readings = []
    for _ in range(samples):
        readings.append(int(proc.memory_info().rss))
        time.sleep(0.1)
    return max(readings)


def children_rss(pid: int) -> int:
    """The worker's child processes (the send process and its fork server): their resident
    memory, shared pages counted in each. Reported beside the figure, which is the worker's own."""
    return sum(int(c.memory_info().rss) for c in psutil.Process(pid).children(recursive=True))


async def parked(handle: WorkflowHandle[object, object]) -> bool:
    """Its first workflow task is done and its timer set (started, signaled, 3 task events...)."""
    desc = await handle.describe()
    info = desc.raw_description.workflow_execution_info
    return info.history_length >= 6 and not desc.raw_description.HasField("pending_workflow_task")


async def start_balances(
    client: Client, queue: str, n: int
) -> list[WorkflowHandle[object, object]]:
    bundle = load_policy("physician")
    profile = ContactProfile(
        time_zone=night_zone(), channels={c: ChannelStatus(reachable=True) for c in Channel}
    )
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one() -> WorkflowHandle[object, object]:
        inp = EscalationInput(
            account_id=uuid.uuid4().hex,
            policy=bundle.policy,
            policy_hash=bundle.hash,
            profile=profile,
            opened_at=dt.datetime.now(dt.UTC),
        )
        charge = ChargeSignal(reference=f"C-{inp.account_id[:12]}", amount_cents=5500)
        async with gate:
            return await start_or_join(client, queue, inp, charge)  # type: ignore[return-value]

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def all_parked(handles: list[WorkflowHandle[object, object]]) -> None:
    """The last started first (the queue is worked roughly in order), then every one."""
    await wait_until(lambda: parked(handles[-1]), 600)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def check(handle: WorkflowHandle[object, object]) -> None:
        async with gate:
            await wait_until(lambda: parked(handle), 600)

    await asyncio.gather(*(check(h) for h in handles))


async def run(st: Stack, n: int) -> Result:
    queue = "bench-memory"
    assert st.env is not None
    address = st.client.service_client.config.target_host
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.worker_process",
        address,
        st.url,
        queue,
        str(st.directory / "data"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        line = await child.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"the worker process did not start: {line!r}")
        await asyncio.sleep(3)
        idle = await asyncio.to_thread(rss, child.pid)
        with timed() as elapsed:
            handles = await start_balances(st.client, queue, n)
            started = elapsed()
            await all_parked(handles)
            parked_in = elapsed()
        await asyncio.sleep(3)
        loaded = await asyncio.to_thread(rss, child.pid)
        children = await asyncio.to_thread(children_rss, child.pid)
    finally:
        if child.returncode is None:
            child.terminate()
            try:
                await asyncio.wait_for(child.wait(), 30)
            except TimeoutError:
                child.kill()
                await child.wait()
    cached = min(n, CACHE)
    return Result(
        "memory",
        loaded / MIB,
        idle / MIB,
        "MiB",
        f"worker RSS with {n:,} open balances vs none: +{(loaded - idle) / MIB:,.1f} MiB; "
        f"{n:,} started in {started:.0f}s, all parked in {parked_in:.0f}s; "
        f"at most {CACHE:,} cached (SDK default)",
        details={
            "open_balances": n,
            "growth_mib": round((loaded - idle) / MIB, 1),
            "send_processes_rss_mib": round(children / MIB, 1),
            "cached_workflows_at_most": cached,
            "growth_kib_per_cached_workflow": round((loaded - idle) / 1024 / cached, 1),
            "start_seconds": round(started, 1),
            "starts_per_second": round(n / started, 1),
        },
    )


async def measure(quick: bool) -> Result:
    n = 100 if quick else 10_000
    async with stack() as st:
        return await run(st, n)


if __name__ == "__main__":
    print(asyncio.run(measure(quick_from_argv(__doc__ or ""))).line())
