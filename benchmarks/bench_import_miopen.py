"""Time ``kernelbench import miopen`` on a real find-db (target: the 56 MB MI100 file in <= 10 s on 2 cores).

Usage::

    python benchmarks/bench_import_miopen.py [FDB_FILE] [--repeat 3] [--write OUT.parquet]

FDB_FILE defaults to ``$KERNELBENCH_MIOPEN_FDB``.  Prints, per run, the wall and
process CPU time of the import (read, parse, build the frame) and of writing
the Parquet file, then the best and median.  The machine's load average is
printed first because other jobs on a shared machine slow every figure down.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from kernelbench.importers.miopen import import_miopen_fdb
from kernelbench.schema import write_dataset

TARGET_S = 10.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fdb_file", nargs="?", default=os.environ.get("KERNELBENCH_MIOPEN_FDB"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--write", type=Path, help="Dataset to write (default: a temporary file).")
    args = parser.parse_args(argv)
    if not args.fdb_file:
        parser.error("give FDB_FILE or set KERNELBENCH_MIOPEN_FDB")
    path = Path(args.fdb_file)
    print(f"{path.name}: {path.stat().st_size / 1e6:.1f} MB on disk; cpus {os.cpu_count()}; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    walls = []
    with tempfile.TemporaryDirectory() as tmp:
        out = args.write or Path(tmp) / "bench.parquet"
        for run in range(1, args.repeat + 1):
            wall, cpu = time.perf_counter(), time.process_time()
            result = import_miopen_fdb(path)
            import_wall, import_cpu = time.perf_counter() - wall, time.process_time() - cpu
            wall = time.perf_counter()
            write_dataset(result.frame, out, result.metadata)
            write_wall = time.perf_counter() - wall
            walls.append(import_wall + write_wall)
            print(f"run {run}: import {import_wall:.2f} s wall ({import_cpu:.2f} s CPU, all threads), "
                  f"write {write_wall:.2f} s; {result.report.lines:,} lines -> {result.report.rows:,} rows, "
                  f"{result.report.keys:,} problems, {result.frame['kernel'].n_unique()} solvers")
    best, median = min(walls), statistics.median(walls)
    print(f"import + write: best {best:.2f} s, median {median:.2f} s "
          f"({'within' if best <= TARGET_S else 'OVER'} the {TARGET_S:.0f} s target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
