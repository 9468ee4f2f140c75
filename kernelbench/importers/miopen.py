"""Import a MIOpen find-db file as a kernelbench dataset (``kernelbench import miopen``).

Each find-db line is ``<problem key>=<entry>;<entry>;...``: the key is parsed
by :mod:`~kernelbench.importers.miopen_key`, the entries (one per recorded
solver) by :mod:`~kernelbench.importers.miopen_fdb`.  Every usable entry
becomes one dataset row: ``kernel`` = solver, ``time_ms`` = MIOpen's measured
time, ``workspace_bytes``, ``algorithm`` = the algorithm family,
``status`` = ok, ``samples`` = null (MIOpen does not record it),
``miopen_key`` = the original key.

A find-db line keeps only the fastest few solvers MIOpen recorded (its
exporter keeps about four), so a solver missing from a problem may still be
applicable: the metadata says ``coverage: top-k recorded``.

Bad input never stops the import: a line or entry that cannot be used is
skipped and counted by reason (see :class:`~kernelbench.importers.report.ImportReport`);
``strict=True`` turns the first one into an :class:`InputError`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

import kernelbench
from kernelbench import devices
from kernelbench.devices import DeviceDescriptor, load_device_spec
from kernelbench.errors import InputError
from kernelbench.importers.miopen_device import resolve_device
from kernelbench.importers.miopen_fdb import (
    FdbFormat,
    describe_unrecognised,
    detect_format,
    parse_entries,
)
from kernelbench.importers.miopen_key import PROBLEM_COLUMNS, parse_keys
from kernelbench.importers.report import ImportReport, raise_first, skip_frame, summarize_skips
from kernelbench.importers.textfile import iter_lines
from kernelbench.problem import DEFAULT_PAD_MODE, PAD_MODE_FIELD
from kernelbench.schema import POLARS_SCHEMA, conform
from kernelbench.validate import output_size_columns, problem_ids

SOURCE = "miopen-fdb"
COVERAGE = "top-k recorded"
COVERAGE_NOTE = (
    "each find-db line lists only the fastest few solvers MIOpen recorded for the problem (its exporter keeps "
    "about four), not every applicable one: in this dataset a kernel 'applies' to a problem when it was recorded"
)
#: Lines per batch whose entries are parsed together (bounds memory; large enough for polars to pay off).
BATCH_LINES = 50_000
#: Lines looked at to recognise the find-db variant before the import starts.
PEEK_LINES = 1_000


@dataclasses.dataclass(frozen=True)
class ImportResult:
    """A conformed dataset frame, its metadata (for :func:`kernelbench.schema.write_dataset`) and the report."""

    frame: pl.DataFrame
    metadata: dict[str, Any]
    report: ImportReport


def import_miopen_fdb(
    path: str | os.PathLike[str],
    *,
    arch: str | None = None,
    num_cu: int | None = None,
    strict: bool = False,
    device_spec: str | os.PathLike[str] | None = None,
) -> ImportResult:
    """Read a find-db file (plain, ``.bz2`` or ``.gz``) into the dataset format.

    The device comes from the file name (``gfx90878`` -> gfx908, 120 CUs;
    ``gfx906_60`` -> gfx906, 60 CUs); ``arch``/``num_cu`` override it.  Its
    descriptor (:mod:`kernelbench.devices`) goes into the metadata as
    ``device.descriptor``: from ``device_spec`` (a TOML file) if given, else
    from the package's table, else null (the table lacks the device).

    Raises:
        InputError: the file is missing, unreadable or not a find-db (the
            message names what it looks like); the device is unknown; the
            ``device_spec`` file is invalid; nothing usable is in it; or, with
            ``strict``, at the first skipped line or entry.
    """
    path = Path(path)
    device = resolve_device(path, arch=arch, num_cu=num_cu)
    descriptor: DeviceDescriptor | None = None  # the table lacks the device: recorded as null, the CLI says so
    if device_spec is not None:
        descriptor = load_device_spec(device_spec)
    elif devices.table_id(device.label) in devices.table():
        descriptor = devices.descriptor(device.label)
    warnings: list[str] = []  # appended to by the reader thread
    with contextlib.closing(iter_lines(path, warn=warnings.append)) as raw:  # closing stops the reader thread
        lines = _text_lines(raw)
        head = list(itertools.islice(lines, PEEK_LINES))
        fmt = _detect(head, source=path.name)
        reader = _Reader(source=path.name, fmt=fmt, strict=strict)
        for line_no, text in itertools.chain(head, lines):
            reader.add(line_no, text)
    keys, kept, skipped_lines, skipped_entries = reader.finish()
    if strict and warnings:
        raise InputError(f"{warnings[0]} (--strict stops at anything it would ignore)")
    run_id = _import_id(path)
    frame = _rows(keys, kept, device_label=device.label, run_id=run_id)
    imported = keys.filter(pl.col("problem_id").is_in(frame["problem_id"].unique().implode()))
    report = ImportReport(
        source=path.name,
        lines=reader.lines,
        keys=frame["problem_id"].n_unique(),
        rows=frame.height,
        skipped_lines=summarize_skips(skipped_lines),
        skipped_entries=summarize_skips(skipped_entries),
        keys_without_entries=keys.height - frame["problem_id"].n_unique(),
        old_key_forms=_counts(imported["key_form"]),
        pad_modes=_counts(imported[PAD_MODE_FIELD].filter(imported[PAD_MODE_FIELD] != DEFAULT_PAD_MODE)),
        warnings=tuple(warnings),
    )
    if frame.is_empty():
        why = ", ".join(f"{c.reason} x{c.count}" for c in (*report.skipped_lines, *report.skipped_entries))
        raise InputError(f"{path.name}: no usable find-db entry in {report.lines} lines (skipped: {why})")
    device_meta = {**device.as_metadata(), "descriptor": None if descriptor is None else descriptor.as_dict()}
    metadata = {
        "format": "long",
        "source": SOURCE,
        "run_id": run_id,
        "device": device_meta,
        "devices": {device.label: [device_meta]},  # one list of descriptions per label, as export
        "coverage": COVERAGE,
        "coverage_note": COVERAGE_NOTE,
        "miopen_fdb_file": path.name,
        "fdb_format": fmt.value,
        "import_report": report.as_dict(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "kernelbench_version": kernelbench.__version__,
    }
    return ImportResult(frame, metadata, report)


def _counts(values: pl.Series) -> dict[str, int]:
    """Non-null values of ``values`` -> how often, most frequent first."""
    counts = values.drop_nulls().value_counts(sort=True)
    return dict(counts.iter_rows())


def _text_lines(raw_lines: Iterator[bytes]) -> Iterator[tuple[int, str | None]]:
    """``(line number, text)`` of non-blank lines; text is ``None`` for a line that is not UTF-8."""
    for line_no, raw in enumerate(raw_lines, 1):
        try:
            text = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError:
            yield line_no, None
            continue
        if text and not text.isspace():  # MIOpen does not blame empty lines either
            yield line_no, text


def _detect(head: list[tuple[int, str | None]], *, source: str) -> FdbFormat:
    values = [text.partition("=")[2] for _, text in head if text is not None]
    for value in values:
        fmt = detect_format(value)
        if fmt is not None:
            return fmt
    if not head:
        raise InputError(f"{source}: empty file (no find-db lines)")
    raise InputError(f"{source}: not a MIOpen find-db in a known format: {describe_unrecognised(values)}")


class _Reader:
    """Collects lines into batches; parses each batch's keys and entries with polars."""

    def __init__(self, *, source: str, fmt: FdbFormat, strict: bool) -> None:
        self.source, self.fmt, self.strict = source, fmt, strict
        self.lines = 0
        self._seen: set[str] = set()
        self._valid_shapes: set[tuple[Any, ...]] = set()
        # The current batch, as columns (faster to hand to polars than rows).
        self._lines: list[int] = []
        self._key_texts: list[str] = []
        self._values: list[str] = []
        self._line_skips: list[tuple[int, int, str, str]] = []
        self._keys: list[pl.DataFrame] = []
        self._kept: list[pl.DataFrame] = []
        self._skipped_lines: list[pl.DataFrame] = []
        self._skipped_entries: list[pl.DataFrame] = []

    def add(self, line_no: int, text: str | None) -> None:
        """Take one non-blank line (``None``: not UTF-8 text)."""
        self.lines += 1
        if text is None:
            return self._skip(line_no, "not_text", "line is not UTF-8 text")
        key, sep, value = text.partition("=")
        if not sep or not key:
            return self._skip(line_no, "no_key", f"no KEY= in {text[:60]!r}")
        if not value:
            return self._skip(line_no, "no_entries", "nothing after '='")
        if key in self._seen:
            return self._skip(line_no, "duplicate_key", "key already seen (MIOpen uses the first line)")
        self._seen.add(key)
        self._lines.append(line_no)
        self._key_texts.append(key)
        self._values.append(value)
        if len(self._lines) >= BATCH_LINES:
            self._flush()
        return None

    def _skip(self, line_no: int, reason: str, detail: str) -> None:
        self._line_skips.append((line_no, 0, reason, detail))

    def _flush(self) -> None:
        batch = pl.DataFrame({"line": self._lines, "miopen_key": self._key_texts, "value": self._values},
                             schema={"line": pl.Int64, "miopen_key": pl.String, "value": pl.String})
        keys = parse_keys(batch["miopen_key"], valid_shapes=self._valid_shapes).drop("key")
        parsed = pl.concat([batch, keys], how="horizontal")
        good = parsed.filter(pl.col("reason").is_null())
        key_skips = parsed.filter(pl.col("reason").is_not_null()).select(
            "line", pl.lit(0, dtype=pl.Int64).alias("entry"), "reason", "detail")
        line_skips = pl.concat([skip_frame(self._line_skips), key_skips]).sort("line")
        kept, entry_skips = parse_entries(good.select("line", "direction", "value"), self.fmt)
        if self.strict:
            raise_first(pl.concat([line_skips, entry_skips]), source=self.source)
        # Schema types now (int32 sizes), so the long frame built from these is not first made with int64.
        self._keys.append(good.select("line", "miopen_key", "key_form",
                                      *(pl.col(f).cast(POLARS_SCHEMA[f]) for f in PROBLEM_COLUMNS)))
        self._kept.append(kept)
        self._skipped_lines.append(line_skips)
        self._skipped_entries.append(entry_skips)
        self._lines, self._key_texts, self._values, self._line_skips = [], [], [], []

    def finish(self) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """``(keys, kept entries, skipped lines, skipped entries)`` once every line was added.

        ``keys`` has ``problem_id``.  A key in an old form that names the same problem
        as another line's key is skipped as a duplicate; the current form wins (MIOpen
        looks problems up by the key it writes now).
        """
        self._flush()
        keys = pl.concat(self._keys)
        keys = keys.with_columns(problem_ids(keys))
        first = keys.sort(pl.col("key_form").is_not_null(), "line").select(
            "line", pl.struct("problem_id").is_first_distinct().alias("_first"))
        keys = keys.join(first, on="line", how="left", maintain_order="left")
        duplicates = keys.filter(~pl.col("_first")).select(
            "line", pl.lit(0, dtype=pl.Int64).alias("entry"), pl.lit("duplicate_key").alias("reason"),
            pl.lit("same problem as another line's key (an old key form)").alias("detail"))
        if self.strict:
            raise_first(duplicates, source=self.source)
        keys = keys.filter(pl.col("_first")).drop("_first")
        kept = pl.concat(self._kept)
        kept = kept.filter(pl.col("line").is_in(keys["line"].implode()))
        skipped_entries = pl.concat(self._skipped_entries)
        skipped_entries = skipped_entries.filter(~pl.col("line").is_in(duplicates["line"].implode()))
        return keys, kept, pl.concat([*self._skipped_lines, duplicates]).sort("line"), skipped_entries


def _import_id(path: Path) -> str:
    """The import's ``run_id``: ``miopen-`` and a digest of the file, so re-importing a file gives the same id."""
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return f"miopen-{digest.hexdigest()[:12]}"


def _rows(keys: pl.DataFrame, kept: pl.DataFrame, *, device_label: str, run_id: str) -> pl.DataFrame:
    """One dataset row per kept entry, with its key's problem columns; conformed to the schema."""
    frame = kept.join(keys.drop("key_form"), on="line", how="inner", maintain_order="left").with_columns(
        *output_size_columns().values(),
        pl.lit("ok").alias("status"),
        pl.lit(device_label).alias("device"),
        pl.lit(SOURCE).alias("source"),
        pl.lit(run_id).alias("run_id"),
    )
    return conform(frame.drop("line"))
