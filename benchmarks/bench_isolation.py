"""What measuring in a worker process costs: the smoke sweep with ``--isolation none`` vs ``process``.

Runs ``kernelbench sweep`` in fresh processes, alternating the two modes (so slow
drifts of machine load hit both alike), and prints:

* wall time of the whole command (interpreter start, imports, worker start-up)
  and of the sweep loop alone, per mode, and their ratio process / none;
* the timed kernel time (the sum of the timing loops), per mode;
* per (problem, kernel), the ratio of median ``time_ms`` process / none: the median
  ratio and its 10th-90th percentile range, for all kernels and for short ones
  (median below ``--short-ms``).  Timing runs inside the worker in both modes, so
  these ratios should be 1 within the run-to-run noise (compare with the spread
  between two repeats of the same mode, also printed).

Usage::

    python benchmarks/bench_isolation.py [--space smoke] [--repeats 2] [--kernels default] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
MODES = ("none", "process")


def sweep(space: str, kernels: str, mode: str, out: Path, threads: int) -> dict:
    """One sweep + export in a fresh process; wall, loop and timed seconds and the (problem, kernel, time) frame."""
    cmd = [sys.executable, "-m", "cli", "sweep", "--space", space, "--device", "cpu", "--kernels", kernels,
           "--isolation", mode, "--threads", str(threads), "-o", str(out / "run"), "--no-progress"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT, env=os.environ)
    wall = time.perf_counter() - started
    loop = float(re.search(r"wall time\s+([\d.]+) s", proc.stdout).group(1))
    timed = float(re.search(r"timed kernel time\s+([\d.]+) s", proc.stdout).group(1))
    subprocess.run([sys.executable, "-m", "cli", "export", str(out / "run"), "-o", str(out / "d.parquet")],
                   check=True, capture_output=True, cwd=ROOT)
    frame = pl.read_parquet(out / "d.parquet").select("problem_id", "kernel", "time_ms")
    return {"wall_s": wall, "loop_s": loop, "timed_s": timed, "frame": frame}


def ratios(a: pl.DataFrame, b: pl.DataFrame, short_ms: float) -> dict:
    """Per (problem, kernel): b / a of time_ms; median and 10th/90th percentiles, all and short kernels."""
    joined = a.join(b, on=["problem_id", "kernel"], suffix="_b").with_columns(
        (pl.col("time_ms_b") / pl.col("time_ms")).alias("ratio"))
    out = {}
    for name, part in (("all", joined), ("short", joined.filter(pl.col("time_ms") < short_ms))):
        r = part["ratio"]
        out[name] = {"n": part.height, "median": r.median(), "p10": r.quantile(0.1), "p90": r.quantile(0.9)}
    return out


def median(values: list[float]) -> float:
    return float(pl.Series(values).median())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="smoke")
    parser.add_argument("--kernels", default="default")
    parser.add_argument("--repeats", type=int, default=2, help="sweeps per mode (alternating)")
    parser.add_argument("--short-ms", type=float, default=0.1, help="kernels faster than this are 'short'")
    parser.add_argument("--threads", type=int, default=1,
                        help="kernel threads; 1 by default: on a loaded machine, multi-threaded kernels wait "
                             "for descheduled threads at every barrier and their times vary by orders of magnitude")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for mode in MODES:
                r = sweep(args.space, args.kernels, mode, Path(tmp) / f"{mode}{i}", args.threads)
                runs[mode].append(r)
                print(f"{mode:>8} #{i}: command {r['wall_s']:.1f} s, loop {r['loop_s']:.1f} s, "
                      f"timed {r['timed_s']:.1f} s", file=sys.stderr)
    load = os.getloadavg()
    result = {
        "space": args.space, "kernels": args.kernels, "repeats": args.repeats, "threads": args.threads,
        "cpus": os.cpu_count(),
        "loadavg_1_5_15": load,
        **{f"{m}_{k}": median([r[k] for r in runs[m]]) for m in MODES for k in ("wall_s", "loop_s", "timed_s")},
        "process_vs_none": ratios(runs["none"][0]["frame"], runs["process"][0]["frame"], args.short_ms),
    }
    if args.repeats > 1:
        result["none_vs_none"] = ratios(runs["none"][0]["frame"], runs["none"][1]["frame"], args.short_ms)
        result["process_vs_process"] = ratios(runs["process"][0]["frame"], runs["process"][1]["frame"],
                                              args.short_ms)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"space {args.space}, kernels {args.kernels}, {args.threads} thread(s), {args.repeats} sweep(s) per mode, "
          f"{os.cpu_count()} CPUs, "
          f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min)")
    print(f"{'':<28}{'none':>10}{'process':>10}{'ratio':>8}")
    for key, label in (("wall_s", "command wall time (s)"), ("loop_s", "sweep loop time (s)"),
                       ("timed_s", "timed kernel time (s)")):
        a, b = result[f"none_{key}"], result[f"process_{key}"]
        print(f"  {label:<26}{a:>10.1f}{b:>10.1f}{b / a:>8.2f}")
    print(f"per (problem, kernel) median time_ms ratio (short: < {args.short_ms:g} ms):")
    for key in ("process_vs_none", "none_vs_none", "process_vs_process"):
        if key in result:
            for name, r in result[key].items():
                print(f"  {key:<20} {name:<6} n={r['n']:<4} median {r['median']:.3f}  "
                      f"p10-p90 {r['p10']:.3f}-{r['p90']:.3f}")


if __name__ == "__main__":
    main()
