"""Options of ``reformer fit`` as one frozen, keyword-only dataclass (no torch import, so the CLI stays fast).

The defaults here are the CLI's defaults; ``reformer ablate`` builds variants
with :func:`dataclasses.replace`.
"""

from __future__ import annotations

import dataclasses
import math
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
#: The default cap on optimiser steps.  MI100's defaults take 4,305 (146,888 training problems, 287 batches of 512,
#: 15 epochs: 285 s at 2 threads on a quiet machine, docs/reformer.md), which the cap leaves as they are; the
#: five-device dataset (344,730 training problems) trains 11 epochs (7,414 steps) instead of 15 (10,110): about
#: 8 minutes of steps at MI100's step time, against a 20-minute budget on 2 cores (docs/transfer.md).
DEFAULT_MAX_STEPS = 8000
#: The few-shot shares of a target device's training split in ``reformer transfer`` (reformer.transfer).
TRANSFER_FRACTIONS = (0.01, 0.05, 0.1, 0.25)


#: The membership term's forms (``--membership-term``, :func:`reformer.model.soft_cross_entropy`): ``set`` is
#: -log P(measured set) under the softmax over the candidates, ``pick`` the best measured logit against the
#: unmeasured candidates.
MEMBERSHIP_TERMS = ("set", "pick")
#: The membership term's form and weight λ (``--membership-term``, ``--membership-weight``), shared by Reformer
#: and the MLP baseline so that both are trained the same way; chosen on MI100's validation split with
#: ``ratio_power`` 8 (docs/reformer.md; ``pick`` is not the default: see "The pick term" there).
MEMBERSHIP_TERM = "set"
MEMBERSHIP_WEIGHT = 0.5


