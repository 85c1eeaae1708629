"""One ``dunning run`` per data folder, and never two Temporal servers on one database.

``dunning run`` holds an exclusive lock on ``<data_dir>/run.lock`` for its lifetime; the kernel
releases it when the process dies, even by ``kill -9``. Before starting the embedded Temporal dev
server it stops any server left on the same ``temporal.db`` by a killed run: the one named in
``<data_dir>/temporal.pid``, and any other process whose command line names that database. The
embedded PostgreSQL left by a killed run is reused: its own ``postmaster.pid`` lets the next start
attach to it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import psutil

from config.private_files import private_dir

log = logging.getLogger(__name__)

LOCK_FILE = "run.lock"
PID_FILE = "temporal.pid"
STOP_TIMEOUT = 10.0


class DataDirBusy(RuntimeError):
    """Another ``dunning run`` holds the data folder."""


@contextlib.contextmanager
def run_lock(data_dir: Path) -> Iterator[None]:
    """Hold the data folder for this process; refuse when another live run holds it."""
    private_dir(data_dir)
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise DataDirBusy(
                f"data folder {data_dir} is in use by another `dunning run` (pid {holder}); "
                "stop it first, or set DUNNING_DATA_DIR to another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _names_database(proc: psutil.Process, db_file: Path) -> bool:
    try:
        cmdline = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return bool(cmdline) and "temporal" in Path(cmdline[0]).name and str(db_file) in cmdline


def temporal_servers(db_file: Path) -> list[psutil.Process]:
    """Running Temporal dev servers on ``db_file`` (an absolute path)."""
    found = []
    for proc in psutil.process_iter():
        if proc.pid != os.getpid() and _names_database(proc, db_file):
            found.append(proc)
    return found


def stop_left_servers(data_dir: Path, db_file: Path) -> list[int]:
    """Stop Temporal servers a killed run left on ``db_file``. Returns the pids stopped."""
    candidates = {p.pid: p for p in temporal_servers(db_file)}
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        pid = int(json.loads((data_dir / PID_FILE).read_text())["pid"])
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            if _names_database(proc, db_file):
                candidates[pid] = proc
    procs = list(candidates.values())
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=STOP_TIMEOUT)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=STOP_TIMEOUT)
    if procs:
        log.warning("stopped %d Temporal server(s) left by an earlier run", len(procs))
    (data_dir / PID_FILE).unlink(missing_ok=True)
    return [p.pid for p in procs]


def write_pidfile(data_dir: Path, db_file: Path, address: str) -> None:
    """Name the Temporal server this run started, for the next run to find after a crash."""
    servers = temporal_servers(db_file)
    if not servers:
        return
    record = {"pid": servers[0].pid, "address": address, "database": str(db_file)}
    path = data_dir / PID_FILE
    path.write_text(json.dumps(record))
    path.chmod(0o600)


def clear_pidfile(data_dir: Path) -> None:
    (data_dir / PID_FILE).unlink(missing_ok=True)
