"""Files holding patient data are the process owner's only: folders 0700, files 0600.

Print PDFs, mailboxes, placement CSVs, the embedded databases and everything else under the data
folder. :func:`restrict_umask` makes it the default for the process and the servers it starts;
the writers also set the mode explicitly, so a file is private whoever created the process.
"""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def restrict_umask() -> None:
    """New files and folders of this process (and of its child servers): owner only."""
    os.umask(0o077)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) and make it owner-only."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    path.chmod(DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Make an existing file owner-only; create it empty (0600) when missing."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
        mode = FILE_MODE
    if mode & 0o077:
        path.chmod(FILE_MODE)
    return path
