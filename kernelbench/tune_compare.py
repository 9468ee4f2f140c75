"""Score a tune run against an exhaustive sweep of the same problems (``kernelbench tune --compare RUN_DIR``).

Two figures, on the problems the tune ranked:

* **measuring time**: Σ of the rows' ``measure_s`` (wall time of each kernel's prepare, checked run and
  timing loop; the per-problem inputs and float64 reference, which both runs compute once, are not in it),
  tune against the exhaustive sweep;
* **chosen kernel against the exhaustive best**: the tune's choice for a problem is its fastest ``ok``
  kernel; it is scored with the time the *exhaustive* run measured for that kernel (so picking the
  exhaustive best scores exactly 1, whatever the noise between the two runs), against the fastest
  kernel of the exhaustive run.  Ratios are ``t_chosen / t_best`` (>= 1): the geometric mean and
  ``Σ t_chosen / Σ t_best`` come from :mod:`reformer.metrics`, the worst case is the largest ratio.

A chosen kernel without an ``ok`` row in the exhaustive run is scored with the tune's own time (and
counted as such), and then also counts as a candidate for the best.  A last line compares the chosen
kernels' own times in the two runs: on a loaded machine they can differ by orders of magnitude, and
then the ratios above say more about the timings than about the tune.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from kernelbench.errors import InputError


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Tune against exhaustive on the same problems; times in seconds (measuring) and ms (kernels)."""

    problems: int
    #: Problems where the tune found no correct kernel (not in the ratios below).
    without_choice: int
    tune_rows: int
    exhaustive_rows: int
    tune_measure_s: float
    exhaustive_measure_s: float
    geomean_ratio: float
    sum_ratio: float
    worst_ratio: float
    worst_problem: str
    chosen_is_best: int
    #: Chosen kernels that the exhaustive run has no ok time for (scored with the tune's time).
    scored_with_tune_time: int
    #: The chosen kernels' own times, tune / exhaustive run: geometric mean, and how many differ by more than 2x
    #: (both measure the same kernel on the same problem: a large difference means unreliable timings).
    remeasure_geomean: float
    remeasure_off_2x: int

    @property
    def measure_share(self) -> float:
        return self.tune_measure_s / self.exhaustive_measure_s if self.exhaustive_measure_s > 0 else math.nan


def check_compare_run(compare_dir: str | Path, *, device_label: str, problem_ids: Collection[str],
                      rule: Mapping[str, Any]) -> None:
    """Refuse, before any measuring, a ``--compare`` run that cannot score this tune.

    ``rule`` is the tune's stopping rule (as in the manifest): measuring times compare only under the same rule.

    Raises:
        InputError: not a run directory, a tune run, another device, it lacks an ``ok`` row for some of
            ``problem_ids``, or it used another stopping rule (one line each, naming the difference).
    """
    import polars as pl

    from kernelbench.store import read_manifest, read_parts

    manifest = read_manifest(compare_dir)
    if manifest.get("tune"):
        raise InputError(f"--compare {compare_dir} is a tune run; compare with an exhaustive `kernelbench sweep` run")
    if manifest.get("device_label") != device_label:
        raise InputError(f"--compare {compare_dir} was measured on {manifest.get('device_label')}, this tune runs on "
                         f"{device_label}: compare runs of the same device")
    ok = read_parts(compare_dir, columns=["problem_id", "status"]).filter(pl.col("status") == "ok")
    missing = sorted(set(problem_ids) - set(ok["problem_id"].to_list()))
    if missing:
        raise InputError(f"--compare {compare_dir} has no measured kernel for {len(missing)} of the "
                         f"{len(problem_ids)} problems tuned here (e.g. problem {missing[0]}): compare with an "
                         "exhaustive sweep of the same problems")
    theirs = manifest.get("rule") or {}
    differ = sorted(k for k in set(rule) | set(theirs) if rule.get(k) != theirs.get(k))
    if differ:
        what = ", ".join(f"{k} {theirs.get(k)} vs {rule.get(k)}" for k in differ)
        raise InputError(f"--compare {compare_dir} used another stopping rule ({what} here): measuring times "
                         "compare only under the same timing options")


