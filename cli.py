"""Command-line interfaces: ``kernelbench`` (measure) and ``reformer`` (learn to select).

Commands are thin: they parse options and call the packages.  Errors that are
the user's (:class:`kernelbench.errors.InputError`) print one line and exit 2.
Heavy imports (torch, cupy) happen inside the commands so ``--help`` is fast.
"""

from __future__ import annotations

import dataclasses
import errno
import math
import os
import signal
import sys

import click

from kernelbench.device import DEFAULT_MEMORY_SHARE
from kernelbench.errors import InputError, RunAborted
from kernelbench.measure import ISOLATIONS, KILL_GRACE_S

# Torch-free: the fit options and their choice lists are defined once, there.
from reformer.config import (
    ACTIVATIONS,
    BLOCKS,
    CANDIDATES,
    MEMBERSHIP_TERMS,
    LABELS,
    PATHS,
    PRECISIONS,
    SCHEDULES,
    TRANSFER_FRACTIONS,
    FitConfig,
)
from reformer.splits import GROUPINGS

_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)


class _Finite:
    """Makes a click float type refuse what is not finite: click's float types take "nan" and "inf", and a NaN
    passes every range check."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if number is not None and not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


class _FiniteFloat(_Finite, click.types.FloatParamType):
    """Any finite float."""


class _FiniteRange(_Finite, click.FloatRange):
    """A finite float in a range (click.FloatRange's arguments)."""


#: The types of every float option (any finite float; finite and > 0), so NaN and infinity are refused in one place.
FINITE = _FiniteFloat()
POSITIVE = _FiniteRange(min=0, min_open=True)
#: Every --seed option's type: numpy's and torch's generators take seeds in [0, 2**32).
SEED = click.IntRange(min=0, max=2**32 - 1)
#: Every --threads option's type: thread pools of many thousands exhaust the process's thread limit (a typo's
#: 100000 flooded the terminal with allocator errors and hung); a machine with more cores may use them all.
THREADS = click.IntRange(min=1, max=max(1024, os.cpu_count() or 1))


#: The commands that keep finished work when interrupted, and resume it when run again.
_RESUMABLE_COMMANDS = ("sweep", "tune", "ablate", "transfer")


class _Group(click.Group):
    """A click group that turns :class:`InputError` into one line on stderr and exit status 2, and
    :class:`RunAborted` into one line and exit status 1."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except InputError as exc:
            # One line even where the message quotes a library's multi-line text (pyarrow, torch).
            click.echo(f"Error: {' '.join(str(exc).split())}", err=True)
            sys.exit(2)
        except RunAborted as exc:
            click.echo(f"Aborted: {' '.join(str(exc).split())}", err=True)
            sys.exit(1)
        except OSError as exc:
            # A full disk, a quota or a read-only filesystem is never a bug: one line, whatever wrote.
            if exc.errno not in _DISK_ERRNOS:
                raise
            where = f" {exc.filename}" if exc.filename else ""
            click.echo(f"Error: cannot write{where}: {exc.strerror or exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            if ctx.invoked_subcommand in _RESUMABLE_COMMANDS:
                click.echo("Interrupted; finished work is saved, re-run the same command to resume.", err=True)
            else:  # every other command writes its output whole at the end, or not at all
                click.echo("Interrupted; nothing was written.", err=True)
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
      kernelbench tune --model model/ --space smoke --top-k 2 -o runs/tuned   # measure only the model's top 2
      kernelbench merge a.parquet b.parquet -o ab.parquet  # one dataset of two devices
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
      reformer fit new_gpu.parquet -o tuned/ --init model/ --train-fraction 0.1
      reformer transfer all_devices.parquet -o transfer/
    """


# ---------------------------------------------------------------- kernelbench sweep / export / info / kernels / spaces


def _threads_default() -> int:
    import os

    return os.cpu_count() or 1


#: The options `sweep` and `tune` share: which problems and kernels, on which device, into which run directory,
#: with which stopping rule.  Applied by :func:`_measure_options`.
_MEASURE_OPTIONS = (
    click.option("--space", "space_name", metavar="NAME", help="A built-in space (see `kernelbench spaces`)."),
    click.option("--spec", "spec_path", type=click.Path(dir_okay=False),
                 help="A TOML/JSON space spec (docs/spec-format.md)."),
    click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                 help="auto: cuda when a usable GPU is found, else cpu."),
    click.option("-o", "--output", "run_dir", required=True, type=click.Path(file_okay=False),
                 help="Run directory; re-running the same command resumes it."),
    click.option("--batch-sizes", help="Comma-separated batch sizes for network spaces, e.g. 1,8."),
    click.option("--dtype", default="fp32", show_default=True, type=click.Choice(["fp32", "fp16"]),
                 help="Data type of built-in spaces."),
    click.option("--kernels", "kernel_spec", default="default", show_default=True,
                 help="all, default, or a comma-separated list of names (see `kernelbench kernels`)."),
    click.option("--threads", type=THREADS, default=_threads_default, show_default="all cores",
                 help="Threads for every CPU kernel (fixed and recorded)."),
    click.option("--shard", default="0/1", show_default=True,
                 help="Run shard i of n (0-based), e.g. 3/8, into the shared run directory; auto: from a SLURM job "
                      "array (SLURM_ARRAY_TASK_ID of --array=0-(n-1)) or torchrun (RANK, WORLD_SIZE). "
                      "See docs/cluster.md."),
    click.option("--rse", type=POSITIVE, default=0.02, show_default=True,
                 help="Stop sampling once the relative standard error of the median is below this."),
    click.option("--budget-s", type=POSITIVE, default=1.0, show_default=True,
                 help="Sampling time budget per kernel, seconds."),
    click.option("--min-samples", type=click.IntRange(min=1), default=5, show_default=True),
    click.option("--warmup", type=click.IntRange(min=0), default=2, show_default=True, help="Untimed runs per kernel."),
    click.option("--timeout-s", type=POSITIVE, default=30.0, show_default=True,
                 help="A single run longer than this is recorded as status timeout; with --isolation process a "
                      f"step that has not returned after this + {KILL_GRACE_S:g} s is killed (also status timeout)."),
    click.option("--isolation", type=click.Choice(ISOLATIONS), default=None,
                 show_default="process on cpu, none on cuda",
                 help="process: measure in a worker process that is killed when a kernel hangs and replaced when "
                      "one crashes; none: in the sweep's own process (a hung kernel hangs the sweep)."),
    click.option("--max-memory-gb", type=POSITIVE, default=None,
                 show_default=f"{DEFAULT_MEMORY_SHARE:.0%} of physical memory",
                 help="A kernel whose estimated peak memory on a problem is larger gets status unavailable instead of being run."),
    click.option("--quiet-wait", is_flag=True, help="Wait for a quiet machine and re-time samples taken under load."),
    click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the random inputs."),
    click.option("--flush-every-s", type=_FiniteRange(min=0), default=10.0, show_default=True,
                 help="Write finished rows to a part file at least this often (a kill loses at most this much work)."),
    click.option("--progress/--no-progress", default=True, help="Show a progress bar."),
)


