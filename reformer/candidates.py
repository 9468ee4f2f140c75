"""The candidate rule: which kernels a problem may be offered when nothing about it was measured.

A selector is needed exactly where no table holds the problem (MIOpen's
immediate mode on a find-db miss, a framework meeting a new shape), so it
cannot be told which kernels were measured for it.  The rule, saved with the
model, answers from the problem's fields alone:

* ``applies`` (datasets swept by kernelbench's own backends): the kernels of the
  model's vocabulary whose own ``applies`` accepts the problem.  The rule also
  keeps the training problems' contexts at :data:`APPLIES_SEEN_LEVEL`, only to
  say whether a problem's context was seen (rules saved before it kept them
  call every context seen).
* ``context`` (imported data such as MIOpen find-dbs, where applicability is
  unknown): the kernels recorded for at least one *training* problem with the
  same context.  A context is a tuple of coarse problem properties (direction,
  dtype, layout, spatial dims, grouped/depthwise, 1x1/other filter, unit or
  larger stride, dilation, padding, then the exact filter/stride/dilation/pad shapes); the levels in :data:`CONTEXT_LEVELS` go
  from coarse to fine, and :func:`fit_rule` keeps the finest level whose
  candidates still contain the fastest measured kernel of the validation
  problems as often as the coarsest level does, within :data:`COVERAGE_TOLERANCE`.

A problem whose context at the chosen level was never seen in training backs
off to coarser levels, and is flagged (``context_seen`` False).  Every level
includes the direction, so a problem is never offered a kernel of another
direction; a direction never seen in training is an error.

Devices: when the training problems come from more than one device (a merged
dataset, ``kernelbench merge``), every context also includes the ``device``
label, so kernels recorded on one device are not candidates on another.  A
problem of a device the rule never saw is offered what the nearest training
device (by descriptor distance, :func:`kernelbench.devices.nearest_first`)
recorded for its context, at the chosen level and then coarser ones, using the
nearest device that recorded the context; it is flagged.  One given without a
device, or whose device has no descriptor, or whose context no training device
recorded, backs off to the device-free contexts, the union over the training
devices, and is flagged.  A rule trained on one device keeps device-free contexts (as before
rows carried their device); a problem that names another device is flagged.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kernelbench.errors import InputError

RULE_KINDS = ("applies", "context")

#: Context properties, coarse to fine.  Each level is a tuple of property names (see :func:`context_columns`).
CONTEXT_LEVELS: tuple[tuple[str, ...], ...] = (
    ("direction", "dtype"),
    ("direction", "dtype", "layout", "spatial_dims"),
    ("direction", "dtype", "layout", "spatial_dims", "group_kind"),
    ("direction", "dtype", "layout", "spatial_dims", "group_kind", "filter_kind"),
    ("direction", "dtype", "layout", "spatial_dims", "group_kind", "filter_kind", "stride_kind", "dilation_kind"),
    ("direction", "dtype", "layout", "spatial_dims", "group_kind", "filter_kind", "stride_kind", "dilation_kind",
     "pad_kind"),
    ("direction", "dtype", "layout", "spatial_dims", "group_kind", "filter_shape", "stride_shape", "dilation_kind",
     "pad_kind"),
    ("direction", "dtype", "layout", "spatial_dims", "group_kind", "filter_shape", "stride_shape", "dilation_shape",
     "pad_shape"),
)

#: For an ``applies`` rule, the level (an index into :data:`CONTEXT_LEVELS`) whose training contexts decide
#: whether a problem's context was seen: direction, dtype, layout, spatial dims and grouping.  Finer levels would
#: call every new filter shape unseen, which the kernels' own ``applies`` handles.
APPLIES_SEEN_LEVEL = 2

#: The problem fields :func:`context_columns` reads.
CONTEXT_INPUTS = ("direction", "dtype", "layout", "spatial_dims", "groups", "in_channels",
                  *(f"{kind}_{axis}" for kind in ("filter", "stride", "dilation", "pad") for axis in "dhw"), "device")
#: The property that makes a context per device (see the module docstring); "" when a problem has no device.
DEVICE_PROPERTY = "device"

#: How much lower (absolute) a finer level's validation coverage of the fastest kernel may be than the
#: coarsest level's for the finer level to be chosen.
COVERAGE_TOLERANCE = 0.001


def _int(columns: Mapping[str, Any], name: str, default: int, n: int) -> np.ndarray:
    value = columns.get(name)
    return np.broadcast_to(np.asarray([default] if value is None else value, dtype=np.int64).reshape(-1), (n,))


def context_columns(columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Every context property of problems given as columns (arrays or scalars), as string arrays.

    Besides the properties of :data:`CONTEXT_LEVELS`, ``device`` is the problem's device label
    (``""`` where the columns have none).
    """
    n = max(np.asarray(v).reshape(-1).shape[0] for v in columns.values())

    def text(name: str, default: str) -> np.ndarray:
        value = columns.get(name)
        out = np.asarray([default] if value is None else value, dtype=object).reshape(-1)
        return np.broadcast_to(np.where(out == None, default, out).astype(str), (n,))  # noqa: E711

    groups, cin = _int(columns, "groups", 1, n), _int(columns, "in_channels", 1, n)
    filters = [_int(columns, f"filter_{a}", 1, n) for a in "dhw"]
    strides = [_int(columns, f"stride_{a}", 1, n) for a in "dhw"]
    dilations = [_int(columns, f"dilation_{a}", 1, n) for a in "dhw"]
    pads = [_int(columns, f"pad_{a}", 0, n) for a in "dhw"]
    group_kind = np.where(groups == 1, "dense", np.where(groups == cin, "depthwise", "grouped"))
    one = np.logical_and.reduce([f == 1 for f in filters])
    props = {
        "direction": text("direction", "fwd"),
        "dtype": text("dtype", "fp32"),
        "layout": text("layout", "NCHW"),
        "spatial_dims": _int(columns, "spatial_dims", 2, n).astype(str),
        "group_kind": group_kind,
        "filter_kind": np.where(one, "1x1", "other"),
        "stride_kind": np.where(np.logical_and.reduce([s == 1 for s in strides]), "unit", "strided"),
        "dilation_kind": np.where(np.logical_and.reduce([d == 1 for d in dilations]), "unit", "dilated"),
        "pad_kind": np.where(np.logical_and.reduce([p == 0 for p in pads]), "none", "padded"),
        # Exact shapes: solvers written for one filter size (Winograd 3x3, 1x1 GEMM) or stride.
        "filter_shape": _shape(filters),
        "stride_shape": _shape(strides),
        "pad_shape": _shape(pads),
        "dilation_shape": _shape(dilations),
        DEVICE_PROPERTY: text(DEVICE_PROPERTY, ""),
    }
    return {k: np.broadcast_to(np.asarray(v).astype(str), (n,)) for k, v in props.items()}


