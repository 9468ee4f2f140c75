"""Pick kernels for problems with a trained model: ``Selector.load(dir).select(problem)``.

A problem is a mapping with the dataset's column names (missing optional
fields take :data:`kernelbench.problem.DEFAULTS`) or a
:class:`~kernelbench.problem.ConvProblem`.  ``applicable`` restricts the
choice to the named kernels; names the model does not know are ignored.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from kernelbench.errors import InputError
from kernelbench.problem import ConvProblem
from reformer.inference import FastReformer
from reformer.store import TrainedModel, load_model

ProblemLike = Mapping[str, Any] | ConvProblem


def problem_row(problem: ProblemLike) -> dict[str, Any]:
    """The dataset columns of one problem (validated; defaults filled in).

    Raises:
        InputError: unknown or missing fields, or invalid values.
    """
    if not isinstance(problem, ConvProblem):
        problem = ConvProblem.from_mapping(problem)
    return problem.as_row()


class Selector:
    """Scores the kernels of a trained model's vocabulary for problems."""

    def __init__(self, trained: TrainedModel) -> None:
        self.trained = trained
        self.model = trained.model.eval()
        self.kernels = trained.kernels
        self._index = {k: i for i, k in enumerate(self.kernels)}
        # Every score below comes from the pre-arranged inference path (reformer.inference), not self.model.
        self.fast = FastReformer.from_trained(trained)
        # Without an explicit `applicable`, a problem may pick only among the kernels that had a time for some
        # training problem of its direction and dtype: logits of kernels never applicable there were never trained.
        self._seen = {
            key: self.mask(names) for key, names in trained.info.get("applicable_seen", {}).items() if names
        }

    @classmethod
    def load(cls, model_dir: str | os.PathLike[str]) -> Selector:
        """Load a model directory written by ``reformer fit``.

        Raises:
            InputError: not a model directory, or of an incompatible format version.
        """
        return cls(load_model(model_dir))

    def mask(self, applicable: Iterable[str] | None) -> np.ndarray:
        """Boolean mask over the vocabulary for kernel names (all True for ``None``).

        Raises:
            InputError: ``applicable`` names no kernel the model knows.
        """
        if applicable is None:
            return np.ones(len(self.kernels), dtype=bool)
        names = list(applicable)
        mask = np.zeros(len(self.kernels), dtype=bool)
        mask[[self._index[k] for k in names if k in self._index]] = True
        if not mask.any():
            raise InputError(
                f"none of the applicable kernels ({', '.join(names) or 'none given'}) is known to the model; "
                f"it knows: {', '.join(self.kernels)}"
            )
        return mask

    def default_mask(self, problem: ProblemLike) -> np.ndarray | None:
        """The kernels seen applicable in training for the problem's ``direction/dtype`` (None: all kernels)."""
        if isinstance(problem, ConvProblem):
            key = f"{problem.direction}/{problem.dtype}"
        else:
            key = f"{problem.get('direction') or 'fwd'}/{problem.get('dtype') or 'fp32'}"
        return self._seen.get(key)

    def unknown_kernels(self, names: Iterable[str]) -> list[str]:
        """The names that are not in the model's vocabulary."""
        return [k for k in names if k not in self._index]

    def probabilities(self, columns: Mapping[str, Any], applicable: np.ndarray | None = None) -> np.ndarray:
        """Probabilities float32 ``[n, n_kernels]`` for problems given as columns.

        ``applicable`` is a boolean ``[n, n_kernels]`` mask (None: all kernels);
        masked kernels get probability 0.  Rows with no applicable kernel are all NaN.
        """
        return self.fast.probabilities(self.trained.encoder.encode(columns), applicable)

    def select(self, problem: ProblemLike, applicable: Iterable[str] | None = None, top: int = 1) -> list[tuple[str, float]]:
        """The ``top`` most probable kernels for one problem: ``[(kernel, probability), ...]``, best first.

        Raises:
            InputError: the problem is invalid, or ``applicable`` names no known kernel.
        """
        if top < 1:
            raise InputError(f"--top must be >= 1, got {top}")
        mask = self.default_mask(problem) if applicable is None else self.mask(applicable)
        return self.fast.select_one(problem, mask, top=top)

    def select_many(
        self,
        problems: Sequence[ProblemLike],
        applicable: Sequence[Iterable[str] | None] | None = None,
        top: int = 1,
    ) -> list[list[tuple[str, float]]]:
        """:meth:`select` for many problems in one batched pass; ``applicable`` is per problem (or None)."""
        if top < 1:
            raise InputError(f"--top must be >= 1, got {top}")
        if not problems:
            return self.fast.select_many(problems, None, top=top)
        everything = np.ones(len(self.kernels), dtype=bool)
        per_problem = applicable if applicable is not None else [None] * len(problems)
        masks = []
        for problem, names in zip(problems, per_problem):
            mask = self.default_mask(problem) if names is None else self.mask(names)
            masks.append(everything if mask is None else mask)
        return self.fast.select_many(problems, np.stack(masks), top=top)