def _measure_options(command):
    """Add :data:`_MEASURE_OPTIONS` to a command (they arrive as keyword arguments; see :func:`_measurement`)."""
    for option in reversed(_MEASURE_OPTIONS):
        command = option(command)
    return command


@dataclasses.dataclass(frozen=True)
class _Measurement:
    """What :data:`_MEASURE_OPTIONS` resolve to: the problems, backend and kernels, the run directory's
    identity and extra manifest fields, and the sweep options."""

    entries: list
    backend: object
    kernels: tuple
    run_dir: str
    identity: dict
    extra: dict
    options: object
    progress: bool
    lock: object
    created: bool  # the run directory did not exist before the lock was taken


def _measurement(*, space_name, spec_path, device, run_dir, batch_sizes, dtype, kernel_spec, threads, shard, rse,
                 budget_s, min_samples, warmup, timeout_s, isolation, max_memory_gb, quiet_wait, seed, flush_every_s,
                 progress) -> _Measurement:
    """Resolve the shared measuring options (raises InputError with the flag's name on bad values)."""
    from pathlib import Path

    from kernelbench import spaces
    from kernelbench import sweep as sw
    from kernelbench.backends import resolve_backend
    from kernelbench.device import keep_freed_memory
    from kernelbench.shards import resolve_shard
    from kernelbench.store import RunStore, recorded_shard_count
    from kernelbench.timing import StoppingRule

    # A job scheduler's time limit or scancel sends SIGTERM: end like Ctrl-C, so the rows measured since the
    # last flush are written before the process goes.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if (space_name is None) == (spec_path is None):
        raise InputError("give exactly one of --space NAME or --spec FILE")
    sizes = _parse_ints(batch_sizes, "--batch-sizes") if batch_sizes else None
    spec = None
    if space_name is not None:
        entries = spaces.space_problems(space_name, batch_sizes=sizes, dtype=dtype)
        space_id = {"space": space_name, "batch_sizes": sizes, "dtype": dtype}
    else:
        if sizes is not None:
            raise InputError("--batch-sizes applies to --space only; a spec file sets its own batch sizes")
        spec, entries = spaces.load_spec(spec_path)
        # The path as typed changes with the working directory; name + content hash identify the spec.
        space_id = {"spec": {"name": spec.name, "sha256": spec.sha256}}
    shard_spec = resolve_shard(shard, recorded_count=recorded_shard_count(run_dir))
    # Refuse a second sweep of this shard before spending seconds on device detection.
    created = not Path(run_dir).exists()
    lock = RunStore.lock_shard(run_dir, shard_spec)
    with RunStore.abandoned_on_error(run_dir, lock, created=created):
        backend = resolve_backend(device, threads=threads, say=lambda text: click.echo(text, err=True))
        kernels = backend.kernels(kernel_spec)
        rule = StoppingRule(warmup=warmup, min_samples=min_samples, rse_target=rse, budget_s=budget_s,
                            timeout_s=timeout_s)
        # Process isolation on CUDA is implemented but not yet run on a GPU here: opt-in until it has been.
        isolation = isolation or ("process" if backend.name == "cpu" else "none")
        if max_memory_gb is None:
            from kernelbench.device import default_max_memory_gb

            max_memory_gb = default_max_memory_gb()
        threads_set = sw.set_threads(threads)
        memory = keep_freed_memory()
        identity = {"space": space_id, "kernels": [k.name for k in kernels], "rule": dataclasses.asdict(rule),
                    "device_label": backend.device_label, "seed": seed}
        device_meta = backend.device_metadata()
        if device_meta.get("descriptor_error"):
            click.echo(f"note: kernelbench has no descriptor for {backend.device_label} "
                       f"({device_meta['descriptor_error']}); the run records none, so reformer will ask for "
                       "--device-spec FILE (docs/device-descriptors.md)", err=True)
        extra = {"device": device_meta, "versions": device_meta.get("versions"), "threads": threads_set,
                 "allocator": memory, "problems": len(entries), "isolation": isolation,
                 "max_memory_gb": max_memory_gb, "spec": spec.as_dict() if spec is not None else None}
        options = sw.SweepOptions(rule=rule, shard=shard_spec, seed=seed, threads=threads, quiet_wait=quiet_wait,
                                  flush_every_s=flush_every_s, isolation=isolation, max_memory_gb=max_memory_gb)
        return _Measurement(entries=entries, backend=backend, kernels=kernels, run_dir=run_dir, identity=identity,
                            extra=extra, options=options, progress=progress, lock=lock, created=created)


def _open_store(m: _Measurement, identity: dict, extra: dict):
    """The run directory's store for this shard, under the lock :func:`_measurement` took."""
    from kernelbench.runlock import describe_holder
    from kernelbench.store import RunStore

    store = RunStore.open(m.run_dir, identity, extra, shard=m.options.shard, lock=m.lock)
    if store.took_over:
        click.echo(f"took over the lock of {describe_holder(store.took_over)}, which ended without releasing it",
                   err=True)
    return store


def _run_measurement(m: _Measurement, store, **run_options):
    """Run the sweep (with ``run_options`` such as a tune plan) and record the shard as finished; releases the
    store's lock."""
    from kernelbench import sweep as sw

    with store:  # run_sweep writes the backend's side tables itself
        summary = sw.run_sweep(m.entries, m.kernels, backend=m.backend, store=store, options=m.options,
                               progress=m.progress, **run_options)
        store.finish_shard()
    return summary


