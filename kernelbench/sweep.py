"""The sweep: for each problem, check then time every applicable kernel, and store the rows.

Per (problem, kernel) the order is fixed: applicability -> prepare (untimed) ->
one checked run against the float64 reference -> adaptive timing.  A kernel
whose output is wrong is recorded as ``wrong_result`` and never timed; one
that raises is ``error``; one whose single run exceeds the timeout is
``timeout``.  The sweep always goes on with the next kernel.

With ``isolation="process"`` (the default) the checking and timing run in a
worker process (:mod:`kernelbench.worker`) that the sweep kills when a step
overruns ``timeout_s + kill_grace_s``: a kernel that never returns is a
``timeout`` row, one that crashes the process (a segfault) an ``error`` row,
and the sweep goes on with a fresh worker.  ``isolation="none"`` measures in
this process (faster to start; a hung kernel hangs the sweep).

Before a problem's inputs are allocated, the peak memory of measuring each of its
kernels is estimated (:func:`memory_refusal`: the inputs, the float64 reference and
the kernel's own ``workspace_estimate``); a kernel above ``max_memory_gb`` gets an
``unavailable`` row that gives the estimate, and the others are measured.  A re-run
measures such a row again once its cause is gone (a larger ``max_memory_gb``).

Rows are buffered and flushed to the run directory as one part file every
``flush_every_s`` seconds (and at the end), so a killed sweep loses at most
that much work and a re-run skips what is stored.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kernelbench.backends import Backend
from kernelbench.device import default_max_memory_gb
from kernelbench.errors import InputError
from kernelbench.kernels.base import Kernel, ProblemInputs
from kernelbench.load import LoadMeter
from kernelbench.problem import ConvProblem, memory_estimate
from kernelbench.shards import Shard  # noqa: F401 (re-exported: kernelbench.sweep.Shard)
from kernelbench.spaces import SpaceEntry
from kernelbench.status import Status
from kernelbench.measure import (  # noqa: F401 (SweepOptions, set_threads, error_text: re-exported)
    ISOLATIONS,
    KILL_GRACE_S,
    SweepOptions,
    _row,
    error_text,
    measure_kernel,
    problem_data,
    set_threads,
)

if TYPE_CHECKING:  # the store imports polars, which a measurement worker does not need
    from kernelbench.store import RunStore


@dataclasses.dataclass(frozen=True)
class SweepSummary:
    """What one sweep invocation did."""

    problems_total: int
    problems_skipped: int
    rows_written: int
    status_counts: dict[str, int]
    kernel_time_s: float
    wall_s: float


Plan = Callable[[SpaceEntry, Sequence[Kernel], Mapping[str, str]], Iterable[tuple[Kernel, Mapping[str, Any]]]]


def _retry(status: str, problem: ConvProblem, kernel: Kernel, max_memory_gb: float) -> bool:
    """Whether a stored row is measured again: an ``unavailable`` row whose cause is gone, because the
    memory limit now admits the kernel (a re-run with a larger ``--max-memory-gb``, or a better estimate)
    and its entry point exists in this build.  Its new row supersedes it (an ``ok`` row wins everywhere)."""
    return (status == Status.UNAVAILABLE and kernel.unavailable() is None
            and memory_refusal(problem, kernel, max_memory_gb=max_memory_gb) is None)


def every_pending(entry: SpaceEntry, applicable: Sequence[Kernel], statuses: Mapping[str, str]
                  ) -> list[tuple[Kernel, Mapping[str, Any]]]:
    """The sweep's own plan: every applicable kernel not stored yet, in the given order."""
    return [(k, {}) for k in applicable if k.name not in statuses]


class _InProcess:
    """Measures in this process; inputs and reference are computed once per problem."""

    def __init__(self, *, backend: Backend, run_id: str, options: SweepOptions, meter: LoadMeter) -> None:
        self.backend, self.run_id, self.options, self.meter = backend, run_id, options, meter
        self._key: str | None = None
        self._data: tuple[ProblemInputs, Any] | Exception | None = None

    def measure(self, entry: SpaceEntry, kernel: Kernel) -> tuple[dict[str, Any], float, bool]:
        """The row, the timed seconds, and whether the problem's remaining kernels cannot run either."""
        if self._key != entry.problem.problem_id:
            self._key, self._data = entry.problem.problem_id, None  # free the previous problem's arrays first
            try:
                self._data = problem_data(entry.problem, seed=self.options.seed)
            except Exception as exc:  # noqa: BLE001 - recorded for every kernel of the problem
                self._data = exc
        if isinstance(self._data, Exception):
            text = f"inputs or reference failed: {error_text(self._data)}"
            return _failure_row(entry, kernel, Status.ERROR, text, self), 0.0, True
        inputs, reference = self._data
        row, timed_s = measure_kernel(kernel, entry, inputs, reference, backend=self.backend, run_id=self.run_id,
                                      options=self.options, meter=self.meter)
        return row, timed_s, False

    def side_tables(self) -> dict[str, list[dict[str, Any]]]:
        return self.backend.side_tables()

    def close(self) -> None:
        self._key = self._data = None


