import numpy as np
import pytest

from reformer.metrics import selection_metrics
from reformer.report import speedup_line


def test_speedup_over_torch_default_is_the_geomean_and_total_of_its_time_over_the_pick():
    time_ms = np.array([[1.0, 2.0], [4.0, 1.0], [3.0, 6.0]])
    static = np.zeros(3, dtype=int)
    model = selection_metrics(time_ms, np.array([0, 1, 0]), static)
    torch_default = selection_metrics(time_ms, np.array([1, 1, 1]), static)  # kernel 1 everywhere
    line = speedup_line(model, {"torch_default": torch_default})
    geomean = np.exp(np.mean(np.log([2.0 / 1.0, 1.0 / 1.0, 6.0 / 3.0])))
    assert f"geomean speed-up {geomean:.3f}x" in line
    assert f"total-time speed-up {9.0 / 5.0:.3f}x" in line


def test_no_speedup_line_without_torch_default():
    time_ms = np.array([[1.0, 2.0]])
    metrics = selection_metrics(time_ms, np.array([0]), np.array([0]))
    assert speedup_line(metrics, {"static": metrics}) is None
