"""Command-line interfaces: ``kernelbench`` (measure) and ``reformer`` (learn to select).

Commands are thin: they parse options and call the packages.  Errors that are
the user's (:class:`kernelbench.errors.InputError`) print one line and exit 2.
Heavy imports (torch, cupy) happen inside the commands so ``--help`` is fast.
"""

from __future__ import annotations

import dataclasses
import sys

import click

from kernelbench.errors import InputError


class _Group(click.Group):
    """A click group that turns :class:`InputError` into one line on stderr and exit status 2."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except InputError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("Interrupted; finished work is saved, re-run the same command to resume.", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kernelbench-reformer")
def kernelbench() -> None:
    """Measure convolution kernels and write Parquet runtime datasets.

    \b
    Typical use:
      kernelbench sweep --space smoke -o runs/smoke      # measure (resumable)
      kernelbench export runs/smoke -o smoke.parquet     # merge into a dataset
      kernelbench info smoke.parquet                     # what is in it
    """


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kernelbench-reformer")
def reformer() -> None:
    """Learn to pick the fastest kernel for a convolution problem (Reformer).

    \b
    Typical use:
      reformer fit dataset.parquet -o model/
      reformer evaluate model/ other.parquet
      reformer select model/ --problem "batch=32,in_channels=64,..."
    """


# ---------------------------------------------------------------- kernelbench sweep / export / info / kernels / spaces


def _threads_default() -> int:
    import os

    return os.cpu_count() or 1


@kernelbench.command()
@click.option("--space", "space_name", metavar="NAME", help="A built-in space (see `kernelbench spaces`).")
@click.option("--spec", "spec_path", type=click.Path(dir_okay=False), help="A TOML/JSON space spec (docs/spec-format.md).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto: cuda when a usable GPU is found, else cpu.")
@click.option("-o", "--output", "run_dir", required=True, type=click.Path(file_okay=False),
              help="Run directory; re-running the same command resumes it.")
@click.option("--batch-sizes", help="Comma-separated batch sizes for network spaces, e.g. 1,8.")
@click.option("--dtype", default="fp32", show_default=True, type=click.Choice(["fp32", "fp16"]),
              help="Data type of built-in spaces.")
@click.option("--kernels", "kernel_spec", default="default", show_default=True,
              help="all, default, or a comma-separated list of names (see `kernelbench kernels`).")
@click.option("--threads", type=click.IntRange(min=1), default=_threads_default, show_default="all cores",
              help="Threads for every CPU kernel (fixed and recorded).")
@click.option("--shard", default="0/1", show_default=True, help="Run shard i of n (0-based), e.g. 3/8.")
@click.option("--rse", type=click.FloatRange(min=0, min_open=True), default=0.02, show_default=True,
              help="Stop sampling once the relative standard error of the median is below this.")
@click.option("--budget-s", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Sampling time budget per kernel, seconds.")
@click.option("--min-samples", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=2, show_default=True, help="Untimed runs per kernel.")
@click.option("--timeout-s", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              help="A single run longer than this is recorded as status timeout.")
@click.option("--quiet-wait", is_flag=True, help="Wait for a quiet machine and re-time samples taken under load.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random inputs.")
@click.option("--flush-every-s", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Write finished rows to a part file at least this often (a kill loses at most this much work).")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
def sweep(space_name, spec_path, device, run_dir, batch_sizes, dtype, kernel_spec, threads, shard, rse, budget_s,
          min_samples, warmup, timeout_s, quiet_wait, seed, flush_every_s, progress) -> None:
    """Measure every applicable kernel on every problem of a space; write part files to RUN_DIR."""
    from kernelbench import spaces
    from kernelbench import sweep as sw
    from kernelbench.backends import resolve_backend
    from kernelbench.device import keep_freed_memory
    from kernelbench.store import RunStore
    from kernelbench.timing import StoppingRule

    if (space_name is None) == (spec_path is None):
        raise InputError("give exactly one of --space NAME or --spec FILE")
    sizes = _parse_ints(batch_sizes, "--batch-sizes") if batch_sizes else None
    if space_name is not None:
        entries = spaces.space_problems(space_name, batch_sizes=sizes, dtype=dtype)
        space_id = {"space": space_name, "batch_sizes": sizes, "dtype": dtype}
    else:
        spec, entries = spaces.load_spec(spec_path)
        space_id = {"spec": spec.as_dict()}
    shard_spec = sw.Shard.parse(shard)
    backend = resolve_backend(device, threads=threads, say=lambda text: click.echo(text, err=True))
    kernels = backend.kernels(kernel_spec)
    rule = StoppingRule(warmup=warmup, min_samples=min_samples, rse_target=rse, budget_s=budget_s, timeout_s=timeout_s)
    threads_set = sw.set_threads(threads)
    memory = keep_freed_memory()
    identity = {"space": space_id, "kernels": [k.name for k in kernels], "rule": dataclasses.asdict(rule),
                "device_label": backend.device_label, "seed": seed}
    extra = {"device": backend.device_metadata(), "threads": threads_set, "allocator": memory,
             "shard": str(shard_spec), "problems": len(entries)}
    store = RunStore.open(run_dir, identity, extra)
    click.echo(f"{len(shard_spec.select(entries))} problems x {len(kernels)} kernels on {backend.device_label} "
               f"-> {run_dir}", err=True)
    options = sw.SweepOptions(rule=rule, shard=shard_spec, seed=seed, threads=threads, quiet_wait=quiet_wait,
                             flush_every_s=flush_every_s)
    summary = sw.run_sweep(entries, kernels, backend=backend, store=store, options=options, progress=progress)
    click.echo(sw.format_summary(summary))


def _parse_ints(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{option} {text!r}: expected comma-separated integers, e.g. 1,8") from None
    if not values or min(values) < 1:
        raise InputError(f"{option} {text!r}: expected positive integers")
    return values


@kernelbench.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Dataset file to write.")
@click.option("--keep-failed", is_flag=True, help="Keep rows whose status is not ok.")
@click.option("--allow-mixed-devices", is_flag=True, help="Merge runs measured on different devices.")
@click.option("--format", "fmt", type=click.Choice(["long", "wide"]), default="long", show_default=True,
              help="long: one row per (problem, kernel) (what reformer reads); wide: one runtime column per kernel.")
def export(run_dirs, output, keep_failed, allow_mixed_devices, fmt) -> None:
    """Merge run directories and shards into one Parquet dataset."""
    from kernelbench.export import export as do_export

    frame = do_export(run_dirs, output, keep_failed=keep_failed, allow_mixed_devices=allow_mixed_devices, fmt=fmt)
    click.echo(f"wrote {output}: {frame.height:,} rows, {frame['problem_id'].n_unique():,} problems, "
               f"{frame['kernel'].n_unique()} kernels ({fmt} format)")


@kernelbench.command()
@click.argument("dataset", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def info(dataset, as_json) -> None:
    """Problems, kernels, devices, wins and applicability, oracle vs static-best of a dataset."""
    import json

    from kernelbench.info import format_summary, summarize
    from kernelbench.schema import read_dataset

    frame, metadata = read_dataset(dataset)
    summary = summarize(frame)
    if as_json:
        click.echo(json.dumps(summary, sort_keys=True))
    else:
        click.echo(format_summary(summary, metadata))


@kernelbench.command("kernels")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
def list_kernels(device) -> None:
    """List the kernels of a backend (default set marked with *)."""
    from kernelbench.kernels.registry import all_kernels

    for k in all_kernels(device):
        reason = k.unavailable()
        flag = "*" if k.default else " "
        state = f"  [unavailable: {reason}]" if reason else ""
        click.echo(f"{flag} {k.name:<24} {k.algorithm:<14} {k.description}{state}")


@kernelbench.command("spaces")
def list_spaces() -> None:
    """List the built-in problem spaces."""
    from kernelbench.spaces import describe_spaces

    for name, text, count in describe_spaces():
        click.echo(f"{name:<18} {count:>5} problems  {text}")



# ---------------------------------------------------------------- kernelbench import


# ---------------------------------------------------------------- reformer fit / evaluate / select


# ---------------------------------------------------------------- reformer ablate


if __name__ == "__main__":  # pragma: no cover
    kernelbench()
