"""A worker in its own process, configured only from ``DUNNING_*`` variables, so a test can kill it.

Run as ``python -m tests.fakes.worker_process`` from the project root. Prints ``ready`` once it
polls its task queue.
"""

from __future__ import annotations

import asyncio

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from config.settings import Settings
from models.orm.database import make_engine, make_session_factory
from worker import build_worker


async def main() -> None:
    settings = Settings()
    assert settings.database.url is not None and settings.temporal.address
    engine = make_engine(settings.database.url.get_secret_value(), pool_size=4)
    client = await Client.connect(
        settings.temporal.address,
        namespace=settings.temporal.namespace,
        data_converter=pydantic_data_converter,
    )
    worker = build_worker(client, settings, make_session_factory(engine))
    print("ready", flush=True)
    await worker.run()


if __name__ == "__main__":
    asyncio.run(main())
