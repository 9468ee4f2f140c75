"""``reformer transfer``: a GPU the model never saw, with no, few or all of its problems measured.

For each device of a multi-device dataset in turn as the *target* (the others are the *sources*):

* the target's rows get one seeded random split (``split_fractions``, default 80/10/10); every cell is
  scored on its test side, so all rows of a target's table score the same problems;
* **zero-shot**: a Reformer trained on the sources' rows (a seeded 90/10 train/validation split of them;
  nothing of the target), scored on the target's test split; its candidates for the unseen device are what
  the nearest source device recorded for the problem's context (:mod:`reformer.candidates`);
* **lookup**: the same problem's fastest kernel on the nearest source device by descriptor distance
  (:mod:`reformer.lookup`); problems no source measured fall back to the sources' static order;
* **few-shot** at each of ``fractions`` of the target's training split (one seeded, nested sample per
  fraction, :func:`reformer.splits.sample_train`, shared by the three methods): fine-tuned from the
  zero-shot model (``fit(..., init=...)``, at ``finetune_lr``), trained from scratch, and LightGBM;
* **in-device**: a Reformer from scratch and LightGBM on 100 % of the target's training split.

Validation (early stopping) is the target's whole validation split for every target-trained cell, as with
``reformer fit --train-fraction``.

Resumable as ``reformer ablate`` is: every cell is written to ``REPORT_DIR/cells/<key>.json`` atomically when
it finishes, its key hashing everything that determines it (dataset content, target, fraction, seed,
settings; for a fine-tuned cell, the key of the zero-shot model it starts from), and the zero-shot model is
saved (as a whole, :func:`reformer.store.save_model`) under ``REPORT_DIR/models/<model key>/`` before its cell
file, so a re-run computes only what is missing.  The model key hashes what trains it, the zero-shot cell's key
also how it is scored (:data:`UNSEEN_DEVICE_CANDIDATES`): a cell whose scoring changed is re-scored from the
saved model without training.  Why a command of its own rather than an ablation study: its cells
depend on each other (fine-tuning starts from the zero-shot model), it has one split per target device instead
of one per seed, the lookup is not a fitted selector, and its report plots accuracy against the target
fraction rather than comparing variants of one fit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from kernelbench.errors import InputError
from reformer.ablate import cell_path, environment, read_cell
from reformer.config import TRANSFER_FRACTIONS, FitConfig
from reformer.data import RuntimeMatrix, load_matrix
from reformer.splits import Split, SplitSpec, make_split, sample_train
from reformer.store import write_json

#: The few-shot fractions (shares of the target's training split), defined with the fit options.
FRACTIONS = TRANSFER_FRACTIONS
#: Methods, in table order.  ``scratch`` at fraction 1 is the in-device row.
METHODS = ("zero-shot", "lookup", "fine-tune", "scratch", "lightgbm")
FEW_SHOT_METHODS = ("fine-tune", "scratch", "lightgbm")
#: Methods also run on 100 % of the target's training split.
IN_DEVICE_METHODS = ("scratch", "lightgbm")
MODELS_DIR = "models"
RUN_FILE = "run.json"
#: How the candidates of a device the model never saw are chosen (:mod:`reformer.candidates`), part of the keys
#: of the cells it changes (zero-shot, lookup): a new value re-scores them, from the saved zero-shot models.
UNSEEN_DEVICE_CANDIDATES = "nearest-device contexts"


@dataclasses.dataclass(frozen=True, kw_only=True)
class QuickTransfer:
    """``--quick``: at most ``problems_per_device`` rows of each device (seeded; the devices keep the problems
    they share in common) and short training."""

    problems_per_device: int = 1500
    epochs: int = 4
    min_steps: int = 32
    lightgbm_rounds: int = 30
    seed: int = 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class TransferOptions:
    """How to run the study.

    Attributes:
        targets: the target devices (labels as in the dataset; ``None``: every device).
        fractions: few-shot shares of the target's training split, each in (0, 1).
        seed: of every split, sample, initialisation and batch order.
        split_fractions: train / validation / test shares of each target's rows.
        source_validation: share of the sources' rows the zero-shot model validates on.
        base: the FitConfig of every Reformer cell (default: ``reformer fit``'s defaults).
        finetune_lr: peak learning rate of fine-tuning (default: a fifth of ``base.lr``: starting from trained
            weights, a full-size first step would undo much of them on a few problems).
        threads: torch / LightGBM threads.
        quick: subsample and short training, or ``None``.
    """

    targets: tuple[str, ...] | None = None
    fractions: tuple[float, ...] = FRACTIONS
    seed: int = 0
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    source_validation: float = 0.1
    base: FitConfig | None = None
    finetune_lr: float | None = None
    threads: int = 2
    quick: QuickTransfer | None = None

    def __post_init__(self) -> None:
        bad = [f for f in self.fractions if not 0 < f < 1]
        if bad or not self.fractions:
            raise InputError(f"--fractions must be shares in (0, 1), got {', '.join(map(str, self.fractions)) or 'none'}")
        if self.targets is not None and not self.targets:
            raise InputError("--targets names no device; name one or more (or leave it out for every device)")
        if not 0 < self.source_validation < 1:
            raise InputError(f"source_validation must be in (0, 1), got {self.source_validation}")
        if self.threads < 1:
            raise InputError(f"--threads must be >= 1, got {self.threads}")
        if self.finetune_lr is not None and not (math.isfinite(self.finetune_lr) and self.finetune_lr > 0):
            raise InputError(f"--finetune-lr must be finite and > 0, got {self.finetune_lr}")

    def fit_config(self) -> FitConfig:
        """The FitConfig of a Reformer cell from scratch (zero-shot, scratch)."""
        base = self.base or FitConfig()
        base = dataclasses.replace(base, progress=False, threads=self.threads, seed=self.seed,
                                   split=SplitSpec(fractions=self.split_fractions, seed=self.seed))
        if self.quick is not None:
            base = dataclasses.replace(base, epochs=self.quick.epochs, min_steps=self.quick.min_steps)
        return base

    def finetune_config(self) -> FitConfig:
        base = self.fit_config()
        return dataclasses.replace(base, lr=self.finetune_lr if self.finetune_lr is not None else base.lr / 5)

    def lightgbm_config(self) -> Any:
        from reformer.baselines import LightGBMConfig

        rounds = {"n_estimators": self.quick.lightgbm_rounds} if self.quick else {}
        return LightGBMConfig(seed=self.seed, threads=self.threads, **rounds)


@dataclasses.dataclass(frozen=True)
class TransferCell:
    """One unit of work: ``method`` for ``target`` at ``fraction`` (None for zero-shot and lookup)."""

    target: str
    method: str
    fraction: float | None
    settings: dict[str, Any]

    def key(self, data_id: dict[str, Any]) -> str:
        text = json.dumps({"target": self.target, "method": self.method, "fraction": self.fraction,
                           "settings": self.settings, "data": data_id}, sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        where = "" if self.fraction is None else f" at {100 * self.fraction:g} %"
        return f"{self.target}: {self.method}{where}"


# ---------------------------------------------------------------- data and splits


def load_transfer_data(dataset: str | os.PathLike[str], quick: QuickTransfer | None) -> RuntimeMatrix:
    """The dataset's runtime matrix; with ``quick``, at most ``problems_per_device`` seeded rows per device.

    Raises:
        InputError: unreadable dataset, or fewer than two devices (nothing to transfer between).
    """
    matrix = load_matrix(dataset)
    if len(matrix.devices) < 2:
        raise InputError(f"{dataset} holds one device ({', '.join(matrix.devices)}); the transfer study needs "
                         "several (merge datasets with `kernelbench merge`)")
    if quick is None:
        return matrix
    device = matrix.problems["device"].to_numpy()
    # One seeded rank per problem_id, shared by the devices: each keeps its lowest-ranked problems, so the
    # subsample keeps the problems the devices have in common in common (what the lookup relies on).
    ids = matrix.problems["problem_id"].to_numpy()
    unique, inverse = np.unique(ids, return_inverse=True)
    rank = np.random.default_rng(quick.seed).permutation(len(unique))[inverse]
    keep = []
    for label in matrix.devices:
        rows = np.flatnonzero(device == label)
        keep.append(rows[np.argsort(rank[rows], kind="stable")[: quick.problems_per_device]])
    rows = np.sort(np.concatenate(keep))
    metadata = {**matrix.metadata, "subsample": {"problems_per_device": quick.problems_per_device, "seed": quick.seed}}
    return dataclasses.replace(matrix.subset(rows), dropped_problems=matrix.dropped_problems, metadata=metadata)


def resolve_targets(matrix: RuntimeMatrix, targets: tuple[str, ...] | None) -> tuple[str, ...]:
    """The dataset's device labels named by ``targets`` (a label, or a descriptor id such as ``gfx90a_110``).

    Raises:
        InputError: a target that is none of the dataset's devices.
    """
    if targets is None:
        return matrix.devices
    from kernelbench.devices import table_id

    out = []
    for name in targets:
        found = [d for d in matrix.devices if d == name or (table_id(d) is not None and table_id(d) == table_id(name))]
        if not found:
            raise InputError(f"--targets {name}: not a device of the dataset; its devices: {', '.join(matrix.devices)}")
        out.extend(d for d in found if d not in out)
    return tuple(out)


@dataclasses.dataclass(frozen=True, eq=False)
class TargetSplits:
    """Row positions of one target: ``zero_shot`` (sources' train / validation, target's test) and
    ``target`` (the target's train / validation / test)."""

    zero_shot: Split
    target: Split


def target_splits(matrix: RuntimeMatrix, target: str, options: TransferOptions) -> TargetSplits:
    """The two splits of ``target`` (see the module docstring).

    Raises:
        InputError: a side would be empty (a device with too few problems).
    """
    device = matrix.problems["device"].to_numpy()
    own, sources = np.flatnonzero(device == target), np.flatnonzero(device != target)
    spec = SplitSpec(fractions=options.split_fractions, seed=options.seed)
    inner = make_split(matrix.problems[own], spec)
    held = SplitSpec(fractions=options.split_fractions, seed=options.seed, hold_out=(("device", (target,)),))
    split = Split(train=own[inner.train], validation=own[inner.validation], test=own[inner.test], spec=held)
    outer = make_split(matrix.problems[sources], SplitSpec(
        fractions=(1 - options.source_validation, options.source_validation, 0.0), seed=options.seed))
    zero = Split(train=sources[outer.train], validation=sources[outer.validation], test=split.test, spec=held)
    return TargetSplits(zero_shot=zero, target=split)


# ---------------------------------------------------------------- cells


def plan(targets: tuple[str, ...], options: TransferOptions, data_id: dict[str, Any], *,
         lightgbm: bool = True) -> list[tuple[str, TransferCell]]:
    """Every cell in run order (per target: zero-shot first, which the fine-tuned cells start from)."""
    common = {"seed": options.seed, "split_fractions": list(options.split_fractions),
              "source_validation": options.source_validation}
    scratch = {k: v for k, v in options.fit_config().as_dict().items() if k != "threads"}
    tune = {k: v for k, v in options.finetune_config().as_dict().items() if k != "threads"}
    boost = {k: v for k, v in dataclasses.asdict(options.lightgbm_config()).items() if k != "threads"}
    boost["derived"] = list(options.fit_config().derived)
    out = []
    for target in targets:
        # The zero-shot model's key (its directory under models/, what fine-tuning starts from) hashes what
        # trains it; the cell's key adds how it is scored.
        zero_key = TransferCell(target, "zero-shot", None, {**common, "fit": scratch}).key(data_id)
        zero = TransferCell(target, "zero-shot", None, {**common, "fit": scratch, "model": zero_key,
                                                        "unseen_device_candidates": UNSEEN_DEVICE_CANDIDATES})
        out.append((zero.key(data_id), zero))
        look = TransferCell(target, "lookup", None, {**common, "distance": "kernelbench.devices.distance",
                                                     "unseen_device_candidates": UNSEEN_DEVICE_CANDIDATES})
        out.append((look.key(data_id), look))
        for fraction in (*options.fractions, 1.0):
            methods = FEW_SHOT_METHODS if fraction < 1 else IN_DEVICE_METHODS
            for method in methods:
                if method == "lightgbm" and not lightgbm:
                    continue
                settings = {"fine-tune": {"fit": tune, "init": zero_key}, "scratch": {"fit": scratch},
                            "lightgbm": {"lightgbm": boost}}[method]
                cell = TransferCell(target, method, fraction, {**common, **settings})
                out.append((cell.key(data_id), cell))
    return out


def _metrics_record(metrics: Any) -> dict[str, Any]:
    return metrics.as_dict()


def _train_zero_shot(directory: Path, matrix: RuntimeMatrix, splits: TargetSplits, options: TransferOptions) -> Any:
    """Train the zero-shot model and save it (as a whole) to ``directory``; returns the FitResult."""
    from reformer.report import save_fit
    from reformer.train import fit

    result = fit(matrix, options.fit_config(), split=splits.zero_shot)
    save_fit(directory, result)
    return result


def _zero_shot_model(report_dir: Path, key: str, matrix: RuntimeMatrix, splits: TargetSplits,
                     options: TransferOptions) -> Any:
    """The zero-shot model of cell ``key`` (a TrainedModel): read back from ``models/<key>``, or trained again
    (and saved) when its directory is missing or damaged."""
    from reformer.store import load_model

    try:
        return load_model(report_dir / MODELS_DIR / key)
    except InputError:
        return _train_zero_shot(report_dir / MODELS_DIR / key, matrix, splits, options).trained


def _zero_shot_record(directory: Path, matrix: RuntimeMatrix, splits: TargetSplits,
                      options: TransferOptions) -> dict[str, Any]:
    """The zero-shot cell's record: its saved model scored on the target's test split (``rescored``), or, when
    ``directory`` holds no complete model, a model trained (and saved) first."""
    from reformer.evaluate import evaluate
    from reformer.selector import Selector
    from reformer.store import load_model

    try:
        trained = load_model(directory)
    except InputError:
        return _fit_record(_train_zero_shot(directory, matrix, splits, options))
    saved = json.loads((directory / "metrics.json").read_text())
    evaluation = evaluate(Selector(trained), matrix.subset(splits.target.test), seed=options.seed)
    return {"metrics": _metrics_record(evaluation.model), "borrowed_share": evaluation.borrowed.share,
            "fit_seconds": saved["fit_seconds"],
            "best_epoch": saved["best_epoch"], "epochs_trained": saved["epochs_trained"],
            "train_problems": len(splits.zero_shot.train), "validation_problems": len(splits.zero_shot.validation),
            "rescored": True}


def _fit_record(result: Any) -> dict[str, Any]:
    test = result.evaluations["test"]
    return {"metrics": _metrics_record(test.model), "borrowed_share": test.borrowed.share,
            "fit_seconds": result.fit_seconds,
            "best_epoch": result.best_epoch, "epochs_trained": len(result.curve),
            "train_problems": len(result.split.train), "validation_problems": len(result.split.validation)}


def compute_cell(cell: TransferCell, key: str, matrix: RuntimeMatrix, splits: TargetSplits, options: TransferOptions,
                 report_dir: Path, zero_key: str) -> dict[str, Any]:
    """Compute one cell (training what it needs) and return its record (not yet stored).

    A cell the data cannot support (e.g. fine-tuning a model whose tokens the target's problems outgrow)
    gets a record with ``error`` (one line) instead of metrics.
    """
    from reformer import baselines
    from reformer.candidates import split_rule
    from reformer.evaluate import score_ranking
    from reformer.lookup import lookup
    from reformer.metrics import static_order
    from reformer.train import fit

    started = time.perf_counter()
    body: dict[str, Any]
    try:
        if cell.method == "zero-shot":
            body = _zero_shot_record(report_dir / MODELS_DIR / zero_key, matrix, splits, options)
        elif cell.method == "lookup":
            sources = np.concatenate([splits.zero_shot.train, splits.zero_shot.validation])
            source, test = matrix.subset(np.sort(sources)), matrix.subset(splits.target.test)
            train, validation = matrix.subset(splits.zero_shot.train), matrix.subset(splits.zero_shot.validation)
            order = static_order(train.time_ms)
            found = lookup(source, test, order)
            rule = split_rule(train, validation)
            metrics, _ = score_ranking(test, lambda side, mask: np.where(mask, found.scores, -np.inf),
                                       order=order, rule=rule)
            body = {"metrics": _metrics_record(metrics), "fit_seconds": 0.0, "coverage": found.coverage,
                    "sources": {d: found.source.count(d) for d in sorted(set(found.source)) if d}}
        else:
            sampled = sample_train(splits.target, fraction=cell.fraction or 1.0, seed=options.seed)
            if cell.method == "lightgbm":
                fitted = baselines.fit_lightgbm(matrix, sampled, options.lightgbm_config(),
                                                derived=options.fit_config().derived)
                train, validation = matrix.subset(sampled.train), matrix.subset(sampled.validation)
                order = static_order(train.time_ms)
                metrics, _ = score_ranking(matrix.subset(sampled.test),
                                           lambda side, mask: fitted.selector.scores(side.columns(), mask),
                                           order=order, rule=split_rule(train, validation))
                body = {"metrics": _metrics_record(metrics), "fit_seconds": fitted.fit_seconds,
                        "train_problems": len(sampled.train)}
            elif cell.method == "scratch":
                body = _fit_record(fit(matrix, options.fit_config(), split=sampled))
            else:
                init = _zero_shot_model(report_dir, zero_key, matrix, splits, options)
                result = fit(matrix, options.finetune_config(), split=sampled, init=init)
                body = {**_fit_record(result), "kept_initial_weights": result.best_epoch == 0}
    except InputError as exc:
        body = {"error": str(exc)}
    return {"key": key, "target": cell.target, "method": cell.method, "fraction": cell.fraction,
            "settings": cell.settings, "split_sizes": splits.target.sizes(), **body,
            "cell_seconds": time.perf_counter() - started, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


@dataclasses.dataclass(frozen=True, eq=False)
class TransferOutcome:
    """A finished (or partly finished) study: ``cells`` in run order, ``records`` by key (finished ones),
    how many were computed / read back, notices, and the content of ``run.json``."""

    cells: list[tuple[str, TransferCell]]
    records: dict[str, dict[str, Any]]
    computed: int
    reused: int
    notices: tuple[str, ...]
    run: dict[str, Any]


def cell_line(cell: TransferCell, record: dict[str, Any]) -> str:
    """The one line printed when a cell finishes."""
    if "error" in record:
        return f"{cell.label}: not computed: {record['error']}"
    m = record["metrics"]
    return (f"{cell.label}: top-1 {m['top1']:.4f}  oracle {m['oracle_ratio']:.4f}  Σ {m['sum_ratio']:.3f}  "
            f"open top-1 {m['open_top1']:.4f}  open oracle {m['open_oracle_ratio']:.4f}  "
            f"[{record['cell_seconds']:.1f} s]")


def run_transfer(dataset: str | os.PathLike[str], report_dir: str | os.PathLike[str], options: TransferOptions, *,
                 progress: bool = True, say: Callable[[str], None] = print, command: str | None = None,
                 compute: bool = True,
                 on_cell: Callable[[str, dict[str, Any]], None] | None = None) -> TransferOutcome:
    """Run (or resume) the study; every finished cell is on disk before the next starts.

    ``compute`` False reads the finished cells back and computes nothing (a report of a study still running).
    ``on_cell(key, record)`` is called after each computed cell is stored.

    Raises:
        InputError: bad dataset, targets or options.  KeyboardInterrupt propagates after finished cells are stored.
    """
    from tqdm.auto import tqdm

    from reformer.baselines import lightgbm_missing

    started = time.perf_counter()
    report_dir = Path(report_dir)
    matrix = load_transfer_data(dataset, options.quick)
    targets = resolve_targets(matrix, options.targets)
    data_id = {"content_sha256": matrix.content_sha256(), "n_problems": matrix.n_problems,
               "subsample": None if options.quick is None else dataclasses.asdict(options.quick)}
    missing = lightgbm_missing()
    notices = (missing,) if missing else ()
    cells = plan(targets, options, data_id, lightgbm=not missing)
    records = {key: rec for key, _ in cells if (rec := read_cell(report_dir, key)) is not None}
    reused = len(records)
    pending = [(key, cell) for key, cell in cells if key not in records] if compute else []
    say(f"{len(cells)} cells for {len(targets)} target(s): {reused} finished earlier, {len(pending)} to compute "
        f"with {options.threads} thread(s)")
    for notice in notices:
        say(notice)
    run: dict[str, Any] = _load_run(report_dir)
    if compute:
        run.update(command=command, dataset={"metadata": matrix.metadata, "n_problems": matrix.n_problems,
                                             "n_kernels": len(matrix.kernels), "devices": list(matrix.devices)},
                   options={"targets": list(targets), "fractions": list(options.fractions), "seed": options.seed,
                            "split_fractions": list(options.split_fractions),
                            "source_validation": options.source_validation,
                            "finetune_lr": options.finetune_config().lr, "threads": options.threads,
                            "quick": None if options.quick is None else dataclasses.asdict(options.quick),
                            "fit": options.fit_config().as_dict()},
                   environment=environment())
    splits: dict[str, TargetSplits] = {}
    zero_keys = {cell.target: cell.settings["model"] for _, cell in cells if cell.method == "zero-shot"}
    computed = 0
    invocation: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if compute:
        run.setdefault("invocations", []).append(invocation)
    bar = tqdm(total=len(pending), unit="cell", disable=not progress or not pending, desc="transfer",
               dynamic_ncols=True)

    def checkpoint(*, ended: bool) -> None:
        if compute:
            invocation.update(wall_seconds=time.perf_counter() - started, computed=computed, reused=reused,
                              complete=len(records) == len(cells), ended=ended)
            write_json(report_dir / RUN_FILE, run)

    try:
        checkpoint(ended=False)
        for key, cell in pending:
            if cell.target not in splits:
                splits[cell.target] = target_splits(matrix, cell.target, options)
            record = compute_cell(cell, key, matrix, splits[cell.target], options, report_dir, zero_keys[cell.target])
            write_json(cell_path(report_dir, key), record)
            records[key] = record
            computed += 1
            checkpoint(ended=False)
            bar.update()
            (bar.write if progress else say)(cell_line(cell, record))
            if on_cell is not None:
                on_cell(key, record)
    finally:
        bar.close()
        checkpoint(ended=True)
    return TransferOutcome(cells=cells, records=records, computed=computed, reused=reused, notices=notices, run=run)


def _load_run(report_dir: Path) -> dict[str, Any]:
    try:
        run = json.loads((report_dir / RUN_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return run if isinstance(run, dict) else {}
