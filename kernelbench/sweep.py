"""The sweep: for each problem, check then time every applicable kernel, and store the rows.

Per (problem, kernel) the order is fixed: applicability -> prepare (untimed) ->
one checked run against the float64 reference -> adaptive timing.  A kernel
whose output is wrong is recorded as ``wrong_result`` and never timed; one
that raises is ``error``; one whose single run exceeds the timeout is
``timeout``.  The sweep always goes on with the next kernel.

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
from typing import Any

from kernelbench.backends import Backend
from kernelbench.errors import InputError
from kernelbench.kernels.base import Kernel, ProblemInputs
from kernelbench.load import LoadMeter
from kernelbench.problem import ConvProblem
from kernelbench.shards import Shard
from kernelbench.spaces import SpaceEntry
from kernelbench.status import Status
from kernelbench.store import RunStore
from kernelbench.timing import Measurement, StoppingRule, measure


@dataclasses.dataclass(frozen=True)
class SweepOptions:
    """How to measure.  ``quiet_wait`` waits for the machine to be quiet and re-times loaded samples."""

    rule: StoppingRule = dataclasses.field(default_factory=StoppingRule)
    shard: Shard = dataclasses.field(default_factory=Shard)
    seed: int = 0
    threads: int = 1
    quiet_wait: bool = False
    quiet_threshold_cores: float = 0.3
    quiet_max_wait_s: float = 30.0
    quiet_retries: int = 2
    flush_every_s: float = 10.0


@dataclasses.dataclass(frozen=True)
class SweepSummary:
    """What one sweep invocation did."""

    problems_total: int
    problems_skipped: int
    rows_written: int
    status_counts: dict[str, int]
    kernel_time_s: float
    wall_s: float


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return first[:500]


def _row(
    problem: ConvProblem,
    kernel: Kernel,
    status: Status,
    *,
    entry: SpaceEntry,
    backend: Backend,
    store: RunStore,
    threads: int,
    error: str | None = None,
    result: Measurement | None = None,
    max_rel_error: float | None = None,
    workspace_bytes: int | None = None,
    load: float | None = None,
    throttled: bool | None = None,
) -> dict[str, Any]:
    row = problem.as_row()
    row.update(
        kernel=kernel.name,
        algorithm=kernel.algorithm,
        status=status.value,
        error=error,
        time_ms=result.median_ms if result and status is Status.OK else None,
        time_ms_min=result.min_ms if result and status is Status.OK else None,
        time_ms_iqr=result.iqr_ms if result and status is Status.OK else None,
        # inf (fewer than 2 samples) is "unknown", not a number a reader should compare.
        time_rse=result.rse if result and status is Status.OK and math.isfinite(result.rse) else None,
        samples=len(result.samples_ms) if result else None,
        max_rel_error=max_rel_error if max_rel_error is None or math.isfinite(max_rel_error) else None,
        workspace_bytes=workspace_bytes,
        threads=threads,
        load=load,
        throttled=throttled,
        device=backend.device_label,
        source="kernelbench-sweep",
        run_id=store.run_id,
        network=entry.network,
    )
    return row


#: Chooses which applicable kernels of a problem to measure, in order: ``plan(entry, applicable, statuses)`` yields
#: ``(kernel, extra_row_fields)``.  ``statuses`` maps kernel name -> status of this problem's stored rows and is
#: updated after each measurement, so a lazy plan (a generator) can decide on the results so far; a plan must not
#: yield a kernel already in ``statuses``.  Without a plan the sweep measures every applicable kernel not stored.
Plan = Callable[[SpaceEntry, Sequence[Kernel], Mapping[str, str]], Iterable[tuple[Kernel, Mapping[str, Any]]]]


def every_pending(entry: SpaceEntry, applicable: Sequence[Kernel], statuses: Mapping[str, str]
                  ) -> list[tuple[Kernel, Mapping[str, Any]]]:
    """The sweep's own plan: every applicable kernel not stored yet, in the given order."""
    return [(k, {}) for k in applicable if k.name not in statuses]


def _row_untimed(*args: Any, **kwargs: Any) -> tuple[dict[str, Any], float]:
    return _row(*args, **kwargs), 0.0


def measure_kernel(
    kernel: Kernel,
    entry: SpaceEntry,
    inputs: ProblemInputs,
    reference: Any,
    *,
    backend: Backend,
    store: RunStore,
    options: SweepOptions,
    meter: LoadMeter,
) -> tuple[dict[str, Any], float]:
    """Check and time one applicable kernel on one problem, never raising.

    Returns the dataset row and the seconds spent in the timing loop, warm-up included
    (0 when not timed); a sample may average several runs (see :func:`kernelbench.timing.host_timer`).
    The row's ``measure_s`` is the wall time of the whole call (prepare, checked run, timing).
    """
    started = time.perf_counter()
    row, timing_s = _check_and_time(kernel, entry, inputs, reference, backend=backend, store=store,
                                    options=options, meter=meter)
    row["measure_s"] = time.perf_counter() - started
    return row, timing_s


