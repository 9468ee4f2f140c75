"""CUDA-event timing of one run: ``time_one()`` for :func:`kernelbench.timing.measure`.

Every sample is: flush L2 (untimed) -> record start -> run -> record end -> wait
for end -> elapsed time between the two events.  All of it is enqueued on one
dedicated stream, so the events bracket exactly the kernel work of ``run`` and
never host time.  The CUDA calls go through :class:`EventApi`, which tests
replace with fakes; :func:`cupy_event_api` is the real one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol


class Event(Protocol):
    def record(self, stream: Any = None) -> None: ...

    def synchronize(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class EventApi:
    """The CUDA operations the event timer uses.

    Attributes:
        new_event: creates a timing-enabled event (``.record(stream)``, ``.synchronize()``).
        elapsed_ms: milliseconds between two completed events.
        stream: the dedicated stream; used as a context manager it becomes the current
            stream, so kernels, cuBLAS and cuFFT calls inside ``run`` are enqueued on it.
    """

    new_event: Callable[[], Event]
    elapsed_ms: Callable[[Event, Event], float]
    stream: Any


def cupy_event_api() -> EventApi:
    """Real CUDA events on a new stream (CuPy).

    The stream is a blocking one (``non_blocking=False``): it orders itself after work
    on the legacy default stream, where inputs were copied during prepare.
    """
    import cupy

    return EventApi(
        new_event=cupy.cuda.Event,
        elapsed_ms=cupy.cuda.get_elapsed_time,
        stream=cupy.cuda.Stream(non_blocking=False),
    )


def event_timer(
    run: Callable[[], object],
    *,
    api: EventApi,
    before: Callable[[], None] | None = None,
    after: Callable[[], None] | None = None,
) -> Callable[[], float]:
    """``time_one()`` timing ``run()`` with CUDA events on ``api.stream``, in ms.

    ``before`` (e.g. the L2 flush) is enqueued on the same stream ahead of the start
    event, so it precedes the timed interval without being part of it.  ``after`` runs
    on the host once the sample is complete (e.g. polling clocks for throttling).
    Errors raised by CUDA (a kernel fault, out of memory) propagate to the caller.
    """
    start = api.new_event()
    end = api.new_event()

    def time_one() -> float:
        with api.stream:
            if before is not None:
                before()
            start.record(api.stream)
            run()
            end.record(api.stream)
        end.synchronize()
        elapsed = float(api.elapsed_ms(start, end))
        if after is not None:
            after()
        return elapsed

    return time_one
