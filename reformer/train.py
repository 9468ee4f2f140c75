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
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from kernelbench.errors import InputError
from reformer.borrowed import fit_measured_orders
from reformer.candidates import split_rule
from reformer.config import FitConfig
from reformer.data import RuntimeMatrix, lognormal_noise
from reformer.device_features import dataset_descriptors
from reformer.evaluate import Evaluation, evaluate
from reformer.features import EncodedProblems, FeatureEncoder
from reformer.finetune import check_token_design, extend_vocabulary, finetune_rule, init_config, initial_model
from reformer.labels import targets
from reformer.metrics import (
    argmax_applicable,
    latency_us,
    oracle_picks,
    ranking_metrics,
    selection_metrics,
    static_order,
)
from reformer.model import ModelConfig, Reformer, soft_cross_entropy
from reformer.selector import Selector
from reformer.splits import Split, make_split, sample_train
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


def _validation_logits(model: Reformer, inputs: tuple[torch.Tensor, ...], *, chunk: int = VALIDATION_CHUNK) -> np.ndarray:
    with torch.inference_mode():
        return torch.cat([model(*(t[i : i + chunk] for t in inputs)) for i in range(0, len(inputs[0]), chunk)]).numpy()


def training_epochs(config: FitConfig, n_train: int) -> int:
    """The epochs :func:`fit` runs on ``n_train`` training problems: ``config.epochs``, or more when a small
    dataset (a quick CPU sweep) would otherwise give the optimiser fewer than ``config.min_steps`` steps, or
    fewer (at least one) when a large one (several devices merged) would take more than ``config.max_steps``
    (0: no cap).  The cap wins over ``min_steps`` when both bind."""
    batches = (n_train + config.batch_size - 1) // config.batch_size
    epochs = max(config.epochs, -(-config.min_steps // batches))
    if config.max_steps and epochs * batches > config.max_steps:
        epochs = max(1, config.max_steps // batches)
    return epochs


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoopOptions:
    """How :func:`train_loop` runs: ``epochs`` over ``n`` problems in shuffled batches of ``batch_size`` (seeded);
    ``patience`` epochs without a better validation score stop it (0: never)."""

    n: int
    epochs: int
    batch_size: int
    seed: int
    patience: int = 0
    progress: bool = False
    #: Score the weights the loop starts from (a fine-tuned model's init) as epoch 0: if no epoch beats
    #: them on validation, they are what the loop leaves.
    keep_initial: bool = False


def train_loop(
    model: torch.nn.Module,
    *,
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    validate: Callable[[], tuple[float, float]],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    options: LoopOptions,
    started: float,
) -> tuple[tuple[EpochRecord, ...], int]:
    """The epoch loop shared by Reformer and the MLP baseline; leaves ``model`` with its best epoch's weights.

    ``batch_loss(rows)`` is the loss of the training problems at positions ``rows``; ``validate()`` returns
    ``(top-1, score)`` on the validation split, and the epoch with the highest score is kept.  ``started`` is
    the ``time.perf_counter()`` the curve's ``seconds`` count from.  Returns the curve and the kept epoch (1-based;
    0: the initial weights, with ``options.keep_initial``).
    """
    n, size = options.n, options.batch_size
    batches = (n + size - 1) // size
    generator = torch.Generator().manual_seed(options.seed)
    curve: list[EpochRecord] = []
    best = (-np.inf, 0, copy.deepcopy(model.state_dict()))
    if options.keep_initial:
        model.eval()
        best = (validate()[1], 0, best[2])
    shown: dict[str, str] = {}
    for epoch in range(1, options.epochs + 1):
        model.train()
        epoch_start = time.perf_counter()
        order = torch.randperm(n, generator=generator)
        total_loss = 0.0
        bar = tqdm(total=batches, desc=f"epoch {epoch}/{options.epochs}", disable=not options.progress,
                   leave=options.epochs <= 50, unit="batch", postfix=shown)
        for b in range(batches):
            rows = order[b * size : (b + 1) * size]
            loss = batch_loss(rows)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.item() * len(rows)
            bar.update()
        train_seconds = time.perf_counter() - epoch_start
        model.eval()
        top1, score = validate()
        record = EpochRecord(epoch=epoch, lr=float(scheduler.get_last_lr()[0]), train_loss=total_loss / n,
                             validation_top1=top1, validation_oracle_ratio=score,
                             seconds=time.perf_counter() - started, problems_per_s=n / train_seconds)
        curve.append(record)
        shown = {"loss": f"{record.train_loss:.4f}", "val_top1": f"{top1:.4f}", "val_oracle": f"{score:.4f}"}
        bar.set_postfix(shown)
        bar.close()
        if score > best[0]:
            best = (score, epoch, copy.deepcopy(model.state_dict()))
        elif options.patience and epoch - best[1] >= options.patience:
            break
    model.load_state_dict(best[2])
    model.eval()
    return tuple(curve), best[1]


def fit(matrix: RuntimeMatrix, config: FitConfig | None = None, *, split: Split | None = None,
        top_ks: tuple[int, ...] = (), init: TrainedModel | None = None) -> FitResult:
    """Train on the train split, early-stop on validation, evaluate on all splits.

    Runs with ``config.threads`` torch threads and restores the caller's count on return.

    Args:
        matrix: the dataset (see :func:`reformer.data.load_matrix`).
        config: options.  With ``config.train_fraction`` / ``train_problems``, training uses a seeded sample
            of the training split (:func:`reformer.splits.sample_train`, seeded by ``config.seed``).
        split: a precomputed split of ``matrix`` (default: ``make_split(matrix.problems, config.split)``).
        top_ks: the k of the top-k metrics of every split's evaluation (both protocols).
        init: fine-tune this model instead of training a new one: start from its weights, keep its
            architecture, feature encoder and kernel vocabulary (kernels it lacks are appended), and keep its
            weights if no epoch beats them on validation (:mod:`reformer.finetune`).  ``init`` is not modified.

    Raises:
        InputError: invalid options, a split that leaves a side empty, a sample size out of range, or
            (``init``) a dataset whose problems vary in a token the model does not have.
    """
    config = config if config is not None else FitConfig()
    with torch_threads(config.threads):
        return _fit(matrix, config, split=split, top_ks=top_ks, init=init)


def _fit(matrix: RuntimeMatrix, config: FitConfig, *, split: Split | None, top_ks: tuple[int, ...],
         init: TrainedModel | None) -> FitResult:
    torch.manual_seed(config.seed)
    split = split if split is not None else make_split(matrix.problems, config.split)
    if len(split.validation) == 0 or len(split.train) == 0:
        raise InputError("fit needs non-empty train and validation splits (validation drives early stopping)")
    n_train_split = len(split.train)
    split = sample_train(split, fraction=config.train_fraction, problems=config.train_problems, seed=config.seed)
    started = time.perf_counter()

    added: tuple[str, ...] = ()
    if init is not None:
        config = init_config(config, init)
        matrix, added = extend_vocabulary(matrix, init)
    train = matrix.subset(split.train)
    validation = matrix.subset(split.validation)
    train_times = lognormal_noise(train.time_ms, sigma=config.train_noise_sigma, seed=config.seed + 1)
    train_columns, validation_columns = train.columns(), validation.columns()
    rule = split_rule(train, validation) if init is None else finetune_rule(init, train, validation)
    if init is not None:
        check_token_design(init, train_columns)
        encoder = init.encoder
        model = initial_model(init, len(added))
    else:
        encoder = FeatureEncoder.fit(train_columns, derived=config.derived, exact_values=config.exact_values,
                                     device_tokens=config.device_tokens,
                                     descriptors=dataset_descriptors(matrix.metadata))
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
                membership_head=config.membership_head and config.candidates == "context",
            )
        )
    categorical, numeric, value_ids, measured = _tensors(encoder.encode(train_columns), train.applicable)
    open_training = config.candidates == "context"
    candidates = torch.from_numpy(rule.masks(train_columns, matrix.kernels)[0] | train.applicable) if open_training else None
    target = torch.from_numpy(
        targets(train_times, kind=config.labels, softmax_tau_ms=config.softmax_tau_ms, ratio_power=config.ratio_power,
                time_rse=train.time_rse)
    )
    # Problem weights ∝ t_best^α (mean 1): α > 0 spends capacity on the long-running problems that dominate Σ t.
    best_ms = np.nanmin(train_times, axis=1) ** config.time_weight
    weight = torch.from_numpy((best_ms / best_ms.mean()).astype(np.float32)) if config.time_weight else None
    val_inputs = _tensors(encoder.encode(validation_columns), validation.applicable)[:3]
    val_candidates = rule.masks(validation_columns, matrix.kernels)[0] if open_training else None
    val_oracle = oracle_picks(validation.time_ms)
    bf16 = config.precision == "bfloat16"

    def batch_loss(rows: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits, membership = model.scores_and_membership(categorical[rows], numeric[rows], value_ids[rows],
                                                             trunk_gradient=config.membership_trunk)
        return soft_cross_entropy(logits.float(), target[rows], measured[rows],
                                  None if weight is None else weight[rows],
                                  candidates=None if candidates is None else candidates[rows],
                                  membership_weight=config.membership_weight,
                                  membership_term=config.membership_term,
                                  membership=None if membership is None else membership.float())

    def validate() -> tuple[float, float]:
        # Early stopping follows the protocol the model is trained for: ranking every candidate (open) or
        # choosing among the measured kernels (closed).
        logits = _validation_logits(model, val_inputs)
        if val_candidates is None:
            val = selection_metrics(validation.time_ms, argmax_applicable(logits, validation.applicable), val_oracle)
            return val.top1, val.oracle_ratio
        val_open = ranking_metrics(validation.time_ms, np.where(val_candidates, logits, -np.inf), open_protocol=True)
        return val_open["open_top1"], val_open["open_oracle_ratio"]

    n = len(target)
    epochs = training_epochs(config, n)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = _scheduler(optimizer, config, epochs * ((n + config.batch_size - 1) // config.batch_size))
    curve, best_epoch = train_loop(model, batch_loss=batch_loss, validate=validate, optimizer=optimizer,
                                   scheduler=scheduler, started=started,
                                   options=LoopOptions(n=n, epochs=epochs, batch_size=config.batch_size,
                                                       seed=config.seed, patience=config.patience,
                                                       progress=config.progress, keep_initial=init is not None))
    fit_seconds = time.perf_counter() - started

    order_names = tuple(matrix.kernels[j] for j in static_order(train.time_ms))
    info = {"fit": config.as_dict(), "split": {**split.spec.as_dict(), "sizes": split.sizes()}}
    info["candidates"] = rule.to_json()
    info["devices"] = list(train.devices)
    if len(split.train) < n_train_split:
        info["train_sample"] = {"problems": len(split.train), "of": n_train_split, "seed": config.seed}
    if init is not None:
        source = init.info.get("dataset") or {}
        info["init"] = {"dataset": (source.get("metadata") or {}).get("path"),
                        "dataset_sha256": (source.get("metadata") or {}).get("sha256"),
                        "devices": init.info.get("devices") or (init.info.get("candidates") or {}).get("devices"),
                        "added_kernels": list(added), "kept_initial_weights": best_epoch == 0}
    info["dataset"] = {
        "metadata": matrix.metadata,
        "n_problems": matrix.n_problems,
        "dropped_problems": matrix.dropped_problems,
        "n_kernels": len(matrix.kernels),
    }
    measured = fit_measured_orders(matrix.problems["problem_id"].to_list(), matrix.problems["device"].to_list(),
                                   matrix.time_ms, training_devices=train.devices,
                                   described=dataset_descriptors(matrix.metadata),
                                   init=None if init is None else init.measured)
    trained = TrainedModel(model=model, encoder=encoder, kernels=matrix.kernels, static_order=order_names, info=info,
                           measured=measured)
    selector = Selector(trained)
    evaluations = {name: evaluate(selector, matrix.subset(rows), seed=config.seed, top_ks=top_ks)
                   for name, rows in split.sides().items()}
    at = int(split.test[0] if len(split.test) else split.train[0])
    sample, device = matrix.problem_row(at), matrix.problems["device"][at]
    latency = latency_us(lambda: selector.select(sample, device=device), repeats=100, warmup=10)
    return FitResult(
        trained=trained,
        split=split,
        evaluations=evaluations,
        curve=curve,
        best_epoch=best_epoch,
        fit_seconds=fit_seconds,
        latency_us=latency,
    )
