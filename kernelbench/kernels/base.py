"""What a kernel is: a named algorithm that says when it applies and prepares a timed call.

The measurement harness (``kernelbench.sweep``) only talks to this interface:

1. ``kernel.unavailable()``: ``None`` or why the kernel cannot run in this
   build at all (e.g. a torch without NNPACK) -> status ``unavailable``.
2. ``kernel.reason_not_applicable(problem)`` (the kernel's own ``applies``
   after the checks every kernel shares): ``None`` or why it does not apply to
   this problem -> no row is written (the kernel is simply not a candidate).
3. ``kernel.prepare(problem, inputs)``: everything that is *not* timed: weight
   transforms, layout conversion of the inputs into the kernel's native layout,
   planning, compilation, output and workspace allocation.  Returns a
   :class:`Prepared`.
4. ``prepared.run()`` is the timed call; ``prepared.result(out)`` (untimed)
   turns what ``run`` returned into a numpy array in the logical layout
   (NCHW / NCDHW, or the layout of the gradient being computed) for the
   correctness check.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from kernelbench.problem import ConvProblem


@dataclasses.dataclass(frozen=True)
class ProblemInputs:
    """The tensors of one problem, float arrays in logical layout (NCHW / OIHW, or NCDHW / OIDHW).

    ``x``: activation, shape (N, C, [D,] H, W); ``w``: filter, shape
    (K, C // groups, [FD,] FH, FW); ``dy``: gradient of the output, shape
    (N, K, [OD,] OH, OW), only for backward directions.  Arrays are numpy, of
    the problem's dtype (fp16 as float16; bf16 and int8 are given as float32
    holding exactly representable values).
    """

    x: np.ndarray
    w: np.ndarray
    dy: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A kernel ready to be timed.

    Attributes:
        run: the timed call; returns the output (any array type and layout).
        result: untimed; converts ``run()``'s return value into a numpy array in logical layout.
        workspace_bytes: extra memory the algorithm holds beyond inputs and output, in bytes.
        sync: untimed hook the timer calls after ``run`` where the backend is asynchronous (None on the CPU).
    """

    run: Callable[[], Any]
    result: Callable[[Any], np.ndarray]
    workspace_bytes: int = 0
    sync: Callable[[], None] | None = None


CLAMPED_OUTPUT_REASON = "output size clamped to 1 (MIOpen's default mode): the filter is larger than the padded input"
PAD_MODE_REASON = "MIOpen 'same'/'valid' padding mode (the output size is not the floor formula's)"


def _always_available() -> str | None:
    return None


@dataclasses.dataclass(frozen=True)
class Kernel:
    """A named convolution algorithm.

    Attributes:
        name: unique id within its backend, e.g. ``onednn_nchw``; the dataset's ``kernel`` column.
        algorithm: family, the dataset's ``algorithm`` column: ``direct``, ``im2col_gemm``,
            ``implicit_gemm``, ``fft``, ``winograd``, ``gemm_1x1``, ``vendor``, ...
        backend: ``cpu`` or ``cuda``.
        applies: ``problem -> None`` when the kernel can compute it, else the reason it cannot.
        prepare: ``(problem, inputs) -> Prepared``; may raise, which is recorded as status ``error``.
        unavailable: ``() -> None`` or why the kernel cannot run at all in this build.
        default: member of the backend's ``default`` kernel set (fast sweeps).
        description: one line for ``kernelbench kernels`` / docs.
        workspace_estimate: ``problem -> bytes`` of host memory the kernel holds besides float32
            copies of its inputs and output, an upper bound computed from the sizes alone; the
            sweep's memory limit uses it (:func:`kernelbench.problem.memory_estimate`).  None:
            unknown, the largest workspace of the algorithms here is assumed.
    """

    name: str
    algorithm: str
    backend: str
    applies: Callable[[ConvProblem], str | None]
    prepare: Callable[[ConvProblem, ProblemInputs], Prepared]
    unavailable: Callable[[], str | None] = _always_available
    default: bool = False
    description: str = ""
    workspace_estimate: Callable[[ConvProblem], int] | None = None

    def reason_not_applicable(self, problem: ConvProblem) -> str | None:
        """``None`` when this kernel can compute ``problem``, else why not (what the harness asks).

        Checks shared by every kernel come first: no kernel here computes a
        problem whose output size MIOpen clamps to 1 (see :attr:`ConvProblem.clamped_axes`)
        or one in MIOpen's ``same``/``valid`` padding mode (:attr:`ConvProblem.pad_mode`).
        """
        if problem.clamped_axes:
            return CLAMPED_OUTPUT_REASON
        if problem.pad_mode != "default":
            return PAD_MODE_REASON
        return self.applies(problem)