@kernelbench.command()
@_measure_options
def sweep(**measure) -> None:
    """Measure every applicable kernel on every problem of a space; write part files to RUN_DIR."""
    from kernelbench import sweep as sw

    m = _measurement(**measure)
    store = _open_store(m, m.identity, m.extra)
    shard = m.options.shard
    shard_text = f" (shard {shard})" if shard.count > 1 else ""
    click.echo(f"{len(shard.select(m.entries))} problems{shard_text} x {len(m.kernels)} kernels on "
               f"{m.backend.device_label} -> {m.run_dir}", err=True)
    summary = _run_measurement(m, store)
    click.echo(sw.format_summary(summary))


@kernelbench.command()
@click.option("--model", "model_dir", required=True, type=click.Path(file_okay=False),
              help="Model directory written by `reformer fit`; ranks each problem's applicable kernels.")
@click.option("--top-k", "top_k", metavar="K", help="Measure the K most probable applicable kernels per problem.")
@click.option("--confidence", metavar="P",
              help="Measure in rank order until the measured kernels' predicted probabilities sum to P, 0 < P <= 1 "
                   "(with --top-k: whichever is reached first).")
@click.option("--compare", "compare_dir", type=click.Path(file_okay=False), metavar="RUN_DIR",
              help="An exhaustive `kernelbench sweep` run of the same problems and device: end with a table of "
                   "measuring time and chosen kernel against it.")
@click.option("--allow-other-device", is_flag=True,
              help="Use a model trained on another device or backend than this run's.")
@_measure_options
def tune(model_dir, top_k, confidence, compare_dir, allow_other_device, **measure) -> None:
    """Rank each problem's applicable kernels with a model, then check and time only the best-ranked.

    Writes the sweep's resumable run format to RUN_DIR (`kernelbench export` reads it); each row
    also records the kernel's predicted_rank and predicted_prob.  When none of the measured
    kernels of a problem is correct, tuning goes on down the ranking until one is.

    \b
    Example:
      kernelbench tune --model out/demo/model --spec datasets/specs/demo.toml --top-k 2 \\
          -o out/demo/tune --compare out/demo/run
    """
    from kernelbench import sweep as sw
    from kernelbench import tune as tn
    from kernelbench.store import RunStore
    from kernelbench.tune_compare import check_compare_run, compare_runs, format_comparison
    from reformer.selector import Selector

    options = tn.TuneOptions(top_k=tn.parse_top_k(top_k), confidence=tn.parse_confidence(confidence))
    selector = Selector.load(model_dir)
    m = _measurement(**measure)
    with RunStore.abandoned_on_error(m.run_dir, m.lock, created=m.created):
        note = tn.check_model_device(selector, m.backend.device_label, allow_other_device=allow_other_device)
        if note:
            click.echo(note, err=True)
        entries = m.options.shard.select(m.entries)
        ranking = tn.rank_problems(selector, entries, m.kernels, device=m.backend.device_label)
        if compare_dir is not None:
            check_compare_run(compare_dir, device_label=m.backend.device_label, problem_ids=ranking.ranked,
                              rule=m.identity["rule"])
    identity = {**m.identity, "tune": {"model_sha256": tn.model_sha256(model_dir)}}
    store = _open_store(m, identity, {**m.extra, "tune_options": options.as_dict()})
    click.echo(f"{len(entries)} problems x {len(m.kernels)} kernels on {m.backend.device_label}, "
               f"{', '.join(f'{k} {v}' for k, v in options.as_dict().items() if v is not None)} -> {m.run_dir}",
               err=True)
    summary = _run_measurement(m, store, plan=tn.plan_from(ranking, options), desc="tune")
    click.echo(sw.format_summary(summary))
    click.echo(tn.format_stats(tn.tune_stats(m.run_dir, ranking), ranking))
    if compare_dir is not None:
        comparison = compare_runs(m.run_dir, compare_dir, problem_ids=ranking.ranked)
        labels = {e.problem.problem_id: e.problem.describe() for e in entries}
        click.echo(format_comparison(comparison, compare_dir=compare_dir, describe=labels))


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
@click.option("--allow-partial", is_flag=True,
              help="Export even if shards of a sweep have not finished (they are listed in the metadata).")
@click.option("--format", "fmt", type=click.Choice(["long", "wide"]), default="long", show_default=True,
              help="long: one row per (problem, kernel) (what reformer reads); wide: one runtime column per kernel.")
def export(run_dirs, output, keep_failed, allow_mixed_devices, allow_partial, fmt) -> None:
    """Merge run directories and shards into one Parquet dataset.

    Refuses a sweep whose shards have not all finished (listing them) unless --allow-partial.
    """
    from kernelbench.export import export as do_export

    frame, metadata = do_export(run_dirs, output, keep_failed=keep_failed, allow_mixed_devices=allow_mixed_devices,
                                allow_partial=allow_partial, fmt=fmt)
    for shard_set in metadata["shard_sets"]:
        if shard_set["missing"]:
            click.echo(f"partial: {', '.join(shard_set['run_dirs'])}: shard(s) "
                       f"{', '.join(m['shard'] for m in shard_set['missing'])} not finished", err=True)
    click.echo(f"wrote {output}: {frame.height:,} rows, {frame['problem_id'].n_unique():,} problems, "
               f"{frame['kernel'].n_unique()} kernels ({fmt} format)")


