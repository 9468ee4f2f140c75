"""Train / validation / test splits of a runtime matrix, by problem and optionally by group.

A problem is never on two sides.  Three modes:

* random (default): a seeded permutation of problems cut at the fractions;
* ``group_by="geometry"``: problems sharing a convolution geometry (every
  integer field, batch included; all directions, dtypes and layouts of one
  shape) stay on one side; ``group_by="layer"`` also ignores ``batch``;
* ``hold_out`` (``--split-by COLUMN=VALUE,...``): problems matching are the
  test split; the rest is split into train / validation at the ratio of the
  first two fractions (by group if ``group_by`` is set).  ``network=NAME`` of a
  built-in network holds out every problem with one of its layer shapes, also
  those the ``network`` column credits to another network or spec.

A problem is a row of the runtime matrix, a (problem, device) pair: in a
dataset of several devices, the random split may train on a shape measured on
one device and test the same shape on another.  ``device=LABEL`` holds a whole
device out.  Groups are built from the problem's integer fields only, so
``group_by`` keeps every device's row of a shape on one side (and, with
``device=LABEL``, also keeps the other devices' rows of the test device's
shapes out of training: the test then measures new shapes on a new device).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from kernelbench.errors import InputError
from kernelbench.problem import INT_FIELDS
from kernelbench.spaces import network_layers
from kernelbench.spaces.networks import NETWORKS

GROUPINGS = ("geometry", "layer")
#: Problem columns ``--split-by`` may name.
SPLIT_BY_COLUMNS = ("device", "direction", "dtype", "layout", "network", *INT_FIELDS)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SplitSpec:
    """How to split.  ``hold_out`` is ``((column, (value, ...)), ...)``: values of one column are
    alternatives (OR), different columns must all match (AND)."""

    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    group_by: str | None = None
    hold_out: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def describe(self) -> str:
        """One line, e.g. ``random 80/10/10 seed 0, grouped by layer``."""
        pct = "/".join(f"{100 * f:g}" for f in self.fractions)
        text = f"random {pct} seed {self.seed}"
        if self.hold_out:
            held = " and ".join(f"{c} in {{{', '.join(v)}}}" for c, v in self.hold_out)
            text = f"test = problems with {held}; rest {pct.rsplit('/', 1)[0]} seed {self.seed}"
        if self.group_by:
            text += f", grouped by {self.group_by}"
        return text

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SplitSpec:
        """The spec :meth:`as_dict` recorded (a model's ``config.json`` ``split``; extra keys such as
        ``description`` and ``sizes`` are ignored)."""
        return cls(fractions=tuple(data["fractions"]), seed=data["seed"], group_by=data["group_by"],
                   hold_out=tuple((c, tuple(v)) for c, v in data["hold_out"].items()))

    def as_dict(self) -> dict[str, Any]:
        return {
            "fractions": list(self.fractions),
            "seed": self.seed,
            "group_by": self.group_by,
            "hold_out": {c: list(v) for c, v in self.hold_out},
            "description": self.describe(),
        }


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """Integer row positions (into a :class:`~reformer.data.RuntimeMatrix`) of each side, sorted."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    spec: SplitSpec

    def sides(self) -> dict[str, np.ndarray]:
        return {"train": self.train, "validation": self.validation, "test": self.test}

    def sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.sides().items()}


