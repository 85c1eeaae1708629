"""Every wait in the tests has a deadline, and a wait that fails says what it saw."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO


async def eventually(predicate: Callable[[], Awaitable[object]], timeout: float = 20.0) -> object:
    """Poll ``predicate`` until it returns something true, for real-time (dev-server) tests."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not reached in {timeout:g} s")
        await asyncio.sleep(0.1)


async def until_flag(
    flag: Callable[[], bool], timeout: float, what: str, output: Callable[[], str] = str
) -> None:
    """Wait for a library's readiness flag (uvicorn's ``started``) at most ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not flag():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not ready in {timeout:g} s; output:\n{output()}")
        await asyncio.sleep(0.05)


async def readline_within(
    proc: subprocess.Popen[bytes], timeout: float, what: str, stderr_file: Path | None = None
) -> bytes:
    """One line of ``proc``'s stdout within ``timeout`` seconds.

    On a timeout (or an early exit) the process is killed and the failure shows what it printed
    on stdout and stderr (or in ``stderr_file``, where its stderr goes: a pipe nobody reads
    would block a chatty process), so a hung start-up fails fast and says why.
    """
    stdout: IO[bytes] | None = proc.stdout
    assert stdout is not None
    try:
        line = await asyncio.wait_for(asyncio.to_thread(stdout.readline), timeout)
    except TimeoutError:
        line = b""
    if line:
        return line
    proc.kill()
    try:
        rest, err = proc.communicate(timeout=10)
    except (subprocess.TimeoutExpired, ValueError):
        rest, err = b"", b""
    if stderr_file is not None and stderr_file.exists():
        err = stderr_file.read_bytes()
    raise AssertionError(
        f"{what}: no line within {timeout:g} s (exit code {proc.poll()}); "
        f"stdout:\n{(rest or b'').decode(errors='replace')[-4000:]}\n"
        f"stderr:\n{(err or b'').decode(errors='replace')[-4000:]}"
    )


async def communicate_within(proc: asyncio.subprocess.Process, timeout: float, what: str) -> bytes:
    """All of ``proc``'s output within ``timeout`` seconds, else kill it and fail showing it."""
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        raise AssertionError(
            f"{what}: not finished within {timeout:g} s; output:\n"
            f"{(out or b'').decode(errors='replace')[-6000:]}"
        ) from None
    return out or b""
