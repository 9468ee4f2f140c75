"""Optional cuDNN engines through the ``nvidia-cudnn-frontend`` Python package (``import cudnn``).

CuPy 14 dropped its cuDNN bindings, so cuDNN is reached through NVIDIA's
frontend graph API: a one-node ``conv_fprop`` graph per problem, whose
execution plans are enumerated with heuristics mode A plus the fallback list.

* Kernels are named ``cudnn:eng<id>`` after the cuDNN engine a plan runs (engine
  ids are stable across problems, plan names carry per-problem knob choices).
  ``cudnn:eng<id>`` applies to a problem when that engine is among its plans; the
  plan timed is the first (heuristically preferred) one of that engine.
* :func:`heuristic_picks` records, per problem, the plan name that heuristics
  modes A and B put first: a side table to compare a learned selector with
  cuDNN's own choice.

If the package is missing, :func:`cudnn_kernels` returns no kernels.  NOT RUN ON
HARDWARE: this module has only been checked without a GPU (import guard,
plan-name parsing, applicability plumbing with fakes); see docs/gpu.md.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from kernelbench.gpu.detect import cuda_unavailable
from kernelbench.gpu.dtypes import GPU_DTYPES, UNSUPPORTED_DTYPE, numpy_dtype
from kernelbench.kernels.base import Kernel, Prepared, ProblemInputs
from kernelbench.problem import ConvProblem

#: Upper bound on the engine ids offered as kernels when the probe graph cannot be built.
MAX_ENGINES = 64
_ENGINE = re.compile(r"eng(\d+)")
_PICKS: dict[str, dict[str, Any]] = {}


def cudnn_module() -> Any | None:
    """The ``cudnn`` module of nvidia-cudnn-frontend, or None when it is not installed or does not load."""
    try:
        import cudnn
    except Exception:  # noqa: BLE001 - ImportError, or OSError when libcudnn is missing
        return None
    return cudnn


def engine_of(plan_name: str) -> int | None:
    """The engine id in a cuDNN plan name such as ``eng34_k2=1_k3=0`` (None if there is none)."""
    match = _ENGINE.search(plan_name)
    return int(match.group(1)) if match else None


def applies(problem: ConvProblem) -> str | None:
    """Problems the frontend graph here describes: 2D forward NCHW, fp32 or fp16."""
    if problem.direction != "fwd" or problem.spatial_dims != 2 or problem.layout != "NCHW":
        return "2D forward NCHW only"
    if problem.dtype not in GPU_DTYPES:
        return UNSUPPORTED_DTYPE
    return None


@cache
def _handle() -> Any:
    return cudnn_module().create_handle()


def _graph(problem: ConvProblem, modes: tuple[str, ...]) -> tuple[Any, tuple[Any, Any, Any]]:
    """Build the conv_fprop graph of ``problem`` and its execution plans under heuristics ``modes``."""
    cudnn = cudnn_module()
    io_type = cudnn.data_type.HALF if problem.dtype == "fp16" else cudnn.data_type.FLOAT
    graph = cudnn.pygraph(io_data_type=io_type, intermediate_data_type=cudnn.data_type.FLOAT,
                          compute_data_type=cudnn.data_type.FLOAT, handle=_handle())
    n, c, h, w = problem.batch, problem.in_channels, problem.in_h, problem.in_w
    k, cg, r, s = problem.out_channels, problem.in_channels // problem.groups, problem.filter_h, problem.filter_w
    # Grouped convolution is expressed by the filter's channel dimension being C / groups.
    x = graph.tensor(name="x", dim=[n, c, h, w], stride=[c * h * w, h * w, w, 1], data_type=io_type)
    wt = graph.tensor(name="w", dim=[k, cg, r, s], stride=[cg * r * s, r * s, s, 1], data_type=io_type)
    y = graph.conv_fprop(image=x, weight=wt, padding=[problem.pad_h, problem.pad_w],
                         stride=[problem.stride_h, problem.stride_w],
                         dilation=[problem.dilation_h, problem.dilation_w], compute_data_type=cudnn.data_type.FLOAT)
    y.set_output(True)
    y.set_data_type(io_type)
    graph.validate()
    graph.build_operation_graph()
    graph.create_execution_plans([getattr(cudnn.heur_mode, m) for m in modes])
    graph.check_support()
    return graph, (x, wt, y)


@cache
def _plans(problem: ConvProblem) -> tuple[Any, tuple[Any, Any, Any], dict[int, int], tuple[str, ...]]:
    """Graph, tensors, engine id -> first plan index, and all plan names of ``problem`` (mode A + fallback)."""
    graph, tensors = _graph(problem, ("A", "FALLBACK"))
    names = tuple(graph.get_plan_name_at_index(i) for i in range(graph.get_execution_plan_count()))
    first: dict[int, int] = {}
    for index, name in enumerate(names):
        engine = engine_of(name)
        if engine is not None:
            first.setdefault(engine, index)
    _record_picks(problem)
    return graph, tensors, first, names


def _record_picks(problem: ConvProblem) -> None:
    picks: dict[str, Any] = {"problem_id": problem.problem_id}
    for mode in ("A", "B"):
        try:
            graph, _ = _graph(problem, (mode,))
            picks[f"heur_{mode.lower()}_plan"] = graph.get_plan_name_at_index(0)
        except Exception as exc:  # noqa: BLE001 - a mode without a plan is a fact to record
            picks[f"heur_{mode.lower()}_plan"] = None
            picks[f"heur_{mode.lower()}_error"] = str(exc)[:200]
    _PICKS[problem.problem_id] = picks


def heuristic_picks() -> list[dict[str, Any]]:
    """Side-table rows: ``problem_id``, ``heur_a_plan``, ``heur_b_plan`` (plan names) for every problem seen."""
    return list(_PICKS.values())


def _engine_applies(engine: int, problem: ConvProblem) -> str | None:
    reason = applies(problem)
    if reason is not None:
        return reason
    try:
        _, _, first, _ = _plans(problem)
    except Exception as exc:  # noqa: BLE001 - cuDNN rejects the graph: the engine does not apply
        return f"cuDNN graph not supported: {str(exc)[:120]}"
    return None if engine in first else f"engine {engine} is not among the plans cuDNN offers"


def _prepare(engine: int, problem: ConvProblem, inputs: ProblemInputs) -> Prepared:
    import cupy

    cudnn = cudnn_module()
    graph, (x_t, w_t, y_t), first, _ = _plans(problem)
    index = first[engine]
    graph.build_plan_at_index(index)
    dtype = numpy_dtype(problem.dtype)
    x = cupy.asarray(inputs.x, dtype=dtype)
    w = cupy.asarray(inputs.w, dtype=dtype)
    y = cupy.empty((problem.batch, problem.out_channels, problem.out_h, problem.out_w), dtype=dtype)
    workspace = cupy.empty(max(1, graph.get_workspace_size_plan_at_index(index)), dtype=cupy.uint8)
    pointers = {x_t: x.data.ptr, w_t: w.data.ptr, y_t: y.data.ptr}
    handle = _handle()

    def run() -> Any:
        # The timer makes its stream current; cuDNN must enqueue on that same stream.
        cudnn.set_stream(handle=handle, stream=cupy.cuda.get_current_stream().ptr)
        graph.execute_plan_at_index(pointers, workspace.data.ptr, index, handle=handle)
        return y

    return Prepared(run=run, result=cupy.asnumpy, workspace_bytes=int(workspace.nbytes),
                    sync=cupy.cuda.Device().synchronize)


def _engine_ids() -> range:
    """Engine ids to offer: the engine count of a small probe graph, else 0..MAX_ENGINES-1."""
    from kernelbench.problem import problem_2d

    probe = problem_2d(batch=1, in_channels=8, out_channels=8, in_h=8, in_w=8, filter_h=3, filter_w=3, pad_h=1, pad_w=1)
    try:
        graph, _ = _graph(probe, ("A",))
        return range(int(graph.get_engine_count()))
    except Exception:  # noqa: BLE001 - fall back to a generous static range
        return range(MAX_ENGINES)


def cudnn_kernels() -> tuple[Kernel, ...]:
    """``cudnn:eng<id>`` kernels, or none when nvidia-cudnn-frontend is not installed."""
    if cudnn_module() is None:
        return ()
    return tuple(
        Kernel(
            name=f"cudnn:eng{engine}",
            algorithm="vendor",
            backend="cuda",
            applies=lambda problem, e=engine: _engine_applies(e, problem),
            prepare=lambda problem, inputs, e=engine: _prepare(e, problem, inputs),
            unavailable=cuda_unavailable,
            description=f"cuDNN engine {engine} (frontend graph, plan chosen by heuristics mode A + fallback)",
        )
        for engine in _engine_ids()
    )
