"""``fit``: train a Reformer on a runtime matrix and evaluate it on every split.

``fit(matrix, FitConfig(...))`` is what ``reformer fit`` runs and what
ablations call per cell (pass ``split=`` to share one split between cells,
``FitConfig(train_noise_sigma=...)`` to perturb the training runtimes).
Deterministic on the CPU for a given seed and thread count.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from kernelbench.errors import InputError
from reformer.config import FitConfig
from reformer.data import RuntimeMatrix, lognormal_noise
from reformer.evaluate import Evaluation, evaluate
from reformer.features import EncodedProblems, FeatureEncoder
from reformer.labels import targets
from reformer.metrics import argmax_applicable, latency_us, oracle_picks, selection_metrics, static_order
from reformer.model import ModelConfig, Reformer, soft_cross_entropy
from reformer.selector import Selector
from reformer.splits import Split, make_split
from reformer.store import TrainedModel
from reformer.threads import torch_threads


@dataclasses.dataclass(frozen=True)
class EpochRecord:
    """One row of the training curve."""

    epoch: int
    lr: float
    train_loss: float
    validation_top1: float
    validation_oracle_ratio: float
    seconds: float
    problems_per_s: float


@dataclasses.dataclass(frozen=True, eq=False)
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        trained: the model (weights of the best validation epoch) with its encoder and vocabulary.
        split: the split used.
        evaluations: per split name, the model's and the baselines' metrics.
        curve: one record per epoch trained.
        best_epoch: the epoch whose weights were kept (1-based).
        fit_seconds: wall time of encoding and training (not of the final evaluations).
        latency_us: single-problem ``select`` latency ``{"p50", "p99"}`` in µs.
    """

    trained: TrainedModel
    split: Split
    evaluations: dict[str, Evaluation]
    curve: tuple[EpochRecord, ...]
    best_epoch: int
    fit_seconds: float
    latency_us: dict[str, float]

    @property
    def selector(self) -> Selector:
        return Selector(self.trained)

    def metrics_json(self) -> dict[str, Any]:
        """The ``metrics.json`` layout: metric keys per split, ``fit_seconds`` and extras."""
        out: dict[str, Any] = {name: ev.model.as_dict() for name, ev in self.evaluations.items()}
        out["fit_seconds"] = self.fit_seconds
        out["best_epoch"] = self.best_epoch
        out["epochs_trained"] = len(self.curve)
        out["latency_us_p50"] = self.latency_us["p50"]
        out["latency_us_p99"] = self.latency_us["p99"]
        out["baselines_test"] = {name: m.as_dict() for name, m in self.evaluations["test"].baselines.items()}
        return out


def _tensors(encoded: EncodedProblems, applicable: np.ndarray) -> tuple[torch.Tensor, ...]:
    return (
        torch.from_numpy(encoded.categorical),
        torch.from_numpy(encoded.numeric),
        torch.from_numpy(encoded.value_ids),
        torch.from_numpy(np.ascontiguousarray(applicable)),
    )


def one_cycle(optimizer: torch.optim.Optimizer, *, max_lr: float, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """OneCycleLR over ``steps`` optimiser steps with a 25 % warm-up, safe for very short runs.

    OneCycleLR divides by the length of each phase in steps (pct_start · steps - 1, then the rest), so
    runs of a few steps (a tiny sweep, ``--quick`` on a small dataset) get a longer warm-up share, and
    fewer than 3 steps, which cannot have both phases, train at a constant ``max_lr``.
    """
    if steps < 3:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=steps,
                                               pct_start=max(0.25, 2.0 / steps))