class _InWorker:
    """Measures in a :class:`kernelbench.worker.Worker` process; kills and replaces it on a hang or a crash."""

    def __init__(self, kernels: Sequence[Kernel], *, backend: Backend, run_id: str, options: SweepOptions) -> None:
        from kernelbench.kernels.registry import all_kernels
        from kernelbench.worker import Worker, kernel_message

        self.backend, self.run_id, self.options = backend, run_id, options
        registry = [k.name for k in all_kernels(backend.name)]
        self._messages = {k.name: kernel_message(k, registry) for k in kernels}
        self._limits = options.step_limits_s()
        self.worker = Worker(backend=backend.name, threads=options.threads, device_label=backend.device_label)
        self._side: dict[str, dict[Any, dict[str, Any]]] = {}

    def measure(self, entry: SpaceEntry, kernel: Kernel) -> tuple[dict[str, Any], float, bool]:
        from kernelbench.worker import TIMED_OUT, Done, Failure

        outcome = self.worker.measure(entry, self._messages[kernel.name], options=self.options,
                                      run_id=self.run_id, step_limits_s=self._limits)
        if isinstance(outcome, Done):
            return outcome.row, outcome.timed_s, False
        if isinstance(outcome, Failure):
            setup = outcome.step == "inputs and reference"
            if outcome.kind == TIMED_OUT:
                limit = self._limits[outcome.step]
                text = (f"{outcome.step} did not finish within {limit:g} s (timeout_s {self.options.rule.timeout_s:g}"
                        f" + kill_grace_s {self.options.kill_grace_s:g}); the worker process was killed")
                return _failure_row(entry, kernel, Status.TIMEOUT, text, self), 0.0, setup
            return _failure_row(entry, kernel, Status.ERROR, outcome.message, self), 0.0, setup
        text = f"inputs or reference failed: {outcome.message}"
        return _failure_row(entry, kernel, Status.ERROR, text, self), 0.0, True

    def problem_done(self) -> None:
        """Collect the worker's side tables while it is alive (a later kill would lose them)."""
        for name, rows in self.worker.side_tables().items():
            table = self._side.setdefault(name, {})
            for row in rows:
                table[row.get("problem_id", len(table))] = row

    def side_tables(self) -> dict[str, list[dict[str, Any]]]:
        """What :meth:`problem_done` collected (never asks the worker: it may be busy after an interrupt)."""
        return {name: list(rows.values()) for name, rows in self._side.items()}

    def close(self) -> None:
        self.worker.close()


def memory_refusal(problem: ConvProblem, kernel: Kernel, *, max_memory_gb: float) -> str | None:
    """None when measuring ``kernel`` on ``problem`` is estimated to fit in ``max_memory_gb`` (GB, 1e9 bytes),
    else the ``unavailable`` row's message giving the estimate (:func:`kernelbench.problem.memory_estimate`
    with the kernel's own ``workspace_estimate``)."""
    workspace = None if kernel.workspace_estimate is None else kernel.workspace_estimate(problem)
    estimate = memory_estimate(problem, kernel_workspace_bytes=workspace)
    if estimate.peak_bytes <= max_memory_gb * 1e9:
        return None
    return f"estimated peak memory {estimate.describe()} > max_memory_gb {max_memory_gb:g} GB"


def _failure_row(entry: SpaceEntry, kernel: Kernel, status: Status, error: str, measurer: Any) -> dict[str, Any]:
    return _row(entry.problem, kernel, status, error=error, entry=entry, backend=measurer.backend,
                run_id=measurer.run_id, threads=measurer.options.threads)