@dataclasses.dataclass(frozen=True, kw_only=True)
class FitConfig:
    """Every option of ``reformer fit``; the defaults are the CLI's defaults.

    Attributes (units in names): label formulation and sharpness; ``candidates``: the training softmax is
    normalised over the measured kernels (``measured``) or over the problem's candidates (``context``, with
    the membership term weighted by ``membership_weight``, in the form ``membership_term`` (``set`` or ``pick``,
    see :func:`reformer.model.soft_cross_entropy`; the membership head has terms of its own and ignores it));
    ``membership_head`` (with ``context`` only): a second logit u per kernel, trained by binary cross-entropy
    over the candidates to say whether the kernel was measured, and the score ``z + log σ(u)`` (see
    :mod:`reformer.model`), so the membership term no longer bends the ranking logits; ``membership_trunk``: its
    losses also train the shared layers (False: only the head, which reads the ranking features); ``time_weight`` α weights each
    training problem's loss by ``t_best^α`` (normalised to mean 1; 0 = unweighted); architecture;
    ``derived`` extra tokens; ``device_tokens``: tokens describing the device (:mod:`reformer.device_features`)
    when the training problems span several devices; ``exact_values`` (per integer token, how many of its most
    frequent values get an embedding of their own; 0 = off); optimisation (``lr`` is the peak rate of the
    schedule); ``min_steps`` raises the number of epochs on small datasets so that at
    least that many optimiser steps are taken; ``max_steps`` lowers it on large datasets so that at most
    that many are taken (at least one epoch; 0 = no cap; see :func:`reformer.train.training_epochs`);
    ``train_fraction`` / ``train_problems`` train on a seeded sample of the training split (that share of its
    problems, or that many; validation and test unchanged; :func:`reformer.splits.sample_train`), to
    simulate a device with only a few measured problems; ``patience`` epochs without a better validation geomean oracle
    ratio stop training (0 = never); ``train_noise_sigma`` multiplies training
    runtimes by log-normal noise (validation and test stay clean).
    """

    labels: str = "ratio"
    candidates: str = "context"
    membership_weight: float = MEMBERSHIP_WEIGHT
    membership_term: str = MEMBERSHIP_TERM
    membership_head: bool = False
    membership_trunk: bool = True
    softmax_tau_ms: float = 1.0
    ratio_power: float = 8.0
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
    max_steps: int = DEFAULT_MAX_STEPS
    batch_size: int = 512
    lr: float = 5e-3
    weight_decay: float = 0.01
    schedule: str = "onecycle"
    patience: int = 0
    seed: int = 0
    threads: int = 2
    split: SplitSpec = dataclasses.field(default_factory=SplitSpec)
    train_noise_sigma: float = 0.0
    train_fraction: float = 1.0
    train_problems: int | None = None
    precision: str = "float32"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.labels not in LABELS:
            raise InputError(f"--labels {self.labels!r} is unknown; use one of {', '.join(LABELS)}")
        if self.candidates not in CANDIDATES:
            raise InputError(f"--candidates {self.candidates!r} is unknown; use one of {', '.join(CANDIDATES)}")
        if self.membership_term not in MEMBERSHIP_TERMS:
            raise InputError(f"--membership-term {self.membership_term!r} is unknown; use one of {', '.join(MEMBERSHIP_TERMS)}")
        if not (math.isfinite(self.membership_weight) and self.membership_weight >= 0):
            raise InputError(f"--membership-weight must be finite and >= 0, got {self.membership_weight}")
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
        if not all(math.isfinite(v) and v >= 0 for v in (self.time_weight, self.weight_decay, self.train_noise_sigma,
                                                           self.patience, self.min_steps, self.exact_values)):
            raise InputError("--time-weight, --weight-decay, --patience, --min-steps, --exact-values and --train-noise "
                             "must be finite and >= 0")
        if not 0 < self.train_fraction <= 1:
            raise InputError(f"--train-fraction must be in (0, 1], got {self.train_fraction}")
        if self.train_problems is not None and self.train_problems < 1:
            raise InputError(f"--train-problems must be >= 1, got {self.train_problems}")
        if self.train_problems is not None and self.train_fraction != 1:
            raise InputError("give one of --train-fraction and --train-problems, not both")
        if self.max_steps < 0:
            raise InputError(f"--max-steps must be >= 0 (0: no cap), got {self.max_steps}")
        if not all(math.isfinite(v) and v > 0 for v in (self.lr, self.softmax_tau_ms, self.ratio_power)):
            raise InputError("--lr, --softmax-tau and --ratio-power must be finite and > 0")

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["split"] = self.split.as_dict()
        data["derived"] = list(self.derived)
        del data["progress"]
        # Left out at their neutral values, so the keys of ablation cells computed before these options existed
        # stay valid (the default step cap does not bind on those single-device grids: 4,305 steps on MI100).
        if self.train_fraction == 1 and self.train_problems is None:
            del data["train_fraction"], data["train_problems"]
        if self.max_steps == DEFAULT_MAX_STEPS:
            del data["max_steps"]
        if self.device_tokens:
            # On one device there are no device tokens whatever the option says: leaving the default out keeps the
            # keys of single-device ablation cells computed before the option existed (docs/results/) valid.
            del data["device_tokens"]
        return drop_neutral_membership(data)


def drop_neutral_membership(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` (a FitConfig's or MLPConfig's fields) without the membership options at the values every
    model had before the option existed, so that the keys of ablation cells computed then (docs/results/) stay
    valid; changed in place and returned.

    The closed-protocol training (``candidates="measured"``) uses none of them; with the candidates, the
    ``set`` term and no membership head are what models did before ``membership_term`` and the head existed.
    """
    if settings.get("candidates") == "measured":
        for name in ("candidates", "membership_weight", "membership_term", "membership_head", "membership_trunk"):
            settings.pop(name, None)
        return settings
    if settings.get("membership_term") == "set":
        del settings["membership_term"]
    if settings.get("membership_head") is False:
        del settings["membership_head"]
        settings.pop("membership_trunk", None)
    return settings
