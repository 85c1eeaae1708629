"""``python -m bench.worker_process ADDRESS DATABASE_URL QUEUE DATA_DIR``: the real worker alone.

The memory benchmark runs the worker in this separate process so that its resident memory is the
worker's only, not the benchmark's client and bookkeeping. It prints ``ready`` once polling, and
stops gracefully on SIGTERM or when its standard input closes.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from config.settings import Settings
from models.orm.database import make_engine, make_session_factory
from worker import build_worker, tune_gc


async def main(address: str, url: str, task_queue: str, data_dir: str) -> None:
    settings = Settings(
        data_dir=Path(data_dir), database={"url": url}, temporal={"task_queue": task_queue}
    )
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    engine = make_engine(url, pool_size=settings.database.pool_size)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.read(1) else None)
    try:
        worker = build_worker(client, settings, make_session_factory(engine))
        tune_gc()  # as `dunning run` does
        async with worker:
            print("ready", flush=True)
            await stop.wait()
    finally:
        engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
