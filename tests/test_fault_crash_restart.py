"""Fault: ``kill -9`` of ``dunning run``, then a restart: one Temporal server, one run per folder.

Runs the real ``dunning run`` command (embedded Temporal, worker, API) on the test database.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from embedded.runlock import PID_FILE, temporal_servers
from embedded.temporal import free_port

pytestmark = pytest.mark.devserver


def _start(data_dir: Path, database_url: str) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        DUNNING_DATA_DIR=str(data_dir),
        DUNNING_DATABASE__URL=database_url,
        DUNNING_API__PORT=str(free_port()),
        DUNNING_TEMPORAL__DEV_SERVER_PORT=str(free_port()),
        DUNNING_TEMPORAL__DEV_SERVER_UI_PORT=str(free_port()),
        # The session's database holds other tests' accounts: no repairs of theirs here.
        DUNNING_LEDGER__RECONCILE_AT_START="false",
    )
    env.pop("DUNNING_TEMPORAL__ADDRESS", None)
    return subprocess.Popen(
        [sys.executable, "-c", "import cli; cli.main()", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _wait_running(data_dir: Path, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    runtime = data_dir / "runtime.json"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise AssertionError(f"dunning run exited {proc.returncode}: {out[-2000:]}")
        if runtime.exists() and (data_dir / PID_FILE).exists():
            return
        time.sleep(0.2)
    raise AssertionError("dunning run did not start in time")


def _ready(url: str, timeout: float = 60) -> object:
    """The readiness answer once the API serves it (it starts after the runtime file)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                return json.loads(answer.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_kill_9_then_restart_leaves_one_temporal_server(tmp_path: Path, database_url: str) -> None:
    data_dir = (tmp_path / "data").resolve()
    db_file = data_dir / "temporal.db"
    first = _start(data_dir, database_url)
    second = third = None
    try:
        _wait_running(data_dir, first)
        orphan = json.loads((data_dir / PID_FILE).read_text())["pid"]
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        # The killed run left its Temporal server behind.
        assert [p.pid for p in temporal_servers(db_file)] == [orphan]
        (data_dir / "runtime.json").unlink(missing_ok=True)

        second = _start(data_dir, database_url)
        _wait_running(data_dir, second)
        servers = [p.pid for p in temporal_servers(db_file)]
        assert len(servers) == 1 and orphan not in servers  # stopped, then one new server
        api_url = json.loads((data_dir / "runtime.json").read_text())["api_url"]
        checks = _ready(f"{api_url}/health/ready")
        assert checks == {
            "status": "ready",
            "checks": {"postgresql": "ok", "temporal": "ok", "worker": "ok"},
        }

        # A second run on the same folder is refused while the first holds it.
        third = _start(data_dir, database_url)
        assert third.wait(60) == 1
        out = " ".join((third.stdout.read().decode() if third.stdout else "").split())
        assert "is in use by another `dunning run`" in out
        assert len(temporal_servers(db_file)) == 1

        # The data folder and the files with patient data are the owner's only.
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        for name in ("temporal.db", "runtime.json", PID_FILE):
            assert stat.S_IMODE((data_dir / name).stat().st_mode) == 0o600, name

        second.send_signal(signal.SIGINT)
        assert second.wait(60) == 0
        assert temporal_servers(db_file) == []
    finally:
        for proc in (first, second, third):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
        for left in temporal_servers(db_file):
            left.kill()
