"""Do kernelbench's CPU timings agree with an independent harness, and with themselves between runs?

For each space (or spec file), allocator setting and repeat, this runs in fresh processes:

* ``kernelbench sweep --kernels torch_default`` (the sweep as a user runs it; ``--kernels`` can add others), and
* ``torch.utils.benchmark.Timer(F.conv2d(...)).blocked_autorange()`` on the same problems, inputs and threads,

alternating which of the two goes first.  ``--pinning on`` runs both with the glibc allocator pinning
kernelbench applies (:func:`kernelbench.device.keep_freed_memory`), ``off`` runs both without it
(``KERNELBENCH_NO_MALLOPT=1`` for the sweep).  It prints, per size bucket (the problem's median
``torch_default`` time over all runs in ms, or with ``--bucket-by mflop`` its MFLOP) and allocator setting:

* ``kb spread`` / ``tub spread``: the run-to-run spread of each harness, ``max / min - 1`` of one
  (problem, kernel)'s medians across the repeats (what "repeated sweeps agree within x %" means),
  median and p90 over the bucket;
* ``kb pair``: the same for two repeats at a time (every pair), what a second sweep shows, median and p90;
  ``tie``: the share of those pairs that :func:`kernelbench.timing.near_tie` calls a tie (the rule is meant to
  cover run-to-run differences);
* ``kb rse``: the median ``time_rse`` of the sweep's rows (the within-run confidence each row records),
  to compare with the run-to-run spread it should bound;
* ``kb/tub``: per problem, kernelbench's median ``torch_default`` time over t.u.b's, both medians over
  repeats; the bucket's median and p10-p90 range;
* ``flips``: with several kernels, how many problems' fastest kernel is not the same in every repeat;
  ``tie-flips`` counts those whose fastest kernels are not all near-ties (:func:`kernelbench.timing.near_tie`)
  of each other.

And, when both settings ran, ``pinned/unpinned``: the median ratio of kernelbench times with and without pinning.

Usage::

    python benchmarks/bench_harness_agreement.py [--spaces smoke,resnet50] [--batch-sizes 1] [--spec FILE]
        [--repeats 3] [--pinning on,off] [--threads N] [--kernels torch_default] [--budget-s 1.0] [--rse 0.02] [--min-samples 5]
        [--tub-min-run-time 0.2] [--quiet-wait] [--bucket-by time|mflop] [--edges 0.05,0.2,1,5]
        [--out runs.csv] [--from-csv runs.csv] [--json]

Run it on a quiet machine (or with ``--quiet-wait``): figures measured under load say how loaded the
machine was more than how good the harness is; the ``load`` column of ``--out`` records it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import polars as pl  # noqa: E402

#: Default upper edges of the size buckets: ms of the problem's median torch_default time (``--bucket-by time``),
#: or MFLOP (``--bucket-by mflop``: does not move with the load, which can inflate a time 1000x).
EDGES = {"time": (0.05, 0.2, 1.0, 5.0), "mflop": (1.0, 10.0, 100.0, 1000.0)}
PINNING = {"on": {}, "off": {"KERNELBENCH_NO_MALLOPT": "1"}}


# ---------------------------------------------------------------- one run of each harness (fresh processes)


def _env(pinning: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KERNELBENCH_NO_MALLOPT"}
    env.update(PINNING[pinning])
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def _target_args(target: tuple[str, str], batch_sizes: str | None, *, space_flag: str = "--space") -> list[str]:
    kind, value = target
    if kind == "spec":
        return ["--spec", value]
    return [space_flag, value] + (["--batch-sizes", batch_sizes] if batch_sizes else [])


def run_kernelbench(target: tuple[str, str], pinning: str, out_dir: Path, args: argparse.Namespace) -> pl.DataFrame:
    """One ``kernelbench sweep`` in a fresh process; its rows (problem_id, kernel, time_ms, time_rse, load)."""
    from kernelbench.store import read_parts

    cmd = [sys.executable, "-c", "import cli; cli.kernelbench()", "sweep", *_target_args(target, args.batch_sizes),
           "--device", "cpu", "--kernels", args.kernels, "--threads", str(args.threads), "--budget-s",
           str(args.budget_s), "-o", str(out_dir), "--no-progress"] + (["--quiet-wait"] if args.quiet_wait else [])
    cmd += ["--rse", str(args.rse), "--min-samples", str(args.min_samples)]
    subprocess.run(cmd, env=_env(pinning), cwd=ROOT, check=True, capture_output=True, text=True)
    frame = read_parts(out_dir).filter(pl.col("status") == "ok")
    return frame.select("problem_id", "kernel", "time_ms", "time_rse", "load")


def run_tub(target: tuple[str, str], pinning: str, args: argparse.Namespace) -> pl.DataFrame:
    """One torch.utils.benchmark pass over the problems in a fresh process (this script's ``--worker``)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker",
           *_target_args(target, args.batch_sizes, space_flag="--spaces"),
           "--threads", str(args.threads), "--pinning", pinning, "--tub-min-run-time", str(args.tub_min_run_time)]
    cmd += ["--quiet-wait"] if args.quiet_wait else []
    done = subprocess.run(cmd, env=_env(pinning), cwd=ROOT, check=True, capture_output=True, text=True)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return pl.DataFrame(rows, schema={"problem_id": pl.String, "kernel": pl.String, "time_ms": pl.Float64,
                                      "time_rse": pl.Float64, "load": pl.Float64})


