"""One measurement: check, then time, one kernel on one problem, and build its dataset row.

Per (problem, kernel) the order is fixed: applicability -> prepare (untimed) ->
one checked run against the float64 reference -> adaptive timing.  A kernel
whose output is wrong is recorded as ``wrong_result`` and never timed; one
that raises is ``error``; one whose single run exceeds the timeout is
``timeout``.  The sweep (:mod:`kernelbench.sweep`) runs this in its own
process or in a worker process (:mod:`kernelbench.worker`); both import it
from here, so neither imports the other's internals.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

from kernelbench.backends import Backend
from kernelbench.kernels.base import Kernel, ProblemInputs
from kernelbench.load import LoadMeter
from kernelbench.problem import ConvProblem
from kernelbench.shards import Shard
from kernelbench.spaces import SpaceEntry
from kernelbench.status import Status
from kernelbench.timing import Measurement, StoppingRule, measure

#: The sweep's ``isolation`` values: ``process`` measures in a worker process the sweep can kill,
#: ``none`` in the sweep's own process.
ISOLATIONS = ("process", "none")
#: Default ``kill_grace_s`` of the sweep: seconds a step may run past ``timeout_s`` before the worker is
#: killed.  A run that ends within it is still measured (and recorded as ``timeout``); the grace
#: absorbs scheduling delays on a loaded machine and the first call's compilation on a GPU.
KILL_GRACE_S = 10.0


@dataclasses.dataclass(frozen=True)
class SweepOptions:
    """How to measure.  ``quiet_wait`` waits for the machine to be quiet and re-times loaded samples.

    ``isolation``: one of :data:`kernelbench.worker.ISOLATIONS`.  ``kill_grace_s``: with ``process``, a step that runs
    kernel code (prepare, the checked run, one warm-up run or sample) is killed after
    ``rule.timeout_s + kill_grace_s`` seconds; the grace keeps a slow but finishing run (on a loaded
    machine) a measured ``timeout`` rather than a kill.  ``max_memory_gb``: problems whose estimated
    peak memory is larger get ``unavailable`` rows (None: :func:`default_max_memory_gb`).

    Raises:
        ValueError: an unknown ``isolation``, or a negative ``kill_grace_s`` / non-positive ``max_memory_gb``.
    """

    rule: StoppingRule = dataclasses.field(default_factory=StoppingRule)
    shard: Shard = dataclasses.field(default_factory=Shard)
    seed: int = 0
    threads: int = 1
    quiet_wait: bool = False
    quiet_threshold_cores: float = 0.3
    quiet_max_wait_s: float = 30.0
    quiet_retries: int = 2
    flush_every_s: float = 10.0
    isolation: str = "process"
    kill_grace_s: float = KILL_GRACE_S
    max_memory_gb: float | None = None

    def __post_init__(self) -> None:
        if self.isolation not in ISOLATIONS:
            raise ValueError(f"isolation={self.isolation!r}: expected one of {', '.join(ISOLATIONS)}")
        if not self.kill_grace_s >= 0:
            raise ValueError(f"kill_grace_s={self.kill_grace_s!r}: expected >= 0")
        if self.max_memory_gb is not None and not self.max_memory_gb > 0:
            raise ValueError(f"max_memory_gb={self.max_memory_gb!r}: expected > 0")

    def step_limits_s(self) -> dict[str, float]:
        """Seconds after which the worker is killed, per step that runs kernel code (see kernelbench.worker)."""
        run = self.rule.timeout_s + self.kill_grace_s
        return {"prepare": run, "checked run": run, "timing": run,
                "quiet wait": self.quiet_max_wait_s + self.kill_grace_s}


def error_text(exc: BaseException) -> str:
    """The first line of ``Type: message``, at most 500 characters: the ``error`` column."""
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
    run_id: str,
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
        run_id=run_id,
        network=entry.network,
    )
    return row


#: Chooses which applicable kernels of a problem to measure, in order: ``plan(entry, applicable, statuses)`` yields
#: ``(kernel, extra_row_fields)``.  ``statuses`` maps kernel name -> status of this problem's stored rows and is
#: updated after each measurement, so a lazy plan (a generator) can decide on the results so far; a plan must not
#: yield a kernel already in ``statuses``.  Without a plan the sweep measures every applicable kernel not stored.
def _row_untimed(*args: Any, **kwargs: Any) -> tuple[dict[str, Any], float]:
    return _row(*args, **kwargs), 0.0


def problem_data(problem: ConvProblem, *, seed: int) -> tuple[ProblemInputs, Any]:
    """The inputs of ``problem`` and its float64 reference output (what every kernel is checked against)."""
    from kernelbench.reference import make_inputs, reference_output

    inputs = make_inputs(problem, seed=seed)
    return inputs, reference_output(problem, inputs)


def measure_kernel(
    kernel: Kernel,
    entry: SpaceEntry,
    inputs: ProblemInputs,
    reference: Any,
    *,
    backend: Backend,
    run_id: str,
    options: SweepOptions,
    meter: LoadMeter,
    watch: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], float]:
    """Check and time one applicable kernel on one problem, never raising.

    Returns the dataset row and the seconds spent in the timing loop, warm-up included
    (0 when not timed); a sample may average several runs (see :func:`kernelbench.timing.host_timer`).
    ``watch(step)`` is called before each step that runs kernel code (``prepare``, ``checked run``,
    ``quiet wait``, and ``timing`` before every warm-up run and sample, outside the timed
    interval); the worker process uses it to arm its kill deadline.
    The row's ``measure_s`` is the wall time of the whole call (prepare, checked run, timing).
    """
    started = time.perf_counter()
    row, timing_s = _check_and_time(kernel, entry, inputs, reference, backend=backend, run_id=run_id,
                                    options=options, meter=meter, watch=watch)
    row["measure_s"] = time.perf_counter() - started
    return row, timing_s


def _check_and_time(
    kernel: Kernel,
    entry: SpaceEntry,
    inputs: ProblemInputs,
    reference: Any,
    *,
    backend: Backend,
    run_id: str,
    options: SweepOptions,
    meter: LoadMeter,
    watch: Callable[[str], None] | None,
) -> tuple[dict[str, Any], float]:
    from kernelbench.reference import max_rel_error, tolerance

    problem = entry.problem
    common = {"entry": entry, "backend": backend, "run_id": run_id, "threads": options.threads}
    step = watch or (lambda name: None)

    def failed(exc: Exception) -> tuple[dict[str, Any], float]:
        text = f"out of memory: {exc}" if isinstance(exc, MemoryError) else error_text(exc)
        return _row_untimed(problem, kernel, Status.ERROR, error=text, **common)
    reason = kernel.unavailable()
    if reason is not None:
        return _row_untimed(problem, kernel, Status.UNAVAILABLE, error=reason, **common)
    try:
        step("prepare")
        prepared = kernel.prepare(problem, inputs)
        step("checked run")
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
        step("timing")
        timer = backend.timer(prepared)
        if watch is not None:
            untimed = timer

            def timer() -> float:
                step("timing")  # re-arm the deadline: outside the interval ``untimed`` measures
                return untimed()

        attempts = 1 + (options.quiet_retries if options.quiet_wait else 0)
        timing_s = 0.0
        for attempt in range(attempts):
            if options.quiet_wait:
                step("quiet wait")
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


def set_threads(threads: int) -> dict[str, Any]:
    """Fix the thread count of torch and of numpy's BLAS for the whole process; returns what was set."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)
    return {"torch_threads": torch.get_num_threads(), "blas_threads": threads}
