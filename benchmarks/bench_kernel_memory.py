"""Peak host memory of each CPU kernel against its ``workspace_estimate``: is the sweep's memory bound a bound?

For every (kernel, shape), in a fresh process: make the problem's inputs, reset the peak RSS
(``/proc/self/clear_refs``), then ``prepare``, run twice (the first output alive during the second
run: the harness keeps the checked run's output while it times the kernel) and convert the result.
Prints the growth of the peak RSS (``VmHWM``) in MB beside the kernel's share of
``kernelbench.problem.memory_estimate`` (``kernel_bytes``: float32 copies of the inputs and output plus
the kernel's ``workspace_estimate``) and their ratio.  A ratio above 1 means the sweep could run the
kernel on a problem whose memory it underestimates.  Linux only.

Shapes are ``batch,in_channels,out_channels,hw,filter,pad,stride`` (square 2D, fp32, forward).  The
defaults cover the regimes that differ: a large-filter stem (im2col columns dominate, kn2row would be
huge), output-heavy 3x3 and 1x1 layers, an input-heavy 3x3 layer and a weight-heavy one.

Usage::

    python benchmarks/bench_kernel_memory.py [--kernels onednn_nchw,...] [--shapes 4,3,96,291,7,3,2;...]
        [--threads 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_KERNELS = "onednn_nchw,onednn_nhwc,torch_im2col,nnpack,torch_default"
DEFAULT_SHAPES = "4,3,96,291,7,3,2;4,16,256,112,3,1,1;8,16,1024,56,1,0,1;4,256,16,112,3,1,1;1,512,512,14,3,1,1"

#: Runs in a fresh process: argv = kernel name, shape.  Prints one JSON line.
MEASURE = r"""
import json, sys
from kernelbench.kernels.registry import all_kernels
from kernelbench.problem import memory_estimate, problem_2d
from kernelbench.reference import make_inputs

def rss_bytes(key):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key + ":")) * 1024

def square(batch, c, k, hw, f, pad, stride):
    return problem_2d(batch=batch, in_channels=c, out_channels=k, in_h=hw, in_w=hw, filter_h=f, filter_w=f,
                      pad_h=pad, pad_w=pad, stride_h=stride, stride_w=stride)

def run(kernel, problem):
    prepared = kernel.prepare(problem, make_inputs(problem, seed=0))
    prepared.run()
    prepared.result(prepared.run())

kernel = {k.name: k for k in all_kernels("cpu")}[sys.argv[1]]
problem = square(*map(int, sys.argv[2].split(",")))
reason = kernel.reason_not_applicable(problem) or kernel.unavailable()
if reason:
    print(json.dumps({"skipped": reason}))
    raise SystemExit
# Loads the back-end's code (not the problem's memory); a tiny problem, so no buffer of this shape is cached.
run(kernel, square(1, 1, 1, 9, 3, 1, 1))
inputs = make_inputs(problem, seed=0)
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # reset the peak RSS to the current RSS
before = rss_bytes("VmRSS")
prepared = kernel.prepare(problem, inputs)
out = prepared.run()
out = prepared.run()  # as in the harness, the checked run's output is alive while the kernel is timed
prepared.result(out)
workspace = None if kernel.workspace_estimate is None else kernel.workspace_estimate(problem)
estimate = memory_estimate(problem, kernel_workspace_bytes=workspace)
print(json.dumps({"measured_bytes": rss_bytes("VmHWM") - before, "estimate_bytes": estimate.kernel_bytes}))
"""


def measure(kernel: str, shape: str, *, threads: int) -> dict:
    """One (kernel, shape) in a fresh process: ``{"measured_bytes", "estimate_bytes"}`` or ``{"skipped"}``."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", MEASURE, kernel, shape], capture_output=True, text=True,
                          env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{kernel} on {shape} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernels", default=DEFAULT_KERNELS)
    parser.add_argument("--shapes", default=DEFAULT_SHAPES, help="';'-separated batch,C,K,hw,filter,pad,stride")
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of each run (default: 2)")
    parser.add_argument("--json", default=None, help="also write every measurement to this file")
    args = parser.parse_args()
    rows = []
    print("| kernel | shape (N,C,K,hw,f,pad,stride) | peak RSS growth (MB) | estimate (MB) | measured / estimate |")
    print("|---|---|---:|---:|---:|")
    for shape in args.shapes.split(";"):
        for kernel in args.kernels.split(","):
            row = {"kernel": kernel, "shape": shape, **measure(kernel, shape, threads=args.threads)}
            rows.append(row)
            if "skipped" in row:
                print(f"| {kernel} | {shape} | – | – | not applicable: {row['skipped']} |", flush=True)
                continue
            ratio = row["measured_bytes"] / row["estimate_bytes"]
            print(f"| {kernel} | {shape} | {row['measured_bytes'] / 1e6:.1f} | {row['estimate_bytes'] / 1e6:.1f} | "
                  f"{ratio:.2f}{'  OVER' if ratio > 1 else ''} |", flush=True)
    measured = [r for r in rows if "skipped" not in r]
    worst = max(measured, key=lambda r: r["measured_bytes"] / r["estimate_bytes"], default=None)
    if worst is not None:
        print(f"\nlargest measured / estimate: {worst['measured_bytes'] / worst['estimate_bytes']:.2f} "
              f"({worst['kernel']} on {worst['shape']}), {args.threads} thread(s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
