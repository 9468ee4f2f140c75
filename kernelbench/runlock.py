"""Advisory locks on run directories, with the holder (pid, host, start time) written into the lock file.

A sweep holds the lock of its shard for its whole lifetime, so a second sweep of the same shard
on the same run directory refuses to start instead of mixing its rows in.  The lock is
``fcntl.flock`` on a small file: the kernel releases it when the holding process dies, however
it dies (SIGKILL, OOM killer, a node's reboot for a local disk), so a lock left by a killed
sweep is taken over by the next one without any timeout or guessing about pids.

The holder's pid, host and start time are written into the file only so that the refusal can
say who holds the lock, and so that taking over a lock whose previous holder did not release it
cleanly can be reported.

Shared filesystems: on NFSv4 the Linux client implements ``flock`` with byte-range locks that
the server enforces across hosts; Lustre does so when mounted with ``-o flock``, and refuses
``flock`` (ENOSYS) otherwise, which is reported as one line naming the run directory.  A
filesystem that only locks locally (Lustre's ``localflock``, NFSv3 with ``nolock``) cannot stop
two hosts from running the same shard; kernelbench then trusts the lock and says, when it takes
over a lock recorded by another host, that it did so (``docs/cluster.md``).  Two hosts on the
same shard only cost duplicated work: part files are written atomically under unique names
and export deduplicates (problem, kernel) pairs.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from kernelbench.errors import InputError


class LockBusy(InputError):
    """Another live process holds the lock."""


#: Locks this process holds, by resolved path.
_HELD: dict[str, RunLock] = {}


def host_name() -> str:
    """This machine's host name, as recorded in lock files and temporary-file names."""
    return socket.gethostname() or "unknown-host"


class RunLock:
    """An exclusive, non-blocking ``flock`` on ``path``; released by :meth:`release` or by process exit.

    Use :meth:`acquire`; ``previous`` then holds the record of a holder that did not release the
    lock cleanly (a killed process), or ``None``.
    """

    def __init__(self, path: Path, fd: int, previous: dict[str, Any] | None) -> None:
        self.path = path
        self._fd: int | None = fd
        self.previous = previous

    @classmethod
    def acquire(cls, path: str | os.PathLike[str], *, what: str, extra: dict[str, Any] | None = None) -> RunLock:
        """Lock ``path`` (created if missing) without waiting, and write this process's record into it.

        Args:
            what: what the lock protects, for the refusal message (e.g. ``"shard 2/4 of runs/net"``).
            extra: further fields of the record (e.g. the shard).

        Raises:
            InputError: another live process holds the lock (its pid, host and start time are named),
                or the filesystem cannot lock or write the file.
        """
        path = Path(path)
        key = str(path.resolve())
        held = _HELD.pop(key, None)
        if held is not None:
            # This process re-opens what it already holds (a second RunStore.open of the same shard):
            # the newer handle takes the lock over; flock would otherwise refuse our own second descriptor.
            held.release()
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise InputError(f"cannot create lock file {path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_record(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LockBusy(f"{what} is in use by {describe_holder(holder)}; wait for it to finish, or "
                                 "use another -o") from None
            raise InputError(f"cannot lock {path} ({exc.strerror or exc}): the filesystem does not support "
                             "flock (Lustre: mount with -o flock); use a run directory on another filesystem") from None
        previous = _read_record(fd)
        record = {"pid": os.getpid(), "host": host_name(),
                  "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **(extra or {})}
        try:
            # Rewritten in place (not renamed): the lock belongs to this inode.
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record, sort_keys=True) + "\n").encode(), 0)
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            raise InputError(f"cannot write lock file {path}: {exc.strerror or exc}") from None
        lock = cls(path, fd, previous if previous and not previous.get("released") else None)
        _HELD[key] = lock
        return lock

    @classmethod
    def acquire_waiting(cls, path: str | os.PathLike[str], *, what: str, wait_s: float = 30.0) -> RunLock:
        """:meth:`acquire`, retried for up to ``wait_s`` seconds: for locks that are held only briefly.

        Raises:
            InputError: as :meth:`acquire`, once ``wait_s`` has passed.
        """
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return cls.acquire(path, what=what)
            except LockBusy:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)

    def release(self) -> None:
        """Mark the record released and unlock.  Idempotent."""
        if self._fd is None:
            return
        key = str(self.path.resolve())
        if _HELD.get(key) is self:
            del _HELD[key]
        try:
            record = _read_record(self._fd) or {}
            record["released"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, (json.dumps(record, sort_keys=True) + "\n").encode(), 0)
        except OSError:
            pass  # a full disk must not keep the lock: closing the descriptor below releases it anyway
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_record(fd: int) -> dict[str, Any] | None:
    try:
        data = os.pread(fd, 4096, 0)
        record = json.loads(data) if data.strip() else None
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def describe_holder(record: dict[str, Any] | None) -> str:
    """``"pid 123 on host node7 (since 2026-01-01T10:00:00+00:00)"``, or ``"another process"``."""
    if not record:
        return "another process"
    return f"pid {record.get('pid', '?')} on host {record.get('host', '?')} (since {record.get('started', '?')})"
