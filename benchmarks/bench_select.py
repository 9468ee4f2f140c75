"""Kernel-selection speed on the CPU: Reformer's fast path against transformer blocks, an MLP and LightGBM.

For each model -- Reformer with the ``reformer fit`` defaults, each ``--paths``
variant, 1 to 5 blocks, the transformer-block model of the same width and
depth, the MLP baseline, and LightGBM when it is installed -- it measures

* single-problem latency p50/p99 (µs) with 1 thread: one selection call per
  test-split problem, feature encoding included (Reformer: ``Selector.select``
  on a problem record; baselines: their ``select_one`` on a problem row); also
  the p50 of the calling thread's CPU time, which waiting for a CPU on a busy
  machine does not inflate;
* batched throughput (problems/s) with 2 threads: picks for every test-split
  problem given as dataset columns, encoding and masking included (the path
  ``reformer evaluate`` takes);
* training throughput (problems/s per epoch, median over epochs; 1 thread) and
  fit wall time of each model on its training subsample.

The latency and throughput runs are repeated ``--repeats`` times, interleaving
the models so that load from other jobs on a shared machine spreads over all of
them; the table shows the median over runs and the load average.  ``--fit-full``
also fits Reformer with the defaults on the whole training split once and
reports its wall time and training throughput (the issue's <= 300 s).

A network's speed does not depend on how well it is trained, so the Reformer
variants and the MLP are trained on a subsample (``--train-problems``,
``--epochs``); the dataset decides the token count, hence the work per problem.
LightGBM's speed depends on its number of trees, so it is trained as the
ablation trains it (``--lightgbm-problems``, default: the whole training split).

Usage::

    python benchmarks/bench_select.py DATASET [--train-problems 5000] [--epochs 1] [--repeats 5]
        [--calls 2000] [--lightgbm-problems 0] [--fit-full] [--no-lightgbm] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from kernelbench.problem import ConvProblem
from reformer.baselines import LightGBMConfig, MLPConfig, fit_lightgbm, fit_mlp, lightgbm_missing
from reformer.config import FitConfig
from reformer.data import NON_FIELD_COLUMNS, RuntimeMatrix, load_matrix
from reformer.metrics import argmax_applicable
from reformer.selector import Selector
from reformer.splits import Split, SplitSpec, make_split
from reformer.train import fit

#: Reformer variants: name -> changes to the ``reformer fit`` defaults.
VARIANTS: dict[str, dict[str, Any]] = {
    "reformer": {},
    "paths=affine": {"paths": "affine"},
    "paths=nonlinear": {"paths": "nonlinear"},
    "blocks=1": {"blocks": 1},
    "blocks=2": {"blocks": 2},
    "blocks=4": {"blocks": 4},
    "blocks=5": {"blocks": 5},
    "transformer": {"block": "transformer"},
}
SINGLE_THREADS, BATCH_THREADS = 1, 2
#: Subsample fits use one thread: on a shared machine torch's threading only adds contention there.
TRAIN_THREADS = 1


@dataclasses.dataclass
class Model:
    """One benchmarked model: how to select for one problem and for a batch, and its training figures."""

    name: str
    select_one: Callable[[int], Any]  # test problem index -> pick
    select_batch: Callable[[], Any]  # every test problem
    fit_s: float
    train_per_s: float
    runs: list[dict[str, float]] = dataclasses.field(default_factory=list)


def subsample(split: Split, n_train: int, seed: int) -> Split:
    """The split with at most ``n_train`` training and ``n_train // 8`` validation problems (seeded)."""
    rng = np.random.default_rng(seed)

    def pick(rows: np.ndarray, n: int) -> np.ndarray:
        return np.sort(rng.choice(rows, size=min(n, len(rows)), replace=False))

    return dataclasses.replace(split, train=pick(split.train, n_train), validation=pick(split.validation, max(n_train // 8, 1)))


def reformer_models(matrix: RuntimeMatrix, split: Split, test: RuntimeMatrix, args: argparse.Namespace) -> list[Model]:
    records = [ConvProblem.from_mapping(_problem_fields(r)) for r in test.problems.iter_rows(named=True)]
    columns, applicable = test.columns(), test.applicable
    models = []
    for name, changes in VARIANTS.items():
        config = FitConfig(**changes, epochs=args.epochs, min_steps=0, threads=TRAIN_THREADS, progress=False)
        result = fit(matrix, config, split=split)
        selector = Selector(result.trained)
        print(f"trained {name}: {result.fit_seconds:.1f} s", file=sys.stderr)
        models.append(
            Model(
                name=name,
                select_one=lambda i, s=selector: s.select(records[i]),
                select_batch=lambda s=selector: argmax_applicable(s.probabilities(columns, applicable), applicable),
                fit_s=result.fit_seconds,
                train_per_s=statistics.median(r.problems_per_s for r in result.curve),
            )
        )
        if name == "reformer":
            models += reference_paths(selector, records, columns, applicable, result)
    return models


def reference_paths(selector: Selector, records: list[ConvProblem], columns, applicable, result) -> list[Model]:
    """The default model through other entry points: a mapping (validated per call), and plain torch eager."""
    mappings = [{k: getattr(p, k) for k in p.as_dict()} for p in records]
    model, encoder = result.trained.model, result.trained.encoder

    def eager_one(i: int) -> int:
        encoded = encoder.encode({k: [v] for k, v in mappings[i].items()} | _derived_columns(records[i]))
        with torch.inference_mode():
            inputs = (encoded.categorical, encoded.numeric, encoded.value_ids)
            return int(model(*(torch.from_numpy(a) for a in inputs)).argmax())

    def eager_batch() -> np.ndarray:
        encoded = encoder.encode(columns)
        inputs = [torch.from_numpy(a) for a in (encoded.categorical, encoded.numeric, encoded.value_ids)]
        with torch.inference_mode():
            logits = torch.cat([model(*(t[i : i + 8192] for t in inputs)) for i in range(0, len(inputs[0]), 8192)])
        return argmax_applicable(logits.numpy(), applicable)

    same = {"fit_s": result.fit_seconds, "train_per_s": float("nan")}
    return [
        Model(name="reformer (mapping in)", select_one=lambda i: selector.select(mappings[i]),
              select_batch=lambda: selector.select_many(mappings), **same),
        Model(name="reformer (torch eager)", select_one=eager_one, select_batch=eager_batch, **same),
    ]


def baseline_models(matrix: RuntimeMatrix, split: Split, full: Split, test: RuntimeMatrix,
                    args: argparse.Namespace) -> list[Model]:
    """The MLP (on ``split``, like the Reformer variants) and LightGBM.

    LightGBM's latency grows with its number of trees, which early stopping sets
    from the data, so it is trained as the ablation trains it: the default
    configuration on ``--lightgbm-problems`` training problems (0: all of ``full``).
    """
    rows = [r.as_row() for r in (ConvProblem.from_mapping(_problem_fields(x)) for x in test.problems.iter_rows(named=True))]
    columns, applicable = test.columns(), test.applicable
    fits = {"mlp": lambda: fit_mlp(matrix, split, MLPConfig(epochs=args.epochs, threads=TRAIN_THREADS))}
    missing = lightgbm_missing()
    if args.no_lightgbm or missing:
        print(missing or "LightGBM skipped (--no-lightgbm)", file=sys.stderr)
    else:
        lightgbm_split = full if args.lightgbm_problems == 0 else subsample(full, args.lightgbm_problems, seed=0)
        fits["lightgbm"] = lambda: fit_lightgbm(matrix, lightgbm_split, LightGBMConfig(threads=TRAIN_THREADS))
    models = []
    for name, run in fits.items():
        baseline = run()
        selector = baseline.selector
        trees = getattr(getattr(selector, "booster", None), "num_trees", None)
        print(f"trained {name}: {baseline.fit_seconds:.1f} s" + (f", {trees()} trees" if trees else ""), file=sys.stderr)
        per_epoch = [r.problems_per_s for r in baseline.curve]
        models.append(
            Model(
                name=name,
                select_one=lambda i, s=selector: s.select_one(rows[i]),
                select_batch=lambda s=selector: argmax_applicable(s.scores(columns, applicable), applicable),
                fit_s=baseline.fit_seconds,
                train_per_s=statistics.median(per_epoch) if per_epoch else float("nan"),
            )
        )
    return models


def _problem_fields(row: dict[str, Any]) -> dict[str, Any]:
    """A matrix problem row as a problem mapping (``network`` and ``device`` are dataset columns, not problem fields)."""
    return {k: v for k, v in row.items() if k not in NON_FIELD_COLUMNS}


def _derived_columns(problem: ConvProblem) -> dict[str, list[int]]:
    return {"out_d": [problem.out_d], "out_h": [problem.out_h], "out_w": [problem.out_w]}


def measure_single(model: Model, n_problems: int, calls: int, order: np.ndarray) -> tuple[float, float, float]:
    """p50 and p99 wall time (µs) of one ``select_one`` call over ``calls`` problems, and the p50 of the
    calling thread's CPU time (µs: time on a CPU, unaffected by waiting for one on a busy machine)."""
    picks = [int(i) for i in order[:calls] % n_problems]
    for i in picks[:200]:
        model.select_one(i)
    wall, cpu = np.empty(len(picks)), np.empty(len(picks))
    gc.disable()  # as timeit does: a collection would land on whichever call triggers it
    try:
        for k, i in enumerate(picks):
            start = time.perf_counter_ns()
            model.select_one(i)
            wall[k] = time.perf_counter_ns() - start
        for k, i in enumerate(picks):
            start = time.thread_time_ns()
            model.select_one(i)
            cpu[k] = time.thread_time_ns() - start
    finally:
        gc.enable()
    return float(np.percentile(wall, 50)) / 1e3, float(np.percentile(wall, 99)) / 1e3, float(np.median(cpu)) / 1e3


def measure_batch(model: Model, n_problems: int, min_seconds: float = 0.5) -> float:
    """Problems per second of ``select_batch`` (repeated until ``min_seconds`` have passed)."""
    model.select_batch()  # warm-up
    done, started = 0, time.perf_counter()
    while True:
        model.select_batch()
        done += n_problems
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            return done / elapsed


def run_all(models: list[Model], n_problems: int, args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    for run in range(args.repeats):
        load = os.getloadavg()[0]
        for model in models:
            order = rng.permutation(max(n_problems, args.calls))
            torch.set_num_threads(SINGLE_THREADS)
            with threadpool_limits(SINGLE_THREADS):
                p50, p99, p50_cpu = measure_single(model, n_problems, args.calls, order)
            torch.set_num_threads(BATCH_THREADS)
            with threadpool_limits(BATCH_THREADS):
                batched = measure_batch(model, n_problems)
            model.runs.append({"p50_us": p50, "p99_us": p99, "p50_cpu_us": p50_cpu, "batched_per_s": batched, "load": load})
        print(f"run {run + 1}/{args.repeats} done (load average {load:.2f})", file=sys.stderr)


def summary(models: list[Model]) -> dict[str, dict[str, float]]:
    out = {}
    for m in models:
        keys = ("p50_us", "p99_us", "p50_cpu_us", "batched_per_s")
        out[m.name] = {key: statistics.median(r[key] for r in m.runs) for key in keys}
        out[m.name].update(train_per_s=m.train_per_s, fit_s=m.fit_s, runs=len(m.runs))
    return out


def ratios(table: dict[str, dict[str, float]]) -> list[tuple[str, float, str]]:
    """(description, value, target) of the comparisons the issue asks for, where both models were measured."""
    base = table["reformer"]["p50_us"]
    rows = [
        ("reformer single-problem p50 (µs)", base, "<= 50"),
        ("reformer batched (problems/s)", table["reformer"]["batched_per_s"], ">= 50000"),
        ("transformer p50 / reformer p50", table["transformer"]["p50_us"] / base, ">= 1.5"),
        ("transformer / reformer, CPU-time p50", table["transformer"]["p50_cpu_us"] / table["reformer"]["p50_cpu_us"],
         ">= 1.5"),
        ("torch eager p50 / reformer p50", table["reformer (torch eager)"]["p50_us"] / base, ""),
    ]
    for name, target in (("mlp", ""), ("lightgbm", ">= 30")):
        if name in table:
            rows.append((f"{name} p50 / reformer p50", table[name]["p50_us"] / base, target))
            rows.append((f"{name} / reformer, CPU-time p50", table[name]["p50_cpu_us"] / table["reformer"]["p50_cpu_us"],
                         target))
    return rows


def print_table(table: dict[str, dict[str, float]], full: dict[str, float] | None, loads: list[float], args) -> None:
    print(f"single problem: 1 thread, {args.calls} calls per run; batched: 2 threads, {args.n_test} test problems; "
          f"median of {args.repeats} runs; load average during runs {min(loads):.2f}-{max(loads):.2f} "
          f"on {os.cpu_count()} CPUs")
    print(f"{'model':<24}{'p50 µs':>10}{'p99 µs':>10}{'p50 cpu µs':>12}{'batched /s':>12}{'train /s/epoch':>16}{'fit s':>8}")
    for name, row in table.items():
        print(f"{name:<24}{row['p50_us']:>10.1f}{row['p99_us']:>10.1f}{row['p50_cpu_us']:>12.1f}{row['batched_per_s']:>12.0f}"
              f"{row['train_per_s']:>16.0f}{row['fit_s']:>8.1f}")
    print(f"(Reformer variants and the MLP trained on {args.train_problems} problems for {args.epochs} epoch(s); "
          f"LightGBM on {args.lightgbm_problems or 'all'} training problems)")
    print()
    for text, value, target in ratios(table):
        print(f"{text:<36}{value:>12.2f}  {('target ' + target) if target else ''}")
    if full:
        print(f"\nfit on the full training split, defaults: {full['fit_s']:.1f} s, {full['epochs']} epochs, "
              f"{full['train_per_s']:.0f} training problems/s per epoch (median)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", help="a runtime dataset (Parquet), e.g. the MIOpen MI100 import")
    parser.add_argument("--train-problems", type=int, default=5000, help="training subsample per model")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per benchmarked model")
    parser.add_argument("--repeats", type=int, default=5, help="runs of the latency and throughput measurements")
    parser.add_argument("--calls", type=int, default=2000, help="single-problem calls per run")
    parser.add_argument("--fit-full", action="store_true", help="also time one full fit with the defaults")
    parser.add_argument("--no-lightgbm", action="store_true", help="skip the LightGBM baseline")
    parser.add_argument("--lightgbm-problems", type=int, default=0,
                        help="LightGBM training problems (0: the whole training split, as the ablation trains it)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)

    matrix = load_matrix(args.dataset)
    split = make_split(matrix.problems, SplitSpec())
    small = subsample(split, args.train_problems, seed=0)
    test = matrix.subset(split.test)
    args.n_test = test.n_problems
    full = None
    if args.fit_full:
        result = fit(matrix, FitConfig(progress=False), split=split)
        full = {"fit_s": result.fit_seconds, "epochs": len(result.curve),
                "train_per_s": statistics.median(r.problems_per_s for r in result.curve)}
        print(f"full fit: {result.fit_seconds:.1f} s", file=sys.stderr)
    models = reformer_models(matrix, small, test, args) + baseline_models(matrix, small, split, test, args)
    run_all(models, test.n_problems, args)
    table = summary(models)
    loads = [r["load"] for m in models for r in m.runs]
    if args.json:
        report = {
            "models": table,
            "ratios": {text: value for text, value, _ in ratios(table)},
            "fit_full": full,
            "settings": {k: v for k, v in vars(args).items() if k != "json"},
            "load_average": [min(loads), max(loads)],
            "cpus": os.cpu_count(),
        }
        print(json.dumps(report, indent=2))
    else:
        print_table(table, full, loads, args)


if __name__ == "__main__":
    main()
