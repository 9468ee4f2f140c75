"""Tuning with a trained selector: rank each problem's applicable kernels, then measure only the first few.

``kernelbench tune`` is the sweep with a plan (:data:`kernelbench.sweep.Plan`): per
problem, the model ranks the kernels whose ``applies`` is true, and the sweep's own
check-and-time code measures them in rank order until the stopping rule of
:class:`TuneOptions` holds:

* ``top_k``: the first K ranked kernels;
* ``confidence``: until the measured kernels' predicted probabilities sum to at least P;
* both: whichever comes first.

A problem needs one correct kernel, so when none of those passes validation
(status not ``ok``) tuning goes on down the ranking until one does.  Each row
records the kernel's ``predicted_rank`` (1 = most probable among the problem's
applicable kernels the model knows) and ``predicted_prob``; the run directory is
an ordinary, resumable run directory that ``kernelbench export`` reads.

``reformer`` imports ``kernelbench``, so ``reformer`` is imported only inside functions here.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kernelbench.errors import InputError
from kernelbench.kernels.base import Kernel
from kernelbench.spaces import SpaceEntry

if TYPE_CHECKING:  # pragma: no cover
    from reformer.selector import Selector

#: The ``source`` column of rows that ``kernelbench tune`` measured.
SOURCE = "kernelbench-tune"
#: Probability mass is summed in float32 by the model; a mass this close below P counts as P.
_MASS_SLACK = 1e-6


@dataclasses.dataclass(frozen=True, kw_only=True)
class TuneOptions:
    """When to stop measuring a problem's ranked kernels (see the module docstring).

    Raises:
        InputError: neither option given, ``top_k`` not a positive integer, ``confidence`` outside (0, 1].
    """

    top_k: int | None = None
    confidence: float | None = None

    def __post_init__(self) -> None:
        if self.top_k is None and self.confidence is None:
            raise InputError("give --top-k K or --confidence P (or both: whichever is reached first)")
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, int)
                                       or self.top_k < 1):
            raise InputError(f"--top-k must be a positive integer, got {self.top_k!r}")
        if self.confidence is not None and not (0 < self.confidence <= 1):  # also refuses NaN
            raise InputError(f"--confidence must be in (0, 1], got {self.confidence!r}")

    def enough(self, *, measured: int, mass: float) -> bool:
        """Whether ``measured`` kernels holding probability ``mass`` satisfy the rule."""
        if self.top_k is not None and measured >= self.top_k:
            return True
        return self.confidence is not None and mass >= self.confidence - _MASS_SLACK

    def as_dict(self) -> dict[str, Any]:
        return {"top_k": self.top_k, "confidence": self.confidence}


def parse_top_k(text: str | None) -> int | None:
    """``--top-k`` text -> int (its range is checked by :class:`TuneOptions`).  Raises InputError on a non-integer."""
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        raise InputError(f"--top-k must be a positive integer, got {text!r}") from None


def parse_confidence(text: str | None) -> float | None:
    """``--confidence`` text -> float (its range is checked by :class:`TuneOptions`).  Raises InputError on a non-number."""
    if text is None:
        return None
    try:
        return float(text.strip())
    except ValueError:
        raise InputError(f"--confidence must be in (0, 1], got {text!r}") from None


# ---------------------------------------------------------------- the model


def model_devices(selector: Selector) -> list[str]:
    """Device labels of the dataset the model was trained on (empty when the model does not record them)."""
    metadata = (selector.trained.info.get("dataset") or {}).get("metadata") or {}
    devices = metadata.get("devices")
    return sorted(devices) if isinstance(devices, Mapping) else []


def check_model_device(selector: Selector, device_label: str, *, allow_other_device: bool = False) -> str | None:
    """Refuse a model trained on another device; returns a note when ``allow_other_device`` lets it through.

    Raises:
        InputError: the model's training data does not include ``device_label`` (one line, names both).
    """
    trained_on = model_devices(selector)
    if device_label in trained_on:
        return None
    what = f"was trained on {', '.join(trained_on)}" if trained_on else "does not record the device it was trained on"
    if allow_other_device:
        return f"note: the model {what}; ranking for {device_label} anyway (--allow-other-device)"
    raise InputError(f"the model {what}, not on this run's device {device_label}: its ranking may not hold "
                     "here; pass --allow-other-device to use it anyway")


def model_sha256(model_dir: str | Path) -> str:
    """SHA-256 of the model's weights file: identifies the model a tune run directory was ranked with."""
    from reformer.data import file_sha256
    from reformer.store import WEIGHTS_FILE

    return file_sha256(Path(model_dir) / WEIGHTS_FILE)


@dataclasses.dataclass(frozen=True)
class Ranking:
    """Per problem id, the applicable kernels the model knows, most probable first, with their probability."""

    ranked: dict[str, list[tuple[Kernel, float]]]
    #: Applicable kernels the model does not know: never ranked, never measured.
    unknown_kernels: tuple[str, ...]
    rank_s: float


