"""Kernels that misbehave for real: hang, spin, crash the process.  Tests only.

Everything here is module-level, so the kernels pickle by reference and a spawned
worker process (which inherits ``sys.path``) imports this module to run them.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np

from kernelbench.kernels.base import Kernel, Prepared, ProblemInputs
from kernelbench.problem import ConvProblem
from kernelbench.reference import reference_output


def applies(problem: ConvProblem) -> str | None:
    return None


def _correct(problem: ConvProblem, inputs: ProblemInputs) -> np.ndarray:
    return reference_output(problem, inputs).astype(np.float32)


def _prepared(run) -> Prepared:
    return Prepared(run=run, result=np.asarray)


def good_prepare(problem: ConvProblem, inputs: ProblemInputs) -> Prepared:
    out = _correct(problem, inputs)
    return _prepared(lambda: out)


def sleep_forever_prepare(problem: ConvProblem, inputs: ProblemInputs) -> Prepared:
    def run():
        while True:
            time.sleep(3600)

    return _prepared(run)


def spin_forever_prepare(problem: ConvProblem, inputs: ProblemInputs) -> Prepared:
    def run():
        while True:  # a busy loop: nothing inside the process can interrupt it
            pass

    return _prepared(run)


def hang_in_prepare(problem: ConvProblem, inputs: ProblemInputs) -> Prepared:
    time.sleep(3600)
    raise AssertionError("unreachable")


def hang_after_first_run_prepare(problem: ConvProblem, inputs: ProblemInputs) -> Prepared:
    """Correct on the checked run, then hangs in the timing loop (a later sample never returns)."""
    out = _correct(problem, inputs)
    calls = [0]

    def run():
        calls[0] += 1
        if calls[0] > 1:
            time.sleep(3600)
        return out

    return _prepared(run)


def segfault_prepare(problem: ConvProblem, inputs: ProblemInputs) -> Prepared:
    def run():
        os.kill(os.getpid(), signal.SIGSEGV)

    return _prepared(run)


def exit_prepare(problem: ConvProblem, inputs: ProblemInputs) -> Prepared:
    def run():
        os._exit(3)

    return _prepared(run)


#: Environment variable naming a file where ``spins_and_reports`` writes its process id.
PID_FILE_ENV = "KERNELBENCH_TEST_PID_FILE"


def spin_and_report_prepare(problem: ConvProblem, inputs: ProblemInputs) -> Prepared:
    """Writes this (worker) process's id to ``$KERNELBENCH_TEST_PID_FILE``, then spins in its run."""
    path = os.environ[PID_FILE_ENV]
    with open(path + ".tmp", "w") as fh:
        fh.write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    return spin_forever_prepare(problem, inputs)


class UnloadablePrepare:
    """Pickles in the sweep, fails to unpickle in the worker (as a kernel from a module the worker cannot import)."""

    def __init__(self) -> None:
        self.state = "set"

    def __call__(self, problem: ConvProblem, inputs: ProblemInputs) -> Prepared:
        return good_prepare(problem, inputs)

    def __setstate__(self, state: dict) -> None:
        raise RuntimeError("this kernel cannot be loaded here")


def no_workspace(problem: ConvProblem) -> int:
    return 0


def kernel(name: str, prepare, **fields) -> Kernel:
    return Kernel(name=name, algorithm="direct", backend="cpu", applies=applies, prepare=prepare, **fields)


GOOD = kernel("good", good_prepare)
#: Correct, and says it needs no workspace (the sweep's memory limit then counts inputs and reference only).
LEAN = kernel("lean", good_prepare, workspace_estimate=no_workspace)
SLEEPS = kernel("sleeps_forever", sleep_forever_prepare)
SPINS = kernel("spins_forever", spin_forever_prepare)
HANGS_IN_PREPARE = kernel("hangs_in_prepare", hang_in_prepare)
HANGS_WHILE_TIMED = kernel("hangs_while_timed", hang_after_first_run_prepare)
SEGFAULTS = kernel("segfaults", segfault_prepare)
EXITS = kernel("exits", exit_prepare)
SPINS_AND_REPORTS = kernel("spins_and_reports", spin_and_report_prepare)
UNLOADABLE = kernel("unloadable", UnloadablePrepare())
