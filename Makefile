# Two entry points (see README): `make demo` runs the main job on the CPU, `make test` runs the tests.
# Both create .venv on first use; torch==2.13.0 is installed first so pip never fetches a multi-GB CUDA build.

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
OUT    ?= out/demo
# The MIOpen MI100 find-db used by the import tests and benchmarks (read in place, never copied).
KERNELBENCH_MIOPEN_FDB ?= $(abspath ../shared/miopen/gfx90878.HIP.fdb.txt.bz2)
export KERNELBENCH_MIOPEN_FDB

.PHONY: demo test setup bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

# The tests also check the CUDA path without a GPU (CuPy + NVRTC) and the LightGBM baseline.
$(BIN)/.installed-test: $(BIN)/.installed
	$(BIN)/pip install --quiet -e ".[dev,gpucheck,lightgbm]"
	touch $@

setup: $(BIN)/.installed

# Measure 160 small convolutions with every default CPU kernel (resumable), export the dataset,
# summarise it, and train Reformer on it; fit prints the model beside oracle, static and random.
demo: setup
	$(BIN)/kernelbench sweep --spec datasets/specs/demo.toml --device cpu --budget-s 0.25 -o $(OUT)/run
	$(BIN)/kernelbench export $(OUT)/run -o $(OUT)/demo.parquet
	$(BIN)/kernelbench info $(OUT)/demo.parquet
	$(BIN)/reformer fit $(OUT)/demo.parquet -o $(OUT)/model

test: $(BIN)/.installed-test
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/bench_sweep.py

clean:
	rm -rf $(VENV) out