def rank_problems(selector: Selector, entries: Sequence[SpaceEntry], kernels: Sequence[Kernel], *,
                  device: str | None = None) -> Ranking:
    """Rank every applicable kernel of every problem in one batched pass of the model.

    Applicability is each kernel's own ``applies`` (as in the sweep); problems no kernel applies to get no entry.
    ``device`` is the run's device label (read by a model trained on several devices).

    Raises:
        InputError: the model knows none of ``kernels``, or none of the applicable kernels of some problem.
    """
    by_name = {k.name: k for k in kernels}
    known = [k for k in kernels if not selector.unknown_kernels([k.name])]
    if not known:
        raise InputError(f"the model ranks none of this run's kernels ({', '.join(by_name)}); it knows "
                         f"{', '.join(selector.kernels)}: train it on a dataset of these kernels")
    started = time.perf_counter()
    problems, names, unknown = [], [], set()
    for entry in entries:
        applicable = [k.name for k in kernels if k.reason_not_applicable(entry.problem) is None]
        if not applicable:
            continue
        missing = set(selector.unknown_kernels(applicable))
        ranked_names = [k for k in applicable if k not in missing]
        unknown |= missing
        if not ranked_names:
            raise InputError(f"the model ranks none of the applicable kernels ({', '.join(applicable)}) of problem "
                             f"{entry.problem.describe()}; it knows {', '.join(selector.kernels)}")
        problems.append(entry.problem)
        names.append(ranked_names)
    results = selector.select_many(problems, applicable=names, top=len(selector.kernels), device=device) if problems else []
    ranked = {p.problem_id: [(by_name[name], prob) for name, prob in result] for p, result in zip(problems, results)}
    return Ranking(ranked=ranked, unknown_kernels=tuple(sorted(unknown)), rank_s=time.perf_counter() - started)


def plan_from(ranking: Ranking, options: TuneOptions):  # -> kernelbench.sweep.Plan
    """The sweep plan that measures each problem's ranked kernels in order until ``options`` hold.

    Kernels already stored count (they are not measured again), so a resumed run continues where it stopped.
    """

    def plan(entry: SpaceEntry, applicable: Sequence[Kernel], statuses: Mapping[str, str]
             ) -> Iterator[tuple[Kernel, Mapping[str, Any]]]:
        measured, mass, has_ok = 0, 0.0, False
        for rank, (kernel, prob) in enumerate(ranking.ranked.get(entry.problem.problem_id, []), 1):
            if has_ok and options.enough(measured=measured, mass=mass):
                return
            if kernel.name not in statuses:
                # The sweep measures it and records its status in `statuses` before asking for the next one.
                yield kernel, {"predicted_rank": rank, "predicted_prob": prob, "source": SOURCE}
            measured += 1
            mass += prob
            has_ok = has_ok or statuses.get(kernel.name) == "ok"

    return plan


# ---------------------------------------------------------------- what the run holds


@dataclasses.dataclass(frozen=True)
class TuneStats:
    """What a tune run directory holds for a set of problems (every invocation so far, not only this one)."""

    problems: int
    without_ok: int
    measured: int
    applicable: int
    mean_mass: float
    max_measured: int


def tune_stats(run_dir: str | Path, ranking: Ranking) -> TuneStats:
    """Count the stored rows of the ranked problems: kernels measured, applicable, probability mass measured."""
    import polars as pl

    from kernelbench.store import read_parts

    ids = list(ranking.ranked)
    rows = read_parts(run_dir, columns=["problem_id", "status", "predicted_prob"]).filter(pl.col("problem_id").is_in(ids))
    per = rows.group_by("problem_id").agg(
        pl.len().alias("n"), pl.col("predicted_prob").sum().alias("mass"), (pl.col("status") == "ok").any().alias("ok"))
    return TuneStats(
        problems=len(ids),
        without_ok=len(ids) - int(per["ok"].sum()),
        measured=rows.height,
        applicable=sum(len(r) for r in ranking.ranked.values()),
        mean_mass=float(per["mass"].mean()) if per.height else math.nan,
        max_measured=int(per["n"].max()) if per.height else 0,
    )


def format_stats(stats: TuneStats, ranking: Ranking) -> str:
    """Lines for the end of ``kernelbench tune`` (after the sweep's own summary)."""
    share = stats.measured / stats.applicable if stats.applicable else math.nan
    lines = [
        f"{'model ranking':<22}{ranking.rank_s:.2f} s for {len(ranking.ranked)} problems (this invocation)",
        f"{'kernels measured':<22}{stats.measured} of {stats.applicable} applicable ({share:.1%}), "
        f"at most {stats.max_measured} per problem; mean probability mass measured {stats.mean_mass:.3f}",
    ]
    if stats.without_ok:
        lines.append(f"{'no correct kernel':<22}{stats.without_ok} problem(s): every ranked kernel failed")
    if ranking.unknown_kernels:
        lines.append(f"{'never measured':<22}{', '.join(ranking.unknown_kernels)} (unknown to the model)")
    return "\n".join(lines)
