"""The measurement worker: a child process that checks and times kernels, so the sweep can stop it.

A kernel that never returns cannot be interrupted inside the process that runs it
(a C loop holds the GIL, a GPU kernel spins), so with ``isolation="process"`` the
sweep (:mod:`kernelbench.sweep`) sends every (problem, kernel) task to one
long-lived child process and waits for the row with a deadline:

* The child does exactly what the in-process sweep does (inputs, float64
  reference, :func:`kernelbench.measure.measure_kernel`): timing stays inside the
  child, so no inter-process traffic falls inside or between the timed runs.
  Inputs and reference are computed once per problem and reused for its kernels.
* Before each step that runs kernel code (prepare, the checked run, each warm-up
  run and sample, a quiet-machine wait) the child writes a deadline into shared
  memory: ``now + timeout_s + kill_grace_s`` (``quiet_max_wait_s + kill_grace_s``
  for the wait).  A step that ends between ``timeout_s`` and the deadline is still
  recorded as ``timeout`` by its measured time, as in-process.  Computing inputs and
  the reference has no deadline: it is not kernel code, and the sweep's memory
  check bounds its size.
* Past the deadline the parent kills the child (SIGKILL): the task is
  :data:`TIMED_OUT`.  A child that dies by itself (a segfault, ``os._exit``, the
  kernel's OOM killer) is :data:`DIED`.  Either way the next task starts a fresh
  child.

Children come from multiprocessing's ``forkserver``, never from a plain ``fork`` of
the sweep: that would copy the sweep's OpenMP/BLAS thread pools and any CUDA
context in a state neither library supports.  The fork server is a fresh
interpreter (like ``spawn``) that imports :data:`PRELOAD` once and runs no kernel,
so a restart costs a fork (~0.3 s) instead of a new interpreter importing torch.
The child gets ``sys.path`` from the sweep, applies the process settings the CLI
applies to itself (thread counts, the glibc allocator pinning of
:func:`kernelbench.device.keep_freed_memory`), builds its own backend (CuPy is
imported and its CUDA context created in the child only) and ignores SIGINT:
Ctrl-C reaches the sweep, which stops the child.  A SIGKILLed sweep leaves no
orphan spinning on a hung kernel: the child kills itself when the sweep's end of a
pipe closes (see :func:`_die_with_the_sweep`).
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import pickle
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from multiprocessing.connection import wait as wait_any
from typing import Any

#: What the child is doing; the index is stored in shared memory beside the deadline.
STEPS = ("idle", "starting", "inputs and reference", "prepare", "checked run", "timing", "quiet wait")

#: Outcomes of :meth:`Worker.measure` that are not a row.
TIMED_OUT = "timed_out"
DIED = "died"
UNLOADABLE = "unloadable"

#: Seconds the parent waits for a new child to import its libraries and report ready.
START_TIMEOUT_S = 300.0
#: Seconds the parent waits for a child asked to stop before killing it.
STOP_TIMEOUT_S = 5.0
#: The parent re-reads the child's deadline at least this often (seconds); it sleeps otherwise.
POLL_S = 0.5

_PR_SET_PDEATHSIG = 1
#: Modules the fork server imports once, so that a restarted worker starts in a fraction of a second
#: instead of importing torch again (2-7 s on our loaded 2-core VM).  None of them imports polars,
#: whose import starts threads (jemalloc, an out-of-core cleaner) that a fork would copy in an
#: unknown state (a test checks); the child imports what else it needs after the fork.
PRELOAD = ("numpy", "torch", "kernelbench.sweep")


@dataclasses.dataclass(frozen=True)
class Failure:
    """A task that produced no row: ``kind`` is :data:`TIMED_OUT`, :data:`DIED` or :data:`UNLOADABLE` (the
    child could not unpickle the kernel); ``step`` from :data:`STEPS`."""

    kind: str
    step: str
    message: str


@dataclasses.dataclass(frozen=True)
class Done:
    """A task's row and the seconds its timing loop took (see :func:`kernelbench.measure.measure_kernel`)."""

    row: dict[str, Any]
    timed_s: float


@dataclasses.dataclass(frozen=True)
class SetupFailed:
    """Inputs or reference of the problem raised (e.g. MemoryError); the text of the exception."""

    message: str


def kernel_message(kernel: Any, registry_names: Sequence[str]) -> tuple[str, Any]:
    """How ``kernel`` travels to the child: ``("pickle", bytes)``, or ``("name", name)`` from the registry.

    Kernels built from closures (the numpy ones) cannot be pickled; the child looks
    them up by name in its backend's registry, which builds the same kernel.

    Raises:
        ValueError: ``kernel`` is neither picklable nor a registry kernel.
    """
    try:
        return "pickle", pickle.dumps(kernel)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        if kernel.name in registry_names:
            return "name", kernel.name
        raise ValueError(f"kernel {kernel.name!r} cannot be sent to a worker process (not picklable: {exc}; "
                         "not in the backend's registry); use isolation='none'") from None