def _entries(target: tuple[str, str], batch_sizes: str | None) -> list[Any]:
    from kernelbench import spaces

    kind, value = target
    if kind == "spec":
        return spaces.load_spec(value)[1]
    sizes = [int(v) for v in batch_sizes.split(",")] if batch_sizes else None
    return spaces.space_problems(value, batch_sizes=sizes)


def worker(args: argparse.Namespace) -> None:
    """Time ``F.conv2d`` with torch.utils.benchmark on every in-scope problem; one JSON line per problem."""
    import torch
    import torch.nn.functional as F
    from torch.utils import benchmark

    from kernelbench.device import keep_freed_memory
    from kernelbench.kernels.registry import select_kernels
    from kernelbench.load import LoadMeter
    from kernelbench.reference import make_inputs
    from kernelbench.sweep import set_threads

    set_threads(args.threads)
    if args.pinning == "on":
        keep_freed_memory()
    (default,) = select_kernels("cpu", "torch_default")  # only its scope: the same problems the sweep times
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    meter = LoadMeter()
    for entry in _entries(("spec", args.spec) if args.spec else ("space", args.spaces), args.batch_sizes):
        p = entry.problem
        if default.reason_not_applicable(p) is not None:
            continue
        inputs = make_inputs(p, seed=0)  # the sweep's default --seed
        x = torch.from_numpy(inputs.x).to(dtypes[p.dtype]).contiguous()
        w = torch.from_numpy(inputs.w).to(dtypes[p.dtype]).contiguous()
        stmt = "F.conv2d(x, w, None, stride, padding, dilation, groups)"
        scope = {"F": F, "x": x, "w": w, "stride": [p.stride_h, p.stride_w], "padding": [p.pad_h, p.pad_w],
                 "dilation": [p.dilation_h, p.dilation_w], "groups": p.groups}
        if args.quiet_wait:
            meter.wait_for_quiet(threshold_cores=0.3, max_wait_s=30.0)
        before = meter.snapshot()
        m = benchmark.Timer(stmt=stmt, globals=scope, num_threads=args.threads).blocked_autorange(
            min_run_time=args.tub_min_run_time)
        print(json.dumps({"problem_id": p.problem_id, "kernel": "torch_default", "time_ms": m.median * 1e3,
                          "time_rse": None, "load": meter.load_since(before)}), flush=True)


# ---------------------------------------------------------------- statistics


def spread(values: list[float]) -> float:
    """Run-to-run spread of repeated medians: ``max / min - 1`` (0 = identical)."""
    return max(values) / min(values) - 1.0


def pair_stats(times: list[list[float]], rses: list[list[float]]) -> tuple[list[float], list[bool]]:
    """What two sweeps show: for every pair of repeats of each (problem, kernel), ``max / min - 1`` of the two
    medians, and whether :func:`kernelbench.timing.near_tie` (with the rows' ``time_rse``) calls them a tie."""
    from kernelbench.timing import near_tie

    diffs, ties = [], []
    for t, r in zip(times, rses):
        r = [math.nan if x is None else x for x in r]
        for i in range(len(t)):
            for j in range(i + 1, len(t)):
                diffs.append(max(t[i], t[j]) / min(t[i], t[j]) - 1.0)
                ties.append(bool(near_tie(t[i], r[i], t[j], r[j])))
    return diffs, ties


