"""Evicting the L2 cache before each timed sample.

Without a flush, a kernel re-run on the same inputs finds them in L2 (40 MB on
A100, 50 MB on H100) and looks faster than it would inside a network.  Writing
a buffer of at least twice the L2 size replaces every line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Flush size when the device does not report its L2 size: 2x the largest L2 we know of (~126 MB).
DEFAULT_FLUSH_BYTES = 256 * 2**20
#: Multiple of the L2 size written per flush.
FLUSH_FACTOR = 2


def flush_bytes(l2_bytes: int, *, factor: int = FLUSH_FACTOR) -> int:
    """Bytes to write per flush: ``factor`` x the L2 size, or :data:`DEFAULT_FLUSH_BYTES` if unknown (<= 0)."""
    if factor < 1:
        raise ValueError("factor must be >= 1")
    return factor * l2_bytes if l2_bytes > 0 else DEFAULT_FLUSH_BYTES


def flush_bytes_from_properties(props: Mapping[str, Any], *, factor: int = FLUSH_FACTOR) -> int:
    """:func:`flush_bytes` from ``cupy.cuda.runtime.getDeviceProperties`` (key ``l2CacheSize``, bytes)."""
    return flush_bytes(int(props.get("l2CacheSize") or 0), factor=factor)


class L2Flusher:
    """Owns the flush buffer; calling it enqueues one full write of the buffer on the current stream.

    ``xp`` is the array module (``cupy``; numpy in tests).  The buffer is allocated once
    and kept, so flushing allocates nothing.  The fill value changes every call so no
    write can be elided as redundant.
    """

    def __init__(self, nbytes: int, *, xp: Any) -> None:
        if nbytes <= 0:
            raise ValueError("flush buffer must have a positive size")
        self.nbytes = nbytes
        self._buffer = xp.empty(nbytes, dtype=xp.uint8)
        self._calls = 0

    def __call__(self) -> None:
        self._calls += 1
        self._buffer.fill(self._calls & 0xFF)

    @property
    def calls(self) -> int:
        return self._calls