def signal_text(exitcode: int | None) -> str:
    """``signal SIGSEGV`` for a negative exit code, ``exit status 3`` otherwise."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit status {exitcode}"


class Worker:
    """The parent's handle on one measurement child; starts (and restarts) it on demand.

    ``backend`` and ``threads`` say how the child builds its backend
    (``kernelbench.backends.resolve_backend``); ``device_label`` is checked against it.
    Not thread-safe; use as a context manager or call :meth:`close`.
    """

    def __init__(self, *, backend: str, threads: int, device_label: str,
                 start_timeout_s: float = START_TIMEOUT_S) -> None:
        self.backend = backend
        self.threads = threads
        self.device_label = device_label
        self.start_timeout_s = start_timeout_s
        self._ctx = _context()
        self._proc: Any = None
        self._conn: Any = None
        self._shared: Any = None
        self._busy = False
        #: Children started so far (1 + restarts after a kill or a death).
        self.starts = 0

    # -- lifecycle ----------------------------------------------------------
    def _start(self) -> None:
        parent_conn, child_conn = self._ctx.Pipe()
        shared = self._ctx.RawArray("d", 2)
        shared[0], shared[1] = math.inf, STEPS.index("starting")
        proc = self._ctx.Process(target=child_main, name="kernelbench-worker", daemon=True,
                                 args=(child_conn, shared, self.backend, self.threads))
        proc.start()
        child_conn.close()
        self._proc, self._conn, self._shared = proc, parent_conn, shared
        self._busy = True  # an interrupt while it starts: close() kills it
        self.starts += 1
        ready = wait_any([parent_conn, proc.sentinel], timeout=self.start_timeout_s)
        message: Any = None
        if parent_conn in ready:
            try:
                message = parent_conn.recv()
            except (EOFError, OSError):
                message = None
        if not (isinstance(message, tuple) and message[0] == "ready"):
            proc.join(0.1)
            state = f"died at start ({signal_text(proc.exitcode)})" if ready else \
                f"did not start within {self.start_timeout_s:g} s"
            self._kill()
            if isinstance(message, tuple) and message[0] == "failed":
                raise RuntimeError(f"the measurement worker could not start: {message[1]}")
            raise RuntimeError(f"the measurement worker {state}")
        if message[1] != self.device_label:
            self._kill()
            raise RuntimeError(f"the measurement worker sees device {message[1]!r}, the sweep {self.device_label!r}")
        self._busy = False

    def _kill(self) -> None:
        if self._proc is not None:
            if self._proc.is_alive():
                self._proc.kill()
            self._proc.join(STOP_TIMEOUT_S)
            self._proc.close()
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = self._shared = None
        self._busy = False

    def close(self) -> None:
        """Stop the child: kill it if it is busy (say, the sweep was interrupted mid-kernel), else ask
        it to exit and kill it if it has not within :data:`STOP_TIMEOUT_S`."""
        if self._proc is None:
            return
        if self._busy:
            self._kill()
            return
        try:
            self._conn.send(("stop",))
            self._proc.join(STOP_TIMEOUT_S)
        except (OSError, ValueError):
            pass
        self._kill()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        """The current child's process id (None before the first task or after a failure)."""
        return None if self._proc is None else self._proc.pid

    # -- tasks --------------------------------------------------------------
    def _call(self, message: tuple[Any, ...]) -> Any:
        """Send ``message``; return the reply, or a :class:`Failure` after killing or losing the child."""
        if self._proc is None:
            self._start()
        self._conn.send(message)
        self._busy = True  # until the reply is read: an exception in between leaves the pipe out of step
        while True:
            deadline, step = self._shared[0], STEPS[int(self._shared[1])]
            now = time.monotonic()
            if now >= deadline:
                if self._shared[0] != deadline:
                    continue  # the child has just started its next step: ``step`` may be stale
                self._kill()
                return Failure(TIMED_OUT, step, f"{step} did not finish in time; the worker process was killed")
            ready = wait_any([self._conn, self._proc.sentinel], timeout=max(0.001, min(deadline - now, POLL_S)))
            if self._conn in ready:
                try:
                    reply = self._conn.recv()
                    self._busy = False
                    return reply
                except (EOFError, OSError):
                    pass  # the child died while or before sending: reported below
            if self._proc.sentinel in ready or not self._proc.is_alive():
                step = STEPS[int(self._shared[1])]  # what the child last started (the shared memory outlives it)
                self._proc.join(STOP_TIMEOUT_S)
                text = signal_text(self._proc.exitcode)
                self._kill()
                return Failure(DIED, step, f"the worker process died ({text}) during {step}")

    def measure(self, entry: Any, kernel: tuple[str, Any], *, options: Any, run_id: str,
                step_limits_s: dict[str, float]) -> Done | SetupFailed | Failure:
        """Check and time ``kernel`` (from :func:`kernel_message`) on ``entry`` in the child.

        ``step_limits_s`` maps the steps of :data:`STEPS` that run kernel code to their kill limits.
        """
        reply = self._call(("measure", entry, kernel, options, run_id, step_limits_s))
        if isinstance(reply, Failure):
            return reply
        if reply[0] == "row":
            return Done(row=reply[1], timed_s=reply[2])
        if reply[0] == "setup_failed":
            return SetupFailed(reply[1])
        if reply[0] == "kernel_failed":
            return Failure(UNLOADABLE, "idle", reply[1])
        raise RuntimeError(f"unexpected reply from the measurement worker: {reply[0]!r}")

    def side_tables(self) -> dict[str, list[dict[str, Any]]]:
        """The child backend's side tables (empty if no child runs, or it fails to answer)."""
        if self._proc is None:
            return {}
        reply = self._call(("side_tables",))
        return {} if isinstance(reply, Failure) else reply[1]