def _scheduler(optimizer: torch.optim.Optimizer, config: FitConfig, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    if config.schedule == "onecycle":
        return one_cycle(optimizer, max_lr=config.lr, steps=steps)
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


#: Problems per forward pass when scoring the validation split after every epoch.  Small enough that a
#: chunk's [tokens, chunk, d] activations stay in cache: measured on MI100's 18,361 validation problems
#: (1 thread, d = 64, 36 tokens), 512 scores 19,100 problems/s against 6,700 with 8,192, bit-identical logits.
VALIDATION_CHUNK = 512


def _validation_picks(model: Reformer, inputs: tuple[torch.Tensor, ...], applicable: np.ndarray, *,
                      chunk: int = VALIDATION_CHUNK) -> np.ndarray:
    model.eval()
    with torch.inference_mode():
        logits = torch.cat([model(*(t[i : i + chunk] for t in inputs)) for i in range(0, len(inputs[0]), chunk)])
    model.train()
    return argmax_applicable(logits.numpy(), applicable)


def training_epochs(config: FitConfig, n_train: int) -> int:
    """The epochs :func:`fit` runs on ``n_train`` training problems: ``config.epochs``, or more when a small
    dataset (a quick CPU sweep) would otherwise give the optimiser fewer than ``config.min_steps`` steps."""
    batches = (n_train + config.batch_size - 1) // config.batch_size
    return max(config.epochs, -(-config.min_steps // batches))


def applicable_seen(matrix: RuntimeMatrix) -> dict[str, list[str]]:
    """Per ``direction/dtype`` of the problems, the kernels with a time for at least one of them."""
    keys = [f"{d}/{t}" for d, t in zip(matrix.problems["direction"], matrix.problems["dtype"])]
    seen: dict[str, np.ndarray] = {}
    for key, row in zip(keys, matrix.applicable):
        seen[key] = seen[key] | row if key in seen else row
    return {key: [k for k, hit in zip(matrix.kernels, rows) if hit] for key, rows in sorted(seen.items())}


def fit(matrix: RuntimeMatrix, config: FitConfig | None = None, *, split: Split | None = None) -> FitResult:
    """Train on the train split, early-stop on validation, evaluate on all splits.

    Runs with ``config.threads`` torch threads and restores the caller's count on return.

    Args:
        matrix: the dataset (see :func:`reformer.data.load_matrix`).
        config: options.
        split: a precomputed split of ``matrix`` (default: ``make_split(matrix.problems, config.split)``).

    Raises:
        InputError: invalid options or a split that leaves a side empty.
    """
    config = config if config is not None else FitConfig()
    with torch_threads(config.threads):
        return _fit(matrix, config, split=split)


def _fit(matrix: RuntimeMatrix, config: FitConfig, *, split: Split | None) -> FitResult:
    torch.manual_seed(config.seed)
    split = split if split is not None else make_split(matrix.problems, config.split)
    if len(split.validation) == 0 or len(split.train) == 0:
        raise InputError("fit needs non-empty train and validation splits (validation drives early stopping)")
    started = time.perf_counter()

    train = matrix.subset(split.train)
    validation = matrix.subset(split.validation)
    train_times = lognormal_noise(train.time_ms, sigma=config.train_noise_sigma, seed=config.seed + 1)
    encoder = FeatureEncoder.fit(train.columns(), derived=config.derived, exact_values=config.exact_values)
    model = Reformer(
        ModelConfig(
            n_categories=encoder.n_categories,
            n_numeric=len(encoder.numeric),
            n_values=encoder.n_values if config.exact_values else (),
            n_kernels=len(matrix.kernels),
            dim=config.dim,
            blocks=config.blocks,
            block=config.block,
            paths=config.paths,
            activation=config.activation,
        )
    )
    train_inputs = _tensors(encoder.encode(train.columns()), train.applicable)
    target = torch.from_numpy(
        targets(train_times, kind=config.labels, softmax_tau_ms=config.softmax_tau_ms, ratio_power=config.ratio_power)
    )
    # Problem weights ∝ t_best^α (mean 1): α > 0 spends capacity on the long-running problems that dominate Σ t.
    best_ms = np.nanmin(train_times, axis=1) ** config.time_weight
    weight = torch.from_numpy((best_ms / best_ms.mean()).astype(np.float32))
    val_inputs = _tensors(encoder.encode(validation.columns()), validation.applicable)
    val_oracle = oracle_picks(validation.time_ms)

    n = len(target)
    batches = (n + config.batch_size - 1) // config.batch_size
    epochs = training_epochs(config, n)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = _scheduler(optimizer, config, epochs * batches)
    generator = torch.Generator().manual_seed(config.seed)

    bf16 = config.precision == "bfloat16"
    curve: list[EpochRecord] = []
    best = (-np.inf, 0, copy.deepcopy(model.state_dict()))
    model.train()
    shown: dict[str, str] = {}
    for epoch in range(1, epochs + 1):
        epoch_start = time.perf_counter()
        order = torch.randperm(n, generator=generator)
        total_loss = 0.0
        bar = tqdm(total=batches, desc=f"epoch {epoch}/{epochs}", disable=not config.progress, leave=epochs <= 50,
                   unit="batch", postfix=shown)
        for b in range(batches):
            rows = order[b * config.batch_size : (b + 1) * config.batch_size]
            categorical, numeric, value_ids, applicable = (t[rows] for t in train_inputs)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = model(categorical, numeric, value_ids)
            logits = logits.float()
            loss = soft_cross_entropy(logits, target[rows], applicable, weight[rows] if config.time_weight else None)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.item() * len(rows)
            bar.update()
        train_seconds = time.perf_counter() - epoch_start
        picks = _validation_picks(model, val_inputs, validation.applicable)
        # The static baseline is irrelevant here; the oracle stands in so no extra pass is needed.
        val = selection_metrics(validation.time_ms, picks, val_oracle)
        record = EpochRecord(
            epoch=epoch,
            lr=float(scheduler.get_last_lr()[0]),
            train_loss=total_loss / n,
            validation_top1=val.top1,
            validation_oracle_ratio=val.oracle_ratio,
            seconds=time.perf_counter() - started,
            problems_per_s=n / train_seconds,
        )
        curve.append(record)
        shown = {"loss": f"{record.train_loss:.4f}", "val_top1": f"{val.top1:.4f}", "val_oracle": f"{val.oracle_ratio:.4f}"}
        bar.set_postfix(shown)
        bar.close()
        if val.oracle_ratio > best[0]:
            best = (val.oracle_ratio, epoch, copy.deepcopy(model.state_dict()))
        elif config.patience and epoch - best[1] >= config.patience:
            break
    model.load_state_dict(best[2])
    model.eval()
    fit_seconds = time.perf_counter() - started

    order_names = tuple(matrix.kernels[j] for j in static_order(train.time_ms))
    info = {"fit": config.as_dict(), "split": {**split.spec.as_dict(), "sizes": split.sizes()}}
    info["applicable_seen"] = applicable_seen(train)
    info["dataset"] = {
        "metadata": matrix.metadata,
        "n_problems": matrix.n_problems,
        "dropped_problems": matrix.dropped_problems,
        "n_kernels": len(matrix.kernels),
    }
    trained = TrainedModel(model=model, encoder=encoder, kernels=matrix.kernels, static_order=order_names, info=info)
    selector = Selector(trained)
    evaluations = {name: evaluate(selector, matrix.subset(rows), seed=config.seed) for name, rows in split.sides().items()}
    sample = matrix.subset(split.test[:1] if len(split.test) else split.train[:1]).problems.row(0, named=True)
    sample.pop("network", None)
    latency = latency_us(lambda: selector.select(sample), repeats=100, warmup=10)
    return FitResult(
        trained=trained,
        split=split,
        evaluations=evaluations,
        curve=tuple(curve),
        best_epoch=best[1],
        fit_seconds=fit_seconds,
        latency_us=latency,
    )