def _q(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1] if 0 < q < 1 else values[0]


def bucket_of(size: float, edges: tuple[float, ...], unit: str = "ms") -> str:
    lower = 0.0
    for edge in edges:
        if size < edge:
            return f"{lower:g}-{edge:g} {unit}"
        lower = edge
    return f">= {lower:g} {unit}"


def _flips(kb: pl.DataFrame) -> tuple[int, int]:
    """Problems whose fastest kernel differs between repeats, and those where the winners are not near-ties."""
    from kernelbench.timing import near_tie

    if kb["kernel"].n_unique() < 2:
        return 0, 0
    best = kb.sort("time_ms").group_by("problem_id", "repeat", maintain_order=True).first()
    flips = tie_flips = 0
    for (pid,), group in best.group_by("problem_id"):
        winners = set(group["kernel"].to_list())
        if len(winners) < 2:
            continue
        flips += 1
        # Within each repeat, are the other repeats' winners a near-tie of that repeat's winner?
        rows = kb.filter((pl.col("problem_id") == pid) & pl.col("kernel").is_in(list(winners)))
        for _, rep in rows.group_by("repeat"):
            t = rep["time_ms"].to_numpy()
            r = rep["time_rse"].fill_null(math.nan).to_numpy()
            i = int(t.argmin())
            if not all(near_tie(t[i], r[i], t[j], r[j]) for j in range(len(t))):
                tie_flips += 1
                break
    return flips, tie_flips


def summarize(runs: pl.DataFrame, edges: tuple[float, ...], mflop: dict[str, float], *,
              bucket_by: str = "time") -> list[dict[str, Any]]:
    """One line per (target, pinning, bucket) and per (target, pinning) overall; see the module docstring."""
    size = (runs.filter((pl.col("harness") == "kernelbench") & (pl.col("kernel") == "torch_default"))
            .group_by("target", "problem_id").agg(pl.col("time_ms").median().alias("size_ms")))
    runs = runs.join(size, on=["target", "problem_id"], how="left")
    unit = "ms" if bucket_by == "time" else "MFLOP"
    if bucket_by == "mflop":
        runs = runs.with_columns(pl.col("problem_id").replace_strict(mflop, return_dtype=pl.Float64).alias("size_ms"))
    runs = runs.with_columns(pl.col("size_ms").map_elements(lambda t: bucket_of(t, edges, unit),
                                                            return_dtype=pl.String).alias("bucket"))
    per_pair = (runs.group_by("target", "pinning", "bucket", "harness", "problem_id", "kernel")
                .agg(pl.col("time_ms"), pl.col("time_rse").alias("rses"), pl.col("time_rse").median().alias("rse"),
                     pl.col("size_ms").first()))
    order = [bucket_of(e - 1e-12, edges, unit) for e in edges] + [bucket_of(math.inf, edges, unit)]
    lines = []
    for (target, pinning), group in sorted(per_pair.group_by("target", "pinning"), key=lambda kv: kv[0]):
        for bucket in [*order, "all"]:
            sub = group if bucket == "all" else group.filter(pl.col("bucket") == bucket)
            if sub.is_empty():
                continue
            kb = sub.filter(pl.col("harness") == "kernelbench")
            tub = sub.filter(pl.col("harness") == "tub")
            kb_spread = [spread(v) for v in kb["time_ms"].to_list() if len(v) > 1]
            tub_spread = [spread(v) for v in tub["time_ms"].to_list() if len(v) > 1]
            pair_diffs, pair_ties = pair_stats(kb["time_ms"].to_list(), kb["rses"].to_list())
            kb_default = {pid: statistics.median(v) for pid, k, v in
                          zip(kb["problem_id"], kb["kernel"], kb["time_ms"]) if k == "torch_default"}
            tub_med = {pid: statistics.median(v) for pid, v in zip(tub["problem_id"], tub["time_ms"])}
            ratios = sorted(kb_default[p] / tub_med[p] for p in kb_default if p in tub_med)
            rses = [r for r in kb["rse"].to_list() if r is not None and math.isfinite(r)]
            pids = set(kb["problem_id"].to_list())
            reps = runs.filter((pl.col("target") == target) & (pl.col("pinning") == pinning)
                               & (pl.col("harness") == "kernelbench") & pl.col("problem_id").is_in(list(pids)))
            flips, tie_flips = _flips(reps)
            lines.append({
                "target": target, "pinning": pinning, "bucket": bucket, "problems": len(pids),
                "mflop_median": statistics.median(mflop[p] for p in pids) if pids else math.nan,
                "kb_spread_median": _q(sorted(kb_spread), 0.5), "kb_spread_p90": _q(sorted(kb_spread), 0.9),
                "tub_spread_median": _q(sorted(tub_spread), 0.5), "tub_spread_p90": _q(sorted(tub_spread), 0.9),
                "kb_rse_median": _q(sorted(rses), 0.5),
                "kb_pair_median": _q(sorted(pair_diffs), 0.5), "kb_pair_p90": _q(sorted(pair_diffs), 0.9),
                "kb_pair_tie": sum(pair_ties) / len(pair_ties) if pair_ties else math.nan,
                "kb_over_tub_median": _q(ratios, 0.5), "kb_over_tub_p10": _q(ratios, 0.1),
                "kb_over_tub_p90": _q(ratios, 0.9), "winner_flips": flips, "non_tie_flips": tie_flips,
                "load_median": _q(sorted(v for v in runs.filter((pl.col("target") == target)
                                  & (pl.col("pinning") == pinning) & pl.col("problem_id").is_in(list(pids)))["load"]
                                  .drop_nulls().to_list()), 0.5),
            })
    return lines