@kernelbench.command()
@click.argument("datasets", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Dataset file to write.")
def merge(datasets, output) -> None:
    """Merge datasets of different devices (or disjoint problems) into one dataset.

    Every row keeps its device label; the metadata lists each source (path, SHA-256, devices,
    its own metadata).  Refuses inputs of different schema versions and a (problem, kernel,
    device) measured in two inputs.

    \b
    Example:
      kernelbench merge mi100.parquet mi200.parquet -o amd.parquet
    """
    import polars as pl

    from kernelbench.export import merge as do_merge

    frame, metadata = do_merge(datasets, output)
    counts = frame.group_by("device").agg(pl.col("problem_id").n_unique()).sort("device")
    click.echo(f"wrote {output}: {frame.height:,} rows, {frame.select('problem_id', 'device').n_unique():,} "
               f"(problem, device) pairs, {frame['kernel'].n_unique()} kernels from {len(metadata['sources'])} "
               "datasets; "
               + ", ".join(f"{d} {n:,} problems" for d, n in counts.iter_rows()))


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


@kernelbench.group("import", cls=_Group)
def import_group() -> None:
    """Import runtimes measured by other tools into the dataset format."""


#: ``--device-spec FILE``: a device the descriptor table lacks (kernelbench.devices; docs/device-descriptors.md).
device_spec_option = click.option(
    "--device-spec", type=click.Path(dir_okay=False),
    help="TOML file describing the GPU (peak throughputs, bandwidth, caches...) when kernelbench's table of "
         "device descriptors lacks it; format: docs/device-descriptors.md.")


@import_group.command("miopen")
@click.argument("fdb_file", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Dataset file to write.")
@click.option("--arch", help="GPU architecture, e.g. gfx908 (default: from the file name).")
@click.option("--num-cu", type=int, help="Compute units, e.g. 120 (default: from the file name).")
@click.option("--strict", is_flag=True, help="Fail at the first line or entry that would be skipped.")
@device_spec_option
def import_miopen(fdb_file, output, arch, num_cu, strict, device_spec) -> None:
    """Import a MIOpen find-db file as a dataset.

    FDB_FILE is a find-db text file (<arch>_<CUs>.HIP.fdb.txt), plain or .bz2.
    Each problem keeps only the few solvers MIOpen recorded (coverage: top-k
    recorded); see docs/miopen-import.md.

    \b
    Example:
      kernelbench import miopen /opt/rocm/share/miopen/db/gfx90878.HIP.fdb.txt -o mi100.parquet
    """
    from kernelbench.importers.miopen import import_miopen_fdb
    from kernelbench.schema import write_dataset

    result = import_miopen_fdb(fdb_file, arch=arch, num_cu=num_cu, strict=strict, device_spec=device_spec)
    write_dataset(result.frame, output, result.metadata)
    click.echo(result.report.format(), err=True)
    device = result.metadata["device"]
    if device["descriptor"] is None:
        click.echo(f"note: kernelbench has no descriptor for {device['label']}; the dataset records none "
                   "(pass --device-spec FILE to record one, see docs/device-descriptors.md)", err=True)
    frame = result.frame
    click.echo(f"wrote {output}: {frame.height:,} rows, {frame['problem_id'].n_unique():,} problems, "
               f"{frame['kernel'].n_unique()} solvers on {result.metadata['device']['label']} "
               f"({result.metadata['fdb_format']}, coverage: top-k recorded)")


# ---------------------------------------------------------------- reformer fit / evaluate / select


#: FitConfig's defaults, so that option defaults are defined once.
_FIT = FitConfig()


def _parse_problem(text: str) -> dict[str, str]:
    """``"batch=32,in_channels=64,..."`` -> mapping (values stay text; ConvProblem parses and bounds them).

    Raises:
        InputError: an item is not FIELD=VALUE, or a field is given twice (which value was meant?).
    """
    values: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InputError(f"--problem item {item!r} is not FIELD=VALUE (e.g. batch=32)")
        if key.strip() in values:
            raise InputError(f"--problem gives {key.strip()} twice ({key.strip()}={values[key.strip()]} and "
                             f"{item}); give each field once")
        values[key.strip()] = value.strip()
    return values


@reformer.command("fit")
@click.argument("dataset", type=click.Path(dir_okay=False, path_type=str))
@click.option("-o", "--output", "model_dir", required=True, type=click.Path(file_okay=False), help="Model directory to write (replaced as a whole).")
@click.option("--labels", type=click.Choice(LABELS), default=_FIT.labels, show_default=True,
              help="Training target: one-hot on the fastest, softmax of -t/tau, or ratio-preserving q ∝ t^-γ.")
@click.option("--candidates", type=click.Choice(CANDIDATES), default=_FIT.candidates, show_default=True,
              help="Normalise each training problem's softmax over its candidates (every kernel a caller may offer "
                   "without measuring, so unmeasured ones are pushed down) or over its measured kernels only "
                   "(the paper's closed protocol).")
@click.option("--membership-weight", type=FINITE, default=_FIT.membership_weight, show_default=True,
              help="λ of the term that pushes unmeasured candidates down (with --candidates context).")
@click.option("--membership-term", type=click.Choice(MEMBERSHIP_TERMS), default=_FIT.membership_term, show_default=True,
              help="Form of that term: 'set', -log P(measured set) under the softmax over the candidates; 'pick', "
                   "the best measured kernel's logit against the unmeasured candidates (no head start for problems "
                   "with several measured kernels). Ignored with --membership-head, which has terms of its own.")
@click.option("--membership-head/--no-membership-head", default=_FIT.membership_head, show_default=True,
              help="With --candidates context: a second logit per kernel learns whether it is measured for the "
                   "problem (binary cross-entropy over the candidates, weighted by λ), and kernels are ranked by "
                   "z + log σ(u); without it the λ term acts on the ranking logits themselves.")
@click.option("--membership-trunk/--no-membership-trunk", default=_FIT.membership_trunk, show_default=True,
              help="With --membership-head: its losses also train the layers it shares with the ranking logits "
                   "(off: only the head learns membership, from the ranking features).")
@click.option("--softmax-tau", "softmax_tau_ms", type=FINITE, default=_FIT.softmax_tau_ms, show_default=True, help="τ in ms for --labels softmax.")
@click.option("--ratio-power", type=FINITE, default=_FIT.ratio_power, show_default=True, help="γ for --labels ratio (q ∝ t^-γ).")
@click.option("--time-weight", type=FINITE, default=_FIT.time_weight, show_default=True,
              help="α: weight each training problem's loss by t_best^α (0: unweighted).")
@click.option("--blocks", type=int, default=_FIT.blocks, show_default=True, help="Number of blocks.")
@click.option("--dim", type=int, default=_FIT.dim, show_default=True, help="Model width d.")
@click.option("--paths", type=click.Choice(PATHS), default=_FIT.paths, show_default=True,
              help="Γ-block paths kept.")
@click.option("--block", type=click.Choice(BLOCKS), default=_FIT.block, show_default=True, help="Block type.")
@click.option("--activation", type=click.Choice(ACTIVATIONS), default=_FIT.activation, show_default=True)
@click.option("--derived", default=",".join(_FIT.derived), show_default=True,
              help="Derived tokens, comma-separated, or 'none'.")
@click.option("--device-tokens/--no-device-tokens", default=_FIT.device_tokens, show_default=True,
              help="On a dataset of several devices, tokens describing each problem's device (specs from the "
                   "device descriptors, roofline times); see docs/reformer.md.")
@click.option("--exact-values", type=int, default=_FIT.exact_values, show_default=True,
              help="Per integer token, how many of its most frequent values get their own embedding (0: off).")
@click.option("--epochs", type=int, default=_FIT.epochs, show_default=True)
@click.option("--batch-size", type=int, default=_FIT.batch_size, show_default=True)
@click.option("--min-steps", type=int, default=_FIT.min_steps, show_default=True,
              help="Train at least this many optimiser steps (adds epochs on small datasets).")
@click.option("--lr", type=FINITE, default=_FIT.lr, show_default=True, help="Peak learning rate.")
@click.option("--weight-decay", type=FINITE, default=_FIT.weight_decay, show_default=True)
@click.option("--schedule", type=click.Choice(SCHEDULES), default=_FIT.schedule, show_default=True)
@click.option("--patience", type=int, default=_FIT.patience, show_default=True,
              help="Stop after this many epochs without a better validation oracle ratio (0: never).")
@click.option("--seed", type=SEED, default=_FIT.seed, show_default=True, help="Seed of the split, initialisation and batches.")
@click.option("--threads", type=THREADS, default=_FIT.threads, show_default=True, help="torch CPU threads.")
@click.option("--fractions", default="0.8,0.1,0.1", show_default=True, help="Train,validation,test fractions.")
@click.option("--split-by", default=None, help="Hold out problems as the test split, e.g. direction=bwd_weights or network=resnet50 (a built-in network: every problem with one of its layer shapes).")
@click.option("--group-by", type=click.Choice(GROUPINGS), default=None,
              help="Keep problems of one geometry (or layer, batch ignored) on one side of the split.")
@click.option("--train-noise", "train_noise_sigma", type=FINITE, default=0.0, show_default=True,
              help="σ of log-normal noise multiplied into training runtimes (robustness studies).")
@click.option("--precision", type=click.Choice(PRECISIONS), default=_FIT.precision, show_default=True,
              help="Training arithmetic: bfloat16 autocasts the forward pass (weights and inference stay float32).")
@click.option("--top-k", "top_k", default="1,2,3", show_default=True,
              help="Also score the best measured kernel among the first k ranked, for each k (both protocols).")
@click.option("--max-steps", type=int, default=_FIT.max_steps, show_default=True,
              help="Train at most this many optimiser steps (fewer epochs on large, e.g. multi-device, datasets; "
                   "at least one epoch; 0: no cap).")
@click.option("--train-fraction", type=FINITE, default=_FIT.train_fraction, show_default=True,
              help="Train on this seeded share of the training split (validation and test unchanged): a device with "
                   "only a few measured problems.")
@click.option("--train-problems", type=int, default=None,
              help="Train on this many problems of the training split (seeded sample; instead of --train-fraction).")
@click.option("--init", "init_dir", default=None, type=click.Path(file_okay=False, path_type=str),
              help="Fine-tune the model in this directory: start from its weights and keep its architecture, "
                   "tokens, normalisation and kernel vocabulary (kernels it lacks are added; see docs/transfer.md).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.pass_context
def reformer_fit(ctx: click.Context, dataset: str, model_dir: str, derived: str, fractions: str, split_by: str | None,
                 group_by: str | None, quiet: bool, top_k: str, init_dir: str | None, **options) -> None:
    """Train a Reformer on DATASET, save it to MODEL_DIR and print test metrics beside the baselines.

    MODEL_DIR is written as a whole (a complete old or new model even if the fit is killed while saving); an
    existing model directory there is replaced.  With --init, the model is fine-tuned from another model's
    weights (e.g. one trained on other devices) instead of trained from scratch.
    """
    from safetensors import SafetensorError

    from kernelbench.schema import io_error_reason
    from reformer.data import load_matrix
    from reformer.report import metrics_table, open_table, save_fit, speedup_line
    from reformer.splits import SplitSpec, parse_split_by
    from reformer.store import check_model_dir
    from reformer.train import fit

    top_ks = tuple(_parse_ints(top_k, "--top-k"))
    try:  # before any work: a fit of hours must not end in a directory it cannot write
        check_model_dir(model_dir)
    except InputError as exc:
        raise InputError(f"-o/--output: {exc}") from None
    try:
        shares = tuple(float(x) for x in fractions.split(","))
    except ValueError:
        raise InputError(f"--fractions {fractions!r} must be three numbers, e.g. 0.8,0.1,0.1") from None
    if len(shares) != 3:
        raise InputError(f"--fractions {fractions!r} must be three numbers, e.g. 0.8,0.1,0.1")
    spec = SplitSpec(fractions=shares, seed=options["seed"], group_by=group_by,
                     hold_out=parse_split_by(split_by) if split_by else ())
    tokens = () if derived.strip().lower() == "none" else tuple(t.strip() for t in derived.split(",") if t.strip())
    config = FitConfig(**options, derived=tokens, split=spec, progress=not quiet)
    init = _init_model(ctx, init_dir, config) if init_dir is not None else None
    matrix = load_matrix(dataset)
    if init is not None:  # before any output: bad input is one line
        from reformer.finetune import check_token_design

        check_token_design(init, matrix.columns())
        for line in _gives_up_borrowing(init, matrix.devices, init_dir, dataset):
            click.echo(line, err=True)
    on = f" ((problem, device) pairs on {len(matrix.devices)} devices)" if len(matrix.devices) > 1 else ""
    click.echo(f"{dataset}: {matrix.n_problems} problems{on}, {len(matrix.kernels)} kernels"
               f" ({matrix.dropped_problems} problems without an ok row dropped)")
    result = fit(matrix, config, top_ks=top_ks, init=init)
    try:
        save_fit(model_dir, result)
    except (OSError, SafetensorError) as exc:
        # Disk full, quota, read-only: one line.  safetensors reports I/O errors as SafetensorError.
        raise InputError(f"cannot write the model to {model_dir}: {io_error_reason(exc)}") from None
    sizes = result.split.sizes()
    sample = result.trained.info.get("train_sample")
    of = f" (a seeded sample of {sample['of']})" if sample else ""
    click.echo(f"split: {spec.describe()}: train {sizes['train']}{of}, validation {sizes['validation']}, "
               f"test {sizes['test']}")
    if init is not None:
        started = result.trained.info["init"]
        added = started["added_kernels"]
        click.echo(f"fine-tuned from {init_dir}" + (f"; {len(added)} kernel(s) it did not know added to the head: "
                                                    f"{', '.join(added)}" if added else "")
                   + ("; no epoch beat its weights on validation, so they were kept" if started["kept_initial_weights"]
                      else ""))
    click.echo(f"fit: {result.fit_seconds:.1f} s, {len(result.curve)} epochs"
               f"{_epochs_changed(config, sample['problems'] if sample else sizes['train'])}, best epoch "
               f"{result.best_epoch}; select latency p50 {result.latency_us['p50']:.0f} µs")
    test = result.evaluations["test"]
    if test.borrowed.share:
        test_side = matrix.subset(result.split.test)
        unseen = tuple(d for d in test_side.devices if d not in result.trained.info["devices"])
        for line in borrowed_lines(test, test_side, unseen):
            click.echo(line)
    click.echo(f"test split ({test.model.n_problems} problems), closed protocol (choosing among the measured kernels):")
    click.echo(metrics_table({"reformer": test.model, **test.baselines}))
    if (line := speedup_line(test.model, test.baselines)) is not None:
        click.echo(line)
    click.echo("open protocol (ranking every candidate; a pick that was not measured is charged the slowest measured time):")
    click.echo(open_table({"reformer": test.model, **test.baselines}, top_ks=top_ks))
    train = result.evaluations["train"].model
    click.echo(f"train top-1 {train.top1:.4f}, oracle ratio {train.oracle_ratio:.4f}")
    measured = result.trained.measured
    click.echo(f"saved to {model_dir}" + ("" if measured is None else
               f" (with the measured orders of {len(measured.devices)} device(s), for unseen devices of their "
               "architectures)"))


def _epochs_changed(config: FitConfig, n_train: int) -> str:
    """Why a fit on ``n_train`` training problems runs other epochs than --epochs ("" when it does not)."""
    from reformer.train import training_epochs

    planned = training_epochs(config, n_train)
    if planned > config.epochs:
        return f" (--epochs {config.epochs} raised to {planned} by --min-steps {config.min_steps})"
    if planned < config.epochs:
        return f" (--epochs {config.epochs} lowered to {planned} by --max-steps {config.max_steps})"
    return ""


def _gives_up_borrowing(init, devices, init_dir: str, dataset: str) -> list[str]:
    """Notes for devices that the starting model would rank by a same-architecture sibling's measured order, and
    that fine-tuning makes training devices (which never borrow; docs/transfer.md, "Borrowed orders")."""
    from reformer.borrowed import sources

    if init.measured is None:
        return []
    return [f"note: the starting model ranks {device}'s problems that {found[0]} (same architecture) measured by "
            f"that device's order; fine-tuned on {device}, the model no longer does (docs/transfer.md, \"Borrowed "
            f"orders\"): compare with `reformer evaluate {init_dir} {dataset}` first"
            for device in devices if (found := sources(init.measured, device))]


def _init_model(ctx: click.Context, init_dir: str, config: FitConfig):
    """The --init model; an architecture or token option given explicitly must agree with it."""
    from reformer.finetune import ARCHITECTURE_FIELDS, init_fields
    from reformer.store import load_model

    try:
        init = load_model(init_dir)
    except InputError as exc:
        raise InputError(f"--init: {exc}") from None
    fields = init_fields(init)
    for name in ARCHITECTURE_FIELDS:
        given = ctx.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT, None)
        if given and getattr(config, name) != fields[name]:
            value = {True: "on", False: "off"}.get(fields[name], fields[name]) if isinstance(fields[name], bool) \
                else ",".join(fields[name]) if name == "derived" else fields[name]
            raise InputError(f"--{name.replace('_', '-')} differs from the --init model's ({value}); a fine-tuned "
                             "model keeps its init model's architecture and tokens, so leave the option out")
    return init


@reformer.command("evaluate")
@click.argument("model_dir", type=click.Path(file_okay=False, path_type=str))
@click.argument("dataset", type=click.Path(dir_okay=False, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the model's metrics.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the random baseline.")
@click.option("--top-k", "top_k", default=None,
              help="Comma-separated k: also score the best measured kernel among the first k ranked (both protocols).")
@device_spec_option
def reformer_evaluate(model_dir: str, dataset: str, as_json: bool, seed: int, top_k: str | None,
                      device_spec: str | None) -> None:
    """Score the model in MODEL_DIR on every problem of DATASET (e.g. another device's).

    A model trained on several devices reads each problem's device; one it was not trained on is described by
    the dataset's metadata, kernelbench's descriptor table or --device-spec (the dataset's device, or the one
    of its devices nothing else describes). On such a device, problems that a training device of the same
    architecture measured are ranked by that device's measured order first (docs/transfer.md, "Borrowed
    orders"); a note says how many.
    """
    import json

    from reformer.data import load_matrix
    from reformer.evaluate import check_devices, evaluate
    from reformer.report import json_metrics, metrics_table, open_table, speedup_line
    from reformer.selector import Selector

    top_ks = tuple(_parse_ints(top_k, "--top-k")) if top_k is not None else ()
    selector = Selector.load(model_dir)
    matrix = load_matrix(dataset)
    if device_spec is not None:
        selector = _with_device_spec(selector, model_dir, device_spec, matrix)
    new_devices = check_devices(selector, matrix, device_spec_given=device_spec is not None)
    result = evaluate(selector, matrix, seed=seed, top_ks=top_ks)
    notes = []
    if new_devices:
        notes.append(f"device(s) the model was not trained on: {', '.join(new_devices)} (candidates from the "
                     "contexts of its training devices, flagged unseen)")
        notes.extend(borrowed_lines(result, matrix, new_devices))
    if result.unknown_kernels:
        notes.append(f"{len(result.unknown_kernels)} kernel(s) of the dataset unknown to the model "
                     f"(never picked, still count for t_best): {', '.join(result.unknown_kernels)}")
    if result.model.skipped_problems:
        notes.append(f"{result.model.skipped_problems} problem(s) skipped: none of their kernels is known to the model")
    if matrix.dropped_problems:
        notes.append(f"{matrix.dropped_problems} problem(s) without an ok row dropped")
    if as_json:
        for note in notes:
            click.echo(note, err=True)
        click.echo(json.dumps({**json_metrics(result.model), "borrowed_share": result.borrowed.share}))
        return
    click.echo(f"{dataset}: {result.model.n_problems} problems scored")
    for note in notes:
        click.echo(note)
    click.echo("closed protocol (choosing among the measured kernels):")
    click.echo(metrics_table({"reformer": result.model, **result.baselines}))
    if (line := speedup_line(result.model, result.baselines)) is not None:
        click.echo(line)
    click.echo("open protocol (ranking every candidate; a pick that was not measured is charged the slowest measured time):")
    click.echo(open_table({"reformer": result.model, **result.baselines}, top_ks=top_ks))


def borrowed_lines(result, matrix, devices: tuple[str, ...]) -> list[str]:
    """Per device the model was not trained on: how many of its scored problems borrowed a measured order."""
    from reformer.borrowed import Borrowed, describe

    of_rows = matrix.problems["device"].to_numpy()[result.scored]
    return [describe(Borrowed(source=tuple(s for s, d in zip(result.borrowed.source, of_rows) if d == device)), device)
            for device in devices]


@reformer.command("select")
@click.argument("model_dir", type=click.Path(file_okay=False, path_type=str))
@click.option("--problem", required=True, help='Problem fields, e.g. "batch=32,in_channels=64,in_h=56,in_w=56,'
              'out_channels=64,filter_h=3,filter_w=3,pad_h=1,pad_w=1,dtype=fp32,direction=fwd".')
@click.option("--applicable", default=None,
              help="Comma-separated kernels to choose from (default: the model's candidates for the problem).")
@click.option("--top", type=click.IntRange(min=1), default=None,
              help="Print only the first N ranked kernels  [default: every candidate].")
@click.option("--device", default=None, metavar="LABEL",
              help="The device label the problem runs on (as in the dataset's device column); a model trained on "
                   "several devices needs it, scores for it and offers that device's kernels.")
@device_spec_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: the ranked list and whether the "
              "problem's context was seen in training.")
def reformer_select(model_dir: str, problem: str, applicable: str | None, top: int | None, device: str | None,
                    device_spec: str | None, as_json: bool) -> None:
    """Rank kernels for one problem with the model in MODEL_DIR, best first.

    Without --applicable the list is every candidate the model's rule offers for the problem (see
    docs/reformer.md): the order in which a library would try kernels, skipping those its own applicability
    check rejects.  --device-spec describes the device --device names (default label: the spec's id).  On a
    device the model was not trained on, the kernels a training device of the same architecture measured for
    this problem come first, in their measured order (docs/transfer.md, "Borrowed orders").
    """
    import json

    from kernelbench.devices import load_device_spec
    from reformer.selector import Selector

    descriptors = None
    if device_spec is not None:
        spec = load_device_spec(device_spec)
        device = device if device is not None else spec.id
        descriptors = {device: spec}
    selector = Selector.load(model_dir, descriptors=descriptors)
    names = None if applicable is None else [k.strip() for k in applicable.split(",") if k.strip()]
    fields = _parse_problem(problem)
    seen = selector.context_seen(selector_problem(fields), device=device)
    ranked = selector.select(fields, applicable=names, top=top or len(selector.kernels), device=device)
    borrowed_from = selector.borrowed_order(selector_problem(fields), device)[1] or None
    if borrowed_from is not None:
        click.echo(f"note: {device} is not a training device; this problem's kernels that {borrowed_from} (same "
                   "architecture) measured come first, in their measured order, then the model's ranking", err=True)
    elif device is not None and device not in (trained_on := selector.trained.info.get("devices") or [device]):
        # A typo in --device must not pass unnoticed: a model that does not read the device ranks the same.
        click.echo(f"note: --device {device} is not a device the model was trained on ({', '.join(trained_on)})",
                   err=True)
    unknown = selector.unknown_kernels(names or [])
    if unknown:
        click.echo(f"ignored kernel(s) unknown to the model: {', '.join(unknown)}", err=True)
    if not seen:
        click.echo("warning: the model never saw a training problem of this problem's context "
                   f"({selector.rule.describe({**selector_problem(fields).as_row(), 'device': device})}); "
                   + ("the kernels --applicable names are ranked" if names is not None else
                      "its candidates are the kernels whose own applicability check accepts it"
                      if selector.rule.kind == "applies" else
                      "its candidates come from a coarser context, or, on a device it never trained on, from what "
                      "the nearest training device recorded")
                   + ", and the ranking is less reliable", err=True)
    if as_json:
        click.echo(json.dumps({"ranked": [{"kernel": k, "probability": p} for k, p in ranked],
                               "candidates": "applicable" if names is not None else selector.rule.kind,
                               "context_seen": seen, "borrowed_from": borrowed_from}))
        return
    width = max(len(k) for k, _ in ranked)
    for rank, (kernel, probability) in enumerate(ranked, 1):
        click.echo(f"{rank:>3}  {kernel:{width}}  {probability:.4f}")


def _with_device_spec(selector, model_dir: str, device_spec: str, matrix):
    """The selector of MODEL_DIR that also knows ``--device-spec`` as the dataset's device it describes."""
    from kernelbench.devices import load_device_spec
    from reformer.device_features import dataset_descriptors, spec_for_dataset
    from reformer.selector import Selector

    spec = load_device_spec(device_spec)
    if not selector.reads_device:
        if selector.trained.measured is None:
            click.echo("note: the model does not read the device (trained on one device); --device-spec changes "
                       "nothing", err=True)
            return selector
        click.echo("note: the model does not read the device (trained on one device); --device-spec only gives the "
                   "device's architecture, for borrowed orders", err=True)
    given = dataset_descriptors(matrix.metadata)

    def described(label: str) -> bool:
        try:
            selector.trained.encoder.descriptor(label, given)
        except InputError:
            return False
        return True

    return Selector(selector.trained, model_dir=model_dir,
                    descriptors=spec_for_dataset(matrix.devices, spec, described=described))


def selector_problem(fields: dict[str, str]):
    """The validated problem of ``--problem`` (InputError names the field).  Output sizes and ``problem_id``,
    which a dataset row carries and the problem derives, must agree with what it derives."""
    from kernelbench.problem import DERIVED_FIELDS, ConvProblem

    problem = ConvProblem.from_mapping(fields)
    row = problem.as_row()
    for name in (*DERIVED_FIELDS, "problem_id"):
        if name in fields and fields[name] != str(row[name]):
            raise InputError(f"--problem gives {name}={fields[name]}, but the problem's other fields make it "
                             f"{row[name]}; leave {name} out (it is derived)")
    return problem


# ---------------------------------------------------------------- reformer ablate

# Light (no torch), so --help stays fast; the study names and the k of the top-k metrics are defined there once.
from reformer.grid import STUDIES as ABLATION_STUDIES, TOP_KS as ABLATION_TOP_KS  # noqa: E402


@reformer.command("ablate", help=(
    "Run the ablation studies and baselines on DATASET; write results.parquet, report.md and plots.  Every cell is "
    "scored under both protocols (closed: the pick among the measured kernels; open: the best-ranked candidate of "
    f"the candidate rule), with top-k for k = {', '.join(map(str, ABLATION_TOP_KS))}."))
@click.argument("dataset", type=click.Path(dir_okay=False, path_type=str))
@click.option("-o", "--output", "report_dir", required=True, type=click.Path(file_okay=False),
              help="Report directory; re-running the same command resumes (finished cells are read back).")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Number of seeds (0..N-1); each is one split and one initialisation for every cell.")
@click.option("--studies", default="all", show_default=True,
              help=f"Comma-separated subset of: {', '.join(ABLATION_STUDIES)}.")
@click.option("--quick", is_flag=True, help="Seeded subsample and short training (whole grid in minutes).")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Training epochs of every Reformer cell  [default: reformer fit's, or --quick's].  Fewer make "
                   "the grid cheaper in proportion, at some accuracy (see docs/ablations.md).")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="Cells run in parallel processes.")
@click.option("--threads", type=THREADS, default=1, show_default=True,
              help="torch/LightGBM threads per job (prefer --jobs: extra threads stall on a busy machine).")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar over the cells.")
@click.option("--report-only", is_flag=True,
              help="Compute nothing: write the report from the cells finished so far (e.g. while the grid runs).")
def reformer_ablate(dataset: str, report_dir: str, seeds: int, studies: str, quick: bool, epochs: int | None,
                    jobs: int, threads: int, progress: bool, report_only: bool) -> None:
    import shlex

    # A terminated grid (kill, a job scheduler's time limit) ends like Ctrl-C: finished cells are already
    # stored, and run.json still records this invocation's wall time.
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    from reformer.ablate import AblationOptions, QuickSettings, run_ablation
    from reformer.ablation_report import write_report
    from reformer.grid import parse_studies

    options = AblationOptions(studies=parse_studies(studies), seeds=tuple(range(seeds)),
                              quick=QuickSettings() if quick else None, epochs=epochs, jobs=jobs, threads=threads)
    command = "reformer ablate " + shlex.join(sys.argv[2:]) if len(sys.argv) > 2 else None
    outcome = run_ablation(dataset, report_dir, options, progress=progress, say=click.echo, command=command,
                           compute=not report_only)
    paths = write_report(report_dir, outcome)
    click.echo(f"{outcome.computed} cell(s) computed, {outcome.reused} read back; wrote "
               + ", ".join(str(p) for p in paths[:2]) + f" and {len(paths) - 2} plot(s)")


# ---------------------------------------------------------------- reformer transfer


@reformer.command("transfer")
@click.argument("dataset", type=click.Path(dir_okay=False, path_type=str))
@click.option("-o", "--output", "report_dir", required=True, type=click.Path(file_okay=False),
              help="Report directory; re-running the same command resumes (finished cells are read back).")
@click.option("--targets", default=None,
              help="Comma-separated target devices (dataset labels or descriptor ids)  [default: every device].")
@click.option("--fractions", "shares", default=",".join(f"{f:g}" for f in TRANSFER_FRACTIONS), show_default=True,
              help="Few-shot shares of the target's training split.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of every split, sample and fit.")
@click.option("--finetune-lr", type=FINITE, default=None,
              help="Peak learning rate of fine-tuning  [default: a fifth of reformer fit's --lr].")
@click.option("--threads", type=THREADS, default=2, show_default=True, help="torch/LightGBM threads.")
@click.option("--quick", is_flag=True, help="At most 1,500 problems per device and short training (minutes).")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar over the cells.")
@click.option("--report-only", is_flag=True,
              help="Compute nothing: write the report from the cells finished so far (e.g. while the study runs).")
def reformer_transfer(dataset: str, report_dir: str, targets: str | None, shares: str, seed: int,
                      finetune_lr: float | None, threads: int, quick: bool, progress: bool, report_only: bool) -> None:
    """Transfer to a device the model never saw: each device of DATASET (several devices, `kernelbench merge`)
    in turn is the target; zero-shot, lookup, few-shot (fine-tuned, from scratch, LightGBM) and in-device.
    Writes results.parquet, report.md and transfer.png (see docs/transfer.md)."""
    import shlex

    signal.signal(signal.SIGTERM, signal.default_int_handler)

    from reformer.transfer import QuickTransfer, TransferOptions, run_transfer
    from reformer.transfer_report import write_report

    try:
        fractions = tuple(float(x) for x in shares.split(",") if x.strip())
    except ValueError:
        raise InputError(f"--fractions {shares!r} must be comma-separated numbers, e.g. 0.01,0.1") from None
    names = None if targets is None else tuple(t.strip() for t in targets.split(",") if t.strip())
    options = TransferOptions(targets=names, fractions=fractions, seed=seed, finetune_lr=finetune_lr,
                              threads=threads, quick=QuickTransfer() if quick else None)
    command = "reformer transfer " + shlex.join(sys.argv[2:]) if len(sys.argv) > 2 else None
    outcome = run_transfer(dataset, report_dir, options, progress=progress, say=click.echo, command=command,
                           compute=not report_only)
    paths = write_report(report_dir, outcome)
    click.echo(f"{outcome.computed} cell(s) computed, {outcome.reused} read back; wrote "
               + ", ".join(str(p) for p in paths))


if __name__ == "__main__":  # pragma: no cover
    kernelbench()
