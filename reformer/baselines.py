"""Learned baselines beside Reformer: a LightGBM classifier and a TunaNet-shaped MLP, plus the static order.

Both learned baselines read the same *flat* features: the problem's tokens of
:class:`reformer.features.FeatureEncoder` laid side by side (categorical
tokens one-hot, numeric tokens standardised ``log2(1 + x)`` with training-split
statistics), and learn one-hot labels (the fastest kernel of each training
problem).  Every selector here has the same two paths:

* ``scores(columns, applicable)``: batched, problems given as numpy columns
  (``RuntimeMatrix.columns()``); higher is better, non-applicable kernels get
  ``-inf`` so ``argmax`` is always an applicable kernel;
* ``select_one(problem_row, applicable=None)``: one problem given as a mapping
  of dataset column names (``ConvProblem.as_row()`` or a matrix row), encoded
  with plain Python and numpy, no polars; this is what single-problem
  latency benchmarks time.

LightGBM is an optional dependency (``pip install -e ".[lightgbm]"``);
:func:`lightgbm_missing` says why it cannot be used, and :func:`fit_lightgbm`
raises :class:`BaselineUnavailable` without it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from kernelbench.devices import DeviceDescriptor
from reformer.data import RuntimeMatrix
from reformer.device_features import dataset_descriptors
from reformer.features import DERIVED_TOKENS, FIELD_TOKENS, FeatureEncoder, derived_values
from reformer.candidates import split_rule
from reformer.config import MEMBERSHIP_TERM, MEMBERSHIP_WEIGHT
from reformer.metrics import argmax_applicable, oracle_picks, ranking_metrics, selection_metrics, static_order
from reformer.model import membership_scores, soft_cross_entropy
from reformer.splits import Split
from reformer.threads import torch_threads
from reformer.train import EpochRecord, LoopOptions, one_cycle, train_loop

LEARNED_BASELINES = ("lightgbm", "mlp")


class BaselineUnavailable(RuntimeError):
    """An optional dependency of a baseline is not installed; the message says how to install it."""


def lightgbm_missing() -> str | None:
    """``None`` when LightGBM can be imported, else a one-line notice saying how to install it."""
    try:
        import lightgbm  # noqa: F401
    except ImportError as exc:
        return f"LightGBM baseline skipped: lightgbm is not installed ({exc}); pip install -e \".[lightgbm]\""
    return None


class KernelSelector(Protocol):
    """What the ablation and the benchmarks need from a baseline selector."""

    name: str
    kernels: tuple[str, ...]

    def scores(self, columns: Mapping[str, np.ndarray], applicable: np.ndarray) -> np.ndarray: ...

    def select_one(self, problem_row: Mapping[str, Any], applicable: np.ndarray | None = None) -> str: ...


# ---------------------------------------------------------------- flat features


class FlatFeatures:
    """A :class:`FeatureEncoder`'s tokens as one float32 vector per problem.

    Layout: for each categorical token, ``len(vocabulary) + 1`` one-hot slots
    (slot 0 = a value unseen in training); then one slot per numeric token.
    """

    def __init__(self, encoder: FeatureEncoder) -> None:
        self.encoder = encoder
        # Precomputed once: encode_one runs per call and must stay cheap.
        self._offsets = np.concatenate([[0], np.cumsum(encoder.n_categories)]).astype(np.int64)
        self._ids = [{value: i + 1 for i, value in enumerate(v)} for v in encoder.vocabularies]
        self._derived = any(n in DERIVED_TOKENS for n in encoder.numeric)
        self._mean = np.asarray(encoder.mean, dtype=np.float64)
        self._std = np.asarray(encoder.std, dtype=np.float64)

    @classmethod
    def fit(cls, columns: Mapping[str, np.ndarray], *, derived: Sequence[str] = DERIVED_TOKENS,
            descriptors: Mapping[str, DeviceDescriptor] | None = None) -> FlatFeatures:
        """Vocabularies and normalisation from the training problems' ``columns`` (with the device tokens of
        :meth:`FeatureEncoder.fit` when they span several devices, described by ``descriptors`` or the table)."""
        return cls(FeatureEncoder.fit(columns, derived=derived, descriptors=descriptors))

    @property
    def width(self) -> int:
        return int(self._offsets[-1]) + len(self.encoder.numeric)

    def encode(self, columns: Mapping[str, Any]) -> np.ndarray:
        """float32 ``[n, width]`` for problems given as columns."""
        encoded = self.encoder.encode(columns)
        n = len(encoded)
        out = np.zeros((n, self.width), dtype=np.float32)
        for j in range(encoded.categorical.shape[1]):
            out[np.arange(n), self._offsets[j] + encoded.categorical[:, j]] = 1.0
        out[:, self._offsets[-1] :] = encoded.numeric
        return out

    def encode_one(self, row: Mapping[str, Any]) -> np.ndarray:
        """float32 ``[width]`` for one problem given by its dataset columns (no polars, no batching; with
        ``device`` when the encoder has device tokens, which take the batch encoder's path).

        Raises:
            InputError: the encoder reads the device and the row has none, or it has no descriptor.
        """
        if self.encoder.device_tokens:
            return self.encode({k: [v] for k, v in row.items()})[0]
        out = np.zeros(self.width, dtype=np.float32)
        for j, name in enumerate(self.encoder.categorical):
            out[self._offsets[j] + self._ids[j].get(str(row[name]), 0)] = 1.0
        # derived_values on scalars returns 0-d or 1-element arrays; ravel takes the one value either way.
        extra = {k: np.ravel(v)[0] for k, v in derived_values(row).items()} if self._derived else {}
        raw = [float(row[name]) if name in FIELD_TOKENS else float(extra[name]) for name in self.encoder.numeric]
        out[self._offsets[-1] :] = (np.log2(1.0 + np.asarray(raw)) - self._mean) / self._std
        return out


def _mask_row(applicable: np.ndarray | None, n_kernels: int) -> np.ndarray:
    return np.ones(n_kernels, dtype=bool) if applicable is None else np.asarray(applicable, dtype=bool)


# ---------------------------------------------------------------- static order


@dataclasses.dataclass(frozen=True, eq=False)
class StaticSelector:
    """The first applicable kernel of a fixed order (kernels by training-split wins)."""

    kernels: tuple[str, ...]
    order: np.ndarray
    name: str = "static"

    @classmethod
    def fit(cls, matrix: RuntimeMatrix, split: Split) -> StaticSelector:
        return cls(kernels=matrix.kernels, order=static_order(matrix.time_ms[split.train]))

    def scores(self, columns: Mapping[str, np.ndarray], applicable: np.ndarray) -> np.ndarray:
        rank = np.empty(len(self.kernels))
        rank[self.order] = -np.arange(len(self.kernels), dtype=np.float64)
        return np.where(applicable, rank, -np.inf)

    def select_one(self, problem_row: Mapping[str, Any], applicable: np.ndarray | None = None) -> str:
        mask = _mask_row(applicable, len(self.kernels))
        return next(self.kernels[j] for j in self.order if mask[j])


# ---------------------------------------------------------------- MLP (TunaNet-shaped)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MLPConfig:
    """The MLP baseline: dense + ReLU layers of widths ``hidden``, one logit per kernel.

    Trained like Reformer (AdamW, one-cycle schedule, the same loss over the same
    candidates, see ``FitConfig.candidates``) but on one-hot labels; the epoch
    with the best validation geomean oracle ratio (of the protocol it is
    trained for) is kept.
    """

    hidden: tuple[int, ...] = (256, 256, 128)
    epochs: int = 20
    batch_size: int = 512
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 1
    candidates: str = "context"
    membership_weight: float = MEMBERSHIP_WEIGHT
    membership_term: str = MEMBERSHIP_TERM
    membership_head: bool = False


class MLPNet(nn.Module):
    """Flat features -> (Linear, ReLU) x len(hidden) -> Linear to one logit per kernel (two with
    ``membership_head``: z, then u; see :func:`reformer.model.membership_scores`)."""

    def __init__(self, n_features: int, n_kernels: int, hidden: Sequence[int], *, membership_head: bool = False) -> None:
        super().__init__()
        self.membership_head = membership_head
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 2 * n_kernels if membership_head else n_kernels))
        self.net = nn.Sequential(*layers)

    def scores_and_membership(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scores [B, K] and the membership logits u [B, K] (None without the membership head)."""
        raw = self.net(x)
        if not self.membership_head:
            return raw, None
        z, u = raw.chunk(2, dim=-1)
        return membership_scores(z, u), u

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores [B, K] (the ranking rule of :class:`reformer.model.Reformer`)."""
        return self.scores_and_membership(x)[0]


@dataclasses.dataclass(frozen=True, eq=False)
class MLPSelector:
    """A trained :class:`MLPNet` with its features (eval mode, no autograd at inference)."""

    features: FlatFeatures
    net: MLPNet
    kernels: tuple[str, ...]
    name: str = "mlp"

    def scores(self, columns: Mapping[str, np.ndarray], applicable: np.ndarray) -> np.ndarray:
        """Logits float ``[n, n_kernels]``, ``-inf`` where not applicable."""
        x = torch.from_numpy(self.features.encode(columns))
        with torch.inference_mode():
            logits = torch.cat([self.net(x[i : i + 8192]) for i in range(0, len(x), 8192)]).numpy()
        return np.where(applicable, logits, -np.inf)

    def select_one(self, problem_row: Mapping[str, Any], applicable: np.ndarray | None = None) -> str:
        x = torch.from_numpy(self.features.encode_one(problem_row)).unsqueeze(0)
        with torch.inference_mode():
            logits = self.net(x)[0].numpy()
        mask = _mask_row(applicable, len(self.kernels))
        return self.kernels[int(np.argmax(np.where(mask, logits, -np.inf)))]


# ---------------------------------------------------------------- LightGBM


@dataclasses.dataclass(frozen=True, kw_only=True)
class LightGBMConfig:
    """The gradient-boosted-tree baseline: a multiclass LightGBM over the kernels that win in training.

    ``n_estimators`` is an upper bound: boosting stops after
    ``early_stopping_rounds`` rounds without a better validation log-loss.
    ``lambda_l2`` and ``min_sum_hessian_in_leaf`` keep rare classes from
    diverging: with LightGBM's defaults (0 and 1e-3) the MI100 validation
    log-loss rose from 1.8 after 3 rounds to 23.6 after 30 (top-1 error
    0.19 -> 0.71); with these values it fell to 0.34 after 45 rounds (error 0.126).
    """

    n_estimators: int = 300
    learning_rate: float = 0.1
    num_leaves: int = 31
    min_child_samples: int = 20
    lambda_l2: float = 1.0
    min_sum_hessian_in_leaf: float = 0.1
    early_stopping_rounds: int = 20
    seed: int = 0
    threads: int = 1


@dataclasses.dataclass(frozen=True, eq=False)
class LightGBMSelector:
    """A trained LightGBM booster.

    ``classes[c]`` is the kernel column of booster class ``c``.  Kernels that
    never won a training problem have no class; they score below every class
    (in static order among themselves) so that a problem whose applicable
    kernels never won still gets an applicable pick.
    """

    features: FlatFeatures
    booster: Any
    classes: np.ndarray
    fallback: np.ndarray
    kernels: tuple[str, ...]
    name: str = "lightgbm"

    def _full(self, probabilities: np.ndarray) -> np.ndarray:
        out = np.broadcast_to(self.fallback, (probabilities.shape[0], len(self.kernels))).copy()
        out[:, self.classes] = probabilities
        return out

    def scores(self, columns: Mapping[str, np.ndarray], applicable: np.ndarray) -> np.ndarray:
        """Class probabilities (``[n, n_kernels]``; never-winning kernels < 0), ``-inf`` where not applicable."""
        probabilities = self.booster.predict(self.features.encode(columns))
        return np.where(applicable, self._full(np.asarray(probabilities).reshape(-1, len(self.classes))), -np.inf)

    def select_one(self, problem_row: Mapping[str, Any], applicable: np.ndarray | None = None) -> str:
        # One row gains nothing from OpenMP threads; starting them costs more than the trees.
        probabilities = self.booster.predict(self.features.encode_one(problem_row)[None, :], num_threads=1)
        scores = self._full(np.asarray(probabilities).reshape(1, -1))[0]
        mask = _mask_row(applicable, len(self.kernels))
        return self.kernels[int(np.argmax(np.where(mask, scores, -np.inf)))]


# ---------------------------------------------------------------- fitting


@dataclasses.dataclass(frozen=True, eq=False)
class BaselineFit:
    """A fitted baseline: the selector, its training wall time (s, features included) and its curve."""

    selector: KernelSelector
    fit_seconds: float
    curve: tuple[EpochRecord, ...] = ()


def _train_validation(matrix: RuntimeMatrix, split: Split) -> tuple[RuntimeMatrix, RuntimeMatrix]:
    return matrix.subset(split.train), matrix.subset(split.validation)


def fit_mlp(matrix: RuntimeMatrix, split: Split, config: MLPConfig | None = None, *,
            derived: Sequence[str] = DERIVED_TOKENS) -> BaselineFit:
    """Train the MLP baseline on ``split.train`` with one-hot labels; keep the best validation epoch.

    With ``config.candidates == "context"`` its softmax is normalised over each problem's candidates, as
    Reformer's is (same loss, same candidate rule), and early stopping follows the open protocol.
    Runs with ``config.threads`` torch threads and restores the caller's count on return.
    """
    config = config if config is not None else MLPConfig()
    with torch_threads(config.threads):
        return _fit_mlp(matrix, split, config, derived=derived)


def _fit_mlp(matrix: RuntimeMatrix, split: Split, config: MLPConfig, *, derived: Sequence[str]) -> BaselineFit:
    torch.manual_seed(config.seed)
    started = time.perf_counter()
    train, validation = _train_validation(matrix, split)
    features = FlatFeatures.fit(train.columns(), derived=derived, descriptors=dataset_descriptors(matrix.metadata))
    x = torch.from_numpy(features.encode(train.columns()))
    measured = torch.from_numpy(np.ascontiguousarray(train.applicable))
    target = torch.nn.functional.one_hot(torch.from_numpy(oracle_picks(train.time_ms)), len(matrix.kernels)).float()
    val_x = torch.from_numpy(features.encode(validation.columns()))
    val_oracle = oracle_picks(validation.time_ms)
    open_training = config.candidates == "context"
    rule = split_rule(train, validation) if open_training else None
    candidates = torch.from_numpy(rule.masks(train.columns(), matrix.kernels)[0] | train.applicable) if rule else None
    val_candidates = rule.masks(validation.columns(), matrix.kernels)[0] if rule else None

    net = MLPNet(features.width, len(matrix.kernels), config.hidden,
                 membership_head=config.membership_head and open_training)
    n = len(x)
    batches = (n + config.batch_size - 1) // config.batch_size
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = one_cycle(optimizer, max_lr=config.lr, steps=config.epochs * batches)

    def batch_loss(rows: torch.Tensor) -> torch.Tensor:
        scores, membership = net.scores_and_membership(x[rows])
        return soft_cross_entropy(scores, target[rows], measured[rows],
                                  candidates=None if candidates is None else candidates[rows],
                                  membership_weight=config.membership_weight,
                                  membership_term=config.membership_term, membership=membership)

    def validate() -> tuple[float, float]:
        with torch.inference_mode():
            logits = net(val_x).numpy()
        if val_candidates is None:
            val = selection_metrics(validation.time_ms, argmax_applicable(logits, validation.applicable), val_oracle)
            return val.top1, val.oracle_ratio
        val_open = ranking_metrics(validation.time_ms, np.where(val_candidates, logits, -np.inf), open_protocol=True)
        return val_open["open_top1"], val_open["open_oracle_ratio"]

    curve, _ = train_loop(net, batch_loss=batch_loss, validate=validate, optimizer=optimizer, scheduler=scheduler,
                          started=started, options=LoopOptions(n=n, epochs=config.epochs,
                                                               batch_size=config.batch_size, seed=config.seed))
    selector = MLPSelector(features=features, net=net, kernels=matrix.kernels)
    return BaselineFit(selector=selector, fit_seconds=time.perf_counter() - started, curve=curve)


def fit_lightgbm(matrix: RuntimeMatrix, split: Split, config: LightGBMConfig | None = None, *,
                 derived: Sequence[str] = DERIVED_TOKENS) -> BaselineFit:
    """Train the LightGBM baseline on ``split.train`` (one class per kernel that wins a training problem).

    Raises:
        BaselineUnavailable: lightgbm is not installed.
    """
    config = config if config is not None else LightGBMConfig()
    started = time.perf_counter()
    train, validation = _train_validation(matrix, split)
    features = FlatFeatures.fit(train.columns(), derived=derived, descriptors=dataset_descriptors(matrix.metadata))
    booster, classes = boost_winners(features.encode(train.columns()), train.time_ms,
                                     features.encode(validation.columns()), validation.time_ms, config)
    selector = LightGBMSelector(features=features, booster=booster, classes=classes, fallback=_fallback(train.time_ms),
                                kernels=matrix.kernels)
    return BaselineFit(selector=selector, fit_seconds=time.perf_counter() - started)


def boost_winners(train_x: np.ndarray, train_time_ms: np.ndarray, validation_x: np.ndarray,
                  validation_time_ms: np.ndarray, config: LightGBMConfig) -> tuple[Any, np.ndarray]:
    """The baseline's booster on any feature matrix: multiclass over the kernels that win a training problem,
    early-stopped on the validation log-loss (validation problems won by a kernel without a class left out).

    Args:
        train_x, validation_x: float features ``[n, width]`` of the training and validation problems.
        train_time_ms, validation_time_ms: their runtimes ``[n, n_kernels]`` in ms (NaN = not measured).
        config: the booster's settings.

    Returns:
        ``(booster, classes)``: ``booster.predict(x)`` gives ``[n, len(classes)]`` probabilities, ``classes[c]``
        the kernel column of class ``c``.

    Raises:
        BaselineUnavailable: lightgbm is not installed.
    """
    missing = lightgbm_missing()
    if missing:
        raise BaselineUnavailable(missing)
    import lightgbm

    winners = oracle_picks(train_time_ms)
    classes = np.unique(winners)
    if len(classes) == 1:
        # One kernel wins every training problem: nothing to boost, the classifier is a constant.
        return _Constant(), classes
    label_of = np.full(train_time_ms.shape[1], -1, dtype=np.int64)
    label_of[classes] = np.arange(len(classes))
    val_labels = label_of[oracle_picks(validation_time_ms)]
    # Validation problems won by a kernel with no class cannot be scored by the log-loss.
    keep = val_labels >= 0
    binary = len(classes) == 2
    params = {
        "objective": "binary" if binary else "multiclass",
        **({} if binary else {"num_class": len(classes)}),
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "min_data_in_leaf": config.min_child_samples,
        "lambda_l2": config.lambda_l2,
        "min_sum_hessian_in_leaf": config.min_sum_hessian_in_leaf,
        "seed": config.seed,
        "num_threads": config.threads,
        "deterministic": True,
        "force_row_wise": True,
        "verbose": -1,
    }
    train_set = lightgbm.Dataset(train_x, label=label_of[winners], free_raw_data=True)
    valid_sets, callbacks = [], []
    if keep.any():
        valid_sets = [train_set.create_valid(validation_x[keep], label=val_labels[keep])]
        callbacks = [lightgbm.early_stopping(config.early_stopping_rounds, verbose=False)]
    booster = lightgbm.train(params, train_set, num_boost_round=config.n_estimators, valid_sets=valid_sets,
                             callbacks=callbacks)
    return (_BinaryAsTwoClass(booster) if binary else booster), classes


def _fallback(train_time_ms: np.ndarray) -> np.ndarray:
    """Scores of kernels without a class: below every probability, in static order among themselves."""
    order = static_order(train_time_ms)
    fallback = np.zeros(train_time_ms.shape[1])
    fallback[order] = -1.0 - np.arange(len(order))
    return fallback


class _Constant:
    """A one-class "booster": probability 1 for its only class."""

    def predict(self, x: np.ndarray, **kwargs: Any) -> np.ndarray:
        return np.ones((len(x), 1))


class _BinaryAsTwoClass:
    """A binary booster's ``predict`` as two class probabilities (LightGBM returns only P(class 1))."""

    def __init__(self, booster: Any) -> None:
        self.booster = booster

    def predict(self, x: np.ndarray, **kwargs: Any) -> np.ndarray:
        p = np.asarray(self.booster.predict(x, **kwargs)).reshape(-1, 1)
        return np.concatenate([1.0 - p, p], axis=1)
