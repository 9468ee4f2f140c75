"""Harness overhead, repeatability and allocator independence of CPU sweeps.

Runs ``kernelbench sweep`` on a space (default ``smoke``) several times in fresh
processes and prints:

* wall time, the sum of timed kernel time, and their ratio (harness overhead; aim <= 1.5x);
* the median per-(problem, kernel) coefficient of variation of ``time_ms`` across the
  repeated sweeps (aim <= 3 %), and how often the winner differs between repeats;
* the winners under different glibc allocator settings (environment variables that make
  glibc return memory eagerly, or keep it), compared with the first repeat: the sweep pins
  the allocator so that no timed run page-faults, and this shows the winners do not depend
  on the environment any more.  ``KERNELBENCH_NO_MALLOPT=1`` disables the pinning, to show
  what it fixes.

Usage::

    python benchmarks/bench_sweep.py [--space smoke] [--repeats 3] [--kernels default] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

ALLOCATOR_ENVS = {
    "glibc-eager-trim": {"MALLOC_TRIM_THRESHOLD_": "0", "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_ARENA_MAX": "1"},
    "unpinned-eager-trim": {"MALLOC_TRIM_THRESHOLD_": "0", "MALLOC_MMAP_THRESHOLD_": "65536",
                            "KERNELBENCH_NO_MALLOPT": "1"},
}


def run_sweep(space: str, kernels: str, out: Path, env: dict[str, str]) -> dict:
    """One sweep + export in a fresh process; returns wall time, timed time and the dataset."""
    cmd = [sys.executable, "-m", "cli", "sweep", "--space", space, "--device", "cpu", "--kernels", kernels,
           "-o", str(out / "run"), "--no-progress"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1])
    wall = time.perf_counter() - started
    timed = float(re.search(r"timed kernel time\s+([\d.]+) s", proc.stdout).group(1))
    loop = float(re.search(r"wall time\s+([\d.]+) s", proc.stdout).group(1))
    subprocess.run([sys.executable, "-m", "cli", "export", str(out / "run"), "-o", str(out / "d.parquet")],
                   check=True, capture_output=True, cwd=Path(__file__).resolve().parents[1])
    frame = pl.read_parquet(out / "d.parquet").select("problem_id", "kernel", "time_ms")
    return {"wall_s": wall, "loop_s": loop, "timed_s": timed, "frame": frame}


def winners(frame: pl.DataFrame) -> dict[str, str]:
    best = frame.sort("time_ms").group_by("problem_id", maintain_order=True).first()
    return dict(zip(best["problem_id"].to_list(), best["kernel"].to_list()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="smoke")
    parser.add_argument("--kernels", default="default")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-allocator", action="store_true", help="skip the allocator comparison")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run_sweep(args.space, args.kernels, Path(tmp) / f"r{i}", {}) for i in range(args.repeats)]
        for r in runs:
            print(f"sweep: process wall {r['wall_s']:.1f} s, sweep loop {r['loop_s']:.1f} s, "
                  f"timed {r['timed_s']:.1f} s", file=sys.stderr)
        joined = pl.concat([r["frame"].with_columns(pl.lit(i).alias("rep")) for i, r in enumerate(runs)])
        cv = (
            joined.group_by("problem_id", "kernel")
            .agg((pl.col("time_ms").std() / pl.col("time_ms").mean()).alias("cv"), pl.len().alias("n"))
            .filter(pl.col("n") == args.repeats)
        )
        base_winners = winners(runs[0]["frame"])
        flips = [sum(winners(r["frame"])[p] != w for p, w in base_winners.items()) for r in runs[1:]]
        results = {
            "space": args.space,
            "problems": len(base_winners),
            "wall_s_median": statistics.median(r["wall_s"] for r in runs),
            "timed_s_median": statistics.median(r["timed_s"] for r in runs),
            "loop_s_median": statistics.median(r["loop_s"] for r in runs),
            "overhead_ratio_median": statistics.median(r["wall_s"] / r["timed_s"] for r in runs),
            "loop_overhead_ratio_median": statistics.median(r["loop_s"] / r["timed_s"] for r in runs),
            "kernel_cv_median": float(cv["cv"].median()),
            "kernel_cv_p90": float(cv["cv"].quantile(0.9)),
            "winner_flips_between_repeats": flips,
        }
        if not args.no_allocator:
            for name, env in ALLOCATOR_ENVS.items():
                r = run_sweep(args.space, args.kernels, Path(tmp) / name, env)
                results[f"winner_flips_{name}"] = sum(winners(r["frame"])[p] != w for p, w in base_winners.items())
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"space {results['space']}: {results['problems']} problems, {args.repeats} repeated sweeps")
    print(f"  sweep wall time (median)       {results['wall_s_median']:8.1f} s   (process, incl. start-up)")
    print(f"  sweep loop time (median)       {results['loop_s_median']:8.1f} s   (problems only)")
    print(f"  timed kernel time (median)     {results['timed_s_median']:8.1f} s")
    print(f"  wall / timed (harness overhead){results['overhead_ratio_median']:8.2f} x   (aim <= 1.5)")
    print(f"  loop / timed                   {results['loop_overhead_ratio_median']:8.2f} x")
    print(f"  per-kernel CV across repeats   {100 * results['kernel_cv_median']:8.2f} % median, "
          f"{100 * results['kernel_cv_p90']:.2f} % p90   (aim <= 3 %)")
    print(f"  winner flips vs first repeat   {results['winner_flips_between_repeats']}")
    for name in ALLOCATOR_ENVS:
        if f"winner_flips_{name}" in results:
            print(f"  winner flips with {name:<20} {results[f'winner_flips_{name}']} of {results['problems']}")


if __name__ == "__main__":
    main()