def _shape(values: list[np.ndarray]) -> np.ndarray:
    """``"DxHxW"`` per problem."""
    return np.char.add(np.char.add(np.char.add(np.char.add(values[0].astype(str), "x"), values[1].astype(str)), "x"),
                       values[2].astype(str))


def context_keys(props: Mapping[str, np.ndarray], level: Sequence[str]) -> list[str]:
    """One ``"fwd|fp16|..."`` key per problem for the properties of ``level``."""
    return ["|".join(parts) for parts in zip(*(props[name] for name in level))]


@dataclasses.dataclass(frozen=True, eq=False)
class CandidateRule:
    """A saved candidate rule (see the module docstring).

    Attributes:
        kind: ``applies`` or ``context``.
        level: for ``context``, the index into ``levels`` of the chosen (finest) level.
        levels: the property names of each level, coarse to fine.
        kernels_by_level: per level, context key -> kernel names recorded for some training problem.
        backend: for ``applies``, the kernelbench backend whose kernels' ``applies`` decide.
        evidence: per level, validation coverage, mean candidates and unseen share (how the level was chosen).
        devices: the device labels of the training problems (empty: no device recorded, older rules).
        kernels_by_device_level: for training problems of more than one device, per level,
            ``device|context key`` -> kernel names; empty otherwise (device-free contexts only).
    """

    kind: str
    level: int = 0
    levels: tuple[tuple[str, ...], ...] = CONTEXT_LEVELS
    kernels_by_level: tuple[dict[str, tuple[str, ...]], ...] = ()
    backend: str | None = None
    evidence: tuple[dict[str, float], ...] = ()
    devices: tuple[str, ...] = ()
    kernels_by_device_level: tuple[dict[str, tuple[str, ...]], ...] = ()

    @property
    def per_device(self) -> bool:
        """Contexts include the device (the rule was trained on more than one device)."""
        return bool(self.kernels_by_device_level)

    def fields(self) -> tuple[str, ...]:
        """The properties of the chosen level's context, ``device`` first for per-device rules."""
        return ((DEVICE_PROPERTY,) if self.per_device else ()) + tuple(self.levels[self.level])

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "level": self.level,
            "fields": list(self.fields()) if self.kind == "context" else None,
            "levels": [list(level) for level in self.levels],
            "kernels_by_level": [{k: list(v) for k, v in sorted(m.items())} for m in self.kernels_by_level],
            "backend": self.backend,
            "evidence": list(self.evidence),
            "devices": list(self.devices),
            "kernels_by_device_level": [{k: list(v) for k, v in sorted(m.items())}
                                        for m in self.kernels_by_device_level],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CandidateRule:
        return cls(
            kind=data["kind"],
            level=int(data.get("level", 0)),
            levels=tuple(tuple(level) for level in data.get("levels", CONTEXT_LEVELS)),
            kernels_by_level=tuple({k: tuple(v) for k, v in m.items()} for m in data.get("kernels_by_level", ())),
            backend=data.get("backend"),
            evidence=tuple(data.get("evidence", ())),
            devices=tuple(data.get("devices", ())),
            kernels_by_device_level=tuple({k: tuple(v) for k, v in m.items()}
                                          for m in data.get("kernels_by_device_level", ())),
        )

    def cache_key(self, row: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """A key under which one problem's candidates may be cached: the raw fields its context depends on
        (None for ``applies`` rules, which look at every field)."""
        if self.kind != "context":
            return None
        return tuple(row.get(name) for name in CONTEXT_INPUTS)

    def describe(self, row: Mapping[str, Any]) -> str:
        """One problem's context at the chosen level, e.g. ``direction=fwd, dtype=bf16`` (for messages)."""
        props = context_columns({k: [v] for k, v in row.items()})
        if self.kind != "context":
            own = f"candidates by the {self.backend} kernels' own applicability"
            return ", ".join([*(f"{name}={props[name][0]}" for name in self.levels[0]), own]) \
                if self.kernels_by_level else own
        parts = [f"{name}={props[name][0]}" for name in self.levels[self.level]]
        device = props[DEVICE_PROPERTY][0]
        if device and self.devices and device not in self.devices:
            parts.insert(0, f"device={device} (not a training device)")
        elif device and self.per_device:
            parts.insert(0, f"device={device}")
        elif self.per_device:
            parts.insert(0, "device not given")
        return ", ".join(parts)

    def masks(self, columns: Mapping[str, Any], kernels: Sequence[str], *,
              descriptors: Mapping[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Candidates of problems given as columns: ``(mask bool [n, len(kernels)], context_seen bool [n])``.

        ``descriptors``: device descriptors by label beyond the package's table, for finding the training
        device nearest to a device the rule never saw.

        Raises:
            InputError: a problem's direction was never seen in training (``context`` rule).
        """
        if self.kind == "applies":
            return self._applies_masks(columns, kernels)
        index = {k: j for j, k in enumerate(kernels)}
        props = context_columns(columns)
        n = len(props["direction"])
        mask = np.zeros((n, len(kernels)), dtype=bool)
        seen = np.zeros(n, dtype=bool)
        done = np.zeros(n, dtype=bool)
        # A one-device rule cannot tell a problem of another device apart: such a problem is never "seen".
        known_device = (np.isin(props[DEVICE_PROPERTY], ["", *self.devices]) if len(self.devices) == 1
                        else np.ones(n, dtype=bool))

        def offer(i: int, names: Sequence[str]) -> None:
            mask[i, [index[k] for k in names if k in index]] = True
            done[i] = True

        def walk(tables: Sequence[Mapping[str, Sequence[str]]], prefix: tuple[str, ...], seen_here: np.ndarray) -> None:
            """Chosen level, then coarser ones: offer each problem not yet done its context's kernels; a hit at
            the chosen level is "seen" where ``seen_here`` says so."""
            for depth in range(self.level, -1, -1):
                if done.all():
                    return
                table = tables[depth]
                for i, key in enumerate(context_keys(props, (*prefix, *self.levels[depth]))):
                    if not done[i] and key in table:
                        offer(i, table[key])
                        seen[i] = depth == self.level and seen_here[i]

        # Per-device contexts first (their chosen level is "seen"), then, for a device the rule never saw,
        # the contexts of the nearest training device that recorded them, then the device-free ones.
        if self.per_device:
            walk(self.kernels_by_device_level, (DEVICE_PROPERTY,), np.ones(n, dtype=bool))
            self._nearest_device_pass(props, done, offer, descriptors)
        walk(self.kernels_by_level, (), known_device & (not self.per_device))
        if not done.all():
            # Neither the direction/dtype pair was seen: offer the direction's kernels, never another's.
            by_direction: dict[str, set[str]] = {}
            for key, names in self.kernels_by_level[0].items():
                by_direction.setdefault(key.split("|")[0], set()).update(names)
            for i in np.flatnonzero(~done):
                direction = str(props["direction"][i])
                if direction not in by_direction:
                    raise InputError(f"the model never saw a {direction!r} problem in training, so it has no "
                                     f"candidates for it; known directions: {', '.join(sorted(by_direction))}")
                mask[i, [index[k] for k in by_direction[direction] if k in index]] = True
        return mask, seen

    def _nearest_device_pass(self, props: Mapping[str, np.ndarray], done: np.ndarray,
                             offer: Any, descriptors: Mapping[str, Any] | None) -> None:
        """Problems of a device the rule never saw: at the chosen level and then coarser ones, the kernels the
        nearest training device (:func:`kernelbench.devices.nearest_first`) recorded for the problem's
        context, if some training device recorded it.  A device without a descriptor is left to the
        device-free contexts."""
        from kernelbench.devices import nearest_first

        devices = props[DEVICE_PROPERTY]
        todo = [i for i in np.flatnonzero(~done) if devices[i] and devices[i] not in self.devices]
        order: dict[str, list[str] | None] = {}
        for label in {str(devices[i]) for i in todo}:
            try:
                order[label] = nearest_first(label, self.devices, descriptors=descriptors)
            except InputError:
                order[label] = None
        todo = [i for i in todo if order[str(devices[i])]]
        for depth in range(self.level, -1, -1):
            if not todo:
                return
            table = self.kernels_by_device_level[depth]
            keys = context_keys(props, self.levels[depth])
            left = []
            for i in todo:
                source = next((d for d in order[str(devices[i])] if f"{d}|{keys[i]}" in table), None)
                if source is None:
                    left.append(i)
                else:
                    offer(i, table[f"{source}|{keys[i]}"])
            todo = left

    def _applies_masks(self, columns: Mapping[str, Any], kernels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        from kernelbench.problem import FIELDS, ConvProblem

        arrays = {f: np.asarray(columns[f]).reshape(-1) for f in FIELDS if f in columns}
        n = len(next(iter(arrays.values())))
        mask = np.zeros((n, len(kernels)), dtype=bool)
        for i in range(n):
            problem = ConvProblem.from_mapping({f: _plain(v[i] if len(v) > 1 else v[0]) for f, v in arrays.items()})
            mask[i] = self.applies_mask(problem, kernels)
        return mask, self.applies_seen(columns)

    def applies_seen(self, columns: Mapping[str, Any]) -> np.ndarray:
        """For an ``applies`` rule: bool ``[n]``, whether each problem's context (its one saved level) was seen in
        training; all True for a rule saved without contexts."""
        n = max(np.asarray(v).reshape(-1).shape[0] for v in columns.values())
        if not self.kernels_by_level:
            return np.ones(n, dtype=bool)
        table = self.kernels_by_level[0]
        return np.array([key in table for key in context_keys(context_columns(columns), self.levels[0])], dtype=bool)

    def applies_mask(self, problem: Any, kernels: Sequence[str]) -> np.ndarray:
        """For an ``applies`` rule: bool ``[len(kernels)]``, the kernels whose own ``applies`` accepts the
        :class:`~kernelbench.problem.ConvProblem` (what :meth:`Selector.select` calls per problem)."""
        registry = _registry(self.backend or "cpu")
        return np.array([name in registry and registry[name].reason_not_applicable(problem) is None
                         for name in kernels], dtype=bool)


@functools.lru_cache(maxsize=None)
def _registry(backend: str) -> dict[str, Any]:
    from kernelbench.kernels.registry import all_kernels

    return {k.name: k for k in all_kernels(backend)}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def rule_kind(metadata: Mapping[str, Any]) -> tuple[str, str | None]:
    """``("applies", backend)`` for a dataset swept by kernelbench's own backends, else ``("context", None)``."""
    if metadata.get("source") == "kernelbench-sweep":
        # A label maps to one description (older exports) or to the list of descriptions met under it.
        descriptions = [d for v in (metadata.get("devices") or {}).values() for d in (v if isinstance(v, list) else [v])]
        backends = {d.get("backend") for d in descriptions if isinstance(d, dict)}
        if len(backends) == 1 and next(iter(backends)) in ("cpu", "cuda"):
            return "applies", next(iter(backends))
    return "context", None


def _tables(props: Mapping[str, np.ndarray], measured: np.ndarray, kernels: Sequence[str],
            level: Sequence[str]) -> dict[str, tuple[str, ...]]:
    union: dict[str, np.ndarray] = {}
    for key, row in zip(context_keys(props, level), measured):
        union[key] = union[key] | row if key in union else row.copy()
    return {key: tuple(k for k, hit in zip(kernels, rows) if hit) for key, rows in union.items()}


def fit_rule(
    *,
    kernels: Sequence[str],
    train_columns: Mapping[str, Any],
    train_measured: np.ndarray,
    validation_columns: Mapping[str, Any] | None = None,
    validation_time_ms: np.ndarray | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> CandidateRule:
    """The candidate rule of a training split (levels chosen on the validation split, see the module docstring).

    Args:
        kernels: the vocabulary (columns of ``train_measured`` and ``validation_time_ms``).
        train_columns / train_measured: training problems as columns and their measured mask ``[n, k]``.
        validation_columns / validation_time_ms: validation problems and times (NaN = not measured).
        metadata: the dataset's metadata (decides ``applies`` against ``context``).
    """
    kind, backend = rule_kind(metadata or {})
    props = context_columns(train_columns)
    if kind == "applies":
        level = CONTEXT_LEVELS[APPLIES_SEEN_LEVEL]
        return CandidateRule(kind="applies", backend=backend, levels=(level,),
                             kernels_by_level=(_tables(props, train_measured, kernels, level),))
    tables = tuple(_tables(props, train_measured, kernels, level) for level in CONTEXT_LEVELS)
    devices = tuple(sorted(set(props[DEVICE_PROPERTY].tolist()) - {""}))
    device_tables = (tuple(_tables(props, train_measured, kernels, (DEVICE_PROPERTY, *level))
                           for level in CONTEXT_LEVELS) if len(devices) > 1 else ())
    common = {"kind": "context", "kernels_by_level": tables, "devices": devices,
              "kernels_by_device_level": device_tables}
    return _choose_level(common, kernels, validation_columns, validation_time_ms)


def _choose_level(common: dict[str, Any], kernels: Sequence[str], validation_columns: Mapping[str, Any] | None,
                  validation_time_ms: np.ndarray | None) -> CandidateRule:
    """The rule of ``common``'s tables at the finest level whose validation coverage is within
    :data:`COVERAGE_TOLERANCE` of the coarsest level's (level 0 without validation problems)."""
    evidence: list[dict[str, float]] = []
    if validation_columns is None or validation_time_ms is None or len(validation_time_ms) == 0:
        return CandidateRule(level=0, **common)
    best = np.argmin(np.where(np.isnan(validation_time_ms), np.inf, validation_time_ms), axis=1)
    rows = np.arange(len(best))
    for depth in range(len(CONTEXT_LEVELS)):
        rule = CandidateRule(level=depth, **common)
        mask, seen = rule.masks(validation_columns, kernels)
        evidence.append({
            "coverage": float(mask[rows, best].mean()),
            "mean_candidates": float(mask.sum(axis=1).mean()),
            "unseen": float(1.0 - seen.mean()),
        })
    top = evidence[0]["coverage"]
    level = max(d for d, e in enumerate(evidence) if e["coverage"] >= top - COVERAGE_TOLERANCE)
    return CandidateRule(level=level, evidence=tuple(evidence), **common)


def _merged(a: Mapping[str, tuple[str, ...]], b: Mapping[str, tuple[str, ...]],
            order: Mapping[str, int]) -> dict[str, tuple[str, ...]]:
    """Context tables ``a`` and ``b`` joined: per key, the union of their kernels (in vocabulary order)."""
    out = dict(a)
    for key, names in b.items():
        out[key] = tuple(sorted(set(out.get(key, ())) | set(names), key=lambda k: order.get(k, len(order))))
    return out


def extend_rule(
    base: CandidateRule,
    *,
    kernels: Sequence[str],
    train_columns: Mapping[str, Any],
    train_measured: np.ndarray,
    validation_columns: Mapping[str, Any] | None = None,
    validation_time_ms: np.ndarray | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> CandidateRule:
    """``base`` (a fine-tuned model's init rule) with the contexts of new training problems added.

    A fine-tuning set can be small (a few problems of a new device): a rule fitted on it alone would send most
    problems to coarse contexts.  The extended rule keeps every context of ``base`` and adds the new ones: a
    problem of a device seen here or in ``base`` finds its device's contexts first, and any other falls back to
    the device-free contexts, the union over both.  A device new to ``base`` starts from ``base``'s device-free
    contexts (what ``base`` offered it unseen) and adds its own kernels to them.  The level is chosen on the
    validation problems as :func:`fit_rule` does.  An ``applies`` rule (or a ``base`` of another kind) is fitted anew.
    """
    if rule_kind(metadata or {})[0] != "context" or base.kind != "context" \
            or len(base.kernels_by_level) != len(CONTEXT_LEVELS):
        return fit_rule(kernels=kernels, train_columns=train_columns, train_measured=train_measured,
                        validation_columns=validation_columns, validation_time_ms=validation_time_ms,
                        metadata=metadata)
    order = {k: j for j, k in enumerate(kernels)}
    props = context_columns(train_columns)
    devices = tuple(sorted(set(base.devices) | (set(props[DEVICE_PROPERTY].tolist()) - {""})))
    tables = tuple(_merged(old, _tables(props, train_measured, kernels, level), order)
                   for old, level in zip(base.kernels_by_level, CONTEXT_LEVELS))
    device_tables: tuple[dict[str, tuple[str, ...]], ...] = ()
    if len(devices) > 1:
        def per_device(rule: CandidateRule, level: int) -> dict[str, tuple[str, ...]]:
            if rule.per_device:
                return dict(rule.kernels_by_device_level[level])
            if len(rule.devices) == 1:  # a one-device rule's device-free contexts are its device's
                return {f"{rule.devices[0]}|{key}": names for key, names in rule.kernels_by_level[level].items()}
            return {}

        def prior(level: int) -> dict[str, tuple[str, ...]]:
            # A device new to ``base`` starts from what ``base`` offers an unseen device (its device-free
            # contexts), so a few problems of it add kernels to its candidates and never take any away.
            out = per_device(base, level)
            for device in sorted(set(devices) - set(base.devices)):
                out.update({f"{device}|{key}": names for key, names in base.kernels_by_level[level].items()})
            return out

        new_tables = [_tables(props, train_measured, kernels, (DEVICE_PROPERTY, *level)) for level in CONTEXT_LEVELS]
        device_tables = tuple(_merged(prior(d), new_tables[d], order) for d in range(len(CONTEXT_LEVELS)))
    common = {"kind": "context", "kernels_by_level": tables, "devices": devices,
              "kernels_by_device_level": device_tables}
    return _choose_level(common, kernels, validation_columns, validation_time_ms)


def rule_from_info(info: Mapping[str, Any], *, model_dir: str | None = None) -> CandidateRule:
    """The candidate rule saved in a model's ``config.json`` (``info["candidates"]``).

    Raises:
        InputError: the model has no candidate rule (written by an older reformer): refit it.
    """
    data = info.get("candidates")
    if not isinstance(data, Mapping) or data.get("kind") not in RULE_KINDS:
        where = f" {model_dir}" if model_dir else ""
        dataset = (info.get("dataset") or {}).get("metadata", {}).get("path") or "DATASET"
        raise InputError(f"model{where} has no candidate rule (it was written by an older reformer), so it cannot "
                         f"rank kernels without a list of applicable ones; refit it: reformer fit {dataset} -o "
                         f"{model_dir or 'MODEL_DIR'}")
    return CandidateRule.from_json(data)


def split_rule(train: Any, validation: Any) -> CandidateRule:
    """:func:`fit_rule` on the training and validation sides of a split (two
    :class:`~reformer.data.RuntimeMatrix`), as every selector trained on that split uses it."""
    return fit_rule(kernels=train.kernels, train_columns=train.columns(), train_measured=train.applicable,
                    validation_columns=validation.columns(), validation_time_ms=validation.time_ms,
                    metadata=train.metadata)
