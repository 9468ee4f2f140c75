"""Shared fixtures: one small synthetic dataset and one small trained model per test session."""

from __future__ import annotations

import pytest

from reformer.config import FitConfig
from reformer.data import load_matrix
from reformer.report import save_fit
from tests.reformer.synthetic import write_synthetic

#: Small and quick, but enough for the model to beat the static order on the synthetic data.
QUICK = FitConfig(dim=16, blocks=2, epochs=6, min_steps=0, batch_size=64, lr=1e-2, threads=1, progress=False)


@pytest.fixture(scope="session")
def dataset_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "synthetic.parquet"
    write_synthetic(path, 600, seed=0)
    return path


@pytest.fixture(scope="session")
def matrix(dataset_path):
    return load_matrix(dataset_path)


@pytest.fixture(scope="session")
def fit_result(matrix):
    from reformer.train import fit

    return fit(matrix, QUICK)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, fit_result):
    directory = tmp_path_factory.mktemp("model")
    save_fit(directory, fit_result)
    return directory
