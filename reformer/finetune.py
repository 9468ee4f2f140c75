"""Fine-tuning: what ``fit(..., init=TrainedModel)`` (``reformer fit --init MODEL_DIR``) keeps and changes.

A fine-tuned model starts from another model's weights and keeps:

* its architecture (``dim``, ``blocks``, ``block``, ``paths``, ``activation``) and token design
  (``derived``, ``exact_values``, ``device_tokens``): :func:`init_config` takes them from the model, whatever the
  :class:`~reformer.config.FitConfig` says;
* its feature encoder: the normalisation (mean, std of every numeric token) and the categorical and
  exact-value vocabularies learnt on the model's own training data, so every token means what it meant;
* its kernel vocabulary, in order.  Kernels of the new dataset the model does not know are *appended*
  (:func:`extend_vocabulary`): their head rows start as the mean of the known kernels' rows (an "average
  kernel", neither favoured nor ruled out), then train with the rest.

Candidates: the init model's rule is *extended* with the contexts of the fine-tuning problems
(:func:`finetune_rule`): a fine-tuning set can be tiny, and a rule fitted on it alone would offer most problems
the kernels of a coarse context.  The static order is fitted again on the fine-tuning problems.

A dataset whose training problems vary in a token the model does not have (e.g. a model trained on forward
problems only, which dropped the constant ``direction``, fine-tuned on forward and backward ones) cannot be
represented: :func:`check_token_design` refuses it.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from kernelbench.errors import InputError
from reformer.config import FitConfig
from reformer.data import RuntimeMatrix, align_kernels
from reformer.features import FeatureEncoder
from reformer.model import Reformer
from reformer.store import TrainedModel

#: FitConfig fields a fine-tuned model takes from its init model (architecture and token design).
ARCHITECTURE_FIELDS = ("dim", "blocks", "block", "paths", "activation", "membership_head", "derived", "exact_values",
                       "device_tokens")


def init_fields(init: TrainedModel) -> dict[str, Any]:
    """The :data:`ARCHITECTURE_FIELDS` of ``init`` (from its saved fit options; the network's own
    configuration where those are missing)."""
    saved: Mapping[str, Any] = init.info.get("fit") or {}
    network = init.model.config
    out: dict[str, Any] = {name: getattr(network, name)
                           for name in ("dim", "blocks", "block", "paths", "activation", "membership_head")}
    out["derived"] = tuple(saved.get("derived", FitConfig().derived))
    out["exact_values"] = int(saved.get("exact_values", FitConfig().exact_values if network.n_values else 0))
    # Whether the model has device tokens, not the option it was fitted with: on one device it has none either way.
    out["device_tokens"] = bool(init.encoder.device_tokens)
    return out


def init_config(config: FitConfig, init: TrainedModel) -> FitConfig:
    """``config`` with the architecture and token design of ``init`` (see the module docstring)."""
    return dataclasses.replace(config, **init_fields(init))


def check_token_design(init: TrainedModel, train_columns: Mapping[str, np.ndarray], *, where: str = "--init") -> None:
    """Refuse a training set whose problems vary in a token the init model does not have.

    The tokens a fit from scratch would make of ``train_columns`` (with the init model's derived tokens)
    must all be tokens of the init model; tokens the model has that are constant here are fine.

    Raises:
        InputError: one line naming the missing tokens.
    """
    fields = init_fields(init)
    needed = FeatureEncoder.fit(train_columns, derived=fields["derived"]).tokens
    missing = [t for t in needed if t not in init.encoder.tokens]
    if missing:
        raise InputError(f"{where}: the model's token design differs from the dataset's: the training problems vary "
                         f"in {', '.join(missing)}, which the model has no token for (its tokens: "
                         f"{', '.join(init.encoder.tokens)}); fit from scratch or start from a model trained on such "
                         "problems")


def extend_vocabulary(matrix: RuntimeMatrix, init: TrainedModel) -> tuple[RuntimeMatrix, tuple[str, ...]]:
    """``matrix`` with its columns in the init model's kernel order, the kernels the model does not know
    appended (sorted); returns it and those appended kernels."""
    added = tuple(sorted(set(matrix.kernels) - set(init.kernels)))
    vocabulary = (*init.kernels, *added)
    time_ms, _ = align_kernels(matrix, vocabulary)
    rse = None if matrix.time_rse is None else align_kernels(matrix, vocabulary, values=matrix.time_rse)[0]
    return dataclasses.replace(matrix, kernels=vocabulary, time_ms=time_ms, time_rse=rse), added


def finetune_rule(init: TrainedModel, train: RuntimeMatrix, validation: RuntimeMatrix) -> Any:
    """The candidate rule of a model fine-tuned from ``init`` on ``train`` (level chosen on ``validation``):
    ``init``'s rule extended with the training problems' contexts (:func:`reformer.candidates.extend_rule`)."""
    from reformer.candidates import extend_rule, rule_from_info

    return extend_rule(rule_from_info(init.info), kernels=train.kernels, train_columns=train.columns(),
                       train_measured=train.applicable, validation_columns=validation.columns(),
                       validation_time_ms=validation.time_ms, metadata=train.metadata)


def initial_model(init: TrainedModel, added: int) -> Reformer:
    """A copy of the init model's network (the init model is left as it is), with ``added`` head rows appended,
    each the mean of the known kernels' rows (weights and bias)."""
    model = copy.deepcopy(init.model)
    if not added:
        return model.train()
    old = model.config
    grown = Reformer(dataclasses.replace(old, n_kernels=old.n_kernels + added))
    state = model.state_dict()
    for head in ("head", "membership"):  # the membership head (if any) has a row per kernel too
        if f"{head}.weight" not in state:
            continue
        weight, bias = state[f"{head}.weight"], state[f"{head}.bias"]
        state[f"{head}.weight"] = torch.cat([weight, weight.mean(dim=0, keepdim=True).expand(added, -1)])
        state[f"{head}.bias"] = torch.cat([bias, bias.mean().expand(added)])
    grown.load_state_dict(state, strict=True)
    return grown.train()