def _context() -> Any:
    """The ``forkserver`` context, its server preloading :data:`PRELOAD` (see the module docstring)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(PRELOAD))
    return ctx


# ---------------------------------------------------------------- the child


def _die_with_the_sweep() -> None:
    """Exit as soon as the sweep dies, even while a kernel hangs in this process.

    A daemon thread waits on the sweep's end of the start-up pipe (EOF when the sweep
    exits or is killed) and SIGKILLs this process; it sleeps in ``select`` meanwhile,
    costing no CPU.  Should a kernel hold the GIL forever, the thread cannot run: then,
    on Linux, ``PR_SET_PDEATHSIG`` does it once the fork server has exited, which it does
    when the sweep is gone, provided no child keeps the server's keep-alive pipe open:
    multiprocessing gives every child a copy (``_forkserver_alive_fd``, private; a test
    checks the chain), so the child closes it.
    """
    import threading
    from multiprocessing import forkserver

    parent = multiprocessing.parent_process()
    if parent is not None and parent.sentinel is not None:
        def watchdog() -> None:
            wait_any([parent.sentinel])
            os.kill(os.getpid(), signal.SIGKILL)

        threading.Thread(target=watchdog, name="kernelbench-watchdog", daemon=True).start()
    server = getattr(forkserver, "_forkserver", None)
    fd = getattr(server, "_forkserver_alive_fd", None)
    if isinstance(fd, int):
        try:
            os.close(fd)
        except OSError:
            pass
        server._forkserver_alive_fd = None  # type: ignore[union-attr]
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass


def child_main(conn: Any, shared: Any, backend_name: str, threads: int) -> None:
    """The child's loop: build the backend, then answer ``measure`` / ``side_tables`` / ``stop`` messages."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_the_sweep()

    def watch(step: str, limit_s: float) -> None:
        # Deadline first: the parent reads the step only to name it.
        shared[0] = time.monotonic() + limit_s
        shared[1] = STEPS.index(step)

    try:
        from kernelbench.backends import resolve_backend
        from kernelbench.device import keep_freed_memory
        from kernelbench.kernels.registry import all_kernels
        from kernelbench.load import LoadMeter
        from kernelbench.measure import measure_kernel, problem_data, set_threads

        set_threads(threads)
        keep_freed_memory()
        backend = resolve_backend(backend_name, threads=threads, say=lambda text: None)
        registry = {k.name: k for k in all_kernels(backend.name)}
        meter = LoadMeter()
    except BaseException as exc:  # noqa: BLE001 - report any start-up failure to the parent
        conn.send(("failed", "".join(traceback.format_exception_only(type(exc), exc)).strip()))
        return
    watch("idle", math.inf)
    conn.send(("ready", backend.device_label))
    cached: tuple[Any, Any] = (None, None)  # (problem_id, seed), (inputs, reference) or an exception
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if message[0] == "stop":
            return
        if message[0] == "side_tables":
            conn.send(("side_tables", backend.side_tables()))
            continue
        _, entry, (how, payload), options, run_id, limits = message
        try:
            kernel = pickle.loads(payload) if how == "pickle" else registry[payload]
        except Exception as exc:  # noqa: BLE001 - e.g. its module is not importable here
            from kernelbench.measure import error_text

            conn.send(("kernel_failed", f"the worker process cannot load the kernel: {error_text(exc)}"))
            continue
        key = (entry.problem.problem_id, options.seed)
        if cached[0] != key:
            watch("inputs and reference", math.inf)
            cached = (None, None)  # free the previous problem's arrays first
            try:
                cached = (key, problem_data(entry.problem, seed=options.seed))
            except Exception as exc:  # noqa: BLE001 - every kernel of the problem is told
                cached = (key, exc)
        if isinstance(cached[1], Exception):
            from kernelbench.measure import error_text

            watch("idle", math.inf)
            conn.send(("setup_failed", error_text(cached[1])))
            continue
        inputs, reference = cached[1]
        row, timed_s = measure_kernel(kernel, entry, inputs, reference, backend=backend, run_id=run_id,
                                      options=options, meter=meter, watch=lambda step: watch(step, limits[step]))
        watch("idle", math.inf)
        conn.send(("row", row, timed_s))

