"""The ablation grid's definitions: studies, their variants (rows) and titles.

Both :mod:`reformer.ablate` (which runs the grid) and
:mod:`reformer.ablation_report` (which writes its report) import them from
here, so neither imports the other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from kernelbench.errors import InputError
from reformer.config import FitConfig

STUDIES = ("labels", "candidates", "paths", "blocks", "block-type", "noise", "baselines")
STUDY_TITLES = {
    "labels": "Label formulation",
    "candidates": "Training softmax over the candidates or the measured kernels",
    "paths": "Γ-block dual path",
    "blocks": "Number of Γ-blocks",
    "block-type": "Γ-block vs transformer block (same width and depth)",
    "noise": "Robustness to training-runtime noise (log-normal σ; test times clean)",
    "baselines": "Baselines",
}
#: ``torch_default``: what the user gets without a selector (F.conv2d; kernelbench.info.BASELINE_KERNELS), planned
#: only for datasets that measured it.
BASELINE_KINDS = ("oracle", "random", "static", "torch_default", "lightgbm", "mlp")
NOISE_SIGMAS = (0.0, 0.05, 0.2)
#: The k of the top-k metrics every cell records (both protocols).
TOP_KS = (2, 3)
SOFTMAX_TAUS_MS = (0.1, 1.0, 10.0)


@dataclasses.dataclass(frozen=True)
class Variant:
    """One row of a study: ``kind`` is ``"reformer"`` or a baseline; ``changes`` are FitConfig fields (MLPConfig
    fields for ``kind="mlp"``)."""

    study: str
    name: str
    kind: str = "reformer"
    changes: tuple[tuple[str, Any], ...] = ()


def _label_variants(study: str, *, taus: Sequence[float], powers: Sequence[float] = (), suffix: str = "",
                    extra: dict[str, Any] | None = None) -> list[Variant]:
    """One-hot, softmax at each τ, ratio labels at each extra power γ and at the default γ."""
    extra = extra or {}
    out = [Variant(study, f"onehot{suffix}", changes=(("labels", "onehot"), *extra.items()))]
    for tau in taus:
        out.append(Variant(study, f"softmax τ={tau:g} ms{suffix}",
                           changes=(("labels", "softmax"), ("softmax_tau_ms", tau), *extra.items())))
    default = FitConfig().ratio_power
    for power in (p for p in powers if p != default):
        out.append(Variant(study, f"ratio γ={power:g}{suffix}",
                           changes=(("labels", "ratio"), ("ratio_power", power), *extra.items())))
    out.append(Variant(study, f"ratio γ={default:g}{suffix}", changes=(("labels", "ratio"), *extra.items())))
    return out


def variants(study: str) -> tuple[Variant, ...]:
    """The rows of one study, in table order.

    Raises:
        InputError: unknown study name.
    """
    if study == "labels":
        # γ = 1 is the paper's ratio-preserving label (q_i / q_j = t_j / t_i), whatever the default γ is;
        # γ = 4 was the default until the open-set training (docs/reformer.md).
        return tuple(_label_variants(study, taus=SOFTMAX_TAUS_MS, powers=(1.0, 4.0)))
    if study == "candidates":
        # The MLP baseline has the same option (MLPConfig.candidates); LightGBM has none (its multiclass objective
        # normalises over every class).  The MLP's context row is the baselines study's mlp cell.
        return (Variant(study, "context (default)", changes=(("candidates", "context"),)),
                Variant(study, "measured (the paper's closed training)", changes=(("candidates", "measured"),)),
                Variant(study, "MLP, context (default)", kind="mlp"),
                Variant(study, "MLP, measured", kind="mlp", changes=(("candidates", "measured"),)))
    if study == "paths":
        return (Variant(study, "both", changes=(("paths", "both"),)),
                Variant(study, "affine only (no nonlinear path)", changes=(("paths", "affine"),)),
                Variant(study, "nonlinear only (no direct path)", changes=(("paths", "nonlinear"),)))
    if study == "blocks":
        return tuple(Variant(study, str(n), changes=(("blocks", n),)) for n in range(1, 6))
    if study == "block-type":
        return (Variant(study, "Γ-block", changes=(("block", "gamma"),)),
                Variant(study, "transformer", changes=(("block", "transformer"),)))
    if study == "noise":
        return tuple(v for sigma in NOISE_SIGMAS
                     for v in _label_variants(study, taus=(1.0,), suffix=f", σ={sigma:g}",
                                              extra={"train_noise_sigma": sigma}))
    if study == "baselines":
        return (*(Variant(study, kind, kind=kind) for kind in BASELINE_KINDS), Variant(study, "reformer (defaults)"))
    raise InputError(f"unknown study {study!r}; use one of {', '.join(STUDIES)}")


def parse_studies(text: str | None) -> tuple[str, ...]:
    """``"labels,noise"`` -> ``("labels", "noise")`` in :data:`STUDIES` order; ``None``/``all`` -> all.

    Raises:
        InputError: an unknown study name.
    """
    if text is None or text.strip().lower() == "all":
        return STUDIES
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in STUDIES]
    if unknown or not names:
        raise InputError(f"--studies {text!r}: unknown study {', '.join(unknown) or '(none given)'}; "
                         f"use a comma-separated subset of {', '.join(STUDIES)}")
    return tuple(s for s in STUDIES if s in names)