def run_sweep(
    entries: Sequence[SpaceEntry],
    kernels: Sequence[Kernel],
    *,
    backend: Backend,
    store: RunStore,
    options: SweepOptions = SweepOptions(),
    progress: bool = True,
    meter: LoadMeter | None = None,
    on_problem_done: Callable[[int], None] | None = None,
    plan: Plan = every_pending,
    desc: str = "sweep",
) -> SweepSummary:
    """Measure every applicable (problem, kernel) pair of this shard not yet in ``store``, or those ``plan`` chooses.

    ``on_problem_done(i)`` is called after problem ``i`` of the shard (tests use it to interrupt);
    ``desc`` labels the progress bar.  Writes the rows as part files and, at the end (also after an
    error or Ctrl-C), the backend's side tables.  ``meter`` replaces the load meter with
    ``isolation="none"`` only (a worker process measures its own load).

    Raises:
        ValueError: ``meter`` with ``isolation="process"``, or a kernel the worker cannot receive
            (see :func:`kernelbench.worker.kernel_message`).
        RuntimeError: the worker process cannot start.
    """
    from tqdm.auto import tqdm

    if meter is not None and options.isolation != "none":
        raise ValueError("meter: a worker process measures its own load; pass it with isolation='none' only")
    max_memory_gb = options.max_memory_gb if options.max_memory_gb is not None else default_max_memory_gb()
    shard_entries = options.shard.select(entries)
    done = store.finished_statuses()
    todo: list[tuple[SpaceEntry, dict[str, str], Iterator[tuple[Kernel, Mapping[str, Any]]] | None]] = []
    for entry in shard_entries:
        pid = entry.problem.problem_id
        applicable = [k for k in kernels if k.reason_not_applicable(entry.problem) is None]
        statuses = {k.name: done[(pid, k.name)] for k in applicable
                    if (pid, k.name) in done and not _retry(done[(pid, k.name)], entry.problem, k, max_memory_gb)}
        pending = iter(plan(entry, applicable, statuses))
        first = next(pending, None)  # peek: a problem with nothing to measure counts as done
        todo.append((entry, statuses, None if first is None else itertools.chain([first], pending)))
    skipped = sum(1 for *_, pending in todo if pending is None)

    start = time.perf_counter()
    buffer: list[dict[str, Any]] = []
    last_flush = time.perf_counter()
    counts: dict[str, int] = {}
    rows_written = 0
    kernel_time_s = 0.0

    def flush() -> None:
        nonlocal buffer, last_flush, rows_written
        store.write_part(buffer, shard=str(options.shard))
        rows_written += len(buffer)
        buffer = []
        last_flush = time.perf_counter()

    def record(row: dict[str, Any]) -> None:
        buffer.append(row)
        counts[row["status"]] = counts.get(row["status"], 0) + 1

    measurer: _InProcess | _InWorker
    if options.isolation == "none":
        measurer = _InProcess(backend=backend, run_id=store.run_id, options=options, meter=meter or LoadMeter())
    else:
        # Every kernel a plan may choose: the worker receives them once, up front.
        measurer = _InWorker(list(kernels), backend=backend, run_id=store.run_id, options=options)
    bar = tqdm(total=len(todo), initial=skipped, unit="problem", disable=not progress, dynamic_ncols=True,
               desc=f"{desc} {options.shard}" if options.shard.count > 1 else desc)
    try:
        for index, (entry, statuses, pending) in enumerate(todo):
            if pending is None:
                continue
            bar.set_postfix_str(entry.problem.describe(), refresh=True)
            setup_error: dict[str, Any] | None = None
            measured_any = False
            for kernel, extra in pending:
                bar.set_postfix_str(f"{entry.problem.describe()} | {kernel.name}", refresh=True)
                too_big = memory_refusal(entry.problem, kernel, max_memory_gb=max_memory_gb)
                measured_any = measured_any or too_big is None
                if too_big is not None:
                    row = _failure_row(entry, kernel, Status.UNAVAILABLE, too_big, measurer)
                elif setup_error is not None:  # the problem's inputs or reference failed: do not retry per kernel
                    row = _failure_row(entry, kernel, Status(setup_error["status"]), setup_error["error"], measurer)
                else:
                    row, timed_s, problem_failed = measurer.measure(entry, kernel)
                    kernel_time_s += timed_s
                    if problem_failed:
                        setup_error = row
                row.update(extra)
                statuses[kernel.name] = row["status"]  # a plan may choose the next kernel from what failed
                record(row)
            if isinstance(measurer, _InWorker) and measured_any:
                measurer.problem_done()
            bar.update(1)
            if time.perf_counter() - last_flush >= options.flush_every_s:
                flush()
            if on_problem_done is not None:
                on_problem_done(index)
        flush()
    except BaseException:
        # Keep what was measured (Ctrl-C, errors in the harness itself); a SIGKILL loses only the buffer.
        try:
            flush()
        except InputError:
            pass  # the store cannot write (say, the disk is full): the original error says so in one line
        except Exception:  # noqa: BLE001 - never mask the original exception
            traceback.print_exc()
        raise
    finally:
        bar.close()
        try:
            for name, rows in measurer.side_tables().items():
                store.write_side_table(name, rows)
        finally:
            measurer.close()
    return SweepSummary(
        problems_total=len(todo),
        problems_skipped=skipped,
        rows_written=rows_written,
        status_counts=counts,
        kernel_time_s=kernel_time_s,
        wall_s=time.perf_counter() - start,
    )


def format_summary(summary: SweepSummary) -> str:
    """The end-of-sweep table."""
    status = ", ".join(f"{k} {v}" for k, v in sorted(summary.status_counts.items())) or "nothing new"
    overhead = summary.wall_s / summary.kernel_time_s if summary.kernel_time_s > 0 else math.nan
    lines = [
        f"{'problems':<22}{summary.problems_total} ({summary.problems_skipped} already done)",
        f"{'rows written':<22}{summary.rows_written}",
        f"{'status':<22}{status}",
        f"{'wall time':<22}{summary.wall_s:.1f} s",
        f"{'timed kernel time':<22}{summary.kernel_time_s:.1f} s (wall / timed = {overhead:.2f})",
    ]
    return "\n".join(lines)
