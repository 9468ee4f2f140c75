"""What an import skipped, and why: counts by reason with the first line numbers.

Skips are collected as frames with the columns of :data:`SKIP_SCHEMA`: the
1-based ``line``, the 1-based ``entry`` within the line (0 when the whole line
was skipped), a short ``reason`` code and a human-readable ``detail``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from kernelbench.errors import InputError

SKIP_SCHEMA = {"line": pl.Int64, "entry": pl.Int64, "reason": pl.String, "detail": pl.String}
#: How many line numbers a report keeps per reason.
FIRST_LINES = 5


def skip_frame(rows: Sequence[tuple[int, int, str, str]] = ()) -> pl.DataFrame:
    """A skip frame from ``(line, entry, reason, detail)`` tuples."""
    return pl.DataFrame(list(rows), schema=SKIP_SCHEMA, orient="row")


@dataclasses.dataclass(frozen=True)
class SkipCount:
    """How often one reason occurred, where first, and the first occurrence's detail."""

    reason: str
    count: int
    first_lines: tuple[int, ...]
    example: str

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"first_lines": list(self.first_lines)}


@dataclasses.dataclass(frozen=True)
class ImportReport:
    """Outcome of one import: what was read, kept and skipped.

    ``lines`` counts non-empty lines; ``keys`` the lines whose problem was
    imported (at least one entry kept); ``rows`` the entries kept.
    ``keys_without_entries`` counts lines with a valid key all of whose entries
    were skipped (those entries are in ``skipped_entries``).
    ``old_key_forms`` counts imported problems whose key was in an old form, by
    form; ``pad_modes`` imported problems by padding mode other than ``default``.
    ``warnings`` are
    one-line notes on data ignored outside any line (bytes after the end of a
    bzip2 file's data).
    """

    source: str
    lines: int
    keys: int
    rows: int
    skipped_lines: tuple[SkipCount, ...]
    skipped_entries: tuple[SkipCount, ...]
    keys_without_entries: int
    old_key_forms: Mapping[str, int] = dataclasses.field(default_factory=dict)
    pad_modes: Mapping[str, int] = dataclasses.field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def skipped_line_count(self) -> int:
        return sum(s.count for s in self.skipped_lines)

    @property
    def skipped_entry_count(self) -> int:
        return sum(s.count for s in self.skipped_entries)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored as the dataset's ``import_report`` metadata)."""
        return {
            "source": self.source,
            "lines": self.lines,
            "keys": self.keys,
            "rows": self.rows,
            "keys_without_entries": self.keys_without_entries,
            "skipped_lines": {s.reason: s.as_dict() for s in self.skipped_lines},
            "skipped_entries": {s.reason: s.as_dict() for s in self.skipped_entries},
            "old_key_forms": dict(self.old_key_forms),
            "pad_modes": dict(self.pad_modes),
            "warnings": list(self.warnings),
        }

    def format(self) -> str:
        """A few lines for the terminal."""
        out = [
            (f"{self.source}: {self.lines:,} lines, {self.keys:,} problems imported, {self.rows:,} rows; "
             f"skipped {self.skipped_line_count:,} lines and {self.skipped_entry_count:,} entries")
        ]
        for kind, counts in (("lines", self.skipped_lines), ("entries", self.skipped_entries)):
            for s in counts:
                where = ", ".join(map(str, s.first_lines)) + (", ..." if s.count > len(s.first_lines) else "")
                out.append(f"  skipped {kind}: {s.reason} x{s.count:,} (line {where}), e.g. {s.example}")
        for form, count in self.old_key_forms.items():
            out.append(f"  imported {count:,} problems from keys in an old form: {form}")
        for mode, count in self.pad_modes.items():
            out.append(f"  imported {count:,} problems in MIOpen's '{mode}' padding mode (pad_mode)")
        if self.keys_without_entries:
            out.append(f"  {self.keys_without_entries:,} valid keys had no usable entry and were left out")
        out += [f"  warning: {text}" for text in self.warnings]
        return "\n".join(out)


def summarize_skips(skips: pl.DataFrame) -> tuple[SkipCount, ...]:
    """Counts by reason, most frequent first, each with its first line numbers and first detail."""
    if skips.is_empty():
        return ()
    grouped = (
        skips.sort(["line", "entry"])
        .group_by("reason", maintain_order=True)
        .agg(pl.len().alias("count"), pl.col("line").unique(maintain_order=True).head(FIRST_LINES).alias("lines"),
             pl.col("detail").first())
        .sort(["count", "reason"], descending=[True, False])
    )
    return tuple(
        SkipCount(reason, count, tuple(lines), detail)
        for reason, count, lines, detail in grouped.iter_rows()
    )


def raise_first(skips: pl.DataFrame, *, source: str) -> None:
    """For ``--strict``: raise the earliest skip as an error; do nothing if there is none.

    Raises:
        InputError: naming the file, line, entry and reason of the first skip.
    """
    if skips.is_empty():
        return
    line, entry, reason, detail = skips.sort(["line", "entry"]).row(0)
    where = f"line {line}" + (f", entry {entry}" if entry else "")
    raise InputError(f"{source} {where}: {reason}: {detail} (--strict stops at the first line or entry it would skip)")