def parse_split_by(text: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Parse ``"direction=bwd_data,dtype=fp16"`` into ``hold_out`` form (sorted by column).

    Raises:
        InputError: an item is not ``COLUMN=VALUE`` or names a column that cannot be split by.
    """
    values: dict[str, list[str]] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        column, sep, value = item.partition("=")
        column, value = column.strip(), value.strip()
        if not sep or not column or not value:
            raise InputError(f"--split-by item {item!r} is not COLUMN=VALUE (e.g. direction=bwd_weights)")
        if column not in SPLIT_BY_COLUMNS:
            raise InputError(f"--split-by column {column!r} is unknown; use one of {', '.join(SPLIT_BY_COLUMNS)}")
        values.setdefault(column, []).append(value)
    if not values:
        raise InputError("--split-by is empty; give COLUMN=VALUE[,COLUMN=VALUE...]")
    return tuple((c, tuple(v)) for c, v in sorted(values.items()))


def group_keys(problems: pl.DataFrame, group_by: str | None) -> np.ndarray:
    """One integer group id per problem row: the problem itself, its geometry, or its layer.

    Raises:
        InputError: ``group_by`` is not one of :data:`GROUPINGS`.
    """
    if group_by is None:
        return np.arange(problems.height)
    if group_by not in GROUPINGS:
        raise InputError(f"--group-by {group_by!r} is unknown; use one of {', '.join(GROUPINGS)}")
    columns = [c for c in INT_FIELDS if not (group_by == "layer" and c == "batch")]
    values = problems.select(columns).to_numpy()
    return np.unique(values, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)


def _cut_groups(groups: np.ndarray, rows: np.ndarray, shares: list[float], rng: np.random.Generator) -> list[np.ndarray]:
    """Assign whole groups (in seeded random order) to sides so that side sizes follow ``shares``."""
    unique, inverse, counts = np.unique(groups[rows], return_inverse=True, return_counts=True)
    order = rng.permutation(len(unique))
    # Cumulative problem count in permuted group order; a group goes to the side its midpoint falls in.
    cum = np.cumsum(counts[order])
    mid = (cum - counts[order] / 2) / cum[-1]
    edges = np.cumsum(shares)[:-1] / np.sum(shares)
    side_of_group = np.empty(len(unique), dtype=np.int64)
    side_of_group[order] = np.searchsorted(edges, mid, side="right")
    side = side_of_group[inverse]
    return [np.sort(rows[side == s]) for s in range(len(shares))]


_LAYER_FIELDS = tuple(c for c in INT_FIELDS if c != "batch")


def network_shape_mask(problems: pl.DataFrame, networks: tuple[str, ...]) -> np.ndarray:
    """Boolean per problem row: its layer shape (every integer field but ``batch``) is a layer of one of
    the built-in ``networks`` (:data:`kernelbench.spaces.networks.NETWORKS`; other names match nothing).

    The ``network`` column names only the first network a shared shape was measured for (the ``networks``
    space keeps each problem once), so this is how a held-out network also takes its shapes that another
    network, or a random spec, measured first.
    """
    keys = {tuple(int(getattr(layer.shape.problem(batch=1), c)) for c in _LAYER_FIELDS)
            for name in networks if name in NETWORKS for layer in network_layers(name)}
    if not keys or problems.height == 0:
        return np.zeros(problems.height, dtype=bool)
    rows = problems.select(_LAYER_FIELDS).to_numpy()
    return np.fromiter((tuple(int(v) for v in row) in keys for row in rows), dtype=bool, count=len(rows))


def hold_out_mask(problems: pl.DataFrame, hold_out: tuple[tuple[str, tuple[str, ...]], ...]) -> np.ndarray:
    """Boolean per problem row: matches every ``(column, values)`` of ``hold_out``.

    ``network=NAME`` of a built-in network also matches every problem with one of that network's layer
    shapes (any batch), whichever network or spec the ``network`` column credits it to: holding a
    network out holds out every layer shape of it.
    """
    mask = np.ones(problems.height, dtype=bool)
    for column, values in hold_out:
        as_text = problems[column].cast(pl.String).fill_null("")
        matches = as_text.is_in(list(values)).to_numpy()
        if column == "network":
            matches |= network_shape_mask(problems, values)
        mask &= matches
    return mask


def _few_values(column: pl.Series, limit: int = 8) -> list[str]:
    """The distinct values of a column as text, at most ``limit`` of them (then ``...``)."""
    values = sorted({"" if v is None else str(v) for v in column.unique().to_list()})
    return values[:limit] + (["..."] if len(values) > limit else [])


def make_split(problems: pl.DataFrame, spec: SplitSpec) -> Split:
    """Split the problem rows of a runtime matrix.

    Raises:
        InputError: fractions invalid, an empty side, or a ``hold_out`` that matches no problem or all of them.
    """
    fractions = [float(f) for f in spec.fractions]
    if len(fractions) != 3 or min(fractions) < 0 or fractions[0] <= 0 or abs(sum(fractions) - 1) > 1e-6:
        raise InputError(f"split fractions {spec.fractions} must be three non-negative numbers summing to 1")
    rng = np.random.default_rng(spec.seed)
    groups = group_keys(problems, spec.group_by)
    everything = np.arange(problems.height)
    if spec.hold_out:
        held = hold_out_mask(problems, spec.hold_out)
        if not held.any():
            known = "; ".join(f"{column} values: {', '.join(_few_values(problems[column]))}"
                              for column, _ in spec.hold_out)
            raise InputError(f"--split-by {spec.describe()} matches no problem of the dataset ({known})")
        if held.all():
            raise InputError("--split-by matches every problem of the dataset; nothing is left to train on")
        test = everything[held]
        rest = everything[~held]
        if spec.group_by:
            # Groups that reach into the held-out test side must not also train.
            rest = rest[~np.isin(groups[rest], groups[test])]
        train, validation = _cut_groups(groups, rest, fractions[:2], rng)
    else:
        train, validation, test = _cut_groups(groups, everything, fractions, rng)
    for name, side, share in (("train", train, fractions[0]), ("validation", validation, fractions[1])):
        if len(side) == 0 and share > 0:
            raise InputError(f"the {name} split is empty ({problems.height} problems); use a larger dataset")
    if len(test) == 0 and fractions[2] > 0:
        raise InputError(f"the test split is empty ({problems.height} problems); use a larger dataset")
    return Split(train=train, validation=validation, test=test, spec=spec)


def sample_size(n_train: int, *, fraction: float = 1.0, problems: int | None = None) -> int:
    """How many of ``n_train`` training problems :func:`sample_train` keeps: ``problems``, or
    ``round(fraction * n_train)`` and at least one.

    Raises:
        InputError: ``fraction`` outside (0, 1], or ``problems`` < 1 or above ``n_train``.
    """
    if not 0 < fraction <= 1:
        raise InputError(f"--train-fraction must be in (0, 1], got {fraction}")
    if problems is not None:
        if not 1 <= problems <= n_train:
            raise InputError(f"--train-problems {problems} must be between 1 and the training split's "
                             f"{n_train:,} problems")
        return problems
    return max(1, min(n_train, round(fraction * n_train)))


def recorded_split(problems: pl.DataFrame, recorded: Mapping[str, Any]) -> Split:
    """The split a model recorded (its ``config.json`` ``split``: spec and ``sizes``) rebuilt on ``problems``.

    Only the validation and test sides are compared with the recorded sizes: a model fitted with
    ``--train-fraction`` trained on a sample of the training side.

    Raises:
        InputError: a rebuilt side differs in size from the recorded one (not the dataset the model was fitted on).
    """
    split = make_split(problems, SplitSpec.from_dict(recorded))
    sizes = recorded.get("sizes") or {}
    for side in ("validation", "test"):
        if side in sizes and split.sizes()[side] != sizes[side]:
            raise InputError(f"the dataset is not the one the model was fitted on: its {side} split has "
                             f"{split.sizes()[side]} problems, the model's {sizes[side]}")
    return split


def sample_train(split: Split, *, fraction: float = 1.0, problems: int | None = None, seed: int = 0) -> Split:
    """``split`` with its training side replaced by a seeded sample of it (validation and test unchanged).

    The sample is the first :func:`sample_size` problems of a permutation seeded by ``seed``, so samples of
    one seed are nested (the 1 % sample is inside the 5 % one): a learning curve adds problems, it does not
    draw new ones.  The whole split is returned as it is when nothing is left out.

    Raises:
        InputError: see :func:`sample_size`.
    """
    n = sample_size(len(split.train), fraction=fraction, problems=problems)
    if n == len(split.train):
        return split
    order = np.random.default_rng(seed).permutation(len(split.train))
    return dataclasses.replace(split, train=np.sort(split.train[order[:n]]))
