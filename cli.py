"""Command-line interfaces: ``kernelbench`` (measure) and ``reformer`` (learn to select).

Commands are thin: they parse options and call the packages.  Errors that are
the user's (:class:`kernelbench.errors.InputError`) print one line and exit 2.
Heavy imports (torch, cupy) happen inside the commands so ``--help`` is fast.
"""

from __future__ import annotations

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


# ---------------------------------------------------------------- kernelbench import


# ---------------------------------------------------------------- reformer fit / evaluate / select


# ---------------------------------------------------------------- reformer ablate


if __name__ == "__main__":  # pragma: no cover
    kernelbench()
