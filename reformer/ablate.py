"""``reformer ablate``: the paper's ablation studies and the baselines as one resumable grid.

The grid is studies x variants x seeds (:data:`STUDIES`).  A variant is a
Reformer fit (the ``reformer fit`` defaults changed with
:func:`dataclasses.replace`) or a baseline (:mod:`reformer.baselines`,
:mod:`reformer.metrics`).  Work that several studies share (the default
model is the ``ratio`` row of the label study, the ``both`` row of the path
study, the ``3`` row of the depth study, ...) is one *cell* per seed and is
computed once.

Seed ``s`` means one split (``make_split`` with seed ``s``) shared by every
cell of that seed, and ``seed=s`` for initialisation, batches and noise.

Resumable: a cell writes ``REPORT_DIR/cells/<key>.json`` atomically the
moment it finishes.  The key hashes everything that determines its result
(dataset content digest, subsample, split, seed, configuration; not the thread
count), so a re-run reads finished cells back and a changed setting never
reuses a stale one.  ``run.json`` records every invocation's wall time.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import importlib.metadata
import json
import math
import multiprocessing
import os
import platform
import time
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np

from kernelbench.errors import InputError, RunAborted
from reformer.config import FitConfig, drop_neutral_membership
from reformer.data import RuntimeMatrix, load_matrix
from reformer.device_features import dataset_descriptors
from reformer.features import training_descriptors
from reformer.grid import STUDIES, TOP_KS, Variant, variants
from reformer.splits import Split, SplitSpec, make_split
from reformer.store import write_json
from reformer.threads import torch_threads

#: Package versions recorded in ``run.json`` (and printed in the report).
PACKAGES = ("kernelbench-reformer", "torch", "numpy", "numba", "polars", "pyarrow", "lightgbm", "matplotlib")
CELLS_DIR = "cells"
RUN_FILE = "run.json"


@dataclasses.dataclass(frozen=True, kw_only=True)
class QuickSettings:
    """``--quick``: a seeded subsample of ``problems`` problems and short training everywhere.

    Reformer trains ``epochs`` epochs, or more on a dataset so small that this
    would be fewer than ``min_steps`` optimiser steps (FitConfig's own
    ``min_steps`` default would turn 4 epochs of the subsample into ~60).
    """

    problems: int = 5000
    epochs: int = 4
    min_steps: int = 32
    mlp_epochs: int = 4
    lightgbm_rounds: int = 30
    seed: int = 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class AblationOptions:
    """How to run the grid.

    Attributes:
        studies: which studies (subset of :data:`STUDIES`).
        seeds: seeds; each is one split and one initialisation for every cell.
        quick: subsample and short training, or ``None`` for the full grid.
        jobs: cells run in parallel processes.
        threads: torch / LightGBM threads per job.  Default 1: on a shared machine a second
            thread often waits for a busy core (measured: a fit 2-5x slower with 2 threads under
            load), so use ``jobs`` for parallelism.
        fractions: train / validation / test shares of every split.
        base: the FitConfig every Reformer variant starts from (default: ``reformer fit``'s defaults).
        epochs: training epochs of every Reformer cell, overriding ``base`` and ``quick`` (``None``: theirs).
            Fewer epochs make the grid cheaper in proportion, at some accuracy (docs/ablations.md).
    """

    studies: tuple[str, ...] = STUDIES
    seeds: tuple[int, ...] = (0, 1, 2)
    quick: QuickSettings | None = None
    jobs: int = 1
    threads: int = 1
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    base: FitConfig | None = None
    epochs: int | None = None

    def __post_init__(self) -> None:
        if not self.seeds:
            raise InputError("--seeds must be >= 1")
        if self.epochs is not None and self.epochs < 1:
            raise InputError(f"--epochs must be >= 1, got {self.epochs}")
        if self.jobs < 1:
            raise InputError(f"--jobs must be >= 1, got {self.jobs}")
        if self.threads < 1:
            raise InputError(f"--threads must be >= 1, got {self.threads}")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One unit of work: a Reformer fit or a baseline on the split of ``seed``.

    ``settings`` is the JSON form of the configuration (it is hashed into the
    key); ``config`` is what runs (a FitConfig, an MLP/LightGBM config, or None).
    """

    kind: str
    seed: int
    settings: dict[str, Any]
    config: Any = dataclasses.field(compare=False, default=None)

    def key(self, data_id: dict[str, Any]) -> str:
        text = json.dumps({"kind": self.kind, "seed": self.seed, "settings": self.settings, "data": data_id},
                          sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:16]


def make_cell(variant: Variant, seed: int, options: AblationOptions) -> Cell:
    """The work behind ``variant`` for ``seed`` (configs built from the defaults with ``dataclasses.replace``)."""
    from reformer.baselines import LightGBMConfig, MLPConfig

    threads = options.threads
    quick = options.quick
    base = options.base or FitConfig()
    base = dataclasses.replace(base, progress=False, threads=threads,
                               split=SplitSpec(fractions=options.fractions, seed=seed), seed=seed)
    if quick is not None:
        base = dataclasses.replace(base, epochs=quick.epochs, min_steps=quick.min_steps)
    if options.epochs is not None:
        base = dataclasses.replace(base, epochs=options.epochs)
    if variant.kind == "reformer":
        config = dataclasses.replace(base, **dict(variant.changes))
        settings = {k: v for k, v in config.as_dict().items() if k != "threads"}
        return Cell("reformer", seed, settings, config)
    # A learned baseline's changes are fields of its config (the MLP's ``candidates``); without changes its
    # settings, hence its key, are what they were before variants could change them.
    if variant.kind == "mlp":
        config = MLPConfig(seed=seed, threads=threads, **({"epochs": quick.mlp_epochs} if quick else {}),
                           **dict(variant.changes))
    elif variant.kind == "lightgbm":
        config = LightGBMConfig(seed=seed, threads=threads,
                                **({"n_estimators": quick.lightgbm_rounds} if quick else {}), **dict(variant.changes))
    else:
        return Cell(variant.kind, seed, {"fractions": list(options.fractions)})
    settings = drop_neutral_membership({k: v for k, v in dataclasses.asdict(config).items() if k != "threads"})
    settings.update(fractions=list(options.fractions), derived=list(base.derived))
    return Cell(variant.kind, seed, settings, config)


def environment() -> dict[str, Any]:
    """Hardware and package versions for the report (CPU model from /proc/cpuinfo where it exists)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):
        memory_gb = float("nan")
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(memory_gb, 1),
            "versions": versions}


# ---------------------------------------------------------------- data


def load_data(dataset: str | os.PathLike[str], quick: QuickSettings | None, *, warn: bool = True) -> RuntimeMatrix:
    """The dataset's runtime matrix; with ``quick``, a seeded subsample of its problems.

    ``warn``: pass on :func:`reformer.data.load_matrix`'s warnings (on stderr).

    Raises:
        InputError: the dataset cannot be read (see :func:`reformer.data.load_matrix`).
    """
    matrix = load_matrix(dataset) if warn else load_matrix(dataset, warn=None)
    if quick is None or matrix.n_problems <= quick.problems:
        return matrix
    rows = np.sort(np.random.default_rng(quick.seed).choice(matrix.n_problems, quick.problems, replace=False))
    metadata = {**matrix.metadata, "subsample": {"problems": quick.problems, "of": matrix.n_problems, "seed": quick.seed}}
    return dataclasses.replace(matrix.subset(rows), dropped_problems=matrix.dropped_problems, metadata=metadata)


def data_identity(matrix: RuntimeMatrix, options: AblationOptions) -> dict[str, Any]:
    """What about the data a cell key depends on."""
    quick = options.quick
    return {
        "content_sha256": matrix.content_sha256(),
        "n_problems": matrix.n_problems,
        "subsample": None if quick is None else {"problems": quick.problems, "seed": quick.seed},
    }


# ---------------------------------------------------------------- computing one cell


def throughput_per_s(call: Callable[[], Any], n: int, *, min_seconds: float = 0.1) -> float:
    """Problems per second of ``call()`` (which handles ``n`` problems): best of repeats totalling ``min_seconds``."""
    call()  # warm-up
    best, spent, repeats = 0.0, 0.0, 0
    while spent < min_seconds or repeats < 2:
        start = time.perf_counter()
        call()
        took = time.perf_counter() - start
        best, spent, repeats = max(best, n / took), spent + took, repeats + 1
    return best


def _ratio_quantiles(t_best: np.ndarray, t_pick: np.ndarray) -> list[float]:
    """401 quantiles of t_pick / t_best: enough to draw the CDF without storing every problem."""
    return [float(q) for q in np.quantile(t_pick / t_best, np.linspace(0.0, 1.0, 401))]


def _sample_row(matrix: RuntimeMatrix, rows: np.ndarray) -> tuple[dict[str, Any], str]:
    """The first of ``rows``' problem fields and its device label (single-problem latency)."""
    return matrix.problem_row(int(rows[0])), matrix.problems["device"][int(rows[0])]


def _reformer_record(cell: Cell, matrix: RuntimeMatrix, split: Split) -> dict[str, Any]:
    from reformer.metrics import latency_us
    from reformer.train import fit

    result = fit(matrix, cell.config, split=split, top_ks=TOP_KS)
    selector = result.selector
    sample, device = _sample_row(matrix, split.test)
    with torch_threads(1):  # single-problem latency as deployed: one thread
        latency = latency_us(lambda: selector.select(sample, device=device), repeats=100, warmup=10)
    test = matrix.subset(split.test)
    evaluation = result.evaluations["test"]
    index = {k: j for j, k in enumerate(matrix.kernels)}
    times = test.time_ms[evaluation.scored]
    t_pick = times[np.arange(len(times)), [index[k] for k in evaluation.picks]]
    columns, applicable = test.columns(), test.applicable
    return {
        "metrics": evaluation.model.as_dict(),
        "train_top1": result.evaluations["train"].model.top1,
        "fit_seconds": result.fit_seconds,
        "latency_us_p50": latency["p50"],
        "latency_us_p99": latency["p99"],
        "batched_per_s": throughput_per_s(lambda: selector.probabilities(columns, applicable), test.n_problems),
        "best_epoch": result.best_epoch,
        "curve": [dataclasses.asdict(r) for r in result.curve],
        "ratio_quantiles": _ratio_quantiles(np.nanmin(times, axis=1), t_pick),
    }


def _baseline_record(cell: Cell, matrix: RuntimeMatrix, split: Split) -> dict[str, Any]:
    from reformer import baselines
    from reformer.candidates import split_rule
    from reformer.evaluate import fixed_first_scores, score_ranking
    from reformer.metrics import latency_us, picked_times, static_order, static_scores

    train, validation, test = matrix.subset(split.train), matrix.subset(split.validation), matrix.subset(split.test)
    order = static_order(train.time_ms)
    rule = split_rule(train, validation)
    nan = float("nan")
    extra: dict[str, Any] = {"fit_seconds": nan, "latency_us_p50": nan, "latency_us_p99": nan, "batched_per_s": nan}
    if cell.kind == "oracle":
        def scores(side: RuntimeMatrix, mask: np.ndarray) -> np.ndarray:
            # The oracle knows what was measured: whatever it is offered, it ranks the measured kernels by time.
            return np.where(side.applicable, -np.nan_to_num(side.time_ms, nan=np.inf), -np.inf)
    elif cell.kind == "random":
        def scores(side: RuntimeMatrix, mask: np.ndarray) -> np.ndarray:
            return np.where(mask, np.random.default_rng(cell.seed).random(mask.shape), -np.inf)
    elif cell.kind == "torch_default":
        column = matrix.kernels.index("torch_default")

        def scores(side: RuntimeMatrix, mask: np.ndarray) -> np.ndarray:
            # F.conv2d first wherever it is offered, then the static order (reformer.evaluate's baseline).
            return np.where(mask, fixed_first_scores(column, static_scores(order, mask)), -np.inf)
    else:
        if cell.kind == "static":
            started = time.perf_counter()
            fitted = baselines.BaselineFit(selector=baselines.StaticSelector.fit(matrix, split),
                                           fit_seconds=time.perf_counter() - started)
        elif cell.kind == "mlp":
            fitted = baselines.fit_mlp(matrix, split, cell.config, derived=cell.settings["derived"])
        else:
            fitted = baselines.fit_lightgbm(matrix, split, cell.config, derived=cell.settings["derived"])
        selector = fitted.selector

        def scores(side: RuntimeMatrix, mask: np.ndarray) -> np.ndarray:
            return selector.scores(side.columns(), mask)

        (row, device), mask = _sample_row(matrix, split.test), test.applicable[0]
        row = {**row, "device": device}  # read only by features with device tokens
        with torch_threads(1):  # single-problem latency as deployed: one thread
            latency = latency_us(lambda: selector.select_one(row, mask), repeats=100, warmup=10)
        columns, applicable = test.columns(), test.applicable
        extra = {
            "fit_seconds": fitted.fit_seconds,
            "latency_us_p50": latency["p50"],
            "latency_us_p99": latency["p99"],
            "batched_per_s": throughput_per_s(lambda: selector.scores(columns, applicable), test.n_problems),
            "curve": [dataclasses.asdict(r) for r in fitted.curve],
        }

    def metrics_of(side: RuntimeMatrix) -> Any:
        return score_ranking(side, scores, order=order, rule=rule, top_ks=TOP_KS)

    metrics, picks = metrics_of(test)
    return {
        "metrics": metrics.as_dict(),
        "train_top1": metrics_of(train)[0].top1,
        **extra,
        "ratio_quantiles": _ratio_quantiles(np.nanmin(test.time_ms, axis=1), picked_times(test.time_ms, picks)),
    }


def compute_cell(cell: Cell, matrix: RuntimeMatrix, split: Split) -> dict[str, Any]:
    """Train (if needed) and evaluate one cell on ``split``; the record stored in its cell file.

    Raises:
        reformer.baselines.BaselineUnavailable: a LightGBM cell without lightgbm installed.
    """
    started, cpu_started = time.perf_counter(), time.process_time()
    body = _reformer_record(cell, matrix, split) if cell.kind == "reformer" else _baseline_record(cell, matrix, split)
    return {
        "kind": cell.kind,
        "seed": cell.seed,
        "settings": cell.settings,
        "threads": getattr(cell.config, "threads", None),
        "split_sizes": split.sizes(),
        **body,
        "cell_seconds": time.perf_counter() - started,
        # CPU time does not grow when other work shares the cores: with one thread per job it is the
        # cell's wall time on a dedicated core, the figure full-grid estimates are built from.
        "cell_cpu_seconds": time.process_time() - cpu_started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def cell_path(report_dir: Path, key: str) -> Path:
    return Path(report_dir) / CELLS_DIR / f"{key}.json"


def read_cell(report_dir: Path, key: str) -> dict[str, Any] | None:
    """A finished cell's record, or ``None`` if it is absent or unreadable (then it is recomputed)."""
    path = cell_path(report_dir, key)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("key") == key else None


def _compute_and_store(cell: Cell, key: str, matrix: RuntimeMatrix, split: Split, report_dir: Path) -> dict[str, Any]:
    record = {"key": key, **compute_cell(cell, matrix, split)}
    write_json(cell_path(report_dir, key), record)
    return record


# ---------------------------------------------------------------- worker processes (--jobs)

_WORKER: dict[str, Any] = {}


def _worker_init(dataset: str, quick: QuickSettings | None, fractions: tuple[float, float, float]) -> None:
    # The main process has warned about the data already.
    _WORKER.update(matrix=load_data(dataset, quick, warn=False), fractions=fractions, splits={})


def _worker_run(cell: Cell, key: str, report_dir: str) -> dict[str, Any]:
    matrix, splits = _WORKER["matrix"], _WORKER["splits"]
    if cell.seed not in splits:
        splits[cell.seed] = make_split(matrix.problems, SplitSpec(fractions=_WORKER["fractions"], seed=cell.seed))
    return _compute_and_store(cell, key, matrix, splits[cell.seed], Path(report_dir))


# ---------------------------------------------------------------- the grid


@dataclasses.dataclass(frozen=True, eq=False)
class AblationOutcome:
    """A finished (or partly finished) grid.

    Attributes:
        variants: every row of the selected studies, in table order.
        keys: ``(study, variant name, seed)`` -> cell key.
        records: cell key -> record (finished cells only).
        computed, reused: cells computed by this invocation / read back from earlier ones.
        notices: one line per skipped part (e.g. LightGBM not installed).
        run: the content of ``run.json`` (dataset, splits, options, environment, invocations).
    """

    variants: tuple[Variant, ...]
    seeds: tuple[int, ...]
    keys: dict[tuple[str, str, int], str]
    records: dict[str, dict[str, Any]]
    computed: int
    reused: int
    notices: tuple[str, ...]
    run: dict[str, Any]


def plan_cells(
    rows: Sequence[Variant], options: AblationOptions, data_id: dict[str, Any]
) -> tuple[dict[tuple[str, str, int], str], dict[str, Cell], dict[str, list[Variant]]]:
    """Map every (study, variant, seed) to a cell key; identical work gets one key.

    Returns ``(keys, cells, users)``: ``(study, name, seed) -> key``, ``key -> Cell`` (in
    first-use order, seed-major) and ``key -> the variants it serves``.
    """
    keys: dict[tuple[str, str, int], str] = {}
    cells: dict[str, Cell] = {}
    users: dict[str, list[Variant]] = {}
    for seed in options.seeds:
        for variant in rows:
            cell = make_cell(variant, seed, options)
            key = cell.key(data_id)
            keys[(variant.study, variant.name, seed)] = key
            cells.setdefault(key, cell)
            users.setdefault(key, []).append(variant)
    return keys, cells, users


def describe_cell(variant: Variant, shared: int) -> str:
    label = f"{variant.study}/{variant.name}"
    return label if shared <= 1 else f"{label} (+{shared - 1} shared)"


def cell_line(label: str, record: dict[str, Any]) -> str:
    """The one-line result printed when a cell finishes."""
    m = record["metrics"]
    fit_s = record["fit_seconds"]
    fit_text = "" if fit_s is None or math.isnan(fit_s) else f"  fit {fit_s:.1f} s"
    return (f"{label} seed {record['seed']}: top-1 {m['top1']:.4f}  within-5% {m['within5']:.4f}  "
            f"oracle {m['oracle_ratio']:.4f}  Σ {m['sum_ratio']:.3f}  speedup {m['speedup_static_sum']:.2f}x"
            f"{fit_text}  [cell {record['cell_seconds']:.1f} s wall, {record.get('cell_cpu_seconds', 0.0):.1f} s CPU]")


def run_ablation(
    dataset: str | os.PathLike[str],
    report_dir: str | os.PathLike[str],
    options: AblationOptions,
    *,
    progress: bool = True,
    say: Callable[[str], None] = print,
    command: str | None = None,
    on_cell: Callable[[str, dict[str, Any]], None] | None = None,
    compute: bool = True,
) -> AblationOutcome:
    """Run (or resume) the grid; every finished cell is on disk before the next is reported.

    Args:
        dataset: a kernelbench dataset file.
        report_dir: where ``cells/`` and ``run.json`` go (created).
        options: studies, seeds, quick mode, jobs.
        progress: show a tqdm bar over the cells still to compute, with ETA.
        say: where one-line messages go (cell results, notices).
        command: the command line, recorded in ``run.json`` for the report.
        on_cell: called as ``on_cell(key, record)`` after each computed cell is stored.
        compute: False reads the finished cells back and computes nothing (a report of a grid
            still running elsewhere); ``run.json`` is then left as it is.

    Raises:
        InputError: bad dataset or options.  KeyboardInterrupt propagates after finished cells are stored.
    """
    from tqdm.auto import tqdm

    from reformer.baselines import lightgbm_missing

    started = time.perf_counter()
    report_dir = Path(report_dir)
    matrix = load_data(dataset, options.quick)
    if (options.base or FitConfig()).device_tokens:
        # Refused before run.json is written, not in every cell (the grid has no --no-device-tokens).
        training_descriptors(matrix.devices, dataset_descriptors(matrix.metadata), without_tokens=None)
    data_id = data_identity(matrix, options)
    all_variants = tuple(v for s in options.studies for v in variants(s))
    notices = []
    missing = lightgbm_missing()
    runnable = all_variants
    if missing and any(v.kind == "lightgbm" for v in all_variants):
        notices.append(missing)
        runnable = tuple(v for v in all_variants if v.kind != "lightgbm")
    if "torch_default" not in matrix.kernels:  # only CPU datasets measure what F.conv2d gives
        runnable = tuple(v for v in runnable if v.kind != "torch_default")

    keys, cells, users = plan_cells(runnable, options, data_id)
    records = {key: rec for key in cells if (rec := read_cell(report_dir, key)) is not None}
    pending = [key for key in cells if key not in records] if compute else []
    reused = len(records)
    splits = {seed: make_split(matrix.problems, SplitSpec(fractions=options.fractions, seed=seed))
              for seed in options.seeds}
    say(f"{len(cells)} cells ({len(all_variants)} rows x {len(options.seeds)} seeds, shared work counted once): "
        f"{reused} finished earlier, {len(pending)} to compute with {options.jobs} job(s) x "
        f"{options.threads} thread(s)")
    for notice in notices:
        say(notice)

    identity = {"data": data_id, "studies": list(options.studies), "seeds": list(options.seeds)}
    if options.epochs is not None:
        # A grid trained for other epochs is another run: its invocations must not add to this one's wall time.
        identity["epochs"] = options.epochs
    run = _load_run(report_dir)
    if run.get("identity") != identity:
        # Another dataset or grid in this directory: its invocations do not count towards this run's wall time.
        run = {"identity": identity}
    recorded = dict(run)
    run.update(
        command=command,
        dataset={
            "metadata": matrix.metadata,
            "n_problems": matrix.n_problems,
            "n_kernels": len(matrix.kernels),
            "dropped_problems": matrix.dropped_problems,
        },
        splits={str(s): {**split.spec.as_dict(), "sizes": split.sizes()} for s, split in splits.items()},
        options={
            "studies": list(options.studies),
            "seeds": list(options.seeds),
            "quick": None if options.quick is None else dataclasses.asdict(options.quick),
            "jobs": options.jobs,
            "threads_per_job": options.threads,
            "epochs": options.epochs,
            "base": make_cell(Variant("base", "defaults"), options.seeds[0], options).settings,
        },
        environment=environment(),
    )
    computed = 0
    if not compute:
        # The report describes the grid as it was run, not this read-only invocation.
        for name in ("command", "options", "environment"):
            run[name] = recorded.get(name, run[name] if name != "command" else None)
        missing_cells = sum(key not in records for key in cells)
        say(f"report only: {len(records)} of {len(cells)} cells finished, {missing_cells} not yet computed")
        return AblationOutcome(variants=all_variants, seeds=tuple(options.seeds), keys=keys, records=records,
                               computed=0, reused=reused, notices=tuple(notices), run=run)
    bar = tqdm(total=len(pending), unit="cell", disable=not progress, desc="ablate", dynamic_ncols=True)

    loads = [os.getloadavg()[0]]
    invocation: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(time.time() - (time.perf_counter() - started))),
    }
    run.setdefault("invocations", []).append(invocation)

    def checkpoint(*, ended: bool) -> None:
        # Written after every cell, so a process killed outright (SIGKILL, a reboot) still leaves its wall
        # time up to its last finished cell in run.json; ``ended`` tells a clean or interrupted exit from that.
        invocation.update({
            "wall_seconds": time.perf_counter() - started,
            # Sampled at the start and after every cell: the machine's other work shows in the times.
            "load_average": {"min": min(loads), "median": float(np.median(loads)), "max": max(loads),
                             "samples": len(loads)},
            "computed": computed,
            "reused": reused,
            "complete": len(records) == len(cells),
            "ended": ended,
        })
        write_json(report_dir / RUN_FILE, run)

    checkpoint(ended=False)

    def finished(key: str, record: dict[str, Any]) -> None:
        nonlocal computed
        records[key] = record
        loads.append(os.getloadavg()[0])
        computed += 1
        checkpoint(ended=False)
        bar.update()
        line = cell_line(describe_cell(users[key][0], len(users[key])), record)
        (bar.write if progress else say)(line)
        if on_cell is not None:
            on_cell(key, record)

    try:
        if options.jobs == 1 or len(pending) <= 1:
            for key in pending:
                cell = cells[key]
                finished(key, _compute_and_store(cell, key, matrix, splits[cell.seed], report_dir))
        else:
            _run_parallel(pending, cells, dataset, options, report_dir, finished)
    finally:
        bar.close()
        checkpoint(ended=True)
    return AblationOutcome(variants=all_variants, seeds=tuple(options.seeds), keys=keys, records=records,
                           computed=computed, reused=reused, notices=tuple(notices), run=run)


def _run_parallel(pending: list[str], cells: dict[str, Cell], dataset: str | os.PathLike[str],
                  options: AblationOptions, report_dir: Path,
                  finished: Callable[[str, dict[str, Any]], None]) -> None:
    # spawn, not fork: the parent has torch (and its thread pools) loaded already.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=min(options.jobs, len(pending)), mp_context=context, initializer=_worker_init,
        initargs=(str(dataset), options.quick, options.fractions),
    ) as pool:
        futures = {pool.submit(_worker_run, cells[key], key, str(report_dir)): key for key in pending}
        try:
            for future in concurrent.futures.as_completed(futures):
                finished(futures[future], future.result())
        except BrokenProcessPool:
            pool.shutdown(wait=False, cancel_futures=True)
            raise RunAborted(
                "a worker process died (killed by the system: out of memory, or a signal); the finished cells are "
                "stored, so re-run the same command to resume (with fewer --jobs if memory is short)"
            ) from None
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _load_run(report_dir: Path) -> dict[str, Any]:
    try:
        run = json.loads((report_dir / RUN_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return run if isinstance(run, dict) else {}
