"""Measured orders a model borrows for a device it never saw, from a training device of the same architecture.

A model fitted on described GPUs (MIOpen find-dbs, CUDA devices) keeps, beside its
weights, the measured order of every problem of its training devices: the kernel
indices of its vocabulary, fastest first (``measured.parquet`` in the model
directory, :class:`MeasuredOrders`).  When the model ranks a problem on a device it
was **not** trained on, and a training device has the same architecture
(:attr:`kernelbench.devices.DeviceDescriptor.arch`, e.g. ``gfx906`` for
``gfx906_60`` and ``gfx906_64``) and measured the same ``problem_id``, the nearest
such device's measured kernels come first, in their measured order; the model's
ranking follows for every other kernel (:func:`borrow_scores`).  Problems no
same-architecture device measured, devices of a new architecture and the training
devices themselves keep the model's ranking.

Why only the same architecture: on the six MIOpen find-dbs, the same problem's
winner on a device of another architecture is a worse guess than the model
(docs/transfer.md, "Borrowed orders"); on a sibling of the same architecture it is a
far better one.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from kernelbench.devices import DeviceDescriptor, nearest_first
from kernelbench.errors import InputError
from reformer.device_features import find_descriptor

#: The file of a model directory that holds the measured orders.
MEASURED_FILE = "measured.parquet"


class _Tables:
    """The arrays of :class:`MeasuredOrders`: given, or read from a file on first use (once, under a lock)."""

    def __init__(self, arrays: tuple[dict[str, np.ndarray], ...] | None = None, path: Path | None = None) -> None:
        self._arrays, self._path, self._lock = arrays, path, threading.Lock()

    def get(self) -> tuple[dict[str, np.ndarray], ...]:
        if self._arrays is None:
            with self._lock:
                if self._arrays is None:
                    assert self._path is not None
                    self._arrays = MeasuredOrders.read(self._path).tables.get()
        return self._arrays


@dataclasses.dataclass(frozen=True, eq=False)
class MeasuredOrders:
    """Per training device, every measured problem's kernels fastest first (indices into the model's vocabulary).

    Attributes:
        devices: the device labels whose orders are kept, sorted.
        tables: the arrays below; a model directory's are read on first use (:meth:`open`), so a selector that
            never borrows never reads them.

    Properties (the arrays):
        problem_ids: device label -> sorted ``problem_id`` values, ASCII bytes (numpy ``S`` array: a quarter of
            the memory of ``<U``).
        offsets: device label -> int64 ``[n + 1]``: problem ``i``'s kernels are ``kernels[offsets[i]:offsets[i+1]]``.
        kernels: device label -> uint16 kernel indices, each problem's fastest first.
    """

    devices: tuple[str, ...]
    tables: _Tables = dataclasses.field(repr=False)

    @property
    def problem_ids(self) -> Mapping[str, np.ndarray]:
        return self.tables.get()[0]

    @property
    def offsets(self) -> Mapping[str, np.ndarray]:
        return self.tables.get()[1]

    @property
    def kernels(self) -> Mapping[str, np.ndarray]:
        return self.tables.get()[2]

    @classmethod
    def open(cls, path: Path, devices: Sequence[str]) -> MeasuredOrders:
        """The orders :meth:`write` wrote to ``path``, of ``devices`` (as :attr:`devices` recorded them), read on
        first use (a damaged file raises InputError then, see :meth:`read`)."""
        return cls(devices=tuple(sorted(devices)), tables=_Tables(path=path))

    @classmethod
    def _from_rows(cls, devices: np.ndarray, problem_ids: np.ndarray, counts: np.ndarray,
                   flat: np.ndarray) -> MeasuredOrders:
        """From rows sorted by (device, problem_id): row ``i`` has ``counts[i]`` kernels in ``flat``, in order."""
        ends = np.cumsum(counts)
        starts = ends - counts
        cuts = np.flatnonzero(devices[1:] != devices[:-1]) + 1
        out: tuple[dict[str, np.ndarray], ...] = ({}, {}, {})
        for lo, hi in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [len(devices)]])):
            if hi == lo:
                continue
            device = str(devices[lo])
            out[0][device] = problem_ids[lo:hi]
            out[1][device] = np.concatenate([[0], ends[lo:hi] - starts[lo]]).astype(np.int64)
            out[2][device] = flat[starts[lo]:ends[hi - 1]]
        return cls(devices=tuple(sorted(out[0])), tables=_Tables(arrays=out))

    @classmethod
    def from_table(cls, frame: pl.DataFrame) -> MeasuredOrders:
        """From a long table with columns ``device``, ``problem_id`` and ``ranked`` (list of kernel indices)."""
        frame = frame.sort(["device", "problem_id"])
        return cls._from_rows(frame["device"].to_numpy().astype(str), frame["problem_id"].to_numpy().astype("S"),
                              frame["ranked"].list.len().to_numpy().astype(np.int64),
                              frame["ranked"].explode().drop_nulls().to_numpy().astype(np.uint16))

    @classmethod
    def from_times(cls, problem_ids: Sequence[str], devices: Sequence[str], time_ms: np.ndarray) -> MeasuredOrders:
        """From a runtime matrix: ``time_ms`` float ``[n, n_kernels]`` (NaN: not measured), its columns the model's
        vocabulary (at most 65,536 kernels), one row per (``problem_ids[i]``, ``devices[i]``)."""
        if time_ms.shape[1] > np.iinfo(np.uint16).max + 1:
            raise ValueError("more kernels than uint16 indices can name")
        ids, labels = np.asarray(problem_ids).astype("S"), np.asarray(devices).astype(str)
        rows = np.lexsort((ids, labels))
        rows = rows[~np.isnan(time_ms[rows]).all(axis=1)]
        times = time_ms[rows]
        measured = ~np.isnan(times)
        # Fastest first; unmeasured kernels sort last, and the mask keeps each row's first count entries.
        order = np.argsort(np.where(measured, times, np.inf), axis=1, kind="stable")
        counts = measured.sum(axis=1)
        flat = order[np.arange(times.shape[1]) < counts[:, None]].astype(np.uint16)
        return cls._from_rows(labels[rows], ids[rows], counts.astype(np.int64), flat)

    def to_frame(self) -> pl.DataFrame:
        """The long table :meth:`from_table` reads."""
        import pyarrow as pa

        parts = []
        for device in self.devices:
            ranked = pa.ListArray.from_arrays(pa.array(self.offsets[device].astype(np.int32)),
                                              pa.array(self.kernels[device], type=pa.uint16()))
            parts.append(pl.DataFrame({"device": [device] * (len(self.offsets[device]) - 1),
                                       "problem_id": self.problem_ids[device].astype(str)})
                         .with_columns(pl.from_arrow(ranked).alias("ranked")))
        empty = pl.DataFrame(schema={"device": pl.String, "problem_id": pl.String, "ranked": pl.List(pl.UInt16)})
        return pl.concat(parts) if parts else empty

    def write(self, path: Path) -> None:
        """Write the orders to ``path`` (Parquet; a model directory writes it atomically as a whole)."""
        # Sorted by problem: the ids repeat across devices and compress well; level 19 takes seconds on six
        # find-dbs and saves a third against the default level (the files are committed with study models).
        self.to_frame().sort(["problem_id", "device"]).write_parquet(path, compression="zstd", compression_level=19)

    @classmethod
    def read(cls, path: Path) -> MeasuredOrders:
        """Read what :meth:`write` wrote.

        Raises:
            InputError: the file is not such a table.
        """
        try:
            frame = pl.read_parquet(path, columns=["device", "problem_id", "ranked"])
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise InputError(f"{path}: not a table of measured orders ({exc}); refit the model") from None
        return cls.from_table(frame)

    def order(self, device: str, problem_id: str) -> np.ndarray | None:
        """The measured order of ``problem_id`` on ``device`` (kernel indices, fastest first), or None."""
        if device not in self.devices:
            return None
        ids = self.problem_ids[device]
        key = problem_id.encode("ascii", "replace")
        i = int(np.searchsorted(ids, key))
        if i == len(ids) or ids[i] != key:
            return None
        offsets = self.offsets[device]
        return self.kernels[device][offsets[i]:offsets[i + 1]]


def _arch(label: str, descriptors: Mapping[str, DeviceDescriptor]) -> str | None:
    """The architecture of device ``label`` (``descriptors`` first, then the package's table); None if undescribed."""
    try:
        return find_descriptor(label, trained={}, given=descriptors).arch
    except InputError:
        return None


def sources(orders: MeasuredOrders, device: str, *, descriptors: Mapping[str, DeviceDescriptor] | None = None,
            any_architecture: bool = False, distance_of: Callable[[str, str], float] | None = None) -> list[str]:
    """The devices of ``orders`` that ``device`` borrows from, nearest first
    (:func:`kernelbench.devices.nearest_first`; ``distance_of`` replaces the descriptors' distance).

    By default those of its architecture, and none if it is one of the devices itself (a training device keeps
    the model's ranking) or undescribed.  ``any_architecture``: every other device, whatever its architecture
    (the lookup baseline, :mod:`reformer.lookup`, and the counterfactual of benchmarks/bench_borrowed.py).

    Raises:
        InputError: ``any_architecture`` without ``distance_of``, and a device has no descriptor.
    """
    known = dict(descriptors or {})
    if any_architecture:
        others = [d for d in orders.devices if d != device]
    else:
        arch = _arch(device, known)
        if device in orders.devices or arch is None:
            return []
        others = [d for d in orders.devices if _arch(d, known) == arch]
    return nearest_first(device, others, descriptors=known, distance_of=distance_of) if others else []


@dataclasses.dataclass(frozen=True)
class Borrowed:
    """Which problems of a batch took a measured order, and from where.

    Attributes:
        source: per problem, the device label its order came from (``""``: the model's own ranking).
    """

    source: tuple[str, ...]

    @property
    def share(self) -> float:
        """Share of the problems that borrowed (0.0 for none)."""
        return sum(1 for s in self.source if s) / len(self.source) if self.source else 0.0

    def counts(self) -> dict[str, int]:
        """Problems per source device (only those that borrowed)."""
        found: dict[str, int] = {}
        for label in self.source:
            if label:
                found[label] = found.get(label, 0) + 1
        return dict(sorted(found.items()))


def borrow_scores(scores: np.ndarray, problem_ids: Sequence[str], devices: Sequence[str], orders: MeasuredOrders, *,
                  descriptors: Mapping[str, DeviceDescriptor] | None = None, any_architecture: bool = False,
                  distance_of: Callable[[str, str], float] | None = None) -> tuple[np.ndarray, Borrowed]:
    """``scores`` (float ``[n, n_kernels]``, higher is better) with each borrowing problem's measured kernels
    raised above all others, fastest first; the other kernels keep their order below them.  Masks apply after:
    a borrowed kernel a caller rules out stays out.  Returns a new array and where each problem borrowed from.
    ``any_architecture``, ``distance_of``: see :func:`sources`.

    Raises:
        ValueError: ``problem_ids``, ``devices`` and ``scores`` differ in length.
    """
    if not len(problem_ids) == len(devices) == len(scores):
        raise ValueError("scores, problem_ids and devices must have one entry per problem")
    out = np.array(scores, dtype=np.float64 if scores.dtype == np.float64 else np.float32, copy=True)
    chosen = [""] * len(devices)
    labels = np.asarray(devices, dtype=str)
    by_device = {device: sources(orders, device, descriptors=descriptors, any_architecture=any_architecture,
                                 distance_of=distance_of) for device in np.unique(labels).tolist()}
    # Only the problems of devices that borrow at all are looked up (none, for a model on its training devices).
    for i in np.flatnonzero(np.isin(labels, [d for d, found in by_device.items() if found])).tolist():
        ranked, chosen[i] = first_order(orders, by_device[labels[i]], str(problem_ids[i]))
        if ranked is None:
            continue
        row = out[i]
        finite = row[np.isfinite(row)]
        top = float(finite.max()) if len(finite) else 0.0
        # Above the row's best by one step per place, so any mask keeps the measured order.
        row[ranked] = top + np.arange(len(ranked), 0, -1, dtype=row.dtype)
    return out, Borrowed(source=tuple(chosen))


def first_order(orders: MeasuredOrders, ordered_sources: Sequence[str],
                problem_id: str) -> tuple[np.ndarray | None, str]:
    """The measured order of ``problem_id`` on the first of ``ordered_sources`` (nearest first, see
    :func:`sources`) that measured it, and that device; ``(None, "")`` when none did."""
    for source in ordered_sources:
        ranked = orders.order(source, problem_id)
        if ranked is not None:
            return ranked, source
    return None, ""


def describe(borrowed: Borrowed, device: str) -> str:
    """One line for a user: how many of ``device``'s problems took a measured order, and from which devices."""
    counts = borrowed.counts()
    if not counts:
        return f"{device}: no problem borrowed a measured order (no training device of its architecture measured them)"
    parts = ", ".join(f"{n:,} from {source}" for source, n in counts.items())
    return (f"{device}: {sum(counts.values()):,} of {len(borrowed.source):,} problems ranked by the measured order "
            f"of a training device of the same architecture ({parts})")


def fit_measured_orders(problem_ids: Sequence[str], devices: Sequence[str], time_ms: np.ndarray, *,
                        training_devices: Sequence[str], described: Mapping[str, DeviceDescriptor] | None = None,
                        init: MeasuredOrders | None = None) -> MeasuredOrders | None:
    """The measured orders a fit keeps: every row of ``training_devices`` (all of a device's measured problems,
    whichever split they fell in: they are only ever borrowed for *another* device), plus ``init``'s orders of
    devices these rows lack (a fine-tuned model keeps its starting model's).  None when a training device has
    no architecture to match (no descriptor in ``described`` or the package's table: CPU datasets).
    """
    known = dict(described or {})
    if not training_devices or any(_arch(d, known) is None for d in training_devices):
        return init
    keep = np.isin(np.asarray(devices, dtype=str), np.asarray(list(training_devices), dtype=str))
    rows = np.flatnonzero(keep)
    fresh = MeasuredOrders.from_times([problem_ids[i] for i in rows], [devices[i] for i in rows], time_ms[rows])
    if init is None:
        return fresh
    kept = init.to_frame().filter(~pl.col("device").is_in(list(fresh.devices)))
    return MeasuredOrders.from_table(pl.concat([kept, fresh.to_frame()]))