def compare_runs(tune_dir: str | Path, compare_dir: str | Path, *, problem_ids: Collection[str],
                 score_with: Sequence[str | Path] = ()) -> Comparison:
    """Score the tune rows of ``problem_ids`` in ``tune_dir`` against the exhaustive rows in ``compare_dir``.

    Measuring times are always ``compare_dir``'s.  Kernel times come from ``compare_dir`` alone by default; with
    ``score_with`` (exhaustive runs of the same problems, ``compare_dir`` among them or not), each (problem,
    kernel) is scored with the median of its ``ok`` times over those runs, so that one run's outlier neither
    makes a choice look bad nor a kernel look best.

    Raises:
        InputError: the comparison run does not cover the problems (see :func:`check_compare_run`), or either
            run has rows without ``measure_s`` (measured by a kernelbench that did not record it).
    """
    import numpy as np
    import polars as pl

    from kernelbench.store import read_parts
    from reformer.metrics import selection_metrics

    ids = sorted(problem_ids)
    tune = read_parts(tune_dir).filter(pl.col("problem_id").is_in(ids))
    full = read_parts(compare_dir).filter(pl.col("problem_id").is_in(ids))
    for where, rows in (("the tune run", tune), (f"--compare {compare_dir}", full)):
        if rows["measure_s"].null_count():
            raise InputError(f"{where} has rows without measuring time (measure_s): re-measure it with this "
                             "kernelbench to compare measuring times")
    ok_full = full.filter(pl.col("status") == "ok")
    missing = sorted(set(ids) - set(ok_full["problem_id"].to_list()))
    if missing:
        raise InputError(f"--compare {compare_dir} has no measured kernel for {len(missing)} of the {len(ids)} "
                         f"problems tuned here (e.g. problem {missing[0]}): compare with an exhaustive sweep of the "
                         "same problems")
    if score_with:
        ok_full = (pl.concat([read_parts(run).filter(pl.col("problem_id").is_in(ids) & (pl.col("status") == "ok"))
                              .select("problem_id", "kernel", "time_ms") for run in score_with])
                   .group_by("problem_id", "kernel").agg(pl.col("time_ms").median()))
    chosen = (tune.filter(pl.col("status") == "ok").sort("time_ms")
              .unique(subset=["problem_id"], keep="first").select("problem_id", "kernel", "time_ms"))
    choice = {pid: (kernel, t) for pid, kernel, t in chosen.iter_rows()}
    kernels = sorted(set(ok_full["kernel"].to_list()) | {k for k, _ in choice.values()})
    column = {k: j for j, k in enumerate(kernels)}
    scored = [pid for pid in ids if pid in choice]
    row_of = {pid: i for i, pid in enumerate(scored)}
    time_ms = np.full((len(scored), len(kernels)), np.nan)
    for pid, kernel, t in ok_full.select("problem_id", "kernel", "time_ms").iter_rows():
        if pid in row_of:
            time_ms[row_of[pid], column[kernel]] = t
    picks = np.array([column[choice[pid][0]] for pid in scored], dtype=int)
    with_tune_time, remeasured = 0, []
    for i, pid in enumerate(scored):
        if np.isnan(time_ms[i, picks[i]]):
            time_ms[i, picks[i]] = choice[pid][1]
            with_tune_time += 1
        else:
            remeasured.append(choice[pid][1] / time_ms[i, picks[i]])
    again = np.array(remeasured)
    if scored:
        metrics = selection_metrics(time_ms, picks, picks)
        ratios = time_ms[np.arange(len(scored)), picks] / np.nanmin(time_ms, axis=1)
        worst = int(np.argmax(ratios))
        geomean, sum_ratio, worst_ratio = 1 / metrics.oracle_ratio, metrics.sum_ratio, float(ratios[worst])
        hits, worst_problem = round(metrics.top1 * len(scored)), scored[worst]
    else:
        geomean = sum_ratio = worst_ratio = math.nan
        hits, worst_problem = 0, ""
    return Comparison(
        problems=len(ids),
        without_choice=len(ids) - len(scored),
        tune_rows=tune.height,
        exhaustive_rows=full.height,
        tune_measure_s=float(tune["measure_s"].sum()),
        exhaustive_measure_s=float(full["measure_s"].sum()),
        geomean_ratio=geomean,
        sum_ratio=sum_ratio,
        worst_ratio=worst_ratio,
        worst_problem=worst_problem,
        chosen_is_best=hits,
        scored_with_tune_time=with_tune_time,
        remeasure_geomean=float(np.exp(np.mean(np.log(again)))) if len(again) else math.nan,
        remeasure_off_2x=int(np.sum((again > 2) | (again < 0.5))),
    )


def format_comparison(c: Comparison, *, compare_dir: str | Path, describe: dict[str, str] | None = None) -> str:
    """The summary table of ``--compare``; ``describe`` maps problem ids to readable labels."""
    share = f"{c.measure_share:.1%}"
    worst = (describe or {}).get(c.worst_problem, c.worst_problem)
    scored = c.problems - c.without_choice
    lines = [
        f"tune against the exhaustive sweep {compare_dir}, {c.problems} problems:",
        f"{'':<28}{'tune':>12}{'exhaustive':>14}{'tune / exh.':>14}",
        f"{'kernels measured':<28}{c.tune_rows:>12}{c.exhaustive_rows:>14}"
        f"{c.tune_rows / c.exhaustive_rows if c.exhaustive_rows else math.nan:>14.1%}",
        f"{'measuring time (Σ measure_s)':<28}{c.tune_measure_s:>10.1f} s{c.exhaustive_measure_s:>12.1f} s{share:>14}",
        f"chosen kernel / exhaustive best ({scored} problems):",
        f"{'  geomean':<28}{c.geomean_ratio:>12.4f}",
        f"{'  Σ t_chosen / Σ t_best':<28}{c.sum_ratio:>12.4f}",
        f"{'  worst case':<28}{c.worst_ratio:>12.4f}  ({worst})",
        f"{'  chosen = best':<28}{c.chosen_is_best:>12}  ({c.chosen_is_best / scored if scored else math.nan:.1%})",
        f"{'chosen kernel, tune / exh.':<28}{c.remeasure_geomean:>12.4f}  (geomean of its own times in the two runs; "
        f"{c.remeasure_off_2x} differ by more than 2x)",
    ]
    if c.without_choice:
        lines.append(f"{c.without_choice} problem(s) without a correct kernel in the tune are not scored")
    if c.scored_with_tune_time:
        lines.append(f"{c.scored_with_tune_time} chosen kernel(s) have no ok time in the exhaustive run: scored with "
                     "the tune's own time")
    return "\n".join(lines)
