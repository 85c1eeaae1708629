"""A TCP proxy in front of PostgreSQL that a test can pause: the database stops answering.

The upstream is a TCP server or, as the embedded server the suite starts on a fresh machine, a
Unix socket (``for_url`` picks it from the database URL, ``proxied`` gives the URL through it).

It runs its own event loop in a thread, so that a worker blocked on the database in the test's
loop cannot stall it. While paused, bytes already sent wait in the proxy and new connections wait
for the upstream; on resume everything flows again, as after a network partition or a paused VM.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType

from sqlalchemy import URL


class PausableProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        """``upstream_host``: a host name, or a Unix socket directory (starts with ``/``)."""
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._flowing = asyncio.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.Server | None = None

    @classmethod
    def for_url(cls, url: URL) -> PausableProxy:
        """A proxy in front of the server ``url`` names: its host, or its socket directory."""
        socket_dir = url.query.get("host")
        host = socket_dir if isinstance(socket_dir, str) else url.host
        return cls(host or "127.0.0.1", url.port or 5432)

    def proxied(self, url: URL) -> str:
        """``url`` through this proxy (TCP on 127.0.0.1, whatever the upstream)."""
        direct = url.difference_update_query(["host"])
        return direct.set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    def __enter__(self) -> PausableProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.resume()
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def pause(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def resume(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.set)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._flowing.set()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._accept, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._flowing.wait()
        try:
            host, port = self.upstream
            if host.startswith("/"):
                path = f"{host}/.s.PGSQL.{port}"
                up_reader, up_writer = await asyncio.open_unix_connection(path)
            else:
                up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()
