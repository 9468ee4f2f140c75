"""Shards of a sweep: which problems a task measures, and ``--shard auto`` for job arrays.

A sweep split into ``n`` shards writes every shard into the same run directory; shard ``i``
measures every ``n``-th problem starting at ``i``.  The run directory keeps the shard count it
was created with (``docs/cluster.md``), so a task resubmitted on its own (``sbatch --array=2``,
whose ``SLURM_ARRAY_TASK_COUNT`` is 1) still runs shard 2 of the original count.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import TypeVar

from kernelbench.errors import InputError

T = TypeVar("T")

#: Environment variables of ``--shard auto``, in order of precedence: (index, count) pairs.
AUTO_SOURCES = (("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"), ("RANK", "WORLD_SIZE"))


@dataclasses.dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based, e.g. ``SLURM_ARRAY_TASK_ID`` with ``--array=0-(n-1)``)."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        """Parse ``i/n``.  Raises InputError unless ``0 <= i < n``."""
        try:
            i, n = (int(part) for part in text.split("/"))
        except ValueError:
            raise InputError(f"--shard {text!r}: expected i/n (e.g. 0/4) or auto") from None
        if not (n >= 1 and 0 <= i < n):
            raise InputError(f"--shard {text!r}: need 0 <= i < n (shards are numbered from 0)")
        return cls(i, n)

    def select(self, entries: Sequence[T]) -> list[T]:
        """Every ``count``-th entry starting at ``index``: deterministic and size-balanced."""
        return list(entries[self.index :: self.count])

    @property
    def tag(self) -> str:
        """``"2of4"``: the shard in file names."""
        return f"{self.index}of{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def _int_env(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise InputError(f"--shard auto: {name}={env[name]!r} is not an integer") from None


def resolve_shard(text: str, *, recorded_count: int | None, env: Mapping[str, str] | None = None) -> Shard:
    """The shard of ``--shard TEXT``: ``i/n``, or ``auto`` from a job array's environment.

    ``auto`` reads ``SLURM_ARRAY_TASK_ID`` and ``SLURM_ARRAY_TASK_COUNT`` (the array must be
    ``--array=0-(n-1)``), else torchrun's ``RANK`` and ``WORLD_SIZE``.  When the run directory
    already records a shard count (``recorded_count``) that count is used, so a resubmitted subset of
    the array (fewer tasks) still runs the original shards.

    Raises:
        InputError: malformed text, ``auto`` without the variables, an index outside the array,
            an array that is not numbered 0..n-1, or a count that differs from the run directory's.
    """
    env = os.environ if env is None else env
    if text.strip().lower() != "auto":
        shard = Shard.parse(text)
        if recorded_count is not None and shard.count != recorded_count:
            raise InputError(f"--shard {text}: this run directory is split into {recorded_count} shards; "
                             f"use --shard i/{recorded_count}, or another -o")
        return shard
    for index_var, count_var in AUTO_SOURCES:
        if index_var in env and count_var in env:
            break
    else:
        raise InputError("--shard auto: neither SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT (a SLURM job array) "
                         "nor RANK/WORLD_SIZE (torchrun) is set; give --shard i/n")
    index, count = _int_env(env, index_var), _int_env(env, count_var)
    if index_var.startswith("SLURM") and recorded_count is None:
        low = int(env.get("SLURM_ARRAY_TASK_MIN", "0") or 0)
        high = int(env.get("SLURM_ARRAY_TASK_MAX", str(count - 1)) or count - 1)
        if low != 0 or high != count - 1:
            raise InputError(f"--shard auto: the job array runs tasks {low}..{high} ({count} tasks); "
                             f"submit it as --array=0-{count - 1} so task i runs shard i")
    if recorded_count is not None:
        if count > recorded_count:
            raise InputError(f"--shard auto: {count_var}={count} but this run directory is split into "
                             f"{recorded_count} shards; use an array of {recorded_count} tasks, or another -o")
        count = recorded_count
    if not 0 <= index < count:
        raise InputError(f"--shard auto: {index_var}={index} is outside 0..{count - 1}")
    return Shard(index, count)