def _check_and_time(
    kernel: Kernel,
    entry: SpaceEntry,
    inputs: ProblemInputs,
    reference: Any,
    *,
    backend: Backend,
    store: RunStore,
    options: SweepOptions,
    meter: LoadMeter,
) -> tuple[dict[str, Any], float]:
    from kernelbench.reference import max_rel_error, tolerance

    problem = entry.problem
    common = {"entry": entry, "backend": backend, "store": store, "threads": options.threads}

    def failed(exc: Exception) -> tuple[dict[str, Any], float]:
        text = f"out of memory: {exc}" if isinstance(exc, MemoryError) else _error_text(exc)
        return _row_untimed(problem, kernel, Status.ERROR, error=text, **common)
    reason = kernel.unavailable()
    if reason is not None:
        return _row_untimed(problem, kernel, Status.UNAVAILABLE, error=reason, **common)
    try:
        prepared = kernel.prepare(problem, inputs)
        started = time.perf_counter()
        out = prepared.run()
        if prepared.sync is not None:
            prepared.sync()
        first_s = time.perf_counter() - started
        err = max_rel_error(prepared.result(out), reference)
    except Exception as exc:  # noqa: BLE001 - any kernel failure is recorded, the sweep goes on
        return failed(exc)
    if first_s > options.rule.timeout_s:
        return _row_untimed(problem, kernel, Status.TIMEOUT, max_rel_error=err,
                            error=f"one run took {first_s:.1f} s > timeout {options.rule.timeout_s:g} s", **common)
    tol = tolerance(problem)
    if not (err <= tol):  # also catches NaN
        return _row_untimed(problem, kernel, Status.WRONG_RESULT, max_rel_error=err,
                            error=f"max relative error {err:.3g} > tolerance {tol:.1g}", **common)
    try:
        timer = backend.timer(prepared)
        attempts = 1 + (options.quiet_retries if options.quiet_wait else 0)
        timing_s = 0.0
        for attempt in range(attempts):
            if options.quiet_wait:
                meter.wait_for_quiet(threshold_cores=options.quiet_threshold_cores, max_wait_s=options.quiet_max_wait_s)
            backend.throttled()  # reset the throttle window to this kernel's samples
            before = meter.snapshot()
            started = time.perf_counter()
            result = measure(timer, rule=options.rule)
            timing_s += time.perf_counter() - started
            load = meter.load_since(before)
            throttled = backend.throttled()
            if load is None or load < options.quiet_threshold_cores or attempt == attempts - 1:
                break
    except Exception as exc:  # noqa: BLE001
        return failed(exc)
    status = Status.TIMEOUT if result.timed_out else Status.OK
    error = f"a run exceeded the timeout of {options.rule.timeout_s:g} s" if result.timed_out else None
    row = _row(problem, kernel, status, result=result, max_rel_error=err, error=error,
               workspace_bytes=prepared.workspace_bytes, load=load, throttled=throttled, **common)
    return row, timing_s


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
    ``desc`` labels the progress bar.
    """
    from tqdm.auto import tqdm

    from kernelbench.reference import make_inputs, reference_output

    meter = meter or LoadMeter()
    shard_entries = options.shard.select(entries)
    done = store.finished_statuses()
    todo: list[tuple[SpaceEntry, dict[str, str], Iterator[tuple[Kernel, Mapping[str, Any]]] | None]] = []
    for entry in shard_entries:
        pid = entry.problem.problem_id
        applicable = [k for k in kernels if k.reason_not_applicable(entry.problem) is None]
        statuses = {k.name: done[(pid, k.name)] for k in applicable if (pid, k.name) in done}
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

    bar = tqdm(total=len(todo), initial=skipped, unit="problem", disable=not progress, dynamic_ncols=True,
               desc=f"{desc} {options.shard}" if options.shard.count > 1 else desc)
    try:
        for index, (entry, statuses, pending) in enumerate(todo):
            if pending is None:
                continue
            bar.set_postfix_str(entry.problem.describe(), refresh=True)
            inputs = make_inputs(entry.problem, seed=options.seed)
            reference = reference_output(entry.problem, inputs)
            for kernel, extra in pending:
                bar.set_postfix_str(f"{entry.problem.describe()} | {kernel.name}", refresh=True)
                row, timed_s = measure_kernel(kernel, entry, inputs, reference, backend=backend, store=store,
                                              options=options, meter=meter)
                row.update(extra)
                statuses[kernel.name] = row["status"]
                buffer.append(row)
                counts[row["status"]] = counts.get(row["status"], 0) + 1
                kernel_time_s += timed_s
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
    return SweepSummary(
        problems_total=len(todo),
        problems_skipped=skipped,
        rows_written=rows_written,
        status_counts=counts,
        kernel_time_s=kernel_time_s,
        wall_s=time.perf_counter() - start,
    )


def set_threads(threads: int) -> dict[str, Any]:
    """Fix the thread count of torch and of numpy's BLAS for the whole process; returns what was set."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)
    return {"torch_threads": torch.get_num_threads(), "blas_threads": threads}


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
