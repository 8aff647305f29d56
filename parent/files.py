"""Files the parent keeps secrets in: created readable by its own user only."""

from __future__ import annotations

import os
from pathlib import Path

SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")


def prepare_private_sqlite_file(path: str | Path) -> None:
    """Create the database's directory 0700 and the database 0600 (tightening old files).

    The database holds webhook URLs with tokens in their queries, headers and cookies.
    An existing directory keeps its mode: it may be shared (the working directory).
    """
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    except OSError:
        return  # a directory or an unwritable file there: SQLite will say so when used
    for suffix in SQLITE_COMPANIONS:
        companion = path.with_name(path.name + suffix)
        try:
            if companion.stat().st_mode & 0o077:
                companion.chmod(0o600)
        except FileNotFoundError:
            pass
        except PermissionError:
            pass  # another user's file: SQLite will say so if it cannot be opened