def pinning_effect(runs: pl.DataFrame) -> dict[str, float]:
    """Per target: median over (problem, kernel) of kernelbench's median time pinned / unpinned."""
    kb = runs.filter(pl.col("harness") == "kernelbench")
    med = kb.group_by("target", "pinning", "problem_id", "kernel").agg(pl.col("time_ms").median())
    on = med.filter(pl.col("pinning") == "on").drop("pinning")
    off = med.filter(pl.col("pinning") == "off").drop("pinning")
    both = on.join(off, on=["target", "problem_id", "kernel"], suffix="_off")
    return {target: float((g["time_ms"] / g["time_ms_off"]).median())
            for (target,), g in both.group_by("target")}


def _pct(x: float) -> str:
    return "     -" if x is None or not math.isfinite(x) else f"{100 * x:5.1f}%"


def _x(x: float) -> str:
    return "    -" if x is None or not math.isfinite(x) else f"{x:5.2f}"


def format_table(lines: list[dict[str, Any]], effect: dict[str, float], repeats: int) -> str:
    out = [f"{repeats} repeats per setting; spread = max/min - 1 of a (problem, kernel)'s medians across repeats; "
           "pair = the same over two repeats (what a second sweep shows), tie = share of such pairs near_tie calls a tie",
           f"{'target':<12}{'pin':<5}{'bucket':<15}{'n':>4}{'MFLOP':>9}  {'kb spread med/p90':>18}  "
           f"{'kb pair med/p90':>16}  {'tie':>5}  "
           f"{'tub spread med/p90':>19}  {'kb rse':>6}  {'kb/tub med [p10-p90]':>21}  {'flips':>5}  "
           f"{'non-tie':>7}  {'load':>5}"]
    for r in lines:
        out.append(
            f"{r['target']:<12}{r['pinning']:<5}{r['bucket']:<15}{r['problems']:>4}{r['mflop_median']:>9.1f}  "
            f"{_pct(r['kb_spread_median']):>8} / {_pct(r['kb_spread_p90'])}  "
            f"{_pct(r['kb_pair_median']):>7} / {_pct(r['kb_pair_p90'])}  {_pct(r['kb_pair_tie'])}  "
            f"{_pct(r['tub_spread_median']):>9} / {_pct(r['tub_spread_p90'])}  {_pct(r['kb_rse_median'])}  "
            f"{_x(r['kb_over_tub_median']):>7} [{_x(r['kb_over_tub_p10'])}-{_x(r['kb_over_tub_p90'])}]  "
            f"{r['winner_flips']:>5}  {r['non_tie_flips']:>7}  {_x(r['load_median'])}")
    for target, ratio in effect.items():
        out.append(f"{target}: kernelbench pinned / unpinned time, median over (problem, kernel): {ratio:.3f}")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spaces", default="smoke", help="comma-separated built-in spaces (default smoke)")
    parser.add_argument("--spec", help="a space spec file instead of --spaces")
    parser.add_argument("--batch-sizes", help="batch sizes of network spaces, e.g. 1")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pinning", default="on,off", help="on, off or on,off (allocator pinning)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--kernels", default="torch_default", help="kernels of the sweep (torch_default is added)")
    parser.add_argument("--budget-s", type=float, default=1.0, help="the sweep's --budget-s")
    parser.add_argument("--rse", type=float, default=0.02, help="the sweep's --rse (stopping rule's RSE target)")
    parser.add_argument("--min-samples", type=int, default=5, help="the sweep's --min-samples")
    parser.add_argument("--tub-min-run-time", type=float, default=0.2, help="blocked_autorange(min_run_time), s")
    parser.add_argument("--quiet-wait", action="store_true", help="wait for a quiet machine (both harnesses)")
    parser.add_argument("--bucket-by", choices=sorted(EDGES), default="time",
                        help="size of a problem: its median torch_default time (ms) or its MFLOP")
    parser.add_argument("--edges", help="size bucket edges, in ms or MFLOP (default: %s)" %
                        "; ".join(f"{k} {','.join(f'{e:g}' for e in v)}" for k, v in EDGES.items()))
    parser.add_argument("--out", help="write every measured median to this CSV file")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--from-csv", help="summarize a CSV written by --out instead of measuring")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    edges = tuple(float(e) for e in args.edges.split(",")) if args.edges else EDGES[args.bucket_by]
    if args.from_csv:
        runs = pl.read_csv(args.from_csv, schema_overrides={"problem_id": pl.String, "time_rse": pl.Float64,
                                                            "load": pl.Float64, "repeat": pl.Int32})
        mflop = dict(zip(runs["problem_id"].to_list(), runs["mflop"].to_list()))
        report(runs.drop("mflop"), edges, mflop, args, repeats=runs["repeat"].n_unique(), wall_s=None)
        return
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    pinnings = [p.strip() for p in args.pinning.split(",") if p.strip()]
    if not pinnings or set(pinnings) - set(PINNING):
        parser.error("--pinning: on, off or on,off")
    names = [k.strip() for k in args.kernels.split(",")]
    if not {"torch_default", "default", "all"} & set(names):  # the default and all sets include it
        args.kernels = ",".join(["torch_default", *names])
    targets = [("spec", args.spec)] if args.spec else [("space", s.strip()) for s in args.spaces.split(",")]

    from tqdm.auto import tqdm

    frames = []
    mflop: dict[str, float] = {}
    steps = [(t, p, i) for t in targets for p in pinnings for i in range(args.repeats)]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for n, (target, pinning, i) in enumerate(tqdm(steps, desc="runs", file=sys.stderr)):
            name = Path(target[1]).stem if target[0] == "spec" else target[1]
            mflop.update({e.problem.problem_id: e.problem.flops / 1e6 for e in _entries(target, args.batch_sizes)})
            pair = [("kernelbench", lambda: run_kernelbench(target, pinning, Path(tmp) / f"r{n}", args)),
                    ("tub", lambda: run_tub(target, pinning, args))]
            for harness, run in pair if i % 2 == 0 else pair[::-1]:
                frames.append(run().with_columns(pl.lit(name).alias("target"), pl.lit(pinning).alias("pinning"),
                                                 pl.lit(i).alias("repeat"), pl.lit(harness).alias("harness")))
    runs = pl.concat(frames, how="vertical_relaxed")
    if args.out:
        from kernelbench.schema import atomic_write_bytes

        out = runs.with_columns(pl.col("problem_id").replace_strict(mflop, default=None).alias("mflop"))
        atomic_write_bytes(Path(args.out), lambda tmp_path: out.write_csv(tmp_path))
    report(runs, edges, mflop, args, repeats=args.repeats, wall_s=time.perf_counter() - started)


def report(runs: pl.DataFrame, edges: tuple[float, ...], mflop: dict[str, float], args: argparse.Namespace, *,
           repeats: int, wall_s: float | None) -> None:
    """Print the summary of ``runs`` (a table, or JSON with ``--json``)."""
    lines = summarize(runs, edges, mflop, bucket_by=args.bucket_by)
    effect = pinning_effect(runs) if runs["pinning"].n_unique() == 2 else {}
    if args.json:
        print(json.dumps({"lines": lines, "pinned_over_unpinned": effect, "repeats": repeats,
                          "threads": args.threads, "wall_s": wall_s}, indent=2))
        return
    print(format_table(lines, effect, repeats))
    if wall_s is not None:
        print(f"wall time {wall_s:.0f} s, {args.threads} threads")


if __name__ == "__main__":
    main()
