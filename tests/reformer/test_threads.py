"""Training sets torch's thread count for its own length only: the caller's count is restored."""

import dataclasses

import numpy as np
import pytest
import torch

from kernelbench.errors import InputError
from reformer.baselines import MLPConfig, fit_mlp
from reformer.splits import Split, SplitSpec, make_split
from reformer.threads import torch_threads
from reformer.train import fit
from tests.reformer.conftest import QUICK


@pytest.fixture
def caller_threads():
    """The test's 'caller' runs with 3 threads (fit and fit_mlp use 1); the original count is put back after."""
    original = torch.get_num_threads()
    torch.set_num_threads(3)
    yield 3
    torch.set_num_threads(original)


def test_torch_threads_restores_the_count_also_on_error(caller_threads):
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == caller_threads
    with pytest.raises(ZeroDivisionError), torch_threads(2):
        assert torch.get_num_threads() == 2
        1 / 0
    assert torch.get_num_threads() == caller_threads


def test_fit_restores_the_callers_thread_count(matrix, caller_threads):
    config = dataclasses.replace(QUICK, epochs=1, threads=1)
    result = fit(matrix.subset(np.arange(200)), config)
    assert result.curve and torch.get_num_threads() == caller_threads
    # A fit that fails after setting the count restores it too.
    empty_validation = Split(spec=SplitSpec(), train=np.arange(10), validation=np.array([], dtype=np.int64),
                             test=np.arange(10, 20))
    with pytest.raises(InputError, match="non-empty train and validation"):
        fit(matrix, config, split=empty_validation)
    assert torch.get_num_threads() == caller_threads


def test_fit_mlp_restores_the_callers_thread_count(matrix, caller_threads):
    split = make_split(matrix.problems, SplitSpec(seed=0))
    fitted = fit_mlp(matrix, split, MLPConfig(hidden=(8,), epochs=1, batch_size=256, threads=1))
    assert fitted.curve and torch.get_num_threads() == caller_threads
