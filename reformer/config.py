"""Options of ``reformer fit`` as one frozen, keyword-only dataclass (no torch import, so the CLI stays fast).

The defaults here are the CLI's defaults; ``reformer ablate`` builds variants
with :func:`dataclasses.replace`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from kernelbench.errors import InputError
from reformer.features import DERIVED_TOKENS
from reformer.labels import LABELS
from reformer.splits import SplitSpec

SCHEDULES = ("onecycle", "cosine", "constant")
BLOCKS = ("gamma", "transformer")
PATHS = ("both", "affine", "nonlinear")
ACTIVATIONS = ("gelu", "relu", "silu", "tanh")
PRECISIONS = ("float32", "bfloat16")
#: What a training problem's softmax is normalised over: its measured kernels only (the closed protocol, the
#: paper's), or every candidate of its context (reformer.candidates), which also pushes the unmeasured ones down.
CANDIDATES = ("context", "measured")


@dataclasses.dataclass(frozen=True, kw_only=True)
class FitConfig:
    """Every option of ``reformer fit``; the defaults are the CLI's defaults.

    Attributes (units in names): label formulation and sharpness; ``candidates``: the training softmax is
    normalised over the measured kernels (``measured``) or over the problem's candidates (``context``, with
    the membership term weighted by ``membership_weight``, see :func:`reformer.model.soft_cross_entropy`); ``time_weight`` α weights each
    training problem's loss by ``t_best^α`` (normalised to mean 1; 0 = unweighted); architecture;
    ``derived`` extra tokens; ``device_tokens``: tokens describing the device (:mod:`reformer.device_features`)
    when the training problems span several devices; ``exact_values`` (per integer token, how many of its most
    frequent values get an embedding of their own; 0 = off); optimisation (``lr`` is the peak rate of the
    schedule); ``min_steps`` raises the number of epochs on small datasets so that at
    least that many optimiser steps are taken; ``patience`` epochs without a better validation geomean oracle
    ratio stop training (0 = never); ``train_noise_sigma`` multiplies training
    runtimes by log-normal noise (validation and test stay clean).
    """

    labels: str = "ratio"
    candidates: str = "context"
    membership_weight: float = 0.3
    softmax_tau_ms: float = 1.0
    ratio_power: float = 4.0
    time_weight: float = 0.0
    dim: int = 64
    blocks: int = 3
    block: str = "gamma"
    paths: str = "both"
    activation: str = "gelu"
    derived: tuple[str, ...] = DERIVED_TOKENS
    device_tokens: bool = True
    exact_values: int = 128
    epochs: int = 15
    min_steps: int = 500
    batch_size: int = 512
    lr: float = 5e-3
    weight_decay: float = 0.01
    schedule: str = "onecycle"
    patience: int = 0
    seed: int = 0
    threads: int = 2
    split: SplitSpec = dataclasses.field(default_factory=SplitSpec)
    train_noise_sigma: float = 0.0
    precision: str = "float32"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.labels not in LABELS:
            raise InputError(f"--labels {self.labels!r} is unknown; use one of {', '.join(LABELS)}")
        if self.candidates not in CANDIDATES:
            raise InputError(f"--candidates {self.candidates!r} is unknown; use one of {', '.join(CANDIDATES)}")
        if self.membership_weight < 0:
            raise InputError(f"--membership-weight must be >= 0, got {self.membership_weight}")
        if self.schedule not in SCHEDULES:
            raise InputError(f"--schedule {self.schedule!r} is unknown; use one of {', '.join(SCHEDULES)}")
        for name in ("epochs", "batch_size", "threads"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name, allowed in (("block", BLOCKS), ("paths", PATHS), ("activation", ACTIVATIONS), ("precision", PRECISIONS)):
            if getattr(self, name) not in allowed:
                raise InputError(f"--{name} {getattr(self, name)!r} is unknown; use one of {', '.join(allowed)}")
        unknown = [d for d in self.derived if d not in DERIVED_TOKENS]
        if unknown:
            raise InputError(f"--derived: unknown token(s) {', '.join(unknown)}; known: {', '.join(DERIVED_TOKENS)}")
        if min(self.time_weight, self.weight_decay, self.train_noise_sigma, self.patience, self.min_steps, self.exact_values) < 0:
            raise InputError("--time-weight, --weight-decay, --patience, --min-steps, --exact-values and --train-noise must be >= 0")
        if self.lr <= 0 or self.softmax_tau_ms <= 0 or self.ratio_power <= 0:
            raise InputError("--lr, --softmax-tau and --ratio-power must be > 0")

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["split"] = self.split.as_dict()
        data["derived"] = list(self.derived)
        del data["progress"]
        if self.device_tokens:
            # On one device there are no device tokens whatever the option says: leaving the default out keeps the
            # keys of single-device ablation cells computed before the option existed (docs/results/) valid.
            del data["device_tokens"]
        if self.candidates == "measured":
            # The closed-protocol training computes what models did before these options existed: leaving them
            # out keeps the keys of ablation cells computed then (docs/results/) valid.
            del data["candidates"], data["membership_weight"]
        return data
