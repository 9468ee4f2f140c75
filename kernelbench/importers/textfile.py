"""Stream the lines of a text file that may be bzip2- or gzip-compressed.

The compression is recognised from the file's first bytes, not its name, so a
renamed file still opens.  Decompression runs in a background thread (bz2 and
zlib release the GIL), so it overlaps with the caller's parsing; at most
:data:`QUEUED_CHUNKS` chunks of :data:`CHUNK_BYTES` are held at a time.
Lines are raw bytes split on ``\\n`` only (as MIOpen's ``std::getline``), so the
caller decides what to do with bytes that are not text.

A bzip2 file may hold several streams one after the other (as ``bzip2`` and
``bz2.open`` allow); bytes after the last stream that are not another stream
are ignored, as ``bz2.open`` does, but reported to the caller (``bz2.open``
drops them without a word).
"""

from __future__ import annotations

import bz2
import functools
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


def iter_lines(path: str | os.PathLike[str], *, warn: Callable[[str], None] | None = None) -> Iterator[bytes]:
    """Yield the lines of ``path`` (plain, bzip2 or gzip), without their ``\\n``.

    ``warn`` is called (from the reader thread) with a one-line message about data
    that was ignored: bytes after the end of a bzip2 file's data.

    Raises:
        InputError: the file is missing, unreadable, an SQLite database, has a
            line over :data:`MAX_LINE_BYTES`, or its compressed data is corrupt
            (possibly after some lines were yielded).
    """
    path = Path(path)
    opener, kind = _opener(path)
    if kind == "bzip2":
        def ignored(count: int) -> None:
            if warn is not None:
                warn(f"{path.name}: {count:,} byte(s) after the end of the bzip2 data are not bzip2 and were "
                     "ignored (an appended file or a damaged copy?)")

        opener = functools.partial(_Bzip2File, ignored=ignored)
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
        return _Bzip2File, "bzip2"
    if head.startswith(b"\x1f\x8b"):
        return gzip.open, "gzip"
    return open, None


class _Bzip2File:
    """The decompressed bytes of a bzip2 file, stream after stream, like ``bz2.open(path, "rb")``.

    Unlike ``bz2.open``, bytes after the last stream that do not make another
    stream are counted and passed to ``ignored`` (then dropped, as ``bz2.open`` does).
    """

    def __init__(self, path: Path, mode: str = "rb", *, ignored: Callable[[int], None] | None = None) -> None:
        self._fh = open(path, "rb")  # noqa: SIM115 -- closed by __exit__
        self._decompressor = bz2.BZ2Decompressor()
        self._ignored = ignored

    def __enter__(self) -> _Bzip2File:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()

    def read(self, size: int) -> bytes:
        """Up to ``size`` decompressed bytes; ``b""`` at the end.

        Raises:
            OSError: invalid bzip2 data (in the first stream, or inside a later one).
            EOFError: the file ends inside a stream.
        """
        while True:
            next_stream = False
            if self._decompressor.eof:
                data = self._decompressor.unused_data
                while len(data) < 4 and (more := self._fh.read(CHUNK_BYTES)):
                    data += more
                if not data:
                    return b""
                if not (data[:3] == b"BZh" and data[3:4].isdigit()):
                    return self._drop(data)
                self._decompressor, next_stream = bz2.BZ2Decompressor(), True
            elif self._decompressor.needs_input:
                data = self._fh.read(CHUNK_BYTES)
                if not data:
                    raise EOFError("compressed file ended before the end-of-stream marker was reached")
            else:
                data = b""
            try:
                out = self._decompressor.decompress(data, max_length=size)
            except OSError:
                if next_stream:  # a header, then no bzip2 data: trailing bytes (bz2.open ignores them too)
                    return self._drop(data)
                raise
            if out:
                return out

    def _drop(self, data: bytes) -> bytes:
        """Report ``data`` and the rest of the file as ignored; return the end of the output."""
        count = len(data) + len(self._fh.read())
        if self._ignored is not None:
            self._ignored(count)
        return b""


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
