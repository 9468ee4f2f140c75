import json

import numpy as np
import pytest

from kernelbench.errors import InputError
from reformer.selector import Selector
from reformer.store import CONFIG_FILE, load_model


def test_round_trip_gives_identical_predictions(model_dir, fit_result, matrix):
    loaded = Selector.load(model_dir)
    in_memory = fit_result.selector
    assert loaded.kernels == in_memory.kernels
    assert loaded.trained.encoder == in_memory.trained.encoder
    columns = matrix.columns()
    np.testing.assert_array_equal(loaded.probabilities(columns, matrix.applicable), in_memory.probabilities(columns, matrix.applicable))


def test_config_records_architecture_tokens_vocabulary_and_dataset(model_dir, matrix):
    config = json.loads((model_dir / CONFIG_FILE).read_text())
    assert config["format_version"] == 1
    assert config["kernels"] == list(matrix.kernels)
    assert config["model"]["dim"] == 16 and config["model"]["blocks"] == 2
    assert "batch" in config["features"]["numeric"] and len(config["features"]["mean"]) == len(config["features"]["numeric"])
    assert config["dataset"]["metadata"]["sha256"] == matrix.metadata["sha256"]
    assert sorted(config["static_order"]) == sorted(matrix.kernels)
    assert config["split"]["sizes"]["test"] > 0


def test_other_format_version_is_an_input_error(model_dir, tmp_path):
    copy = tmp_path / "m"
    copy.mkdir()
    for f in model_dir.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    config = json.loads((copy / CONFIG_FILE).read_text())
    config["format_version"] = 99
    (copy / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(InputError, match="format version 99"):
        load_model(copy)
    with pytest.raises(InputError, match="not a model directory"):
        load_model(tmp_path / "nothing")
