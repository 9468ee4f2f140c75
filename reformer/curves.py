"""The training curve of a fit as CSV and as a PNG plot (matplotlib, Agg backend)."""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from collections.abc import Sequence
from pathlib import Path

from kernelbench.schema import atomic_write_bytes
from reformer.train import EpochRecord


def write_curve_csv(path: str | os.PathLike[str], curve: Sequence[EpochRecord]) -> None:
    """One row per epoch with the :class:`EpochRecord` fields as columns."""
    buffer = io.StringIO()
    names = [f.name for f in dataclasses.fields(EpochRecord)]
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for record in curve:
        writer.writerow(dataclasses.asdict(record))
    atomic_write_bytes(Path(path), lambda tmp: Path(tmp).write_text(buffer.getvalue()))


def plot_curve(path: str | os.PathLike[str], curve: Sequence[EpochRecord], *, title: str = "Reformer training") -> None:
    """Training loss and validation top-1 / oracle ratio per epoch, written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r.epoch for r in curve]
    dots, squares = ("o", "s") if len(epochs) <= 50 else (None, None)  # markers would blur hundreds of epochs
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    left.plot(epochs, [r.train_loss for r in curve], marker=dots)
    left.set(xlabel="epoch", ylabel="cross-entropy (train)", title="training loss")
    right.plot(epochs, [r.validation_top1 for r in curve], marker=dots, label="top-1 accuracy")
    right.plot(epochs, [r.validation_oracle_ratio for r in curve], marker=squares, label="geomean t_best / t_pick")
    right.set(xlabel="epoch", ylabel="validation metric", title="validation")
    right.legend(loc="lower right")
    for axis in (left, right):
        axis.grid(alpha=0.3)
    fig.suptitle(title)
    atomic_write_bytes(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
