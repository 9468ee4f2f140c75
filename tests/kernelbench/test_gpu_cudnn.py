"""The optional cuDNN-frontend kernels' plumbing, with a fake ``cudnn`` module (nothing here runs cuDNN)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from kernelbench.gpu import cudnn
from kernelbench.problem import problem_2d

PLANS = {"A": ["eng34_k2=1_k3=0", "eng1_k3=0", "eng34_k2=2_k3=1"], "FALLBACK": ["eng0"], "B": ["eng1_k3=5"]}


class FakeTensor(SimpleNamespace):
    def set_output(self, is_output: bool) -> FakeTensor:
        self.output = is_output
        return self

    def set_data_type(self, data_type: str) -> None:
        self.data_type = data_type


class FakeGraph:
    def __init__(self, **options: object) -> None:
        self.options = options
        self.plans: list[str] = []

    def tensor(self, **attrs: object) -> FakeTensor:
        return FakeTensor(**attrs)

    def conv_fprop(self, **attrs: object) -> FakeTensor:
        self.conv = attrs
        return FakeTensor()

    def validate(self) -> None: ...

    def build_operation_graph(self) -> None: ...

    def check_support(self) -> None: ...

    def create_execution_plans(self, modes: list[str]) -> None:
        if self.conv["weight"].dim[1] == 3:  # stands in for a graph cuDNN rejects
            raise RuntimeError("GRAPH_NOT_SUPPORTED")
        self.plans = [name for mode in modes for name in PLANS[mode]]

    def get_execution_plan_count(self) -> int:
        return len(self.plans)

    def get_plan_name_at_index(self, index: int) -> str:
        return self.plans[index]

    def get_engine_count(self) -> int:
        return 40


@pytest.fixture
def fake_cudnn(monkeypatch):
    module = SimpleNamespace(
        data_type=SimpleNamespace(HALF="half", FLOAT="float"),
        heur_mode=SimpleNamespace(A="A", B="B", FALLBACK="FALLBACK"),
        pygraph=FakeGraph,
        create_handle=lambda: "handle",
    )
    monkeypatch.setattr(cudnn, "cudnn_module", lambda: module)
    monkeypatch.setattr(cudnn, "_PICKS", {})
    cudnn._plans.cache_clear()
    cudnn._handle.cache_clear()
    yield module
    cudnn._plans.cache_clear()
    cudnn._handle.cache_clear()


def test_plan_names_give_engine_ids():
    assert cudnn.engine_of("eng34_k2=1_k3=0") == 34
    assert cudnn.engine_of("ConvFwd_eng0_k5=2") == 0
    assert cudnn.engine_of("fallback") is None


def test_no_kernels_without_the_package(monkeypatch):
    monkeypatch.setattr(cudnn, "cudnn_module", lambda: None)
    assert cudnn.cudnn_kernels() == ()


def test_engines_apply_when_cudnn_offers_a_plan(fake_cudnn):
    kernels = {k.name: k for k in cudnn.cudnn_kernels()}
    assert len(kernels) == 40 and all(k.algorithm == "vendor" for k in kernels.values())
    problem = problem_2d(batch=2, in_channels=8, out_channels=16, in_h=9, in_w=9, filter_h=3, filter_w=3, pad_h=1,
                         pad_w=1, groups=2, dtype="fp16")
    assert {name for name, k in kernels.items() if k.applies(problem) is None} == {"cudnn:eng0", "cudnn:eng1",
                                                                                  "cudnn:eng34"}
    assert kernels["cudnn:eng5"].applies(problem) == "engine 5 is not among the plans cuDNN offers"
    graph, (x, w, y), first, _ = cudnn._plans(problem)
    assert first == {34: 0, 1: 1, 0: 3}  # an engine's first (heuristically preferred) plan is the one timed
    assert (x.dim, w.dim, graph.conv["padding"], y.output, y.data_type) == ([2, 8, 9, 9], [16, 4, 3, 3], [1, 1],
                                                                              True, "half")
    assert cudnn.heuristic_picks() == [{"problem_id": problem.problem_id, "heur_a_plan": "eng34_k2=1_k3=0",
                                        "heur_b_plan": "eng1_k3=5"}]


def test_unsupported_graphs_and_problems_do_not_apply(fake_cudnn):
    kernel = cudnn.cudnn_kernels()[0]
    rejected = problem_2d(batch=1, in_channels=3, out_channels=4, in_h=5, in_w=5, filter_h=3, filter_w=3)
    assert kernel.applies(rejected).startswith("cuDNN graph not supported: GRAPH_NOT_SUPPORTED")
    int8 = problem_2d(batch=1, in_channels=4, out_channels=4, in_h=5, in_w=5, filter_h=1, filter_w=1, dtype="int8")
    assert kernel.applies(int8) == "fp32 and fp16 only"
