"""Stream the lines of a text file that may be bzip2- or gzip-compressed.

The compression is recognised from the file's first bytes, not its name, so a
renamed file still opens.  Decompression runs in a background thread (bz2 and
zlib release the GIL), so it overlaps with the caller's parsing; at most
:data:`QUEUED_CHUNKS` chunks of :data:`CHUNK_BYTES` are held at a time.
Lines are raw bytes split on ``\\n`` only (as MIOpen's ``std::getline``), so the
caller decides what to do with bytes that are not text.
"""

from __future__ import annotations

import bz2
import gzip
import os
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from kernelbench.errors import InputError

CHUNK_BYTES = 1 << 20
QUEUED_CHUNKS = 4
#: A longer line means the file is not line-oriented text (and would make splitting quadratic).
MAX_LINE_BYTES = 16 << 20
_SQLITE_MAGIC = b"SQLite format 3\x00"
_END = object()


def iter_lines(path: str | os.PathLike[str]) -> Iterator[bytes]:
    """Yield the lines of ``path`` (plain, bzip2 or gzip), without their ``\\n``.

    Raises:
        InputError: the file is missing, unreadable, an SQLite database, has a
            line over :data:`MAX_LINE_BYTES`, or its compressed data is corrupt
            (possibly after some lines were yielded).
    """
    path = Path(path)
    opener, kind = _opener(path)
    carry = b""
    try:
        for chunk in _chunks(lambda: opener(path, "rb")):
            lines = (carry + chunk).split(b"\n")
            carry = lines.pop()
            if len(carry) > MAX_LINE_BYTES:
                raise InputError(f"{path}: a line is longer than {MAX_LINE_BYTES >> 20} MiB; not a text file")
            yield from lines
    except (OSError, EOFError) as exc:
        what = f"corrupt {kind} data" if kind else "read error"
        raise InputError(f"{path}: {what} ({exc})") from None
    if carry:
        yield carry


def _opener(path: Path) -> tuple[Callable[..., IO[bytes]], str | None]:
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(_SQLITE_MAGIC))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if head.startswith(_SQLITE_MAGIC):
        raise InputError(f"{path}: an SQLite database (MIOpen's binary perf-db or kernel cache), not a text file")
    if head.startswith(b"BZh"):
        return bz2.open, "bzip2"
    if head.startswith(b"\x1f\x8b"):
        return gzip.open, "gzip"
    return open, None


def _chunks(open_file: Callable[[], IO[bytes]]) -> Iterator[bytes]:
    """The file's bytes in chunks, read (and decompressed) by a background thread.

    An exception in the reader is re-raised here; leaving the loop early stops the reader.
    """
    chunks: queue.Queue[object] = queue.Queue(maxsize=QUEUED_CHUNKS)
    stop = threading.Event()

    def put(item: object) -> None:
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read() -> None:
        try:
            with open_file() as fh:
                while not stop.is_set() and (chunk := fh.read(CHUNK_BYTES)):
                    put(chunk)
            put(_END)
        except BaseException as exc:  # noqa: BLE001 -- handed to the consumer, which raises it
            put(exc)

    reader = threading.Thread(target=read, name="kernelbench-read", daemon=True)
    reader.start()
    try:
        while (item := chunks.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        reader.join()
